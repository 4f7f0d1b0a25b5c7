/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals shared by cache/diskcache.c (open/close, SQLite, helpers),
 * diskcache_read.c (handles, lookups, reads), diskcache_write.c (inserts, the
 * writer thread, eviction) and diskcache_admin.c (stats, verify, gc, clear).
 * Nothing outside cache/diskcache*.c includes this.
 *
 * Locks, in the order they may be nested:
 *   db_lock    the writer connection and its statements (writer thread and
 *              maintenance calls); held across a write transaction, never by
 *              the read path;
 *   h_lock     the table of open handles, its LRU list and pending touches;
 *   q_lock     the insert queue, pending drops, sync and stop state;
 *   pool_lock  the free list of read connections.
 *   p_lock     files written whose rows are not committed yet.
 * A thread holding h_lock, q_lock, pool_lock or p_lock takes no other lock,
 * except that h_lock may be held while taking q_lock (never the reverse),
 * and that the writer, holding q_lock, takes its committer's lock
 * (diskcache_write.c; nothing holding that lock takes another).
 */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "diskcache.h"

#define DC_SCHEMA_VERSION 2
#define DC_KEY_HEX (2 * CACHE_KEY_LEN + 1)
/* "data/" + algo name + "/xx/" + 64 hex digits + "." + created, with room to spare */
#define DC_PATH_MAX 128

struct wr_state;

/* A pooled read connection: used by one thread at a time. */
struct dc_rconn {
    struct dc_rconn *next;
    sqlite3 *db;
    sqlite3_stmt *lookup;      /* len, crcs, created, pack, off of one key */
    sqlite3_stmt *meta;        /* the running totals */
    sqlite3_stmt *begin, *end; /* one read transaction for a batch of lookups */
};

struct cache_disk_handle {
    struct cache_disk_handle *hnext;               /* hash chain */
    struct cache_disk_handle *lru_prev, *lru_next; /* only while unreferenced and in the table */
    uint8_t key[CACHE_KEY_LEN];
    uint8_t algo;
    bool in_table; /* false once dropped, evicted or found stale: freed at the last release */
    bool on_lru;
    bool use_dirty; /* last_use changed since it was last written */
    unsigned refs;
    int fd;
    uint64_t len;
    uint64_t base;    /* where the chunk starts in the file (packs) */
    int64_t created;  /* identifies this incarnation of the row (µs) */
    int64_t last_use; /* ms since the epoch */
    uint32_t nblocks;
    uint32_t crcs[]; /* CRC-32 of each CACHE_DISK_BLOCK block */
};

/*
 * A file written for an insert whose row is not committed yet (the writer's
 * batch, or one queued for the committer): cache_disk_lookup() finds it here,
 * so that a chunk evicted from memory before its commit is not fetched again.
 * Its file is at @tmp until published, then at its data path. p_lock.
 */
struct dc_pending {
    struct dc_pending *next;
    uint8_t algo;
    uint8_t key[CACHE_KEY_LEN];
    uint64_t len;
    int64_t created;
    int64_t pack; /* 0: its own file, at tmp[] then its data path */
    uint64_t off; /* in the pack */
    char tmp[64];
    uint8_t crcs[]; /* little-endian, as stored */
};
#define DC_PENDING_BUCKETS 1024

static inline unsigned cache_dc_pending_bucket(const uint8_t *key)
{
    return ((unsigned)key[0] << 8 | key[1]) % DC_PENDING_BUCKETS;
}

/* A key with a time: batched last_use updates, and rows to drop; for rows
 * deleted, where their bytes are (pack 0: a file of their own). */
struct dc_keytime {
    uint8_t algo;
    uint8_t key[CACHE_KEY_LEN];
    int64_t t; /* last_use (touches) or created (drops) */
    int64_t pack;
    uint64_t off, len;
};

struct dc_vec {
    struct dc_keytime *v;
    size_t n, cap;
};

/* One queued insert. */
struct dc_item {
    struct dc_item *next;
    uint8_t algo;
    uint8_t key[CACHE_KEY_LEN];
    const uint8_t *bytes;
    size_t len;
    void *owner;
    cache_disk_done_fn done;
};

struct cache_disk {
    /* resolved options */
    uint64_t budget;
    unsigned high_pct, low_pct, flush_ms, max_open;
    uint64_t direct_backlog;
    uint64_t pack_below; /* 0: no packs */
    uint64_t pack_bytes; /* a new pack beyond */
    int64_t min_age_ms;
    char *dir;
    char *db_path;
    char open_note[6144]; /* cache_disk_open_note(): a path and a reason */
    int dirfd;
    int lockfd; /* index.lock, held shared (lock_cache) */
    int64_t store_id;

    /* writer connection (db_lock) */
    pthread_mutex_t db_lock;
    sqlite3 *wdb;
    sqlite3_stmt *st_begin, *st_commit, *st_rollback;
    sqlite3_stmt *st_insert, *st_get, *st_delete, *st_touch;
    bool sync_full; /* synchronous=FULL is set on wdb */
    sqlite3_stmt *st_meta_add, *st_meta_get, *st_store_add, *st_victims, *st_pack_used;
    uint64_t hits_flushed, misses_flushed; /* counters already written to stores */
    uint64_t total_alloc;                  /* last value read from meta */

    /* read connections (pool_lock) */
    pthread_mutex_t pool_lock;
    struct dc_rconn *pool;

    /* open handles (h_lock) */
    pthread_mutex_t h_lock;
    struct cache_disk_handle **buckets;
    size_t nbuckets;                               /* power of two */
    size_t nopen;                                  /* handles in the table */
    struct cache_disk_handle *lru_head, *lru_tail; /* head = least recently used */
    struct dc_vec touches; /* last_use of handles closed before their flush */

    /* inserts written, rows not committed (p_lock) */
    pthread_mutex_t p_lock;
    struct dc_pending *pending[DC_PENDING_BUCKETS];

    /* insert queue (q_lock) */
    pthread_mutex_t q_lock;
    pthread_cond_t q_wake; /* writer: work, sync or stop */
    pthread_cond_t q_done; /* sync waiters */
    pthread_cond_t q_room; /* inserts waiting for room (CLOCK_MONOTONIC) */
    struct dc_item *q_head, *q_tail;
    size_t q_count, q_bytes;
    size_t q_writing; /* bytes of items taken by the writer, not yet written */
    size_t q_max_bytes;
    unsigned stall_ms;
    uint64_t q_taken;             /* items the writer took: its progress */
    struct dc_vec drops;          /* rows found bad or missing, to delete */
    struct dc_vec drops_inflight; /* taken by the writer, not yet committed */
    uint64_t sync_req, sync_done;
    bool stop;
    bool writer_running; /* sync() waits only while it runs */
    bool writer_joinable;
    pthread_t writer;
    struct wr_state *wstate;      /* the writer thread's batch */
    _Atomic int64_t paused_until; /* monotonic ms; inserts dropped before it (ENOSPC) */

    /* this process since open */
    _Atomic uint64_t hits, misses, inserts, insert_skipped, evictions, bad_entries;
    _Atomic uint64_t sqlite_writes, enospc, over_budget, direct_inserts, insert_waits,
        insert_stalled;
    _Atomic uint64_t insert_errors;  /* failed inserts but for a full filesystem */
    _Atomic int last_insert_failure; /* -errno of the last of those */
    _Atomic uint64_t direct_reads;
    /* drops queued, and batches of them settled, since the open
     * (cache_disk_mark: a pending drop makes a row absent to lookups) */
    _Atomic uint64_t drops_changes;
    _Atomic bool no_direct_reads; /* the filesystem refused an O_DIRECT read */
    _Atomic int last_insert_error;
    _Atomic uint64_t tmp_counter;
    /* this process's packs whose sync failed (the latest DC_BAD_PACKS; 0:
     * free): nothing is appended to them again, and later batches' chunks
     * in them are dropped at their commit, since a write-back error is
     * reported once, to whichever sync comes first, not to the pages' batch */
#define DC_BAD_PACKS 8
    _Atomic int64_t bad_packs[DC_BAD_PACKS];
    _Atomic unsigned bad_pack_next;
};

static inline bool cache_dc_algo_valid(unsigned algo)
{
    return algo == CACHE_ALGO_SHA256 || algo == CACHE_ALGO_SHA512_256 ||
           algo == CACHE_ALGO_SHA256_KEYED;
}

/* 64 KiB blocks of a chunk of @len bytes. */
static inline uint32_t cache_dc_nblocks(uint64_t len)
{
    return (uint32_t)((len + CACHE_DISK_BLOCK - 1) / CACHE_DISK_BLOCK);
}

static inline void cache_dc_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t cache_dc_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Appends to a vector; false when out of memory (the caller drops the item:
 * touches and drops are hints that are found again later). */
bool cache_dc_vec_push(struct dc_vec *v, unsigned algo, const uint8_t *key, int64_t t);

/* Wall clock in ms (last_use, comparable across processes) and µs. */
int64_t cache_dc_now_ms(void);
int64_t cache_dc_now_us(void);
/* Monotonic clock in ms (deadlines, pauses). */
int64_t cache_dc_mono_ms(void);

/* SQLite result code → -errno. */
int cache_dc_sql_errno(int rc);
/* Steps a statement that returns no row, then resets it. 0 or -errno. */
int cache_dc_exec(sqlite3_stmt *st);

void cache_dc_hex(const uint8_t key[CACHE_KEY_LEN], char out[DC_KEY_HEX]);
/* Parses 64 lowercase hex digits; -EINVAL otherwise. */
int cache_dc_unhex(const char *hex, uint8_t key[CACHE_KEY_LEN]);
const char *cache_dc_algo_name(unsigned algo);
/* data/<algo>/<2 hex>/<64 hex>.<created>, relative to the cache directory. */
void cache_dc_data_path(unsigned algo, const uint8_t key[CACHE_KEY_LEN], int64_t created,
                        char out[DC_PATH_MAX]);
/* packs/<id>, relative to the cache directory. */
void cache_dc_pack_path(int64_t pack, char out[DC_PATH_MAX]);
/* The file holding an entry: its pack, or its data path. */
void cache_dc_entry_path(unsigned algo, const uint8_t key[CACHE_KEY_LEN], int64_t created,
                         int64_t pack, char out[DC_PATH_MAX]);

/*
 * Reads @len bytes at @off of the cache file @fd into @dst: with O_DIRECT
 * (its whole pages; the partial last one through the page cache) when @len
 * is 1 MiB or more, @off and @dst are page-aligned, the range's pages are not
 * all in the page cache and the cache's filesystem takes O_DIRECT (after a
 * refusal, never again for @c), through the page cache otherwise (and for
 * whatever a direct read left: short, or failed); whether O_DIRECT read any
 * of it in *@ret_direct. Bytes read (fewer when the file ends early), or
 * -errno.
 */
ssize_t cache_dc_pread(struct cache_disk *c, int fd, uint64_t off, uint64_t len, uint8_t *dst,
                       bool *ret_direct);

/*
 * Packs (see "Layout" in diskcache.h). With db_lock held, after the commit
 * that deleted the rows: frees the pages of [@off, @off + @len) of @pack
 * (a hint: the space comes back with the pack otherwise).
 */
void cache_dc_pack_punch(struct cache_disk *c, int64_t pack, uint64_t off, uint64_t len);
/* With db_lock held: removes @pack if no row names it and no process holds
 * its lock (its writer, until its rows are committed). 1 if removed. */
int cache_dc_pack_reap(struct cache_disk *c, int64_t pack);

/* A read connection from the pool (opened if none is free), and its return. */
int cache_dc_rconn_get(struct cache_disk *c, struct dc_rconn **ret);
void cache_dc_rconn_put(struct cache_disk *c, struct dc_rconn *rc);

/* Reads the running totals (meta: entries, allocated and apparent bytes,
 * rows added and removed); @changes may be NULL (0 where a cache made
 * before the count has no row for it yet). */
int cache_dc_read_meta(sqlite3_stmt *meta, uint64_t *entries, uint64_t *alloc, uint64_t *apparent,
                       uint64_t *changes);

/* Removes the handle of @key from the table if it is there (it stays valid
 * for its holders and is freed at the last release). */
void cache_dc_forget_handle(struct cache_disk *c, unsigned algo, const uint8_t *key);

/* With db_lock held: 1 and its created value if the row of @key exists
 * (@ret_created may be NULL), 0 if not, -errno. */
int cache_dc_row_created(struct cache_disk *c, unsigned algo, const uint8_t *key,
                         int64_t *ret_created);

/*
 * With db_lock held: deletes the row of @key (only if its created value is
 * @created, unless @created is 0) in a durable write transaction, then its
 * data file. Returns 1 if a row was deleted, 0 if there was none, -errno.
 */
int cache_dc_drop_row(struct cache_disk *c, unsigned algo, const uint8_t *key, int64_t created);

/*
 * With db_lock held: evicts least recently used entries whose last_use is
 * before @cutoff_ms until the allocated total is at most @target. Adds the
 * number of evicted entries to *ret_evicted. 0 or -errno.
 */
int cache_dc_evict(struct cache_disk *c, uint64_t target, int64_t cutoff_ms, uint64_t *ret_evicted);

/* Re-reads the allocated total from the index (db_lock held). */
void cache_dc_refresh_total(struct cache_disk *c);

/* diskcache_read.c: whether a drop of @key is queued (its row must not be
 * served meanwhile); whether a handle of @key is open; the last_use values to
 * write (dirty handles and handles closed since the last call); frees the
 * table at close. */
bool cache_dc_drop_pending(struct cache_disk *c, unsigned algo, const uint8_t *key);
bool cache_dc_handle_cached(struct cache_disk *c, unsigned algo, const uint8_t *key);
void cache_dc_collect_touches(struct cache_disk *c, struct dc_vec *out);
void cache_dc_free_handles(struct cache_disk *c);
/* The pending insert of @key (struct dc_pending) as a handle of its file,
 * not in the handle table: 1, or 0 if there is none or its file cannot be
 * opened. */
int cache_dc_pending_open(struct cache_disk *c, unsigned algo, const uint8_t *key,
                          struct cache_disk_handle **ret);

/* diskcache_write.c: the writer thread, and its state (freed with free()). */
void *cache_dc_writer_main(void *arg);
struct wr_state *cache_dc_wstate_new(void);
/* Forgets the pending insert of @key made at @created (its file failed a
 * check): later lookups miss rather than read it again. Whether there was
 * one. */
bool cache_dc_pending_forget(struct cache_disk *c, unsigned algo, const uint8_t *key,
                             int64_t created);
/* Frees what is left in the pending table (close). */
void cache_dc_pending_free_all(struct cache_disk *c);
