/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A bounded in-memory set of recently decoded chunks: lookup, insert,
 * reference, release. Whoever produces a chunk inserts it once it has the
 * bytes (one fetch per chunk is fs/chunks.c's business, not this set's).
 *
 * Keys are (algorithm, digest). Values are byte ranges owned by the cache
 * once inserted (released through the callback given to cache_mem_insert()).
 * Thread-safe. One mutex guards the table and the LRU lists, held for those
 * updates only. Entries in use (referenced) are never evicted; the byte
 * budget may therefore be exceeded by the chunks readers hold at that moment.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CACHE_KEY_LEN 32

struct cache_mem;
struct cache_mem_entry;

enum cache_algo {
    CACHE_ALGO_SHA256 = 1,
    CACHE_ALGO_SHA512_256 = 2,
    /* SHA-256(plaintext ‖ a key's id key): decrypted chunks of encrypted
     * PBS archives; the cache cannot recompute it (it has no key) */
    CACHE_ALGO_SHA256_KEYED = 3,
};

/* @budget: bytes of chunk data kept when no one holds them. NULL on ENOMEM. */
struct cache_mem *cache_mem_new(size_t budget);
/* Frees everything; no entry may still be referenced. NULL-safe. */
void cache_mem_free(struct cache_mem *c);

/*
 * Publishes chunk @key: @len bytes at @bytes, owned by the cache from now on
 * (it calls @release(@owner) when the entry is evicted or the cache is
 * freed), unless the chunk is there already. Returns 1 and a reference to the
 * new entry; 0 and a reference to the entry that was there (@owner stays the
 * caller's); or -ENOMEM (@owner stays the caller's). Lookups count hits and
 * misses; inserts count neither.
 */
int cache_mem_insert(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                     const uint8_t *bytes, size_t len, void *owner, void (*release)(void *owner),
                     struct cache_mem_entry **ret);

/* Bytes of an entry the caller holds a reference to. */
const uint8_t *cache_mem_entry_bytes(const struct cache_mem_entry *e, size_t *ret_len);

/* Takes another reference to an entry the caller already holds. */
void cache_mem_ref(struct cache_mem *c, struct cache_mem_entry *e);

/* Drops a reference from insert, lookup or cache_mem_ref. NULL-safe. */
void cache_mem_release(struct cache_mem *c, struct cache_mem_entry *e);

/* A reference to the chunk if present: 0 and *ret set; -ENOENT if absent.
 * Counts a hit or a miss. */
int cache_mem_lookup(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                     struct cache_mem_entry **ret);

/*
 * Notes that a reader has had @n bytes of the entry (the caller holds a
 * reference). Entries whose every byte has been read are evicted first, least
 * recently used first; the others (prefetched, or read in pieces that arrive
 * out of order) only when no such entry is left.
 */
void cache_mem_note_read(struct cache_mem *c, struct cache_mem_entry *e, size_t n);

/*
 * The bytes that entries not read in full may take before one of them is
 * evicted: the budget less the entries read in full that someone still
 * holds (the disk cache's writer, behind the readers), which are not
 * evicted while held. A readahead window bounded by it keeps its chunks
 * until they are read.
 */
size_t cache_mem_unread_room(struct cache_mem *c);

/* Whether the chunk is present (no reference, no statistics). */
int cache_mem_contains(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN]);

struct cache_mem_stats {
    uint64_t hits, misses, evictions;
    size_t entries, bytes;
};
void cache_mem_get_stats(struct cache_mem *c, struct cache_mem_stats *ret);
