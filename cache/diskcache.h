/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The persistent local chunk cache: verified plaintext chunks, keyed by
 * (algorithm, digest), shared by every snapshot, every store and every mount
 * that uses the same cache directory.
 *
 * Layout of a cache directory
 *   index.sqlite (+ -wal, -shm)   SQLite in WAL mode: one row per chunk
 *   data/<algo>/<2 hex>/<64 hex>.<created>   (algo: sha256, sha512_256,
 *                                 sha256_keyed)
 *                                 one file per large chunk (plaintext bytes);
 *                                 the row's creation time in the name gives
 *                                 each copy its own path, so removing an
 *                                 evicted copy never removes a newer one
 *   packs/<id>                    small chunks (shorter than the pack_below
 *                                 option), appended one after another at
 *                                 page-aligned offsets; the row names its
 *                                 pack and offset
 *   tmp/                          files being written (unique names)
 *
 * Large chunks (PBS: 4 MiB) get a file each: per-file overhead is small;
 * eviction is an unlink that returns the space at once; a file is published
 * atomically by rename(); two daemons never write into the same file. Small
 * chunks (casync: 64 KiB on average) would cost a file creation, an fsync()
 * and a rename each, more than fetching them: they are packed instead. A
 * pack belongs to the process that created it, which alone appends to it and
 * holds an flock() on it until the rows of everything it appended are
 * committed; evicting a packed chunk punches a hole over its pages (the space
 * returns at once), and the pack file is removed once no row names it and
 * nobody holds its lock. Bytes appended whose rows never came (a crash) stay
 * until the pack empties.
 *
 * Integrity: every row holds a CRC-32 of each 64 KiB block of the file. Reads
 * verify the blocks they touch before returning any byte; a mismatch drops the
 * entry (row and file) and returns -EBADMSG, so the caller fetches the chunk
 * again. The digest itself is not re-computed on reads (the caller verified it
 * before inserting); `cache_disk_verify()` re-hashes everything.
 *
 * Crash safety: a file is written under tmp/, fsync()ed, renamed into data/
 * and its directory fsync()ed before the row pointing at it is committed
 * (inserts are committed in groups); a pack is fsync()ed before the rows of
 * the chunks appended to it are. A crash leaves at worst bytes without a row
 * (removed by gc/verify), never a row pointing at missing or wrong bytes.
 *
 * Budget: allocated bytes (st_blocks * 512 of the files; a packed chunk's
 * pages), not apparent size.
 * When the total passes the high watermark, least recently used entries older
 * than the minimum age are evicted down to the low watermark. last_use is
 * kept in memory and written in batches, never once per read.
 *
 * Trust: the CRCs catch damage, not tampering (anyone who can write the
 * directory can recompute them). So the cache is used only if nobody else
 * can write it: cache_disk_open() refuses a directory, data/ or fan-out
 * directory, packs/, tmp/ or index file that is a symbolic link, is not owned by the
 * effective user, or is writable by group or others, and a directory whose
 * parent is owned by another user (not root) or is writable by others without
 * being sticky. Files below are opened without following symbolic links; a
 * data or pack file that is a symbolic link or belongs to another user is a
 * bad entry.
 *
 * Sharing: SQLite WAL with a busy timeout; temp names carry pid, thread and a
 * counter; rows are INSERT OR IGNORE (dedup by digest); an entry evicted by
 * another process is seen as a miss (its open file stays readable; a packed
 * chunk whose pages were punched meanwhile fails its CRC check and is
 * fetched again, never served).
 *
 * Threads: all functions are thread-safe. Inserts are queued and written by
 * the cache's own writer thread, off the caller's path; a committer thread
 * fsyncs and commits each batch while the writer goes on with the next one.
 * No function here blocks on the network; lookups and reads do small disk I/O.
 *
 * Errors: -errno; text in the optional fetch-independent @err buffers.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memcache.h" /* enum cache_algo, CACHE_KEY_LEN */

#define CACHE_DISK_BLOCK (64u * 1024)
#define CACHE_DISK_MAX_CHUNK (16u * 1024 * 1024)

struct cache_disk;
struct cache_disk_handle;

struct cache_disk_options {
    const char *dir;      /* created if missing (mode 0700) */
    uint64_t budget;      /* allocated bytes; 0 = default 10 GiB */
    unsigned high_pct;    /* evict when above this % of budget; 0 = 95 */
    unsigned low_pct;     /* ... down to this %; 0 = 90 */
    unsigned min_age_sec; /* entries used more recently are not evicted; 0 = 60 */
    unsigned flush_ms;    /* last_use and insert batches; 0 = 2000 */
    const char *store;    /* name of the store using this handle, for per-store
                             statistics (e.g. its location); NULL = "" */
    unsigned max_open;    /* open entry handles kept; 0 = 512 */
    /* Files are written with O_DIRECT (no page-cache copy) while at most this
     * many bytes of inserts wait behind the one being written, through the
     * page cache beyond; 0 = UINT64_MAX = always direct. The page cache
     * does not wait for the disk, but every page it takes is a fresh page
     * to fill (and, on a VM whose host takes freed memory back, a fault on
     * the host): measured, a writer that fell back to it fell further
     * behind, at half the throughput and twice the CPU of direct writes,
     * which go to the disk several at a time. With a disk slower than the store the
     * queue fills and inserts wait (queue_bytes). */
    uint64_t direct_backlog;
    /* Bytes of inserts waiting for the writer; beyond, cache_disk_insert()
     * waits for room (its caller holds the bytes until they are written, so
     * this bounds that memory); 0 = 64 MiB. One insert larger than this is
     * queued alone. */
    uint64_t queue_bytes;
    /* ... and gives up, not caching the chunk, once the writer has taken
     * nothing from the queue for this long (a hung disk); 0 = 30000. */
    unsigned stall_ms;
    /* Chunks shorter than this many bytes are appended to pack files (see
     * "Layout"); 0 = 1 MiB (casync's chunks are packed, PBS's 4 MiB ones are
     * not); CACHE_DISK_PACK_OFF: every chunk gets a file. */
    uint64_t pack_below;
    /* A pack past this many bytes is closed and a new one started; 0 =
     * 512 MiB. (Smaller packs return their space sooner when their chunks
     * are evicted at different times; tests use a few KiB.) */
    uint64_t pack_bytes;
    /* Read every page of the index at open (PRAGMA quick_check), so that a
     * damaged one is found and replaced (cache_disk_open_note()) even where
     * an open does not look: for the cache commands, not for mounts (it
     * reads the whole index). */
    bool check_index;
};
#define CACHE_DISK_PACK_OFF UINT64_MAX

/*
 * Opens (creating if needed, mode 0700) the cache in o->dir and starts its
 * writer thread. Errors: -EPERM (not trusted, see "Trust" above; @err says
 * why and what to do), -ENOTDIR, -EACCES, -EIO (SQLite), -ENOMEM; @err gets a
 * message.
 */
int cache_disk_open(const struct cache_disk_options *o, struct cache_disk **ret, char *err,
                    size_t err_len);

/*
 * What the open did that its caller should tell the user, or "": an index
 * file found damaged (SQLite: malformed, not a database, cut short) is moved
 * aside and replaced by an empty one, which the note says (where it went,
 * and that the cached chunks will be fetched again), rather than refusing
 * every open until someone removes it by hand.
 */
const char *cache_disk_open_note(const struct cache_disk *c);

/* Writes every queued insert and batched last_use, stops the writer thread,
 * closes everything. NULL-safe. No handle may still be held. */
void cache_disk_close(struct cache_disk *c);

/*
 * Finds a chunk to read it: marks it used (eviction order, written in
 * batches) and counts a hit or a miss. Returns 1 and a handle (hold it while reading) if present,
 * 0 if absent, -errno on failure (callers treat failures as misses).
 */
int cache_disk_lookup(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                      struct cache_disk_handle **ret);

/*
 * Whether the index holds chunk @key, and its length in *@ret_len (may be
 * NULL): 1 if present, 0 if absent, -errno on failure. Changes nothing: no
 * last_use update (eviction order), no hit or miss counted, no file opened.
 * For reports (`lazyimg status`), which must not make every chunk they look
 * at "recently used"; reads use cache_disk_lookup().
 */
int cache_disk_peek(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                    uint64_t *ret_len);

/*
 * Lookups by this thread between these two calls (cache_disk_lookup,
 * cache_disk_peek) share one SQLite read transaction: one snapshot of the
 * index, and its locks taken and dropped once rather than for each (a
 * readahead asks about a dozen 64 KiB chunks at once). For short runs of
 * lookups only: a transaction held open keeps the WAL from being
 * checkpointed past it. Not nested: a begin inside a batch is counted and
 * does nothing. Errors leave the lookups to their own transactions.
 */
void cache_disk_batch_begin(struct cache_disk *c);
void cache_disk_batch_end(struct cache_disk *c);

/*
 * What the index holds, as a value that changes whenever a row is added or
 * removed (by any process) or a drop is queued (cache_disk_peek() answers
 * "absent" for it at once): the index's count of rows added and removed
 * (meta "changes"), its totals of rows and allocated bytes (so that a lazyimg
 * from before the count, sharing the cache, still changes it), and this
 * process's drops queued and settled. Equal generations: every
 * cache_disk_peek() answers as before (but for a lazyimg from before the
 * count that removed and added rows of equal totals in between).
 */
struct cache_disk_gen {
    uint64_t changes, entries, alloc, drops;
};

static inline bool cache_disk_gen_equal(const struct cache_disk_gen *a,
                                        const struct cache_disk_gen *b)
{
    return a->changes == b->changes && a->entries == b->entries && a->alloc == b->alloc &&
           a->drops == b->drops;
}

/*
 * Where the index stands, read in one snapshot: its generation and the
 * creation time of its newest row, so that a report that looked chunks up
 * (cache_disk_peek) after it can later ask for the rows added since instead
 * of looking every chunk up again (`lazyimg status`). With @window > 0 also
 * the rows created in the last @window µs before the newest: a cache that
 * two processes fill at once commits rows created before another's newest
 * (each commits its batch up to its flush_ms after taking the batch's first
 * chunk), and those are found among the rows created since newest - window.
 * 0 or -errno.
 */
struct cache_disk_mark {
    struct cache_disk_gen gen;
    int64_t newest; /* the largest "created" of a row (µs); 0: no rows */
    int64_t window; /* µs before @newest whose rows @recent counts (0: none) */
    uint64_t recent;
};
int cache_disk_mark(struct cache_disk *c, int64_t window, struct cache_disk_mark *ret);

/* A row of the index: what cache_disk_peek() would find. */
struct cache_disk_row {
    uint8_t algo; /* enum cache_algo */
    uint8_t key[CACHE_KEY_LEN];
    uint64_t len;
};

/*
 * The rows added to the index since @then, when that is all that changed:
 * returns 1 with the rows in *@ret (malloc()ed, *@ret_n of them; NULL and 0
 * when nothing changed; with @then's window also the @then->recent rows it
 * counted, which the caller had seen) and the mark now (the same window) in
 * *@now; every cache_disk_peek() then answers as at @then but for those
 * rows. Returns 0 (*@now set, no rows) when it cannot tell: a row was
 * removed or a drop queued, more than @max rows were added, or the rows
 * created since are more than the index counts as added (a lazyimg from
 * before the count of changes, which does not bump it); and
 * CACHE_DISK_ADDED_LATE when fewer: rows were committed that were created
 * before @then's newest (less its window), by another process filling the
 * cache at once, or an inserter whose clock went back. The caller looks its
 * chunks up again, with a window from then on for the first. -errno on
 * failure.
 */
#define CACHE_DISK_ADDED_LATE 2
int cache_disk_added_since(struct cache_disk *c, const struct cache_disk_mark *then, size_t max,
                           struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *now);

/*
 * Every row of the index, with the mark of the same snapshot (@window as
 * for cache_disk_mark), when there are at most @max: returns 1 with the rows
 * in *@ret (malloc()ed, *@ret_n of them; a row whose drop is queued, absent
 * to cache_disk_peek(), has length 0), 0 when there are more, -errno.
 * Reading them all costs less than looking up far more chunks than the
 * index has rows.
 */
int cache_disk_rows(struct cache_disk *c, size_t max, int64_t window, struct cache_disk_row **ret,
                    size_t *ret_n, struct cache_disk_mark *mark);

/* Length of the cached chunk. */
size_t cache_disk_handle_len(const struct cache_disk_handle *h);

/*
 * Asks the kernel to start reading the chunk's file into the page cache
 * (POSIX_FADV_WILLNEED) without waiting for it, so that a later
 * cache_disk_read() of a prefetched chunk does not wait for the disk.
 * A hint: failures are ignored. @loading: cache_disk_load() will read the
 * chunk; if it would read it with O_DIRECT, no hint is given (the pages
 * would be read twice, the page cache's copy for nothing). Whether it was.
 */
bool cache_disk_prefetch(struct cache_disk *c, struct cache_disk_handle *h, bool loading);

/*
 * Reads [@off, @off + @len) of the chunk into @buf after checking the CRC of
 * every 64 KiB block it touches. 0 on success; -EBADMSG (entry dropped) on a
 * mismatch or a short file; -ESTALE for the same when another reader found
 * the entry bad first (dropped and counted once, by that reader); -EINVAL for
 * a range outside the chunk; -errno for I/O errors.
 */
int cache_disk_read(struct cache_disk *c, struct cache_disk_handle *h, uint64_t off, size_t len,
                    void *buf);

/*
 * Reads the whole chunk into @buf, as cache_disk_read() does (the same
 * checks, the same results), for a chunk about to be kept in memory. Where
 * the file's pages are not all in the page cache, the chunk is large (1 MiB
 * or more), @buf and the chunk's place in its file are page-aligned and the
 * filesystem allows, its whole pages are read with O_DIRECT: into @buf from
 * the disk, without filling page-cache pages that nothing would read again
 * and copying out of them (counted in direct_reads). Otherwise, or when the
 * filesystem refuses O_DIRECT (then never again for this cache), it reads
 * through the page cache; so does the rest of a direct read that comes up
 * short or fails (its error alone drops nothing: an I/O error is -errno).
 */
int cache_disk_load(struct cache_disk *c, struct cache_disk_handle *h, void *buf);

/* Drops a handle from lookup. NULL-safe. */
void cache_disk_release(struct cache_disk *c, struct cache_disk_handle *h);

/* Inserts queued at most, whatever their size. */
#define CACHE_DISK_QUEUE_MAX_ITEMS 4096

/*
 * The outcome of an insert, given to its completion:
 *   1  written: lookups find the chunk from now on (its row is committed
 *      with the next batch; a failed commit is counted in the statistics)
 *   0  the cache had the chunk already (when it knows without an index
 *      lookup: an open entry or the same batch; otherwise the chunk is
 *      written again, 1, and the commit keeps one copy)
 *  -EAGAIN     the writer took nothing from its full queue for stall_ms
 *  -ENOSPC     the cache filesystem is full (inserts pause for a while),
 *              or -EDQUOT
 *  -ENOBUFS    no room within the budget: nothing old enough to evict
 *  -ECANCELED  the cache is closing
 *  -EINVAL     a bad algorithm or length; other -errno: the write failed
 */
typedef void (*cache_disk_done_fn)(void *owner, int result);

/*
 * Queues chunk @key (already verified by the caller) for insertion. The cache
 * reads @bytes later, on its writer thread, and calls @done(@owner, result)
 * once when it no longer needs them: after writing, or at once when the
 * insert is refused. When the queue is full (options queue_bytes and
 * CACHE_DISK_QUEUE_MAX_ITEMS) the caller waits for room: a cache disk slower
 * than the store slows its callers down rather than losing inserts, until
 * the writer stalls (stall_ms). Failures never reach the caller otherwise:
 * they are counted in the statistics (and ENOSPC pauses inserts).
 */
void cache_disk_insert(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                       const uint8_t *bytes, size_t len, void *owner, cache_disk_done_fn done);

/* Waits until every insert queued so far is committed, with the batched
 * last_use values and counters (tests, shutdown). */
void cache_disk_sync(struct cache_disk *c);

struct cache_disk_stats {
    uint64_t entries, bytes_allocated, bytes_apparent, budget;
    /* this process since open */
    uint64_t hits, misses, inserts, insert_skipped, evictions, bad_entries;
    uint64_t insert_waits;   /* inserts that waited for room in the queue */
    uint64_t insert_stalled; /* ... and gave up (-EAGAIN) */
    uint64_t sqlite_writes;  /* committed write transactions */
    uint64_t direct_inserts; /* files written with O_DIRECT (the rest: page cache) */
    uint64_t direct_reads;   /* chunks loaded with O_DIRECT (cache_disk_load) */
    uint64_t enospc;         /* inserts dropped because the cache filesystem is full */
    uint64_t over_budget;    /* inserts dropped for want of room within the budget */
    uint64_t insert_errors;  /* inserts that failed writing files or rows otherwise */
    int last_insert_failure; /* -errno of the last of those, 0 if none */
    int last_insert_error;   /* -errno of the last failed insert (any), 0 if none */
};
void cache_disk_get_stats(struct cache_disk *c, struct cache_disk_stats *ret);

/* The enospc counter alone: no query, cheap enough for every insert. */
uint64_t cache_disk_enospc_count(struct cache_disk *c);

/* As cheap, the insert_errors counter, and the -errno of the last of those
 * (unless @ret_last is NULL). */
uint64_t cache_disk_insert_errors(struct cache_disk *c, int *ret_last);

/* Per store, as persisted in the index (all processes, all time). */
struct cache_disk_store_stats {
    char store[256];
    uint64_t entries, bytes_allocated;
    uint64_t hits, misses, inserts, evictions;
};
/* Calls @cb for every store that has used the cache. */
int cache_disk_store_stats(struct cache_disk *c,
                           void (*cb)(const struct cache_disk_store_stats *s, void *arg),
                           void *arg);

/*
 * Maintenance (the `lazyimg cache` subcommands). verify re-reads every entry,
 * checks length, block CRCs and the digest (SHA-256 for CACHE_ALGO_SHA256,
 * SHA-512/256 for CACHE_ALGO_SHA512_256; not for CACHE_ALGO_SHA256_KEYED,
 * which needs the key), drops bad entries and reports each
 * through @bad (may be NULL); it also removes data files without a row, packs
 * no row names and no writer holds, and stale temp files. Returns the number
 * of bad entries, or -errno.
 */
int cache_disk_verify(struct cache_disk *c, uint64_t *ret_checked,
                      void (*bad)(const char *hex_key, const char *why, void *arg), void *arg);
/*
 * Read profiles (fs/profile.h): per key (a store and an image's name across
 * snapshots), lists of offsets in the order they were first read, the
 * newest CACHE_PROFILE_KEEP kept. They live in the index (table profiles),
 * and cache_disk_clear/gc leave them alone. Each call opens a connection of
 * its own: for a few calls per mount, not per read.
 */
#define CACHE_PROFILE_KEEP 3
#define CACHE_PROFILE_MAX (1u << 20) /* offsets in one profile */
struct cache_disk_profile_info {
    char key[512];
    char image[512]; /* the image it was recorded on */
    int64_t created_us;
    size_t count; /* offsets */
};
/* Saves @n offsets (1..CACHE_PROFILE_MAX) under @key. 0, -EINVAL, -ENOMEM or -errno. */
int cache_disk_profile_save(struct cache_disk *c, const char *key, const char *image,
                            const uint64_t *offsets, size_t n);
/* The newest profile of @key: a malloc()ed array in *ret (*ret_n offsets),
 * and @info (may be NULL). -ENOENT when there is none, -EBADMSG, -errno. */
int cache_disk_profile_load(struct cache_disk *c, const char *key, uint64_t **ret, size_t *ret_n,
                            struct cache_disk_profile_info *info);
/* Calls @cb for each profile (of @key; NULL: all), by key, newest first.
 * The number listed, or -errno. */
int cache_disk_profile_list(struct cache_disk *c, const char *key,
                            void (*cb)(const struct cache_disk_profile_info *p, void *arg),
                            void *arg);
/* Removes the profiles of @key (NULL: all); *ret_removed (may be NULL) says how many. */
int cache_disk_profile_clear(struct cache_disk *c, const char *key, uint64_t *ret_removed);

/* Evicts (LRU, ignoring the minimum age) down to @target allocated bytes,
 * then removes what crashes left (as verify does, without reading entries). */
int cache_disk_gc(struct cache_disk *c, uint64_t target, uint64_t *ret_evicted);
/* Removes every entry. */
int cache_disk_clear(struct cache_disk *c);
/*
 * Removes what processes that stopped without finishing (kill -9, a crash,
 * a power loss) left in the cache, as gc does but evicting nothing: temp
 * files of processes that are gone (and unchanged for a minute), packs and
 * data files that no row names and no writer holds. The budget does not
 * count them, so a daemon calls this now and then. Safe while other
 * processes use the cache. @ret (may be NULL): what was removed. 0 or -errno.
 */
struct cache_disk_tidy_stats {
    uint64_t files, bytes; /* bytes: as allocated on the disk */
    /* seconds until the youngest temp file kept for its age, of a process
     * that seems gone, is a minute old, 0 if none: when to tidy again */
    unsigned again_sec;
};
int cache_disk_tidy(struct cache_disk *c, struct cache_disk_tidy_stats *ret);
