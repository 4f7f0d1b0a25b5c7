/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A bounded in-memory set of recently decoded chunks, with single-flight:
 * when several threads want a chunk that is not there, one of them decodes it
 * and the others wait for that one decode.
 *
 * Keys are (algorithm, digest). Values are byte ranges owned by the cache
 * once filled (released through the callback given to cache_mem_fill()).
 * Thread-safe. One mutex guards the table and the LRU list; it is held for
 * those updates only, never while a chunk is being produced, so loads of
 * different chunks run in parallel. Entries in use (referenced)
 * are never evicted; the byte budget may therefore be exceeded by the chunks
 * readers hold at that moment.
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
};

/* @budget: bytes of chunk data kept when no one holds them. NULL on ENOMEM. */
struct cache_mem *cache_mem_new(size_t budget);
/* Frees everything; no entry may still be referenced. NULL-safe. */
void cache_mem_free(struct cache_mem *c);

/*
 * Finds the chunk @key, or claims it for loading.
 *  - present: returns 0 and a reference in *ret;
 *  - absent: returns 1 and a reference to a new pending entry in *ret; the
 *    caller must produce the bytes and call cache_mem_fill() or
 *    cache_mem_fail() on it exactly once;
 *  - being loaded by another thread: waits for it, then behaves as present,
 *    or returns the negative errno the loader failed with.
 * Returns -ENOMEM if no entry can be allocated.
 */
int cache_mem_acquire(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                      struct cache_mem_entry **ret);

/*
 * Publishes the bytes of a pending entry and wakes its waiters. The cache owns
 * @owner from now on and calls @release(@owner) when the entry is evicted or
 * the cache is freed. The caller keeps its reference.
 */
void cache_mem_fill(struct cache_mem *c, struct cache_mem_entry *e, const uint8_t *bytes,
                    size_t len, void *owner, void (*release)(void *owner));

/* Fails a pending entry: waiters get @err (negative errno), the entry is
 * removed so that a later acquire tries again; drops the caller's reference. */
void cache_mem_fail(struct cache_mem *c, struct cache_mem_entry *e, int err);

/* Bytes of a filled entry the caller holds a reference to. */
const uint8_t *cache_mem_entry_bytes(const struct cache_mem_entry *e, size_t *ret_len);

/* Takes another reference to an entry the caller already holds. */
void cache_mem_ref(struct cache_mem *c, struct cache_mem_entry *e);

/* Drops a reference from acquire or cache_mem_ref. NULL-safe. */
void cache_mem_release(struct cache_mem *c, struct cache_mem_entry *e);

/* A reference to the chunk if present and filled: 0 and *ret set; -ENOENT if
 * absent or still being loaded (no claim, no wait). Counts a hit or a miss. */
int cache_mem_lookup(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                     struct cache_mem_entry **ret);

/*
 * Notes that a reader has had @n bytes of the entry (the caller holds a
 * reference). Entries whose every byte has been read are evicted first, least
 * recently used first; the others (prefetched, or read in pieces that arrive
 * out of order) only when no such entry is left.
 */
void cache_mem_note_read(struct cache_mem *c, struct cache_mem_entry *e, size_t n);

/* Whether the chunk is present and filled (no claim, no wait). */
int cache_mem_contains(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN]);

struct cache_mem_stats {
    uint64_t hits, misses, waits, evictions;
    size_t entries, bytes;
};
void cache_mem_get_stats(struct cache_mem *c, struct cache_mem_stats *ret);
