/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunks.h"
#include "fetch/buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

#include "fetch/chunk.h"
#include "fetch/digest.h"
#include "log.h"

struct waiter {
    struct waiter *next;
    fs_chunk_done_fn done;
    void *arg;
};

/* One fetch of one chunk, however many readers wait for it. */
struct flight {
    struct flight *next; /* hash chain */
    struct fs_chunks *chunks;
    struct fetch_chunk_ref ch; /* how the chunk is named and verified */
    unsigned name;             /* which of its names is being fetched */
    enum fetch_prio prio;
    struct fetch_job *job;
    struct waiter *waiters;
};

#define FLIGHT_BUCKETS 1024
/* chunks queued for readahead from the disk cache (disk_loader_main) */
#define DISK_LOAD_QUEUE 16

struct fs_chunks {
    struct fetch_pool *pool;
    struct cache_mem *mem;
    struct cache_disk *disk;
    atomic_uint_fast64_t loads, load_errors, load_bytes, disk_hits, disk_bad, disk_loads;
    atomic_uint_fast64_t enospc_seen, enospc_warned_at;
    pthread_mutex_t lent_lock;
    pthread_cond_t lent_cond;
    size_t lent_bytes, lent_max; /* decoded chunks held by the disk writer */
    size_t lent_count;           /* and their number (its queue is bounded too) */
    uint64_t lent_returned;      /* chunks the writer gave back: its progress */
    atomic_uint_fast64_t lend_gave_up;
    pthread_mutex_t flight_lock;
    struct flight *flights[FLIGHT_BUCKETS];
    char *prefix;               /* where chunk objects live in the stores */
    struct fetch_chunk_ctx ctx; /* of every chunk: ctx.prefix is @prefix */
    /* readahead from the disk cache (disk_loader_main), dl_lock */
    pthread_mutex_t dl_lock;
    pthread_cond_t dl_cond;
    struct disk_load {
        uint8_t digest[32];
        uint32_t len;
        uint8_t algo;
    } dl_queue[DISK_LOAD_QUEUE], dl_busy; /* dl_busy.len 0: idle */
    unsigned dl_head, dl_count;
    bool dl_running, dl_quit;
    pthread_t dl_thread;
};

static void *disk_loader_main(void *arg);

static enum cache_algo cache_algo_of(uint8_t algo)
{
    return algo == FETCH_DIGEST_SHA512_256 ? CACHE_ALGO_SHA512_256 : CACHE_ALGO_SHA256;
}

struct fs_chunks *fs_chunks_new(struct fetch_pool *pool, size_t mem_budget, struct cache_disk *disk,
                                const char *chunk_prefix)
{
    struct fs_chunks *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (!(c->prefix = strdup(chunk_prefix ? chunk_prefix : ""))) {
        free(c);
        return NULL;
    }
    c->ctx.prefix = c->prefix;
    c->pool = pool;
    pthread_mutex_init(&c->flight_lock, NULL);
    c->disk = disk;
    /* lent chunks are memory entries too: half of the budget for them, half
     * for readahead (fs/read.c), so that neither evicts the other's */
    c->lent_max = mem_budget / 2;
    pthread_mutex_init(&c->lent_lock, NULL);
    pthread_cond_init(&c->lent_cond, NULL);
    c->mem = cache_mem_new(mem_budget);
    if (!c->mem) {
        free(c->prefix);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->dl_lock, NULL);
    pthread_cond_init(&c->dl_cond, NULL);
    /* without the thread, readahead of cached chunks is a kernel hint only */
    if (disk)
        c->dl_running = pthread_create(&c->dl_thread, NULL, disk_loader_main, c) == 0;
    return c;
}

void fs_chunks_free(struct fs_chunks *c)
{
    if (!c)
        return;
    fs_chunks_stop(c);
    pthread_mutex_destroy(&c->dl_lock);
    pthread_cond_destroy(&c->dl_cond);
    cache_mem_free(c->mem);
    pthread_mutex_destroy(&c->flight_lock);
    pthread_mutex_destroy(&c->lent_lock);
    pthread_cond_destroy(&c->lent_cond);
    free(c->prefix);
    free(c);
}

/*
 * Readahead from the disk cache: a chunk a sequential reader will want next
 * is read from its cache file (CRC-checked) into memory on this thread, so
 * that the reader's requests are answered from memory while the next chunk
 * is read and checked on another core. Without it every request would read
 * and check its range on the FUSE thread first. The queue is small and
 * bounded; a chunk that does not fit is only hinted to the kernel
 * (POSIX_FADV_WILLNEED) and read by the reader as before.
 */

static void disk_load_one(struct fs_chunks *c, const struct disk_load *d)
{
    struct cache_disk_handle *h = NULL;
    struct cache_mem_entry *entry;
    uint8_t *buf;
    int r;

    if (cache_mem_contains(c->mem, cache_algo_of(d->algo), d->digest) ||
        cache_disk_lookup(c->disk, cache_algo_of(d->algo), d->digest, &h) <= 0)
        return;
    if (cache_disk_handle_len(h) != d->len || !(buf = fetch_buf_alloc(d->len))) {
        cache_disk_release(c->disk, h);
        return;
    }
    r = cache_disk_read(c->disk, h, 0, d->len, buf);
    cache_disk_release(c->disk, h);
    if (r < 0) {
        if (r == -EBADMSG)
            atomic_fetch_add(&c->disk_bad, 1); /* dropped: a reader fetches it */
        fetch_buf_free(buf);
        return;
    }
    r = cache_mem_insert(c->mem, cache_algo_of(d->algo), d->digest, buf, d->len, buf,
                         fetch_buf_free, &entry);
    if (r == 1)
        atomic_fetch_add(&c->disk_loads, 1);
    else
        fetch_buf_free(buf); /* another thread brought it in meanwhile */
    if (r >= 0)
        cache_mem_release(c->mem, entry);
}

static void *disk_loader_main(void *arg)
{
    struct fs_chunks *c = arg;
    pthread_mutex_lock(&c->dl_lock);
    for (;;) {
        struct disk_load d;
        while (!c->dl_count && !c->dl_quit)
            pthread_cond_wait(&c->dl_cond, &c->dl_lock);
        if (c->dl_quit)
            break;
        d = c->dl_queue[c->dl_head];
        c->dl_busy = d;
        c->dl_head = (c->dl_head + 1) % DISK_LOAD_QUEUE;
        c->dl_count--;
        pthread_mutex_unlock(&c->dl_lock);
        disk_load_one(c, &d);
        pthread_mutex_lock(&c->dl_lock);
        c->dl_busy.len = 0;
    }
    pthread_mutex_unlock(&c->dl_lock);
    return NULL;
}

/* Queues the load of @e from the disk cache; false when the queue is full. */
static bool disk_load_queue(struct fs_chunks *c, const struct fetch_extent *e)
{
    bool queued = false;
    pthread_mutex_lock(&c->dl_lock);
    if (c->dl_running && !c->dl_quit) {
        queued = c->dl_busy.len && !memcmp(c->dl_busy.digest, e->digest, 32);
        for (unsigned i = 0; i < c->dl_count && !queued; i++) {
            const struct disk_load *q = &c->dl_queue[(c->dl_head + i) % DISK_LOAD_QUEUE];
            queued = !memcmp(q->digest, e->digest, 32);
        }
        if (!queued && c->dl_count < DISK_LOAD_QUEUE) {
            struct disk_load *d = &c->dl_queue[(c->dl_head + c->dl_count) % DISK_LOAD_QUEUE];
            memcpy(d->digest, e->digest, 32);
            d->len = e->length;
            d->algo = e->algo;
            c->dl_count++;
            queued = true;
            pthread_cond_signal(&c->dl_cond);
        }
    }
    pthread_mutex_unlock(&c->dl_lock);
    return queued;
}

void fs_chunks_stop(struct fs_chunks *c)
{
    bool join;
    if (!c)
        return;
    pthread_mutex_lock(&c->dl_lock);
    c->dl_quit = true;
    join = c->dl_running;
    c->dl_running = false;
    pthread_cond_broadcast(&c->dl_cond);
    pthread_mutex_unlock(&c->dl_lock);
    if (join)
        pthread_join(c->dl_thread, NULL);
}

/* A memory entry lent to the disk cache's writer until it has the bytes on disk. */
struct lent {
    struct fs_chunks *chunks;
    struct cache_mem_entry *entry;
};

static void lent_done(void *owner)
{
    struct lent *l = owner;
    struct fs_chunks *c = l->chunks;
    size_t len;
    cache_mem_entry_bytes(l->entry, &len);
    cache_mem_release(c->mem, l->entry);
    pthread_mutex_lock(&c->lent_lock);
    c->lent_bytes -= len;
    c->lent_count--;
    c->lent_returned++;
    pthread_cond_broadcast(&c->lent_cond);
    pthread_mutex_unlock(&c->lent_lock);
    free(l);
}

/*
 * Chunks lent to the disk cache's writer stay in memory until written: their
 * total is bounded by the memory budget. A loader waits for the writer rather
 * than skip the insert, so that every chunk fetched is cached (a slow cache
 * disk slows loads to its speed). Only a writer that returns nothing for
 * LENT_STALL_MS (a hung disk) makes loaders give up on caching, which is
 * counted and reported, never silent.
 */
#define LENT_STALL_MS 30000

static bool lend_room(struct fs_chunks *c, size_t len)
{
    uint64_t seen;
    unsigned stalled_ms = 0;
    bool ok = true;

    pthread_mutex_lock(&c->lent_lock);
    seen = c->lent_returned;
    while (c->lent_bytes &&
           (c->lent_bytes + len > c->lent_max || c->lent_count >= CACHE_DISK_QUEUE_MAX_ITEMS)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&c->lent_cond, &c->lent_lock, &until) == 0)
            continue;
        if (c->lent_returned != seen) {
            seen = c->lent_returned;
            stalled_ms = 0;
        } else if ((stalled_ms += 100) >= LENT_STALL_MS) {
            ok = false;
            break;
        }
    }
    if (ok) {
        c->lent_bytes += len;
        c->lent_count++;
    }
    pthread_mutex_unlock(&c->lent_lock);
    if (!ok && atomic_fetch_add(&c->lend_gave_up, 1) == 0)
        fs_warn("disk cache: the cache writer has made no progress for %d s; chunks are "
                "not being cached until it does (reads continue from the store)",
                LENT_STALL_MS / 1000);
    return ok;
}

/* Says, at most once a minute, that chunks are not being cached because the
 * cache filesystem is full; reads go on from the store. */
static void report_disk_trouble(struct fs_chunks *c)
{
    uint64_t now = cache_disk_enospc_count(c->disk), before, last;
    struct timespec ts;

    before = atomic_exchange(&c->enospc_seen, now);
    if (now <= before)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    last = atomic_load(&c->enospc_warned_at);
    if ((last && (uint64_t)ts.tv_sec - last < 60) ||
        !atomic_compare_exchange_strong(&c->enospc_warned_at, &last, (uint64_t)ts.tv_sec))
        return;
    fs_warn("disk cache: no space left on the cache filesystem; chunks are not being cached "
            "(reads continue from the store)");
}

static void queue_insert(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32],
                         struct cache_mem_entry *entry)
{
    struct lent *l;
    const uint8_t *bytes;
    size_t len;
    if (!c->disk)
        return;
    bytes = cache_mem_entry_bytes(entry, &len);
    if (!lend_room(c, len))
        return; /* not caching it costs a later fetch, never a wrong byte */
    if (!(l = malloc(sizeof(*l)))) {
        pthread_mutex_lock(&c->lent_lock);
        c->lent_bytes -= len;
        c->lent_count--;
        pthread_mutex_unlock(&c->lent_lock);
        return;
    }
    cache_mem_ref(c->mem, entry);
    l->chunks = c;
    l->entry = entry;
    cache_disk_insert(c->disk, cache_algo_of(algo), digest, bytes, len, l, lent_done);
    report_disk_trouble(c);
}

/* 1 and the bytes in @scratch when the disk cache has a good copy; 0 if not. */
static int read_disk(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                     uint8_t *scratch)
{
    struct cache_disk_handle *h = NULL;
    int r;
    if (!c->disk || cache_disk_lookup(c->disk, cache_algo_of(e->algo), e->digest, &h) <= 0)
        return 0;
    if (cache_disk_handle_len(h) != e->length) {
        /* the digest names other bytes than this extent's: not ours to serve */
        cache_disk_release(c->disk, h);
        return 0;
    }
    r = cache_disk_read(c->disk, h, off, len, scratch);
    cache_disk_release(c->disk, h);
    if (r == -EBADMSG)
        atomic_fetch_add(&c->disk_bad, 1);
    if (r < 0)
        return 0; /* dropped or unreadable: fetch it from the store */
    atomic_fetch_add(&c->disk_hits, 1);
    return 1;
}

int fs_chunks_peek(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                   uint8_t *scratch, const uint8_t **ret_bytes, struct cache_mem_entry **ret_ref)
{
    struct cache_mem_entry *entry;
    size_t blen;

    if (cache_mem_lookup(c->mem, cache_algo_of(e->algo), e->digest, &entry) == 0) {
        /* a hostile index can name one digest at two lengths: the bytes
         * loaded for the other length are not this extent's */
        const uint8_t *bytes = cache_mem_entry_bytes(entry, &blen);
        if (blen != e->length) {
            cache_mem_release(c->mem, entry);
            return -EIO;
        }
        cache_mem_note_read(c->mem, entry, len);
        *ret_bytes = bytes + off;
        *ret_ref = entry;
        return 1;
    }
    if (scratch && read_disk(c, e, off, len, scratch)) {
        *ret_bytes = scratch;
        *ret_ref = NULL;
        return 1;
    }
    return 0;
}

bool fs_chunks_on_disk(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h = NULL;
    bool yes;
    if (!c->disk || cache_disk_lookup(c->disk, cache_algo_of(e->algo), e->digest, &h) <= 0)
        return false;
    yes = cache_disk_handle_len(h) == e->length;
    cache_disk_release(c->disk, h);
    return yes;
}

/*
 * Readahead of a chunk on disk: its file is read into the page cache in the
 * background, so that the reader's synchronous read of it (fs_chunks_peek)
 * finds it there. Without this, a warm read of small chunks waits for the
 * disk once per chunk. true if the chunk is on disk.
 */
static bool disk_prefetch(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h = NULL;
    bool yes;
    if (!c->disk || cache_disk_lookup(c->disk, cache_algo_of(e->algo), e->digest, &h) <= 0)
        return false;
    yes = cache_disk_handle_len(h) == e->length;
    if (yes)
        cache_disk_prefetch(c->disk, h);
    cache_disk_release(c->disk, h);
    if (yes)
        disk_load_queue(c, e);
    return yes;
}

static unsigned flight_bucket(const uint8_t digest[32])
{
    return ((unsigned)digest[0] << 8 | digest[1]) % FLIGHT_BUCKETS;
}

/* flight_lock held */
static struct flight **flight_find(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32])
{
    struct flight **fp = &c->flights[flight_bucket(digest)];
    while (*fp && ((*fp)->ch.algo != algo || memcmp((*fp)->ch.digest, digest, 32) != 0))
        fp = &(*fp)->next;
    return fp;
}

static int flight_decode(void *arg, void *raw, size_t raw_len, fetch_data *ret, fetch_error *err)
{
    struct flight *f = arg;
    return fetch_chunk_decode(&f->chunks->ctx, &f->ch, f->name, raw, raw_len, ret, err);
}

static void flight_done(void *arg, int r, fetch_data *data, const fetch_error *err);

/*
 * Submits the fetch of @f's chunk object under its current name and sets
 * f->job. flight_lock held. 0, -ENOMEM, -EINVAL (a chunk kind this build
 * does not know), or -ECANCELED (the pool is stopped: unmounting).
 */
static int flight_submit(struct fs_chunks *c, struct flight *f)
{
    char path[FETCH_CHUNK_PATH_MAX];
    int r = fetch_chunk_path(&c->ctx, &f->ch, f->name, path, sizeof(path));
    if (r < 0)
        return r == -ENAMETOOLONG ? -ENOMEM : r;
    return fetch_pool_submit(c->pool, path, fetch_chunk_max_raw(&f->ch, f->name), f->prio,
                             flight_decode, flight_done, f, &f->job);
}

static void flight_done(void *arg, int r, fetch_data *data, const fetch_error *err)
{
    struct flight *f = arg, **fp;
    struct fs_chunks *c = f->chunks;
    struct cache_mem_entry *entry = NULL;
    struct waiter *w;
    fetch_error fill_err = {""};
    bool inserted = false;
    enum fetch_prio prio;

    if ((r == -ENOENT || r == -ELOOP) && fetch_chunk_has_next_name(&f->ch, f->name)) {
        /* not under this name (or marked "known missing" by a symlink to
         * /dev/null): the format's next name, e.g. an uncompressed store's */
        int sr;
        pthread_mutex_lock(&c->flight_lock);
        f->name++;
        sr = flight_submit(c, f);
        pthread_mutex_unlock(&c->flight_lock);
        if (sr == 0)
            return;
        f->name--;
    }
    if (r == 0) {
        r = cache_mem_insert(c->mem, cache_algo_of(f->ch.algo), f->ch.digest, data->bytes,
                             data->len, data->base, fetch_buf_free, &entry);
        if (r == 1) {
            r = 0;
        } else {
            /* already there (r == 0), or no memory for an entry */
            fetch_data_release(data);
            if (r < 0)
                fetch_error_set(&fill_err, r, "out of memory");
        }
        if (r == 0) {
            atomic_fetch_add(&c->loads, 1);
            atomic_fetch_add(&c->load_bytes, f->ch.len);
        }
    }
    if (r < 0)
        atomic_fetch_add(&c->load_errors, 1);

    /* published in memory before the flight goes: a later want() finds one or the other */
    pthread_mutex_lock(&c->flight_lock);
    fp = flight_find(c, f->ch.algo, f->ch.digest);
    if (*fp == f)
        *fp = f->next;
    w = f->waiters;
    prio = f->prio;
    pthread_mutex_unlock(&c->flight_lock);

    /* hydration waits for the chunk to be on its way to disk (it checks the
     * cache afterwards); readers are answered first: the disk cache may make
     * this worker wait */
    if (r == 0 && prio == FETCH_PRIO_HYDRATE) {
        queue_insert(c, f->ch.algo, f->ch.digest, entry);
        inserted = true;
    }
    while (w) {
        struct waiter *next = w->next;
        if (r == 0) {
            cache_mem_ref(c->mem, entry);
            w->done(w->arg, 0, entry, NULL);
        } else {
            w->done(w->arg, r, NULL, fill_err.msg[0] ? &fill_err : err);
        }
        free(w);
        w = next;
    }
    if (r == 0) {
        if (!inserted)
            queue_insert(c, f->ch.algo, f->ch.digest, entry);
        cache_mem_release(c->mem, entry);
    }
    free(f);
}

int fs_chunks_want(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio,
                   fs_chunk_done_fn done, void *arg)
{
    struct flight **fp, *f;
    struct waiter *w = NULL;
    struct cache_mem_entry *entry;

    if (done && !(w = malloc(sizeof(*w))))
        return -ENOMEM;
    if (w)
        *w = (struct waiter){NULL, done, arg};
    else if (cache_mem_contains(c->mem, cache_algo_of(e->algo), e->digest) ||
             (prio == FETCH_PRIO_READAHEAD ? disk_prefetch(c, e) : fs_chunks_on_disk(c, e)))
        return 0;

    pthread_mutex_lock(&c->flight_lock);
    fp = flight_find(c, e->algo, e->digest);
    if ((f = *fp)) {
        if (w) {
            w->next = f->waiters;
            f->waiters = w;
        }
        if (prio < f->prio) {
            f->prio = prio;
            fetch_pool_upgrade(c->pool, f->job, prio);
        }
        pthread_mutex_unlock(&c->flight_lock);
        return 0;
    }
    /* a flight that completed since the check above has published its chunk
     * in memory before leaving the table: looking again under the lock
     * closes that window (a second fetch of the same chunk) */
    if (!w && cache_mem_contains(c->mem, cache_algo_of(e->algo), e->digest)) {
        pthread_mutex_unlock(&c->flight_lock);
        return 0;
    }
    if (w && cache_mem_lookup(c->mem, cache_algo_of(e->algo), e->digest, &entry) == 0) {
        pthread_mutex_unlock(&c->flight_lock);
        free(w);
        /* hydration wants it on disk: a reader's insert may have been dropped */
        if (prio == FETCH_PRIO_HYDRATE && c->disk && !fs_chunks_on_disk(c, e))
            queue_insert(c, e->algo, e->digest, entry);
        done(arg, 0, entry, NULL);
        return 0;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        pthread_mutex_unlock(&c->flight_lock);
        free(w);
        return -ENOMEM;
    }
    f->chunks = c;
    fetch_chunk_ref_of(e, &f->ch);
    f->prio = prio;
    f->waiters = w;
    /* in the table before the job exists: its completion may run at once */
    *fp = f;
    int r = flight_submit(c, f);
    if (r < 0) {
        *flight_find(c, e->algo, e->digest) = f->next;
        pthread_mutex_unlock(&c->flight_lock);
        free(w);
        free(f);
        return r;
    }
    pthread_mutex_unlock(&c->flight_lock);
    return 0;
}

void fs_chunks_note_read(struct fs_chunks *c, struct cache_mem_entry *entry, size_t len)
{
    cache_mem_note_read(c->mem, entry, len);
}

void fs_chunks_put(struct fs_chunks *c, struct cache_mem_entry *entry)
{
    cache_mem_release(c->mem, entry);
}

void fs_chunks_get_stats(struct fs_chunks *c, struct fs_chunks_stats *ret)
{
    ret->loads = atomic_load(&c->loads);
    ret->load_errors = atomic_load(&c->load_errors);
    ret->load_bytes = atomic_load(&c->load_bytes);
    ret->disk_hits = atomic_load(&c->disk_hits);
    ret->disk_loads = atomic_load(&c->disk_loads);
    ret->disk_bad = atomic_load(&c->disk_bad);
    ret->not_cached = atomic_load(&c->lend_gave_up);
    cache_mem_get_stats(c->mem, &ret->mem);
}
