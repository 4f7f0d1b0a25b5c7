/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunks.h"
#include "fetch/buf.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

#include "fetch/chunk.h"
#include "fetch/clock.h"
#include "fetch/digest.h"
#include "fetch/pbs_key.h"
#include "log.h"

/* A reader (done) or a cacher (cached: answered once the disk cache has
 * taken or refused the chunk, see fs_chunks_cache). */
struct waiter {
    struct waiter *next;
    fs_chunk_done_fn done;
    fs_chunk_cached_fn cached;
    void *arg;
    uint32_t len; /* a cacher's extent length (an index may name one digest at two) */
    bool fetched; /* a cacher whose chunk a fetch brought (not memory) */
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
    struct fetch_chunk_tap tap; /* fed by the pool's transfer thread */
};

#define FLIGHT_BUCKETS 1024
/* chunks queued for readahead from the disk cache (disk_loader_main) */
#define DISK_LOAD_QUEUE 16
/* threads loading them (see disk_load_one) */
#define DISK_LOADERS 2
/*
 * Chunks the stores answered "not found" for are remembered this long, so
 * that a reader retrying one (a snapshot deleted under a mount, a damaged
 * store) fails at once with the same error instead of sending a request per
 * read. Forgotten sooner by SIGHUP (fs_chunks_forget_missing), e.g. once the
 * store is repaired. A direct-mapped table: a chunk pushed out by another
 * one is only asked for again.
 */
#define MISSING_SLOTS 64
#define MISSING_TTL_MS 30000

struct fs_chunks {
    struct fetch_pool *pool;
    struct cache_mem *mem;
    struct cache_disk *disk;
    atomic_uint_fast64_t loads, load_errors, load_bytes, disk_hits, disk_bad, disk_loads,
        disk_hints;
    atomic_uint_fast64_t enospc_seen, enospc_warned_at;
    atomic_uint_fast64_t errors_seen, errors_warned_at;
    /* reads of cached chunks that failed (an I/O error of the cache's disk) */
    atomic_uint_fast64_t disk_read_errors, read_errors_seen, read_errors_warned_at;
    atomic_uint_fast64_t not_cached; /* the disk writer stalled */
    atomic_uint_fast64_t missing_known;
    pthread_mutex_t flight_lock;
    struct flight *flights[FLIGHT_BUCKETS];
    /* chunks found missing (flight_lock): until 0 for a free slot */
    struct missing {
        uint64_t until; /* fetch_mono_ms() */
        uint8_t digest[32];
        uint8_t algo;
        fetch_error err;
    } missing[MISSING_SLOTS];
    char *prefix;               /* where chunk objects live in the stores */
    struct fetch_chunk_ctx ctx; /* of every chunk: ctx.prefix is @prefix */
    /* readahead from the disk cache (disk_loader_main), dl_lock */
    pthread_mutex_t dl_lock;
    pthread_cond_t dl_cond;
    pthread_cond_t dl_done; /* a load ended (dl_busy cleared) */
    struct disk_load {
        uint8_t digest[32];
        uint32_t len;
        uint8_t algo;
    } dl_queue[DISK_LOAD_QUEUE], dl_busy[DISK_LOADERS]; /* dl_busy[i].len 0: idle */
    unsigned dl_head, dl_count, dl_threads, dl_ids;
    bool dl_quit;
    pthread_t dl_thread[DISK_LOADERS];
};

static void *disk_loader_main(void *arg);

enum cache_algo fs_chunks_cache_algo(uint8_t algo)
{
    switch (algo) {
    case FETCH_DIGEST_SHA512_256:
        return CACHE_ALGO_SHA512_256;
    case FETCH_DIGEST_SHA256_KEYED:
        return CACHE_ALGO_SHA256_KEYED;
    default:
        return CACHE_ALGO_SHA256;
    }
}

struct fs_chunks *fs_chunks_new(struct fetch_pool *pool, size_t mem_budget, struct cache_disk *disk,
                                const char *chunk_prefix, const struct fetch_pbs_key *key)
{
    struct fs_chunks *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (!(c->prefix = strdup(chunk_prefix ? chunk_prefix : ""))) {
        free(c);
        return NULL;
    }
    c->ctx.prefix = c->prefix;
    c->ctx.key = key;
    c->pool = pool;
    pthread_mutex_init(&c->flight_lock, NULL);
    c->disk = disk;
    c->mem = cache_mem_new(mem_budget);
    if (!c->mem) {
        free(c->prefix);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->dl_lock, NULL);
    pthread_cond_init(&c->dl_cond, NULL);
    pthread_cond_init(&c->dl_done, NULL);
    /* without loaders, readahead of cached chunks is a kernel hint only */
    for (unsigned i = 0; disk && i < DISK_LOADERS; i++) {
        if (pthread_create(&c->dl_thread[i], NULL, disk_loader_main, c) != 0)
            break;
        (void)pthread_setname_np(c->dl_thread[i], "lz-diskload");
        c->dl_threads++;
    }
    return c;
}

void fs_chunks_free(struct fs_chunks *c)
{
    if (!c)
        return;
    fs_chunks_stop(c);
    pthread_mutex_destroy(&c->dl_lock);
    pthread_cond_destroy(&c->dl_cond);
    pthread_cond_destroy(&c->dl_done);
    cache_mem_free(c->mem);
    pthread_mutex_destroy(&c->flight_lock);
    free(c->prefix);
    free(c);
}

/*
 * Readahead from the disk cache: a chunk a sequential reader will want next
 * is read from its cache file (CRC-checked) into memory on one of these
 * threads, so that the reader's requests are answered from memory while the
 * next chunks are read and checked on other cores. Without them every
 * request would read and check its range on the FUSE thread first. Two, so
 * that one checks while the other waits for the disk (measured on this
 * project's VM, whose disk is fast: 1,664 vs 1,612 MB/s with one, 5
 * alternating warm reads each, within their spread). The queue is small and
 * bounded; a chunk that does not fit is only hinted to the kernel
 * (POSIX_FADV_WILLNEED) and read by the reader as before.
 */

/*
 * The digest the disk cache files chunk @digest (@algo) under, in @out when
 * it differs. A decrypted chunk's keyed digest binds its key only through
 * the index that names it: another key's index may name it, and a cache
 * shared by mounts of several keys would answer with the first key's
 * plaintext. Such chunks are filed under SHA-256(digest ‖ the mount key's id
 * key): only a mount of the same key finds them.
 */
static const uint8_t *disk_digest(const struct fs_chunks *c, uint8_t algo, const uint8_t *digest,
                                  uint8_t out[32])
{
    if (algo != FETCH_DIGEST_SHA256_KEYED || !c->ctx.key)
        return digest;
    if (fetch_sha256_suffixed(digest, 32, c->ctx.key->id_key, sizeof(c->ctx.key->id_key), out) < 0)
        memset(out, 0, 32); /* cannot fail with these lengths; no entry has it */
    return out;
}

static void note_disk_read(struct fs_chunks *c, int r);

static void disk_load_one(struct fs_chunks *c, const struct disk_load *d)
{
    uint8_t filed[32];
    struct cache_disk_handle *h = NULL;
    struct cache_mem_entry *entry;
    uint8_t *buf;
    int r;

    if (cache_mem_contains(c->mem, fs_chunks_cache_algo(d->algo), d->digest) ||
        cache_disk_lookup(c->disk, fs_chunks_cache_algo(d->algo),
                          disk_digest(c, d->algo, d->digest, filed), &h) <= 0)
        return;
    if (cache_disk_handle_len(h) != d->len || !(buf = fetch_buf_alloc(d->len))) {
        cache_disk_release(c->disk, h);
        return;
    }
    r = cache_disk_load(c->disk, h, buf);
    cache_disk_release(c->disk, h);
    if (r < 0) {
        note_disk_read(c, r); /* a bad entry is dropped: a reader fetches it */
        fetch_buf_free(buf);
        return;
    }
    r = cache_mem_insert(c->mem, fs_chunks_cache_algo(d->algo), d->digest, buf, d->len, buf,
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
    struct disk_load *busy;
    pthread_mutex_lock(&c->dl_lock);
    busy = &c->dl_busy[c->dl_ids++];
    for (;;) {
        struct disk_load d;
        while (!c->dl_count && !c->dl_quit)
            pthread_cond_wait(&c->dl_cond, &c->dl_lock);
        if (c->dl_quit)
            break;
        d = c->dl_queue[c->dl_head];
        *busy = d;
        c->dl_head = (c->dl_head + 1) % DISK_LOAD_QUEUE;
        c->dl_count--;
        pthread_mutex_unlock(&c->dl_lock);
        disk_load_one(c, &d);
        pthread_mutex_lock(&c->dl_lock);
        busy->len = 0;
        pthread_cond_broadcast(&c->dl_done);
    }
    pthread_mutex_unlock(&c->dl_lock);
    return NULL;
}

/* Whether a loader is loading the chunk of @digest now. dl_lock held. */
static bool disk_loading(const struct fs_chunks *c, const uint8_t digest[32])
{
    for (unsigned i = 0; i < DISK_LOADERS; i++)
        if (c->dl_busy[i].len && !memcmp(c->dl_busy[i].digest, digest, 32))
            return true;
    return false;
}

/* Queues the load of @e from the disk cache; false when the queue is full. */
static bool disk_load_queue(struct fs_chunks *c, const struct fetch_extent *e)
{
    bool queued = false;
    pthread_mutex_lock(&c->dl_lock);
    if (c->dl_threads && !c->dl_quit) {
        queued = disk_loading(c, e->digest);
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

/*
 * A reader found @e neither in memory nor being fetched: it is about to read
 * its range from the disk cache itself. If a loader is reading that chunk
 * now, waits for it instead (the chunk lands in memory: the file is read and
 * checked once, not twice); true then. If it is queued, takes it off the
 * queue: the reader reads it. (A sequential reader takes off each queued
 * chunk it reaches, so none it has passed is left for the loaders; entries
 * of other readers stay.) Without this, a reader that overtook the (then
 * single) loader stayed ahead for good: the loader went on loading the
 * chunks it had passed (measured: 387 of 1,026 requests of a warm read read
 * the disk themselves while the loader loaded 249 of the 256 chunks).
 */
static bool disk_load_overtaken(struct fs_chunks *c, const struct fetch_extent *e)
{
    bool waited = false;
    pthread_mutex_lock(&c->dl_lock);
    if (disk_loading(c, e->digest)) {
        while (disk_loading(c, e->digest))
            pthread_cond_wait(&c->dl_done, &c->dl_lock);
        waited = true;
    } else {
        for (unsigned i = 0; i < c->dl_count; i++) {
            if (memcmp(c->dl_queue[(c->dl_head + i) % DISK_LOAD_QUEUE].digest, e->digest, 32))
                continue;
            /* the entries behind it move up one */
            for (unsigned k = i; k + 1 < c->dl_count; k++)
                c->dl_queue[(c->dl_head + k) % DISK_LOAD_QUEUE] =
                    c->dl_queue[(c->dl_head + k + 1) % DISK_LOAD_QUEUE];
            c->dl_count--;
            break;
        }
    }
    pthread_mutex_unlock(&c->dl_lock);
    return waited;
}

void fs_chunks_stop(struct fs_chunks *c)
{
    unsigned n;
    if (!c)
        return;
    pthread_mutex_lock(&c->dl_lock);
    c->dl_quit = true;
    n = c->dl_threads;
    c->dl_threads = 0;
    pthread_cond_broadcast(&c->dl_cond);
    pthread_mutex_unlock(&c->dl_lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(c->dl_thread[i], NULL);
}

/* A memory entry lent to the disk cache's writer until it has the bytes on
 * disk (the cache bounds how many bytes it holds: the daemon gives it half
 * of the memory budget), and the cachers waiting for the outcome. */
struct lent {
    struct fs_chunks *chunks;
    struct cache_mem_entry *entry;
    struct waiter *cachers;
};

/* Answers (and frees) the cachers @w: the fetch's outcome, then the cache's. */
static void answer_cachers(struct waiter *w, int fetch_r, int cache_r, const fetch_error *err)
{
    while (w) {
        struct waiter *next = w->next;
        w->cached(w->arg, fetch_r == 0 && w->fetched ? 1 : fetch_r, cache_r, err);
        free(w);
        w = next;
    }
}

static void lent_done(void *owner, int result)
{
    struct lent *l = owner;
    struct fs_chunks *c = l->chunks;
    cache_mem_release(c->mem, l->entry);
    if (result == -EAGAIN && atomic_fetch_add(&c->not_cached, 1) == 0)
        fs_warn("disk cache: the cache writer is making no progress (a hung disk?); chunks "
                "are not being cached until it does (reads continue from the store)");
    answer_cachers(l->cachers, 0, result, NULL);
    free(l);
}

/* Whether counter @now moved past *@seen and no warning was given within a
 * minute (*@warned_at, seconds of CLOCK_MONOTONIC): this caller gives it. */
static bool time_to_warn(uint64_t now, atomic_uint_fast64_t *seen, atomic_uint_fast64_t *warned_at)
{
    uint64_t before = atomic_exchange(seen, now), last;
    struct timespec ts;

    if (now <= before)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    last = atomic_load(warned_at);
    return !(last && (uint64_t)ts.tv_sec - last < 60) &&
           atomic_compare_exchange_strong(warned_at, &last, (uint64_t)ts.tv_sec);
}

/*
 * The outcome @r of a read of a cached chunk (0: it worked), which failed
 * over to the store otherwise: a failed check (-EBADMSG: the entry was
 * dropped) is counted as bad; an error of the disk under the cache (EIO from
 * a bad sector under an entry) is counted and said at most once a minute,
 * and its entry stays (the next read tries it again: a disk that recovers
 * serves it). -ESTALE (another reader found it bad first, or it was
 * evicted), ENOMEM and EINVAL (a range outside the entry) are neither.
 */
static void note_disk_read(struct fs_chunks *c, int r)
{
    uint64_t n;

    if (r == -EBADMSG)
        atomic_fetch_add(&c->disk_bad, 1);
    if (r >= 0 || r == -EBADMSG || r == -ESTALE || r == -ENOMEM || r == -EINVAL)
        return;
    n = atomic_fetch_add(&c->disk_read_errors, 1) + 1;
    if (time_to_warn(n, &c->read_errors_seen, &c->read_errors_warned_at))
        fs_warn("disk cache: reading a cached chunk failed: %s (%" PRIu64
                " so far; those chunks are fetched from the store)",
                strerror(-r), n);
}

/* Says, at most once a minute each, that chunks are not being cached because
 * the cache filesystem is full, or because writing them failed otherwise
 * (and how: a read-only filesystem, a damaged index); reads go on from the
 * store. */
static void report_disk_trouble(struct fs_chunks *c)
{
    int last = 0;
    uint64_t errors = cache_disk_insert_errors(c->disk, &last);

    if (time_to_warn(cache_disk_enospc_count(c->disk), &c->enospc_seen, &c->enospc_warned_at))
        fs_warn("disk cache: no space left on the cache filesystem; chunks are not being "
                "cached (reads continue from the store)");
    if (time_to_warn(errors, &c->errors_seen, &c->errors_warned_at))
        fs_warn("disk cache: chunks are not being cached: %s (%" PRIu64
                " so far; reads continue from the store)",
                last ? strerror(-last) : "an error", errors);
}

/*
 * Hands @entry to the disk cache (which may make this thread wait for room in
 * its queue) and answers @cachers with the outcome; without a disk cache,
 * they get -ENODEV.
 */
static void queue_insert(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32],
                         struct cache_mem_entry *entry, struct waiter *cachers)
{
    struct lent *l;
    const uint8_t *bytes;
    uint8_t filed[32];
    size_t len;
    if (!c->disk || !(l = malloc(sizeof(*l)))) {
        /* not caching it costs a later fetch, never a wrong byte */
        answer_cachers(cachers, 0, c->disk ? -ENOMEM : -ENODEV, NULL);
        return;
    }
    bytes = cache_mem_entry_bytes(entry, &len);
    cache_mem_ref(c->mem, entry);
    l->chunks = c;
    l->entry = entry;
    l->cachers = cachers;
    cache_disk_insert(c->disk, fs_chunks_cache_algo(algo), disk_digest(c, algo, digest, filed),
                      bytes, len, l, lent_done);
    report_disk_trouble(c);
}

/* Hands @entry (a reference, dropped) to the disk cache for the cachers
 * @list: each one whose extent gives the chunk another length gets -EIO (as
 * a reader of that extent would), the others the disk cache's answer. */
static void cacher_take(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32],
                        struct cache_mem_entry *entry, struct waiter *list)
{
    struct waiter *match = NULL;
    size_t len;
    cache_mem_entry_bytes(entry, &len);
    while (list) {
        struct waiter *next = list->next;
        if (list->len == len) {
            list->next = match;
            match = list;
        } else {
            fetch_error err;
            fetch_error_set(&err, -EIO, "the chunk has %zu bytes where the index says %u", len,
                            list->len);
            list->next = NULL;
            answer_cachers(list, -EIO, 0, &err);
        }
        list = next;
    }
    /* hydrated chunks leave memory before the ones readers use */
    if (match)
        cache_mem_note_read(c->mem, entry, len);
    queue_insert(c, algo, digest, entry, match);
    cache_mem_release(c->mem, entry);
}

/* The disk cache's handle of @e's chunk (to release), or NULL: not there, or
 * at another length (a digest that names other bytes than this extent's). */
static struct cache_disk_handle *disk_handle(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h = NULL;
    uint8_t filed[32];
    if (!c->disk || cache_disk_lookup(c->disk, fs_chunks_cache_algo(e->algo),
                                      disk_digest(c, e->algo, e->digest, filed), &h) <= 0)
        return NULL;
    if (cache_disk_handle_len(h) != e->length) {
        cache_disk_release(c->disk, h);
        return NULL;
    }
    return h;
}

/* 1 and the bytes in @scratch when the disk cache has a good copy; 0 if not. */
static int read_disk(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                     uint8_t *scratch)
{
    struct cache_disk_handle *h = disk_handle(c, e);
    int r;
    if (!h)
        return 0;
    r = cache_disk_read(c->disk, h, off, len, scratch);
    cache_disk_release(c->disk, h);
    note_disk_read(c, r);
    if (r < 0)
        return 0; /* dropped or unreadable: fetch it from the store */
    atomic_fetch_add(&c->disk_hits, 1);
    return 1;
}

static bool in_flight(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio);

int fs_chunks_peek(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                   uint8_t *scratch, const uint8_t **ret_bytes, struct cache_mem_entry **ret_ref)
{
    struct cache_mem_entry *entry;
    size_t blen;
    bool again = true;

lookup:
    if (cache_mem_lookup(c->mem, fs_chunks_cache_algo(e->algo), e->digest, &entry) == 0) {
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
    /* a chunk being fetched is not on disk (a lookup there, a query in
     * SQLite, would only miss): the caller waits for the fetch */
    if (!scratch || in_flight(c, e, FETCH_PRIO_COUNT))
        return 0;
    if (again && disk_load_overtaken(c, e)) {
        again = false;
        goto lookup;
    }
    if (read_disk(c, e, off, len, scratch)) {
        *ret_bytes = scratch;
        *ret_ref = NULL;
        return 1;
    }
    return 0;
}

void fs_chunks_batch_begin(struct fs_chunks *c)
{
    if (c->disk)
        cache_disk_batch_begin(c->disk);
}

void fs_chunks_batch_end(struct fs_chunks *c)
{
    if (c->disk)
        cache_disk_batch_end(c->disk);
}

int fs_chunks_peek_disk(struct fs_chunks *c, const struct fetch_extent *e)
{
    uint8_t filed[32];
    uint64_t len = 0;
    int r;

    if (!c->disk || e->zero)
        return 0;
    r = cache_disk_peek(c->disk, fs_chunks_cache_algo(e->algo),
                        disk_digest(c, e->algo, e->digest, filed), &len);
    return r <= 0 ? r : len == e->length;
}

int fs_chunks_disk_mark(struct fs_chunks *c, int64_t window, struct cache_disk_mark *ret)
{
    return c->disk ? cache_disk_mark(c->disk, window, ret) : -ENOENT;
}

int fs_chunks_disk_added(struct fs_chunks *c, const struct cache_disk_mark *then, size_t max,
                         struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *now)
{
    if (!c->disk) {
        *ret = NULL;
        *ret_n = 0;
        return -ENOENT;
    }
    return cache_disk_added_since(c->disk, then, max, ret, ret_n, now);
}

int fs_chunks_disk_rows(struct fs_chunks *c, size_t max, int64_t window,
                        struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *mark)
{
    if (!c->disk) {
        *ret = NULL;
        *ret_n = 0;
        return -ENOENT;
    }
    return cache_disk_rows(c->disk, max, window, ret, ret_n, mark);
}

bool fs_chunks_disk_row(struct fs_chunks *c, const struct fetch_extent *e,
                        struct cache_disk_row *ret)
{
    uint8_t filed[32];
    if (!c->disk || e->zero)
        return false;
    ret->algo = (uint8_t)fs_chunks_cache_algo(e->algo);
    memcpy(ret->key, disk_digest(c, e->algo, e->digest, filed), CACHE_KEY_LEN);
    ret->len = e->length;
    return true;
}

bool fs_chunks_on_disk(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h = disk_handle(c, e);
    cache_disk_release(c->disk, h);
    return h != NULL;
}

/*
 * Readahead of a chunk on disk further on: its file is read into the page
 * cache in the background, so that the reader's synchronous read of it
 * (fs_chunks_peek) or a loader's finds it there. Without this, a warm read of
 * small chunks waits for the disk once per chunk. Chunks the loaders will
 * read with O_DIRECT are not hinted. true if the chunk is on disk.
 */
bool fs_chunks_hint_disk(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h;
    if (cache_mem_contains(c->mem, fs_chunks_cache_algo(e->algo), e->digest))
        return true;
    if (!(h = disk_handle(c, e)))
        return false;
    if (cache_disk_prefetch(c->disk, h, true))
        atomic_fetch_add(&c->disk_hints, 1);
    cache_disk_release(c->disk, h);
    return true;
}

/* Readahead of a chunk on disk in the window: queued for a loader, and hinted
 * unless the loader will read it with O_DIRECT; hinted when the queue is full
 * (the reader will read it, through the page cache). */
static bool disk_prefetch(struct fs_chunks *c, const struct fetch_extent *e)
{
    struct cache_disk_handle *h = disk_handle(c, e);
    if (!h)
        return false;
    cache_disk_prefetch(c->disk, h, disk_load_queue(c, e));
    cache_disk_release(c->disk, h);
    return true;
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

static void flight_tap(void *arg, const uint8_t *obj, size_t off, size_t n)
{
    struct flight *f = arg;
    fetch_chunk_tap_feed(&f->tap, &f->ch, f->name, obj, off, n);
}

static int flight_decode(void *arg, void *raw, size_t raw_len, fetch_data *ret, fetch_error *err)
{
    struct flight *f = arg;
    return fetch_chunk_decode(&f->chunks->ctx, &f->ch, f->name, raw, raw_len, &f->tap, ret, err);
}

static void flight_done(void *arg, int r, fetch_data *data, const fetch_error *err);

static struct missing *missing_slot(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32])
{
    return &c->missing[((unsigned)digest[2] << 8 | digest[3] | (unsigned)algo << 16) %
                       MISSING_SLOTS];
}

/* The stores do not have chunk @digest (@err says so): remembered for
 * MISSING_TTL_MS. flight_lock held. */
static void missing_note(struct fs_chunks *c, uint8_t algo, const uint8_t digest[32],
                         const fetch_error *err)
{
    struct missing *m = missing_slot(c, algo, digest);
    m->until = fetch_mono_ms() + MISSING_TTL_MS;
    m->algo = algo;
    memcpy(m->digest, digest, sizeof(m->digest));
    if (err && err->msg[0])
        m->err = *err;
    else
        fetch_error_set(&m->err, -ENOENT, "chunk not found in the store");
}

/* Whether chunk @e was found missing within MISSING_TTL_MS, and then the
 * error of that time in @err. flight_lock held. */
static bool missing_known(struct fs_chunks *c, const struct fetch_extent *e, fetch_error *err)
{
    struct missing *m = missing_slot(c, e->algo, e->digest);
    if (!m->until || m->algo != e->algo || memcmp(m->digest, e->digest, sizeof(m->digest)) ||
        fetch_mono_ms() >= m->until)
        return false;
    *err = m->err;
    return true;
}

void fs_chunks_forget_missing(struct fs_chunks *c)
{
    pthread_mutex_lock(&c->flight_lock);
    for (size_t i = 0; i < MISSING_SLOTS; i++)
        c->missing[i].until = 0;
    pthread_mutex_unlock(&c->flight_lock);
}

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
    return fetch_pool_submit(c->pool, path, fetch_chunk_max_raw(&f->ch, f->name),
                             fetch_chunk_skew(&f->ch, f->name), f->prio, flight_tap, flight_decode,
                             flight_done, f, &f->job);
}

static void flight_done(void *arg, int r, fetch_data *data, const fetch_error *err)
{
    struct flight *f = arg, **fp;
    struct fs_chunks *c = f->chunks;
    struct cache_mem_entry *entry = NULL;
    struct waiter *w, *cachers = NULL;
    fetch_error fill_err = {""};

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
        r = cache_mem_insert(c->mem, fs_chunks_cache_algo(f->ch.algo), f->ch.digest, data->bytes,
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
    if (r == -ENOENT && !fetch_chunk_has_next_name(&f->ch, f->name))
        missing_note(c, f->ch.algo, f->ch.digest, err); /* before a want() can ask again */
    pthread_mutex_unlock(&c->flight_lock);

    /* readers first: the disk cache may make this worker wait */
    while (w) {
        struct waiter *next = w->next;
        if (w->cached) {
            w->fetched = true;
            w->next = cachers;
            cachers = w;
        } else {
            if (r == 0) {
                cache_mem_ref(c->mem, entry);
                w->done(w->arg, 0, entry, NULL);
            } else {
                w->done(w->arg, r, NULL, fill_err.msg[0] ? &fill_err : err);
            }
            free(w);
        }
        w = next;
    }
    if (r == 0 && cachers) {
        cacher_take(c, f->ch.algo, f->ch.digest, entry, cachers);
    } else if (r == 0) {
        queue_insert(c, f->ch.algo, f->ch.digest, entry, NULL);
        cache_mem_release(c->mem, entry);
    } else {
        answer_cachers(cachers, r, 0, fill_err.msg[0] ? &fill_err : err);
    }
    fetch_chunk_tap_release(&f->tap);
    free(f);
}

/* Raises flight @f to @prio if that is more urgent; flight_lock held. */
static void flight_raise(struct fs_chunks *c, struct flight *f, enum fetch_prio prio)
{
    if (prio < f->prio) {
        f->prio = prio;
        fetch_pool_upgrade(c->pool, f->job, prio);
    }
}

/*
 * Whether chunk @e is being fetched; one that is, is raised to @prio if that
 * is more urgent (FETCH_PRIO_COUNT: leave it).
 */
static bool in_flight(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio)
{
    struct flight *f;

    pthread_mutex_lock(&c->flight_lock);
    if ((f = *flight_find(c, e->algo, e->digest)))
        flight_raise(c, f, prio);
    pthread_mutex_unlock(&c->flight_lock);
    return f != NULL;
}

/* fs_chunks_want() and fs_chunks_cache(): @w NULL for a prefetch. */
static int want(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio,
                struct waiter *w)
{
    struct flight **fp, *f;
    struct cache_mem_entry *entry;

    /* a prefetch of a chunk in memory, being fetched or on disk has nothing
     * to do; the disk lookup last, the only one that may query SQLite */
    if (!w && (cache_mem_contains(c->mem, fs_chunks_cache_algo(e->algo), e->digest) ||
               in_flight(c, e, prio) ||
               (prio == FETCH_PRIO_READAHEAD ? disk_prefetch(c, e) : fs_chunks_on_disk(c, e))))
        return 0;

    pthread_mutex_lock(&c->flight_lock);
    fp = flight_find(c, e->algo, e->digest);
    if ((f = *fp)) {
        if (w) {
            w->next = f->waiters;
            f->waiters = w;
        }
        flight_raise(c, f, prio);
        pthread_mutex_unlock(&c->flight_lock);
        return 0;
    }
    /* a flight that completed since the check above has published its chunk
     * in memory before leaving the table: looking again under the lock
     * closes that window (a second fetch of the same chunk) */
    if (!w && cache_mem_contains(c->mem, fs_chunks_cache_algo(e->algo), e->digest)) {
        pthread_mutex_unlock(&c->flight_lock);
        return 0;
    }
    if (w && cache_mem_lookup(c->mem, fs_chunks_cache_algo(e->algo), e->digest, &entry) == 0) {
        pthread_mutex_unlock(&c->flight_lock);
        if (w->cached) {
            w->next = NULL;
            cacher_take(c, e->algo, e->digest, entry, w);
        } else {
            w->done(w->arg, 0, entry, NULL);
            free(w);
        }
        return 0;
    }
    fetch_error gone;
    if (missing_known(c, e, &gone)) {
        /* not found a moment ago: the same answer, without a request */
        pthread_mutex_unlock(&c->flight_lock);
        if (w) {
            atomic_fetch_add(&c->missing_known, 1);
            w->next = NULL;
            if (w->cached) {
                answer_cachers(w, -ENOENT, 0, &gone);
            } else {
                w->done(w->arg, -ENOENT, NULL, &gone);
                free(w);
            }
        }
        return 0;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        pthread_mutex_unlock(&c->flight_lock);
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
        fetch_chunk_tap_release(&f->tap);
        free(f);
        return r;
    }
    pthread_mutex_unlock(&c->flight_lock);
    return 0;
}

int fs_chunks_want(struct fs_chunks *c, const struct fetch_extent *e, enum fetch_prio prio,
                   fs_chunk_done_fn done, void *arg)
{
    struct waiter *w = NULL;
    int r;
    if (done && !(w = malloc(sizeof(*w))))
        return -ENOMEM;
    if (w)
        *w = (struct waiter){NULL, done, NULL, arg, e->length, false};
    if ((r = want(c, e, prio, w)) < 0)
        free(w);
    return r;
}

int fs_chunks_cache(struct fs_chunks *c, const struct fetch_extent *e, fs_chunk_cached_fn cached,
                    void *arg)
{
    struct waiter *w;
    int r;
    if (!c->disk)
        return -ENODEV;
    if (fs_chunks_on_disk(c, e)) {
        cached(arg, 0, 0, NULL);
        return 0;
    }
    if (!(w = malloc(sizeof(*w))))
        return -ENOMEM;
    *w = (struct waiter){NULL, NULL, cached, arg, e->length, false};
    if ((r = want(c, e, FETCH_PRIO_HYDRATE, w)) < 0)
        free(w);
    return r;
}

size_t fs_chunks_unread_room(struct fs_chunks *c)
{
    return cache_mem_unread_room(c->mem);
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
    ret->disk_hints = atomic_load(&c->disk_hints);
    ret->disk_bad = atomic_load(&c->disk_bad);
    ret->disk_read_errors = atomic_load(&c->disk_read_errors);
    ret->not_cached = atomic_load(&c->not_cached);
    ret->missing_known = atomic_load(&c->missing_known);
    cache_mem_get_stats(c->mem, &ret->mem);
}
