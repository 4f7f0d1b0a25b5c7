/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk access for the read path. Composes, in this order:
 *  1. the in-memory set of decoded chunks (cache/memcache.h);
 *  2. the persistent disk cache (cache/diskcache.h), whose hits are read
 *     straight from its data file, only the bytes asked for, CRC-checked;
 *  3. the store, through the fetcher pool (fetch/pool.h): fetched, decoded and
 *     digest-verified on a pool worker, once however many readers want the
 *     chunk at the same time (one flight per digest), then published in
 *     memory, handed to the waiting readers and queued for the disk cache
 *     (whose queue is bounded: when it is full, the pool worker waits).
 * Nothing here waits for the network: fs_chunks_peek() answers from memory or
 * disk or says "not here", and fs_chunks_want() registers a completion.
 * A disk-cache entry that fails its check is dropped and the chunk is fetched
 * from the store instead: never served. Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/diskcache.h"
#include "cache/memcache.h"
#include "fetch/error.h"
#include "fetch/image.h"
#include "fetch/pool.h"

struct fetch_pbs_key;

struct fs_chunks;

struct fs_chunks_stats {
    uint64_t loads;            /* chunks read from the store and verified */
    uint64_t load_errors;      /* missing or corrupt */
    uint64_t load_bytes;       /* plaintext bytes of loaded chunks */
    uint64_t disk_hits;        /* reads answered from the disk cache */
    uint64_t disk_loads;       /* chunks read ahead from the disk cache into memory */
    uint64_t disk_hints;       /* cached chunks further on hinted to the kernel (small ones) */
    uint64_t disk_bad;         /* disk cache entries that failed their check */
    uint64_t disk_read_errors; /* reads of cached chunks that failed (EIO): fetched instead */
    uint64_t not_cached;       /* loaded chunks the disk cache refused: its writer stalled */
    uint64_t missing_known;    /* wants answered "not found" without a request: the
                                * stores did not have the chunk moments ago */
    struct cache_mem_stats mem;
};

/*
 * @pool and @disk are borrowed; @disk may be NULL (no disk cache).
 * @mem_budget: bytes of decoded chunks kept in memory.
 * @chunk_prefix: where chunk objects live below the pool's stores' roots
 * ("default.castr/" below a repository that keeps them in a subdirectory, or
 * "" when the stores hold them at their roots); NULL for "". Chunks are named, decoded
 * and verified by their extent's kind (fetch/chunk.h) and digest algorithm;
 * memory and disk caches key them by both. @key (borrowed; NULL: none)
 * decrypts the chunks of encrypted archives, whose keyed digests keep their
 * plaintext apart from every other chunk's in the caches.
 */
struct fs_chunks *fs_chunks_new(struct fetch_pool *pool, size_t mem_budget, struct cache_disk *disk,
                                const char *chunk_prefix, const struct fetch_pbs_key *key);
/* Stops reading ahead from the disk cache (its threads): before the disk cache
 * closes. Idempotent, NULL-safe. */
void fs_chunks_stop(struct fs_chunks *c);
/* The pool must have been freed first (all completions done). NULL-safe. */
void fs_chunks_free(struct fs_chunks *c);

/*
 * Reads [@off, @off + @len) of non-zero extent @e (@off + @len <= e->length)
 * if the chunk is in memory or in the disk cache; never fetches.
 * Returns 1 with *ret_bytes pointing at the bytes: inside a decoded chunk held
 * in memory (*ret_ref set: drop it with fs_chunks_put) or in @scratch (at
 * least @len bytes, may be NULL when there is no disk cache; *ret_ref NULL).
 * Returns 0 when the chunk has to be fetched, -EIO for a digest used with two
 * lengths. May wait for a disk loader that is reading the chunk (the time of
 * one read of it from the disk cache).
 */
int fs_chunks_peek(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                   uint8_t *scratch, const uint8_t **ret_bytes, struct cache_mem_entry **ret_ref);

/*
 * Called once per fs_chunks_want() with @done: with 0 and a reference to the
 * decoded chunk (drop it with fs_chunks_put; check its length against the
 * extent's), or with a negative errno (-ENOENT missing, -EBADMSG corrupt,
 * -ENOKEY, -EIO, -ETIMEDOUT, -ECANCELED at unmount) and a message. Runs on a
 * pool worker, or on the caller's thread before fs_chunks_want returns when
 * the chunk is already in memory.
 */
typedef void (*fs_chunk_done_fn)(void *arg, int r, struct cache_mem_entry *entry,
                                 const fetch_error *err);

/*
 * Makes sure chunk @e gets loaded at priority @prio (a chunk already in
 * flight at a lower priority is upgraded). With @done, a completion as
 * above. Without, a prefetch: nothing is done when the chunk is in memory, in
 * the disk cache or already in flight, and the result only fills the caches.
 * Returns 0, or -ENOMEM, or -ECANCELED once the pool is stopped (unmounting);
 * then @done is not called.
 */
int fs_chunks_want(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio,
                   fs_chunk_done_fn done, void *arg);

/*
 * Called once per fs_chunks_cache(): @fetch_r is 1 when the chunk was
 * fetched (and verified) for it, 0 when it was in memory or on disk
 * already, else the fetch's -errno (as for fs_chunk_done_fn, with @err); then @cache_r is the disk
 * cache's outcome (cache/diskcache.h: 1 written, 0 already there, -errno refused; -ENOMEM when
 * memory was short). Runs on a pool worker, or on the caller's thread.
 */
typedef void (*fs_chunk_cached_fn)(void *arg, int fetch_r, int cache_r, const fetch_error *err);

/*
 * Makes sure chunk @e is in the disk cache (hydration): answered at once when
 * it is there, else loaded at FETCH_PRIO_HYDRATE (from memory if it is there)
 * and inserted, and answered with the insert's outcome. Such chunks leave
 * memory before those that readers use. Returns 0, -ENODEV without a disk
 * cache, -ENOMEM, -ECANCELED once the pool is stopped; then @cached is not
 * called.
 */
int fs_chunks_cache(struct fs_chunks *c, const struct fetch_extent *e, fs_chunk_cached_fn cached,
                    void *arg);

/* The cache algorithm that keys chunks of digest algorithm @algo
 * (enum fetch_digest_algo): keyed digests have one of their own. */
enum cache_algo fs_chunks_cache_algo(uint8_t algo);

/* Whether the disk cache holds chunk @e (a lookup, no read). */
bool fs_chunks_on_disk(struct fs_chunks *c, const struct fetch_extent *e);

/* The same as a peek (cache_disk_peek: no "recently used", no hit or miss
 * counted), for reports: a status poller must not keep chunks from
 * eviction. 1 if it does, 0 if not, -errno when the index could not be
 * asked. */
int fs_chunks_peek_disk(struct fs_chunks *c, const struct fetch_extent *e);

/* Where the disk cache's index stands (cache_disk_mark), for a report
 * about to peek: -ENOENT without a disk cache. */
int fs_chunks_disk_mark(struct fs_chunks *c, int64_t window, struct cache_disk_mark *ret);

/* The rows added to the disk cache since @then (cache_disk_added_since):
 * 1 with the rows, 0 or CACHE_DISK_ADDED_LATE when a report must peek
 * again, -errno (-ENOENT without a disk cache). */
int fs_chunks_disk_added(struct fs_chunks *c, const struct cache_disk_mark *then, size_t max,
                         struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *now);

/* Every row of the disk cache's index when there are at most @max, and
 * its mark with @window (cache_disk_rows): 1, 0 (more), -errno (-ENOENT
 * without a disk cache). */
int fs_chunks_disk_rows(struct fs_chunks *c, size_t max, int64_t window,
                        struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *mark);

/* The row fs_chunks_peek_disk() looks for @e under (the cache's algorithm,
 * the digest it is filed under, @e's length); false for a zero extent and
 * without a disk cache. */
bool fs_chunks_disk_row(struct fs_chunks *c, const struct fetch_extent *e,
                        struct cache_disk_row *ret);

/* If the disk cache holds chunk @e, has the kernel start reading its bytes
 * into the page cache (POSIX_FADV_WILLNEED): for chunks a reader will want
 * after those fs_chunks_want() brings into memory. No memory of ours, no
 * fetch; no hint for a chunk the loaders will read with O_DIRECT
 * (cache_disk_prefetch). Whether the disk cache holds it (or memory does). */
bool fs_chunks_hint_disk(struct fs_chunks *c, const struct fetch_extent *e);

/* Around a run of fs_chunks_want() calls on one thread (a readahead of many
 * chunks): their disk-cache lookups share one index transaction
 * (cache_disk_batch_begin). */
void fs_chunks_batch_begin(struct fs_chunks *c);
void fs_chunks_batch_end(struct fs_chunks *c);

/* A reader has had @len bytes of a chunk from fs_chunks_want()'s callback
 * (fs_chunks_peek() notes its own): chunks read in full leave memory first. */
void fs_chunks_note_read(struct fs_chunks *c, struct cache_mem_entry *entry, size_t len);

void fs_chunks_put(struct fs_chunks *c, struct cache_mem_entry *entry);

/* Bytes of memory that chunks not read in full yet (readahead) may take
 * before one is evicted (cache_mem_unread_room). */
size_t fs_chunks_unread_room(struct fs_chunks *c);

void fs_chunks_get_stats(struct fs_chunks *c, struct fs_chunks_stats *ret);

/* Chunks the stores answered "not found" for are answered so again without a
 * request for 30 s (fs_chunks_want(): -ENOENT and that time's error); this
 * forgets them at once (SIGHUP: a repaired store). */
void fs_chunks_forget_missing(struct fs_chunks *c);
