/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The persistent chunk cache: the table of open entry handles, lookups and
 * verified reads. See diskcache.h (contract) and diskcache_internal.h (locks).
 */
#include "diskcache.h"
#include "diskcache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The alignment O_DIRECT reads are given (offset, length, buffer), and the
 * least a chunk has to be for one. */
#define DIRECT_ALIGN ((uint64_t)4096)
#define DIRECT_MIN ((uint64_t)1 << 20)

/* Whether @len bytes at @off of a cache file are read with O_DIRECT
 * (cache_dc_pread) unless its pages are in the page cache already. */
static bool direct_candidate(struct cache_disk *c, uint64_t off, uint64_t len)
{
    return !atomic_load_explicit(&c->no_direct_reads, memory_order_relaxed) && len >= DIRECT_MIN &&
           off % DIRECT_ALIGN == 0;
}

/* ---- the table of open handles ----------------------------------------- */

static size_t bucket_of(const struct cache_disk *c, unsigned algo, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* digests are uniformly distributed already */
    return (size_t)((h ^ algo) & (c->nbuckets - 1));
}

static struct cache_disk_handle *table_find(struct cache_disk *c, unsigned algo, const uint8_t *key)
{
    for (struct cache_disk_handle *h = c->buckets[bucket_of(c, algo, key)]; h; h = h->hnext) {
        if (h->algo == algo && !memcmp(h->key, key, CACHE_KEY_LEN))
            return h;
    }
    return NULL;
}

static void table_add(struct cache_disk *c, struct cache_disk_handle *h)
{
    size_t b = bucket_of(c, h->algo, h->key);
    h->hnext = c->buckets[b];
    c->buckets[b] = h;
    h->in_table = true;
    c->nopen++;
}

static void lru_remove(struct cache_disk *c, struct cache_disk_handle *h)
{
    if (!h->on_lru)
        return;
    if (h->lru_prev)
        h->lru_prev->lru_next = h->lru_next;
    else
        c->lru_head = h->lru_next;
    if (h->lru_next)
        h->lru_next->lru_prev = h->lru_prev;
    else
        c->lru_tail = h->lru_prev;
    h->lru_prev = h->lru_next = NULL;
    h->on_lru = false;
}

static void lru_append(struct cache_disk *c, struct cache_disk_handle *h)
{
    h->lru_next = NULL;
    h->lru_prev = c->lru_tail;
    if (c->lru_tail)
        c->lru_tail->lru_next = h;
    else
        c->lru_head = h;
    c->lru_tail = h;
    h->on_lru = true;
}

/* Takes @h out of the table (h_lock held); keeps its pending last_use. */
static void table_remove(struct cache_disk *c, struct cache_disk_handle *h)
{
    struct cache_disk_handle **p = &c->buckets[bucket_of(c, h->algo, h->key)];
    while (*p && *p != h)
        p = &(*p)->hnext;
    if (*p)
        *p = h->hnext;
    h->hnext = NULL;
    h->in_table = false;
    c->nopen--;
    lru_remove(c, h);
    if (__atomic_exchange_n(&h->use_dirty, false, __ATOMIC_RELAXED))
        cache_dc_vec_push(&c->touches, h->algo, h->key,
                          __atomic_load_n(&h->last_use, __ATOMIC_RELAXED));
}

static void handle_free(struct cache_disk_handle *h)
{
    if (h->fd >= 0)
        close(h->fd);
    free(h);
}

static void free_list(struct cache_disk_handle *h)
{
    while (h) {
        struct cache_disk_handle *next = h->hnext;
        handle_free(h);
        h = next;
    }
}

/* Closes unreferenced handles beyond max_open, least recently used first
 * (h_lock held). Returns them as a list to free after unlocking. */
static struct cache_disk_handle *trim_locked(struct cache_disk *c)
{
    struct cache_disk_handle *out = NULL;
    while (c->nopen > c->max_open && c->lru_head) {
        struct cache_disk_handle *h = c->lru_head;
        table_remove(c, h);
        h->hnext = out;
        out = h;
    }
    return out;
}

void cache_dc_forget_handle(struct cache_disk *c, unsigned algo, const uint8_t *key)
{
    struct cache_disk_handle *h, *dead = NULL;
    pthread_mutex_lock(&c->h_lock);
    h = table_find(c, algo, key);
    if (h) {
        __atomic_store_n(&h->use_dirty, false, __ATOMIC_RELAXED); /* the row is gone */
        table_remove(c, h);
        if (h->refs == 0)
            dead = h;
    }
    pthread_mutex_unlock(&c->h_lock);
    if (dead)
        handle_free(dead);
}

static bool vec_has(const struct dc_vec *v, unsigned algo, const uint8_t *key)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->v[i].algo == algo && !memcmp(v->v[i].key, key, CACHE_KEY_LEN))
            return true;
    }
    return false;
}

bool cache_dc_drop_pending(struct cache_disk *c, unsigned algo, const uint8_t *key)
{
    bool found;
    pthread_mutex_lock(&c->q_lock);
    found = vec_has(&c->drops, algo, key) || vec_has(&c->drops_inflight, algo, key);
    pthread_mutex_unlock(&c->q_lock);
    return found;
}

/* Queues the deletion of the row (incarnation @created) and its file. */
static void queue_drop(struct cache_disk *c, unsigned algo, const uint8_t *key, int64_t created)
{
    pthread_mutex_lock(&c->q_lock);
    if (cache_dc_vec_push(&c->drops, algo, key, created))
        pthread_cond_signal(&c->q_wake);
    /* with the push: a generation read after it sees the row as gone */
    atomic_fetch_add(&c->drops_changes, 1);
    pthread_mutex_unlock(&c->q_lock);
}

/* ---- lookups and reads --------------------------------------------------- */

/* Table hit: a reference to the handle, or NULL if absent or stale. */
static struct cache_disk_handle *lookup_open(struct cache_disk *c, unsigned algo,
                                             const uint8_t *key)
{
    struct cache_disk_handle *h;
    struct stat st;

    pthread_mutex_lock(&c->h_lock);
    h = table_find(c, algo, key);
    if (h) {
        lru_remove(c, h);
        h->refs++;
    }
    pthread_mutex_unlock(&c->h_lock);
    if (!h)
        return NULL;
    /* another process may have evicted it: its file is then unlinked */
    if (fstat(h->fd, &st) == 0 && st.st_nlink > 0)
        return h;
    pthread_mutex_lock(&c->h_lock);
    if (h->in_table) {
        __atomic_store_n(&h->use_dirty, false, __ATOMIC_RELAXED);
        table_remove(c, h);
    }
    pthread_mutex_unlock(&c->h_lock);
    cache_disk_release(c, h);
    return NULL;
}

/* Index lookup and open of the data file. 1 and a new handle, 0, -errno. */
/*
 * Opens the cache file at @path (relative to the cache directory) for
 * reading: its descriptor, or -errno; -ELOOP (a symbolic link), -EPERM (a
 * file of another user: O_NOATIME refuses it) and -EBADMSG (not a regular
 * file of ours) for a file never to be served.
 */
static int open_entry_file(struct cache_disk *c, const char *path)
{
    struct stat st;
    int fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOATIME | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return -EBADMSG;
    }
    return fd;
}

/* This thread's batch of lookups (cache_disk_batch_begin). */
static __thread struct {
    struct cache_disk *c;
    struct dc_rconn *rc; /* in a read transaction; NULL: none */
    unsigned depth;
} batch;

void cache_disk_batch_begin(struct cache_disk *c)
{
    struct dc_rconn *rc;

    if (batch.depth++ || !c || cache_dc_rconn_get(c, &rc) < 0)
        return;
    if (sqlite3_step(rc->begin) != SQLITE_DONE) {
        sqlite3_reset(rc->begin);
        cache_dc_rconn_put(c, rc);
        return;
    }
    sqlite3_reset(rc->begin);
    batch.c = c;
    batch.rc = rc;
}

void cache_disk_batch_end(struct cache_disk *c)
{
    (void)c;
    if (!batch.depth || --batch.depth || !batch.rc)
        return;
    (void)sqlite3_step(batch.rc->end);
    sqlite3_reset(batch.rc->end);
    if (!sqlite3_get_autocommit(batch.rc->db))
        (void)sqlite3_exec(batch.rc->db, "ROLLBACK", NULL, NULL, NULL);
    cache_dc_rconn_put(batch.c, batch.rc);
    batch.c = NULL;
    batch.rc = NULL;
}

/* A read connection for one lookup: the batch's, or one from the pool
 * (*@own set: to be put back). */
static int rconn_for_lookup(struct cache_disk *c, struct dc_rconn **ret, bool *own)
{
    *own = !(batch.rc && batch.c == c);
    if (!*own) {
        *ret = batch.rc;
        return 0;
    }
    return cache_dc_rconn_get(c, ret);
}

/* The columns of an index row that lookups use. */
struct dc_row {
    int64_t len, created, pack, base;
};

/* A handle for row @row, holding the block CRCs in column 1 of @st (the
 * current row): 1, -EBADMSG for a row we did not write (bad lengths), or
 * -ENOMEM. */
static int row_handle(sqlite3_stmt *st, const struct dc_row *row, struct cache_disk_handle **ret)
{
    const void *crcs = sqlite3_column_blob(st, 1);
    int crcs_len = sqlite3_column_bytes(st, 1);
    struct cache_disk_handle *h;

    if (row->len <= 0 || (uint64_t)row->len > CACHE_DISK_MAX_CHUNK || row->pack < 0 ||
        row->base < 0 || !crcs ||
        (uint64_t)crcs_len != (uint64_t)cache_dc_nblocks((uint64_t)row->len) * 4)
        return -EBADMSG;
    if (!(h = calloc(1, sizeof(*h) + (size_t)crcs_len)))
        return -ENOMEM;
    h->nblocks = cache_dc_nblocks((uint64_t)row->len);
    for (uint32_t i = 0; i < h->nblocks; i++)
        h->crcs[i] = cache_dc_get_le32((const uint8_t *)crcs + 4 * i);
    *ret = h;
    return 1;
}

/*
 * The index's row for (@algo, @key), read on the batch's read connection or
 * a pooled one: 1 with its columns in *@row, 0 when there is none, -errno.
 * With @ret_h, also a handle holding its block CRCs (row_handle(): -EBADMSG
 * for a row that is not one of ours, *@row filled all the same).
 */
static int index_row(struct cache_disk *c, unsigned algo, const uint8_t *key, struct dc_row *row,
                     struct cache_disk_handle **ret_h)
{
    struct dc_rconn *rc;
    bool own;
    int r, step;

    if ((r = rconn_for_lookup(c, &rc, &own)) < 0)
        return r;
    sqlite3_bind_int(rc->lookup, 1, (int)algo);
    sqlite3_bind_blob(rc->lookup, 2, key, CACHE_KEY_LEN, SQLITE_STATIC);
    step = sqlite3_step(rc->lookup);
    if (step == SQLITE_ROW) {
        row->len = sqlite3_column_int64(rc->lookup, 0);
        row->created = sqlite3_column_int64(rc->lookup, 2);
        row->pack = sqlite3_column_int64(rc->lookup, 3);
        row->base = sqlite3_column_int64(rc->lookup, 4);
        r = ret_h ? row_handle(rc->lookup, row, ret_h) : 1;
    } else {
        r = step == SQLITE_DONE ? 0 : cache_dc_sql_errno(step);
    }
    sqlite3_reset(rc->lookup);
    if (own)
        cache_dc_rconn_put(c, rc);
    return r;
}

static int lookup_index(struct cache_disk *c, unsigned algo, const uint8_t *key,
                        struct cache_disk_handle **ret)
{
    struct cache_disk_handle *h = NULL;
    char path[DC_PATH_MAX];
    struct dc_row row = {0};
    int r = index_row(c, algo, key, &row, &h);

    if (r == -EBADMSG) {
        atomic_fetch_add(&c->bad_entries, 1);
        queue_drop(c, algo, key, row.created);
        return 0;
    }
    if (r <= 0)
        return r;

    cache_dc_entry_path(algo, key, row.created, row.pack, path);
    if ((h->fd = open_entry_file(c, path)) < 0) {
        r = h->fd;
        free(h);
        if (r == -ELOOP || r == -EPERM || r == -EBADMSG) {
            /* a symbolic link or not a file of ours: never served */
            atomic_fetch_add(&c->bad_entries, 1);
            queue_drop(c, algo, key, row.created);
            return 0;
        }
        if (r != -ENOENT)
            return r;
        /* evicted between the query and the open (then the drop finds a
         * newer row or none and does nothing), or removed by hand: a miss */
        queue_drop(c, algo, key, row.created);
        return 0;
    }
    h->algo = (uint8_t)algo;
    memcpy(h->key, key, CACHE_KEY_LEN);
    h->len = (uint64_t)row.len;
    h->base = (uint64_t)row.base;
    h->created = row.created;
    *ret = h;
    return 1;
}

/* ---- inserts written, rows not committed (the table: diskcache_write.c) --- */

int cache_dc_pending_open(struct cache_disk *c, unsigned algo, const uint8_t *key,
                          struct cache_disk_handle **ret)
{
    struct cache_disk_handle *h = NULL;
    char tmp[sizeof(((struct dc_pending *)0)->tmp)], path[DC_PATH_MAX];
    int64_t created = 0, pack = 0;

    pthread_mutex_lock(&c->p_lock);
    for (struct dc_pending *p = c->pending[cache_dc_pending_bucket(key)]; p; p = p->next) {
        if (p->algo == algo && !memcmp(p->key, key, CACHE_KEY_LEN)) {
            uint32_t n = cache_dc_nblocks(p->len);
            if ((h = calloc(1, sizeof(*h) + (size_t)n * 4))) {
                h->nblocks = n;
                for (uint32_t i = 0; i < n; i++)
                    h->crcs[i] = cache_dc_get_le32(p->crcs + 4 * i);
                h->len = p->len;
                h->base = p->off;
                created = p->created;
                pack = p->pack;
                memcpy(tmp, p->tmp, sizeof(tmp));
            }
            break;
        }
    }
    pthread_mutex_unlock(&c->p_lock);
    if (!h)
        return 0;
    /* in its pack, or at its temporary name until published, then at its
     * data path */
    if (pack) {
        cache_dc_pack_path(pack, path);
        h->fd = open_entry_file(c, path);
    } else if ((h->fd = open_entry_file(c, tmp)) < 0) {
        cache_dc_data_path(algo, key, created, path);
        h->fd = open_entry_file(c, path);
    }
    if (h->fd < 0) {
        free(h);
        return 0;
    }
    h->algo = (uint8_t)algo;
    memcpy(h->key, key, CACHE_KEY_LEN);
    h->created = created;
    *ret = h;
    return 1;
}

int cache_disk_lookup(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                      struct cache_disk_handle **ret)
{
    struct cache_disk_handle *h, *existing, *dead;
    int r;

    if (!cache_dc_algo_valid(algo)) {
        atomic_fetch_add(&c->misses, 1);
        return 0;
    }
    h = lookup_open(c, algo, key);
    if (!h) {
        r = cache_dc_drop_pending(c, algo, key) ? 0 : lookup_index(c, algo, key, &h);
        if (r == 0 && cache_dc_pending_open(c, algo, key, &h) == 1) {
            /* written, not committed yet: read it from its file, outside the
             * handle table (freed at its release) */
            h->refs = 1;
            atomic_fetch_add(&c->hits, 1);
            *ret = h;
            return 1;
        }
        if (r <= 0) {
            atomic_fetch_add(&c->misses, 1);
            return r;
        }
        pthread_mutex_lock(&c->h_lock);
        existing = table_find(c, algo, key);
        if (existing) {
            /* another thread opened it meanwhile: use that one */
            handle_free(h);
            h = existing;
            lru_remove(c, h);
        } else {
            table_add(c, h);
        }
        h->refs++;
        dead = trim_locked(c);
        pthread_mutex_unlock(&c->h_lock);
        free_list(dead);
    }
    /* last_use is a hint: a racy store from two readers is harmless */
    __atomic_store_n(&h->last_use, cache_dc_now_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&h->use_dirty, true, __ATOMIC_RELAXED);
    atomic_fetch_add(&c->hits, 1);
    *ret = h;
    return 1;
}

int cache_disk_peek(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                    uint64_t *ret_len)
{
    struct dc_row row;
    int r;

    if (!cache_dc_algo_valid(algo) || cache_dc_drop_pending(c, algo, key))
        return 0;
    if ((r = index_row(c, algo, key, &row, NULL)) <= 0)
        return r;
    if (row.len <= 0 || (uint64_t)row.len > CACHE_DISK_MAX_CHUNK)
        return 0;
    if (ret_len)
        *ret_len = (uint64_t)row.len;
    return 1;
}

size_t cache_disk_handle_len(const struct cache_disk_handle *h)
{
    return (size_t)h->len;
}

bool cache_disk_prefetch(struct cache_disk *c, struct cache_disk_handle *h, bool loading)
{
    if (loading && direct_candidate(c, h->base, h->len))
        return false;
    (void)posix_fadvise(h->fd, (off_t)h->base, (off_t)h->len, POSIX_FADV_WILLNEED);
    return true;
}

void cache_disk_release(struct cache_disk *c, struct cache_disk_handle *h)
{
    struct cache_disk_handle *dead = NULL;
    if (!h)
        return;
    pthread_mutex_lock(&c->h_lock);
    if (--h->refs == 0) {
        if (h->in_table) {
            lru_append(c, h);
            dead = trim_locked(c);
        } else {
            h->hnext = NULL;
            dead = h;
        }
    }
    pthread_mutex_unlock(&c->h_lock);
    free_list(dead);
}

/*
 * Whether the index still has @h's row (the same incarnation). A chunk in a
 * pack that another process evicted (`cache gc`, a daemon sharing the
 * cache) reads as the hole punched in its place, while the pack, unlike an
 * evicted chunk's own file, is still there: no damage to count. Unknown
 * (the index unreadable): true.
 */
static bool row_still_there(struct cache_disk *c, const struct cache_disk_handle *h)
{
    struct dc_row row;
    int r = index_row(c, h->algo, h->key, &row, NULL);

    return r < 0 || (r == 1 && row.created == h->created);
}

/*
 * A failed integrity check: the entry is never served again by anyone.
 * false when another reader of the same handle (or pending file) found it
 * bad first (it is dropped and counted already), or when another process
 * had evicted it (a miss, not damage).
 */
static bool entry_bad(struct cache_disk *c, struct cache_disk_handle *h)
{
    bool first, pending;
    pthread_mutex_lock(&c->h_lock);
    first = h->in_table;
    if (h->in_table) {
        __atomic_store_n(&h->use_dirty, false, __ATOMIC_RELAXED);
        table_remove(c, h);
    }
    pthread_mutex_unlock(&c->h_lock);
    /* a file not committed yet is not handed out again either */
    pending = cache_dc_pending_forget(c, h->algo, h->key, h->created);
    if (pending)
        first = true;
    if (!first || (!pending && !row_still_there(c, h)))
        return false;
    atomic_fetch_add(&c->bad_entries, 1);
    queue_drop(c, h->algo, h->key, h->created);
    return true;
}

/* pread() until @len bytes or end of file: bytes read, or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Checks the CRCs of blocks [@from, @to) of the chunk, read into @dst
 * (which holds the chunk's bytes from block @from on). */
static int check_blocks(const struct cache_disk_handle *h, uint64_t from, uint64_t to,
                        const uint8_t *dst)
{
    uint64_t start = from * CACHE_DISK_BLOCK;
    uint64_t end = to * CACHE_DISK_BLOCK < h->len ? to * CACHE_DISK_BLOCK : h->len;
    for (uint64_t b = from; b < to; b++) {
        uint64_t off = b * CACHE_DISK_BLOCK - start;
        uint64_t n = end - start - off < CACHE_DISK_BLOCK ? end - start - off : CACHE_DISK_BLOCK;
        if (crc32_gzip_refl(0, dst + off, n) != h->crcs[b])
            return -EBADMSG;
    }
    return 0;
}

/* Reads blocks [@from, @to) of the chunk into @dst and checks their CRCs. */
static int read_blocks(const struct cache_disk_handle *h, uint64_t from, uint64_t to, uint8_t *dst)
{
    uint64_t start = from * CACHE_DISK_BLOCK;
    uint64_t end = to * CACHE_DISK_BLOCK < h->len ? to * CACHE_DISK_BLOCK : h->len;
    ssize_t got = pread_full(h->fd, dst, (size_t)(end - start), h->base + start);
    if (got < 0)
        return (int)got;
    if ((uint64_t)got != end - start)
        return -EBADMSG; /* the file is shorter than its row says */
    return check_blocks(h, from, to, dst);
}

/* Whether every page of [@off, @off + @len) of @fd is in the page cache: the
 * residency of a mapping never touched (mincore), so nothing is read. */
static bool in_page_cache(int fd, uint64_t off, uint64_t len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), first = off / page * page;
    size_t maplen = (size_t)(off + len - first), npages = (maplen + page - 1) / page;
    unsigned char vec[256];
    bool all = true;
    uint8_t *map = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, (off_t)first);
    if (map == MAP_FAILED)
        return true; /* unknown: the page cache path is always right */
    for (size_t i = 0; i < npages && all; i += sizeof(vec)) {
        size_t n = npages - i < sizeof(vec) ? npages - i : sizeof(vec);
        size_t bytes = n * page < maplen - i * page ? n * page : maplen - i * page;
        if (mincore(map + i * page, bytes, vec) < 0)
            break;
        for (size_t k = 0; k < n && all; k++)
            all = vec[k] & 1;
    }
    munmap(map, maplen);
    return all;
}

/* pread() of @len bytes (whole pages) with O_DIRECT: the bytes read, which
 * stop early at the end of the file, at a read that returns less than it
 * was asked for or at an error (its errno in *@ret_err, else 0 there). */
static size_t pread_direct(int fd, uint8_t *buf, size_t len, uint64_t off, int *ret_err)
{
    size_t done = 0;
    *ret_err = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            *ret_err = errno;
        if (n <= 0)
            break;
        done += (size_t)n;
        if ((uint64_t)n % DIRECT_ALIGN)
            break; /* the end of the file off a page, or a short read */
    }
    return done;
}

/* Whether the descriptors of this thread can be opened again by path. */
static bool proc_fds_present(void)
{
    return access("/proc/thread-self/fd", F_OK) == 0;
}

/*
 * The O_DIRECT part of cache_dc_pread(): the bytes of [@off, @off + @len)
 * read into @dst with O_DIRECT, from the start (whole pages; fewer when a
 * read came up short or failed), or 0 when O_DIRECT is not for this range.
 */
static size_t pread_direct_part(struct cache_disk *c, int fd, uint64_t off, uint64_t len,
                                uint8_t *dst)
{
    char path[48];
    size_t got;
    int dfd, err;

    if (!direct_candidate(c, off, len) || (uintptr_t)dst % DIRECT_ALIGN ||
        in_page_cache(fd, off, len))
        return 0;
    /* a descriptor of its own: @fd may be shared with page cache readers */
    snprintf(path, sizeof(path), "/proc/thread-self/fd/%d", fd);
    dfd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME | O_DIRECT);
    if (dfd < 0) {
        /* no O_DIRECT on this filesystem, or no /proc: not again. Anything
         * else (a file gone stale under a network filesystem, a shortage of
         * descriptors) concerns this read only */
        if (errno == EINVAL || !proc_fds_present())
            atomic_store(&c->no_direct_reads, true);
        return 0;
    }
    got = pread_direct(dfd, dst, (size_t)(len / DIRECT_ALIGN * DIRECT_ALIGN), off, &err);
    close(dfd);
    /* an alignment this device does not take: the page cache from now on;
     * any other failure of the first read, for this read only */
    if (got == 0 && err == EINVAL)
        atomic_store(&c->no_direct_reads, true);
    return got;
}

/*
 * Whatever O_DIRECT did not read (all of it; the partial last page; the rest
 * after a read that came up short or failed) is read through the page
 * cache, so a filesystem's short direct reads or an error it gives only to
 * O_DIRECT cost speed, never a good entry; an error there too is the result.
 */
ssize_t cache_dc_pread(struct cache_disk *c, int fd, uint64_t off, uint64_t len, uint8_t *dst,
                       bool *ret_direct)
{
    size_t got = pread_direct_part(c, fd, off, len, dst);
    ssize_t rest = got < len ? pread_full(fd, dst + got, (size_t)(len - got), off + got) : 0;
    *ret_direct = got > 0;
    return rest < 0 ? rest : (ssize_t)(got + (size_t)rest);
}

int cache_disk_load(struct cache_disk *c, struct cache_disk_handle *h, void *buf)
{
    bool direct;
    ssize_t got = cache_dc_pread(c, h->fd, h->base, h->len, buf, &direct);
    int r;
    if (direct)
        atomic_fetch_add(&c->direct_reads, 1);
    if (got < 0)
        return (int)got;
    /* a file shorter than its row says, or a bad block: dropped */
    r = (uint64_t)got != h->len ? -EBADMSG : check_blocks(h, 0, h->nblocks, buf);
    if (r == -EBADMSG && !entry_bad(c, h))
        r = -ESTALE;
    return r;
}

int cache_disk_read(struct cache_disk *c, struct cache_disk_handle *h, uint64_t off, size_t len,
                    void *buf)
{
    uint8_t *out = buf, *bounce = NULL;
    uint64_t end, pos;
    int r = 0;

    if (off > h->len || len > h->len - off)
        return -EINVAL;
    end = off + len;
    pos = off;
    while (pos < end && r == 0) {
        uint64_t blk = pos / CACHE_DISK_BLOCK;
        uint64_t bstart = blk * CACHE_DISK_BLOCK;
        uint64_t bend = bstart + CACHE_DISK_BLOCK < h->len ? bstart + CACHE_DISK_BLOCK : h->len;
        if (bstart == pos && bend <= end) {
            /* whole blocks: straight into the caller's buffer; a failed check
             * returns an error, so unverified bytes there are never used */
            uint64_t last = blk + 1;
            while (last < h->nblocks && (last + 1) * CACHE_DISK_BLOCK <= end)
                last++;
            if (last == h->nblocks - 1 && h->len <= end)
                last++; /* the short final block, wholly requested */
            r = read_blocks(h, blk, last, out + (bstart - off));
            pos = last * CACHE_DISK_BLOCK < h->len ? last * CACHE_DISK_BLOCK : h->len;
        } else {
            /* a block partly requested: verify all of it in a bounce buffer */
            uint64_t cend = bend < end ? bend : end;
            if (!bounce && !(bounce = malloc(CACHE_DISK_BLOCK))) {
                r = -ENOMEM;
                break;
            }
            r = read_blocks(h, blk, blk + 1, bounce);
            if (r == 0)
                memcpy(out + (pos - off), bounce + (pos - bstart), (size_t)(cend - pos));
            pos = cend;
        }
    }
    free(bounce);
    if (r == -EBADMSG && !entry_bad(c, h))
        r = -ESTALE;
    return r;
}

/* Collects last_use values to write: dirty handles and closed ones (h_lock). */
void cache_dc_collect_touches(struct cache_disk *c, struct dc_vec *out)
{
    pthread_mutex_lock(&c->h_lock);
    *out = c->touches;
    memset(&c->touches, 0, sizeof(c->touches));
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (struct cache_disk_handle *h = c->buckets[b]; h; h = h->hnext) {
            if (__atomic_exchange_n(&h->use_dirty, false, __ATOMIC_RELAXED))
                cache_dc_vec_push(out, h->algo, h->key,
                                  __atomic_load_n(&h->last_use, __ATOMIC_RELAXED));
        }
    }
    pthread_mutex_unlock(&c->h_lock);
}

bool cache_dc_handle_cached(struct cache_disk *c, unsigned algo, const uint8_t *key)
{
    bool found;
    pthread_mutex_lock(&c->h_lock);
    found = table_find(c, algo, key) != NULL;
    pthread_mutex_unlock(&c->h_lock);
    return found;
}

void cache_dc_free_handles(struct cache_disk *c)
{
    if (!c->buckets)
        return;
    for (size_t b = 0; b < c->nbuckets; b++)
        free_list(c->buckets[b]);
    free(c->buckets);
    c->buckets = NULL;
}
