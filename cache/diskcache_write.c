/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The persistent chunk cache: the insert queue, the writer thread that
 * publishes chunks and writes the batched index updates, and eviction. See
 * diskcache.h (contract), diskcache_internal.h (locks) and the top of
 * diskcache.c (how files and rows stay consistent).
 */
#include "diskcache.h"
#include "diskcache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <isa-l/crc.h>
#include <linux/aio_abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The queue is bounded in bytes (options queue_bytes: its callers hold the
 * bytes until written) and in items; a full queue makes inserts wait for
 * room, so that a slow cache disk costs the callers time, not cached chunks,
 * unless the writer stalls. */
#define QUEUE_MAX_ITEMS CACHE_DISK_QUEUE_MAX_ITEMS
/* How often a waiting insert looks for the writer's progress. */
#define WAIT_STEP_MS 100
/*
 * Files written before their rows are committed in one transaction: a batch
 * is committed when it has BATCH_MAX files or BATCH_BYTES bytes, when its
 * first file is flush_ms old, or when someone waits (sync, close, a dropped
 * entry). Not when the queue runs empty: a writer faster than the store would
 * then commit (and fsync the directories) once per chunk.
 */
#define BATCH_MAX 2048
/* Slots of the table of a batch's keys (at most half of them used). */
#define SEEN_SLOTS (4 * BATCH_MAX)
/* Directories one batch can touch: data/<algo>/<xx> for each algorithm and
 * first key byte, and their parents. */
#define BATCH_DIRS_MAX (3 * 256 + 8)
#define BATCH_BYTES ((uint64_t)256 << 20)
/* After ENOSPC, inserts are dropped at once for this long. */
#define ENOSPC_PAUSE_MS 5000
/* O_DIRECT writes in flight at once (kernel AIO): the writer prepares the
 * next files while the disk writes these. */
#define WRITE_DEPTH 4
/* Rows deleted per eviction transaction (bounds how long the lock is held). */
#define EVICT_STEP 64
/* Small chunks (options pack_below) are gathered, each on a page of its
 * own, into a stage of this many bytes, which is appended to the writer's
 * pack with one O_DIRECT write; a pack past the pack_bytes option is
 * retired (its lock kept until its rows are committed) and a new one
 * started. */
#define STAGE_BYTES ((size_t)4 << 20)
/* A stage not full is written when the queue is empty and its first chunk
 * has waited this long (at once for a sync, the close or a commit), not
 * each time the queue runs empty: small chunks arrive one by one, and the
 * queue runs empty between most of them when the disk keeps up (a casync
 * read wrote 3,655 stages per GiB, 278 with this). */
#define STAGE_LINGER_MS 20
#define RETIRED_MAX 8

/* Alignment of O_DIRECT writes, and of packed chunks in their pack. */
#define DIRECT_ALIGN 4096
/* Where the stage is placed so that it can sit in transparent huge pages. */
#define STAGE_HUGE_ALIGN ((size_t)2 << 20)

/* ---- inserts -------------------------------------------------------------- */

/*
 * The pack's stage: STAGE_BYTES mapped on a huge-page boundary and, where the
 * kernel gives transparent huge pages on request, in them. Every O_DIRECT
 * write of the stage pins its pages for the disk: 1,024 small ones per 4 MiB
 * (a cold casync read of the bench's image: 231 of the writer's samples in
 * gup_fast_fallback at 9,999 Hz, none in huge pages, and the writer's CPU
 * went from 28-32 to 23-27 ticks per GiB). NULL on ENOMEM.
 */
static uint8_t *stage_alloc(void)
{
    size_t len = STAGE_BYTES + STAGE_HUGE_ALIGN;
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *start;

    if (m == MAP_FAILED)
        return NULL;
    start = (uint8_t *)(((uintptr_t)m + STAGE_HUGE_ALIGN - 1) & ~(uintptr_t)(STAGE_HUGE_ALIGN - 1));
    if (start > m)
        munmap(m, (size_t)(start - m));
    if (start + STAGE_BYTES < m + len)
        munmap(start + STAGE_BYTES, (size_t)(m + len - (start + STAGE_BYTES)));
    (void)madvise(start, STAGE_BYTES, MADV_HUGEPAGE); /* small pages where it cannot */
    return start;
}

static void stage_free(uint8_t *stage)
{
    if (stage)
        munmap(stage, STAGE_BYTES);
}

static void item_done(struct dc_item *it, int result)
{
    if (it->done)
        it->done(it->owner, result);
}

/* @len bytes of items taken by the writer are written or refused: room in
 * the queue for waiting inserts. */
static void queue_room_back(struct cache_disk *c, size_t len)
{
    pthread_mutex_lock(&c->q_lock);
    c->q_writing -= len;
    pthread_cond_broadcast(&c->q_room);
    pthread_mutex_unlock(&c->q_lock);
}

/* An item taken from the queue is done with: its caller gets the result
 * and its bytes back, and its room in the queue is free. */
static void item_finish(struct cache_disk *c, struct dc_item *it, int result)
{
    size_t len = it->len;
    item_done(it, result);
    free(it);
    queue_room_back(c, len);
}

/* Counts a refused insert (ENOSPC and EDQUOT also as a full filesystem) and
 * returns @err for its completion. */
static int skip_insert(struct cache_disk *c, int err)
{
    atomic_fetch_add(&c->insert_skipped, 1);
    if (err == -ENOSPC || err == -EDQUOT)
        atomic_fetch_add(&c->enospc, 1);
    else if (err == -ENOBUFS)
        atomic_fetch_add(&c->over_budget, 1);
    return err;
}

static bool inserts_paused(struct cache_disk *c)
{
    return atomic_load(&c->paused_until) > cache_dc_mono_ms();
}

/* The writer's items count until they are written: those in flight too. */
static bool queue_full(const struct cache_disk *c, size_t len)
{
    return (c->q_count || c->q_writing) &&
           (c->q_count >= QUEUE_MAX_ITEMS || c->q_bytes + c->q_writing + len > c->q_max_bytes);
}

/*
 * Waits, q_lock held, until an item of @len bytes fits in the queue: 0, or
 * -EAGAIN once the writer has taken nothing for stall_ms, -ECANCELED when
 * the cache closes.
 */
static int wait_for_room(struct cache_disk *c, size_t len)
{
    uint64_t seen = c->q_taken;
    unsigned idle_ms = 0;

    if (!c->stop && queue_full(c, len))
        atomic_fetch_add(&c->insert_waits, 1);
    while (!c->stop && queue_full(c, len)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += WAIT_STEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&c->q_room, &c->q_lock, &until) == 0)
            continue;
        if (c->q_taken != seen) {
            seen = c->q_taken;
            idle_ms = 0;
        } else if ((idle_ms += WAIT_STEP_MS) >= c->stall_ms) {
            atomic_fetch_add(&c->insert_stalled, 1);
            return -EAGAIN;
        }
    }
    return c->stop ? -ECANCELED : 0;
}

void cache_disk_insert(struct cache_disk *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                       const uint8_t *bytes, size_t len, void *owner, cache_disk_done_fn done)
{
    struct dc_item *it;
    int r;

    if (!cache_dc_algo_valid(algo) || len == 0 || len > CACHE_DISK_MAX_CHUNK) {
        r = skip_insert(c, -EINVAL);
        goto now;
    }
    if (inserts_paused(c)) {
        r = skip_insert(c, -ENOSPC);
        goto now;
    }
    if (cache_dc_handle_cached(c, algo, key)) {
        r = 0;
        goto now;
    }
    if (!(it = malloc(sizeof(*it)))) {
        r = skip_insert(c, -ENOMEM);
        goto now;
    }
    it->next = NULL;
    it->algo = (uint8_t)algo;
    memcpy(it->key, key, CACHE_KEY_LEN);
    it->bytes = bytes;
    it->len = len;
    it->owner = owner;
    it->done = done;
    pthread_mutex_lock(&c->q_lock);
    if ((r = wait_for_room(c, len)) < 0) {
        pthread_mutex_unlock(&c->q_lock);
        free(it);
        skip_insert(c, r);
        goto now;
    }
    if (c->q_tail)
        c->q_tail->next = it;
    else
        c->q_head = it;
    c->q_tail = it;
    c->q_count++;
    c->q_bytes += len;
    pthread_cond_signal(&c->q_wake);
    pthread_mutex_unlock(&c->q_lock);
    return;
now:
    if (done)
        done(owner, r);
}

void cache_disk_sync(struct cache_disk *c)
{
    uint64_t mine;
    pthread_mutex_lock(&c->q_lock);
    mine = ++c->sync_req;
    pthread_cond_signal(&c->q_wake);
    while (c->sync_done < mine && c->writer_running)
        pthread_cond_wait(&c->q_done, &c->q_lock);
    pthread_mutex_unlock(&c->q_lock);
}

/* ---- the writer thread ------------------------------------------------- */

/* A chunk written to tmp/, waiting for its fsync and its row. */
struct wr_file {
    uint8_t algo;
    uint8_t key[CACHE_KEY_LEN];
    uint64_t len, alloc;
    int64_t created; /* the row's created value, part of its data path */
    int64_t pack;    /* 0: a file of its own; else appended to this pack ... */
    uint64_t off;    /* ... at this offset */
    int fd;
    bool live;     /* still to be published */
    bool renamed;  /* now at its data/ path, row not yet committed */
    bool dropped;  /* its write failed: the batch does not hold its chunk */
    uint8_t *crcs; /* little-endian, as stored */
    char tmp[64];
};

/* ---- inserts written, rows not committed ------------------------------------ */

/* Publishes @f (written, closed) to lookups until its commit. A hint: without
 * memory, the chunk is only found once committed. */
static void pending_add(struct cache_disk *c, const struct wr_file *f)
{
    size_t ncrc = (size_t)cache_dc_nblocks(f->len) * 4;
    struct dc_pending *p = malloc(sizeof(*p) + ncrc);
    unsigned b = cache_dc_pending_bucket(f->key);
    if (!p)
        return;
    p->algo = f->algo;
    memcpy(p->key, f->key, CACHE_KEY_LEN);
    p->len = f->len;
    p->created = f->created;
    p->pack = f->pack;
    p->off = f->off;
    memcpy(p->tmp, f->tmp, sizeof(p->tmp));
    memcpy(p->crcs, f->crcs, ncrc);
    pthread_mutex_lock(&c->p_lock);
    p->next = c->pending[b];
    c->pending[b] = p;
    pthread_mutex_unlock(&c->p_lock);
}

bool cache_dc_pending_forget(struct cache_disk *c, unsigned algo, const uint8_t *key,
                             int64_t created)
{
    struct dc_pending **pp, *p = NULL;
    pthread_mutex_lock(&c->p_lock);
    for (pp = &c->pending[cache_dc_pending_bucket(key)]; *pp; pp = &(*pp)->next) {
        if ((*pp)->created == created && (*pp)->algo == algo &&
            !memcmp((*pp)->key, key, CACHE_KEY_LEN)) {
            p = *pp;
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->p_lock);
    free(p);
    return p != NULL;
}

/* Once @f's row is committed (or its file dropped). */
static void pending_remove(struct cache_disk *c, const struct wr_file *f)
{
    cache_dc_pending_forget(c, f->algo, f->key, f->created);
}

void cache_dc_pending_free_all(struct cache_disk *c)
{
    for (size_t b = 0; b < DC_PENDING_BUCKETS; b++) {
        while (c->pending[b]) {
            struct dc_pending *p = c->pending[b];
            c->pending[b] = p->next;
            free(p);
        }
    }
}

struct committer;

struct wr_state {
    struct committer *k; /* the writer's: who commits its batches */
    struct wr_file files[BATCH_MAX];
    size_t n;
    int64_t batch_started; /* monotonic ms */
    uint64_t batch_bytes;  /* of the files in the batch */
    uint64_t batch_alloc;  /* their allocation estimate (budget) */
    int64_t last_created;
    bool inserted; /* rows were added since the last eviction check */
    /* data/<algo>/<xx> directories this writer made or found: bit xx of
     * made[algo - 1] (algorithms are 1 to 3); saves two mkdirat() per insert */
    uint8_t made[3][32];
    bool enospc; /* the filesystem filled up since the last check */
    /* O_DIRECT writes (see write_chunk): an aligned copy of a chunk whose
     * bytes are not aligned, reused for every chunk; off once they fail */
    uint8_t *bounce;
    size_t bounce_len;
    bool no_direct;
    /* Whole-page O_DIRECT writes of aligned chunks go to the disk
     * asynchronously (kernel AIO, see write_async), WRITE_DEPTH at a time;
     * the batch is handed over only once they are all done. aio == 0: every
     * write is synchronous (no AIO in this kernel or no context left). */
    aio_context_t aio;
    struct wr_aio {
        struct iocb cb;
        struct dc_item *it; /* NULL: the slot is free */
        size_t file;        /* index in files[] */
    } inflight[WRITE_DEPTH];
    unsigned ninflight;
    /* The pack small chunks are appended to (fd -1: none yet), locked while
     * open; the chunks staged for its next write, whose items are finished
     * once it is written; packs full since the batch started, whose locks
     * go with the batch's commit. */
    struct wr_pack {
        int fd;
        int64_t id;
        uint64_t end; /* bytes written */
        uint8_t *stage;
        size_t staged;     /* bytes of the stage in use */
        size_t staged_len; /* bytes of the items staged (queue accounting) */
        struct wr_staged {
            struct dc_item *it;
            size_t file; /* index in files[] */
        } items[STAGE_BYTES / DIRECT_ALIGN];
        size_t nitems;
        int64_t staged_at; /* cache_dc_mono_ms() when the first was staged */
        bool no_direct;
        bool unusable; /* packs cannot be made here: a file per chunk */
    } pack;
    int retired[RETIRED_MAX];
    size_t nretired;
    /* the batch's keys (batch_has()) */
    struct wr_seen {
        uint32_t gen, file;
    } seen[SEEN_SLOTS];
    uint32_t seen_gen;
    size_t seen_used;
};

static int insert_failed(struct cache_disk *c, struct wr_state *w, int err)
{
    skip_insert(c, err);
    atomic_store(&c->last_insert_error, err);
    if (err == -ENOSPC || err == -EDQUOT) {
        w->enospc = true;
        atomic_store(&c->paused_until, cache_dc_mono_ms() + ENOSPC_PAUSE_MS);
    } else {
        atomic_store(&c->last_insert_failure, err);
        atomic_fetch_add(&c->insert_errors, 1);
    }
    return err;
}

/* Removes a file not (or no longer) meant to be published: its temp name, or
 * its data path, which is unique to this incarnation and so only ours. */
static void file_discard(struct cache_disk *c, struct wr_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->pack) {
        if (f->live)
            cache_dc_pack_punch(c, f->pack, f->off, f->len);
    } else if (f->renamed) {
        char path[DC_PATH_MAX];
        cache_dc_data_path(f->algo, f->key, f->created, path);
        unlinkat(c->dirfd, path, 0);
    } else {
        unlinkat(c->dirfd, f->tmp, 0);
    }
    f->live = f->renamed = false;
    f->dropped = true;
}

/* Writes all of @p at @off, or at the file position when @off < 0. */
static int write_all_at(int fd, const uint8_t *p, size_t len, int64_t off)
{
    while (len) {
        ssize_t n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        if (off >= 0)
            off += n;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    return write_all_at(fd, p, len, -1);
}

/*
 * Writes @len bytes of a new, empty file, the whole pages through O_DIRECT
 * and the partial page at the end through the page cache.
 *
 * Why: a buffered write copies the chunk into page-cache pages the kernel
 * must allocate first (on a VM whose host takes freed memory back, a fault
 * on the host for each): measured, that cost more CPU than the read that
 * fetched the chunk. O_DIRECT writes from memory the writer reuses, and the
 * fsync() of the batch then has only metadata to write. Reads of the file
 * later go through the page cache as before. The price is that the writer
 * waits for the disk (write_async() spares it that for aligned chunks of
 * whole pages); with @backlog bytes queued behind this chunk beyond
 * c->direct_backlog (unlimited unless the cache's user sets it), it writes
 * through the page cache instead. Bytes not aligned in memory go through
 * @w's bounce buffer. Page-aligned pieces, so that the buffered tail never
 * shares a page with bytes written directly.
 */

/* Turns O_DIRECT on or off for @fd: 0, or -errno (on: the filesystem has
 * none). */
static int set_direct(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT) < 0)
        return -errno;
    return 0;
}

static int write_direct(struct wr_state *w, int fd, const uint8_t *p, size_t len)
{
    int r, err;
    if (set_direct(fd, true) < 0)
        return -EOPNOTSUPP; /* the filesystem has no O_DIRECT */
    if ((uintptr_t)p % DIRECT_ALIGN) {
        if (w->bounce_len < len) {
            void *b = NULL;
            free(w->bounce);
            w->bounce = NULL;
            w->bounce_len = 0;
            if (posix_memalign(&b, DIRECT_ALIGN, len) != 0) {
                set_direct(fd, false);
                return -ENOMEM;
            }
            w->bounce = b;
            w->bounce_len = len;
        }
        memcpy(w->bounce, p, len);
        p = w->bounce;
    }
    r = write_all(fd, p, len);
    if ((err = set_direct(fd, false)) < 0 && r == 0)
        r = err;
    return r;
}

static int write_chunk(struct cache_disk *c, struct wr_state *w, int fd, const uint8_t *p,
                       size_t len, size_t backlog)
{
    size_t whole = len - len % DIRECT_ALIGN;
    if (whole && !w->no_direct && backlog <= c->direct_backlog) {
        int r = write_direct(w, fd, p, whole);
        if (r == -ENOSPC || r == -EDQUOT || r == -EIO)
            return r;
        if (r == 0) {
            atomic_fetch_add(&c->direct_inserts, 1);
            p += whole;
            len -= whole;
        } else {
            /* EINVAL (alignment the device refuses), EOPNOTSUPP, ENOMEM: the
             * page cache from now on; nothing was written, or the whole
             * pages were and the retry rewrites them */
            w->no_direct = true;
            if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        }
    }
    return write_all(fd, p, len);
}

/* ---- asynchronous O_DIRECT writes ------------------------------------------- */

static void aio_open(struct wr_state *w)
{
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, WRITE_DEPTH, &ctx) == 0)
        w->aio = ctx;
}

static void aio_close(struct wr_state *w)
{
    if (w->aio)
        syscall(SYS_io_destroy, w->aio);
    w->aio = 0;
}

/* The end of a file's write, sync or async: published to lookups (rows come
 * with the batch's commit), or dropped; the caller's bytes are given back. */
static void file_written(struct cache_disk *c, struct wr_state *w, struct wr_file *f,
                         struct dc_item *it, int r)
{
    if (r < 0) {
        file_discard(c, f);
        insert_failed(c, w, r);
    } else {
        /* reopened for the fsync: a batch of small chunks would otherwise
         * hold thousands of descriptors */
        close(f->fd);
        f->fd = -1;
        f->live = true;
        pending_add(c, f);
        r = 1;
    }
    item_finish(c, it, r);
}

static void write_reap(struct cache_disk *c, struct wr_state *w, unsigned min);

/*
 * Starts the O_DIRECT write of @it into @f (open, empty) without waiting:
 * 0, or -errno and nothing started (the caller writes synchronously). Only
 * for bytes that need no bounce copy and no buffered tail.
 */
static int write_async(struct cache_disk *c, struct wr_state *w, struct wr_file *f,
                       struct dc_item *it, size_t backlog)
{
    struct wr_aio *a = NULL;
    struct iocb *cbp;

    if (!w->aio || w->no_direct || backlog > c->direct_backlog || it->len % DIRECT_ALIGN ||
        (uintptr_t)it->bytes % DIRECT_ALIGN)
        return -EOPNOTSUPP;
    for (unsigned i = 0; i < WRITE_DEPTH && !a; i++)
        if (!w->inflight[i].it)
            a = &w->inflight[i];
    if (!a)
        return -EBUSY;
    /* the file's size first: filesystems wait for a direct write that
     * extends a file (ext4 does, whatever AIO says) */
    if (fallocate(f->fd, 0, 0, (off_t)it->len) < 0) {
        int r = -errno;
        if (r == -EOPNOTSUPP) {
            /* this filesystem writes synchronously from now on; closing the
             * context would lose the completions of writes in flight */
            write_reap(c, w, w->ninflight);
            aio_close(w);
        }
        return r;
    }
    if (set_direct(f->fd, true) < 0)
        return -EOPNOTSUPP;
    memset(&a->cb, 0, sizeof(a->cb));
    a->cb.aio_data = (uint64_t)(a - w->inflight);
    a->cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    a->cb.aio_fildes = (uint32_t)f->fd;
    a->cb.aio_buf = (uint64_t)(uintptr_t)it->bytes;
    a->cb.aio_nbytes = it->len;
    a->cb.aio_offset = 0;
    cbp = &a->cb;
    if (syscall(SYS_io_submit, w->aio, 1L, &cbp) != 1) {
        int r = -errno;
        set_direct(f->fd, false);
        return r;
    }
    a->it = it;
    a->file = (size_t)(f - w->files);
    w->ninflight++;
    return 0;
}

/* Waits for at least @min of the writes in flight and finishes them. */
static void write_reap(struct cache_disk *c, struct wr_state *w, unsigned min)
{
    struct io_event ev[WRITE_DEPTH];
    long n;

    if (min > w->ninflight)
        min = w->ninflight;
    if (!w->ninflight)
        return;
    do
        n = syscall(SYS_io_getevents, w->aio, (long)min, (long)WRITE_DEPTH, ev, NULL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        /* not expected (a bad context): destroying it waits for the writes,
         * whose results are lost, so their files are dropped; synchronous
         * writes from now on */
        aio_close(w);
        for (unsigned i = 0; i < WRITE_DEPTH; i++) {
            struct wr_aio *a = &w->inflight[i];
            if (a->it) {
                struct dc_item *it = a->it;
                a->it = NULL;
                w->ninflight--;
                file_written(c, w, &w->files[a->file], it, -EIO);
            }
        }
        return;
    }
    for (long i = 0; i < n; i++) {
        struct wr_aio *a = &w->inflight[ev[i].data];
        struct wr_file *f = &w->files[a->file];
        struct dc_item *it = a->it;
        int r = 0;

        a->it = NULL;
        w->ninflight--;
        if (ev[i].res == (__s64)it->len) {
            atomic_fetch_add(&c->direct_inserts, 1);
        } else if (ev[i].res == -ENOSPC || ev[i].res == -EDQUOT || ev[i].res == -EIO) {
            r = (int)ev[i].res;
        } else {
            /* EINVAL (an alignment the device refuses), a short write: the
             * page cache from now on, this file written again through it */
            w->no_direct = true;
            if ((r = set_direct(f->fd, false)) == 0)
                r = lseek(f->fd, 0, SEEK_SET) < 0 ? -errno : write_all(f->fd, it->bytes, it->len);
        }
        file_written(c, w, f, it, r);
    }
}

/* A name under tmp/ no other writer uses: pid, thread, counter (gc removes
 * those of processes that are gone). For chunk files and new packs. */
static void tmp_name(struct cache_disk *c, char *out, size_t out_len)
{
    snprintf(out, out_len, "tmp/%d.%ld.%" PRIu64, (int)getpid(), (long)syscall(SYS_gettid),
             atomic_fetch_add(&c->tmp_counter, 1));
}

/* ---- packs -------------------------------------------------------------- */

/* Bytes a chunk takes on disk (budget), and in a pack. */
static uint64_t alloc_estimate(size_t len)
{
    return ((uint64_t)len + 4095) & ~(uint64_t)4095;
}

static int fsync_dir(struct cache_disk *c, const char *dir);

/*
 * Starts a new pack: made under tmp/, locked, then linked into packs/ under
 * a name no other pack has (so that gc never sees it unlocked), and packs/
 * synced so that the name survives a crash before any row names it.
 */
static int pack_create(struct cache_disk *c, struct wr_state *w)
{
    struct wr_pack *pk = &w->pack;
    char tmp[64], path[DC_PATH_MAX];
    int64_t id = cache_dc_now_us();
    int fd, r = 0;

    if (!pk->stage && !(pk->stage = stage_alloc()))
        return -ENOMEM;
    tmp_name(c, tmp, sizeof(tmp));
    fd = openat(c->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX) < 0) {
        r = -errno;
        goto fail;
    }
    for (;;) {
        cache_dc_pack_path(id, path);
        if (linkat(c->dirfd, tmp, c->dirfd, path, 0) == 0)
            break;
        if (errno != EEXIST) {
            r = -errno;
            goto fail;
        }
        id++;
    }
    unlinkat(c->dirfd, tmp, 0);
    if ((r = fsync_dir(c, "packs")) < 0) {
        unlinkat(c->dirfd, path, 0);
        close(fd);
        return r;
    }
    pk->no_direct = set_direct(fd, true) < 0;
    pk->fd = fd;
    pk->id = id;
    pk->end = 0;
    return 0;

fail:
    unlinkat(c->dirfd, tmp, 0);
    close(fd);
    return r;
}

/* Appends the stage to the pack, then publishes its chunks to lookups (rows
 * come with the batch's commit) and gives their callers' bytes back. */
static void pack_flush(struct cache_disk *c, struct wr_state *w)
{
    struct wr_pack *pk = &w->pack;
    int r;

    if (!pk->nitems)
        return;
    r = write_all_at(pk->fd, pk->stage, pk->staged, (int64_t)pk->end);
    if (r < 0 && r != -ENOSPC && r != -EDQUOT && r != -EIO && !pk->no_direct) {
        /* EINVAL (an alignment the device refuses): the page cache from now on */
        pk->no_direct = true;
        if (set_direct(pk->fd, false) == 0)
            r = write_all_at(pk->fd, pk->stage, pk->staged, (int64_t)pk->end);
    }
    /* a write that failed part way (ENOSPC after some blocks) may have
     * allocated pages no row will name: given back at once, since on a full
     * filesystem nothing else would free them (eviction needs room for its
     * own transaction first) */
    if (r < 0) {
        (void)fallocate(pk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)pk->end,
                        (off_t)pk->staged);
    }
    /* failed or not, these bytes are never written again */
    pk->end += pk->staged;
    for (size_t i = 0; i < pk->nitems; i++) {
        struct wr_file *f = &w->files[pk->items[i].file];
        struct dc_item *it = pk->items[i].it;
        if (r < 0) {
            f->live = false;
            f->dropped = true;
            insert_failed(c, w, r);
        } else {
            f->live = true;
            pending_add(c, f);
            if (!pk->no_direct)
                atomic_fetch_add(&c->direct_inserts, 1);
        }
        item_done(it, r < 0 ? r : 1);
        free(it);
    }
    /* their room in the queue at once (item_finish() for the lot) */
    queue_room_back(c, pk->staged_len);
    pk->staged_len = 0;
    pk->staged = 0;
    pk->nitems = 0;
}

/* Whether @pack's sync failed (see bad_packs). */
static bool pack_bad(struct cache_disk *c, int64_t pack)
{
    for (unsigned i = 0; i < DC_BAD_PACKS; i++)
        if (atomic_load(&c->bad_packs[i]) == pack)
            return true;
    return false;
}

static void pack_mark_bad(struct cache_disk *c, int64_t pack)
{
    if (!pack_bad(c, pack))
        atomic_store(&c->bad_packs[atomic_fetch_add(&c->bad_pack_next, 1) % DC_BAD_PACKS], pack);
}

/* The pack is full: its lock goes with the batch holding its last chunks. */
static void pack_retire(struct wr_state *w)
{
    w->retired[w->nretired++] = w->pack.fd;
    w->pack.fd = -1;
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* Whether @it goes to a pack rather than a file of its own. */
static bool packed(const struct cache_disk *c, const struct wr_state *w, const struct dc_item *it)
{
    return !w->pack.unusable && it->len < c->pack_below && it->len <= STAGE_BYTES;
}

/*
 * Stages @it (file entry @f, filled but for its place) for the writer's
 * pack: 0, its item then finished by pack_flush(); -errno, nothing staged.
 */
static int pack_append(struct cache_disk *c, struct wr_state *w, struct wr_file *f,
                       struct dc_item *it)
{
    struct wr_pack *pk = &w->pack;
    size_t need = (size_t)alloc_estimate(it->len);
    int r;

    /* full, or its sync failed: a new one */
    if (pk->fd >= 0 && w->nretired < RETIRED_MAX &&
        (pk->end + pk->staged + need > c->pack_bytes || pack_bad(c, pk->id))) {
        pack_flush(c, w);
        pack_retire(w);
    }
    if (pk->fd < 0 && (r = pack_create(c, w)) < 0)
        return r;
    if (pk->staged + need > STAGE_BYTES)
        pack_flush(c, w);
    memcpy(pk->stage + pk->staged, it->bytes, it->len);
    memset(pk->stage + pk->staged + it->len, 0, need - it->len);
    f->pack = pk->id;
    f->off = pk->end + pk->staged;
    pk->staged += need;
    pk->staged_len += it->len;
    if (!pk->nitems)
        pk->staged_at = cache_dc_mono_ms();
    pk->items[pk->nitems].it = it;
    pk->items[pk->nitems].file = (size_t)(f - w->files);
    pk->nitems++;
    return 0;
}

static void bind_key(sqlite3_stmt *st, unsigned algo, const uint8_t *key)
{
    sqlite3_bind_int(st, 1, (int)algo);
    sqlite3_bind_blob(st, 2, key, CACHE_KEY_LEN, SQLITE_STATIC);
}

int cache_dc_row_created(struct cache_disk *c, unsigned algo, const uint8_t *key,
                         int64_t *ret_created)
{
    int rc;
    bind_key(c->st_get, algo, key);
    rc = sqlite3_step(c->st_get);
    if (rc == SQLITE_ROW && ret_created)
        *ret_created = sqlite3_column_int64(c->st_get, 2);
    sqlite3_reset(c->st_get);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : cache_dc_sql_errno(rc);
}

/*
 * The budget is a cap, not only an eviction trigger: when a chunk does not fit,
 * room is made from entries past the minimum age (down to the low watermark);
 * if there is still none, the chunk is not cached. So a burst larger than the
 * budget neither evicts itself nor overruns the budget.
 */
static uint64_t committing_bytes(struct wr_state *w);

static bool budget_room(struct cache_disk *c, struct wr_state *w, size_t len)
{
    uint64_t need = alloc_estimate(len) + committing_bytes(w) + w->batch_alloc;
    uint64_t low = c->budget * c->low_pct / 100;
    bool fits;
    if (need > c->budget)
        return false; /* never empty the cache for one batch */
    /* the common case without the lock, which a commit may hold for a while */
    if (__atomic_load_n(&c->total_alloc, __ATOMIC_RELAXED) + need <= c->budget)
        return true;
    pthread_mutex_lock(&c->db_lock);
    fits = c->total_alloc + need <= c->budget;
    if (!fits) {
        /* down to the low watermark, or just enough when the batch is larger */
        uint64_t target = low > need ? low - need : c->budget - need;
        int r = cache_dc_evict(c, target, cache_dc_now_ms() - c->min_age_ms, NULL);
        if (r < 0)
            atomic_store(&c->last_insert_error, r);
        fits = c->total_alloc + need <= c->budget;
    }
    pthread_mutex_unlock(&c->db_lock);
    return fits;
}

static bool same_chunk(const struct wr_file *f, const struct dc_item *it)
{
    return f->algo == it->algo && !memcmp(f->key, it->key, CACHE_KEY_LEN);
}

/*
 * Whether @it's chunk is in the batch already; if not, notes that it will
 * be files[w->n] (a note left by an insert that failed before it took its
 * entry points at a file of another key, or none: it is skipped; one whose
 * write failed afterwards is dropped, and the note moves to the new file,
 * so that the chunk is written again). An open-addressing table of the
 * batch's keys, emptied by starting a new generation with each batch.
 */
static bool batch_has(struct wr_state *w, const struct dc_item *it)
{
    uint64_t h;
    if (w->n == 0) {
        w->seen_used = 0;
        if (++w->seen_gen == 0) {
            memset(w->seen, 0, sizeof(w->seen)); /* wrapped: no stale generation left */
            w->seen_gen = 1;
        }
    }
    if (w->seen_used >= SEEN_SLOTS / 2) {
        /* many inserts refused in this batch: the table is half full */
        for (size_t i = 0; i < w->n; i++)
            if (same_chunk(&w->files[i], it) && !w->files[i].dropped)
                return true;
        return false;
    }
    memcpy(&h, it->key, sizeof(h)); /* digests are uniformly distributed already */
    for (size_t i = (size_t)(h ^ it->algo) % SEEN_SLOTS;; i = (i + 1) % SEEN_SLOTS) {
        struct wr_seen *e = &w->seen[i];
        if (e->gen != w->seen_gen) {
            e->gen = w->seen_gen;
            e->file = (uint32_t)w->n;
            w->seen_used++;
            return false;
        }
        if (e->file < w->n && same_chunk(&w->files[e->file], it)) {
            if (!w->files[e->file].dropped)
                return true;
            e->file = (uint32_t)w->n;
            return false;
        }
    }
}

static void writer_take(struct cache_disk *c, struct wr_state *w, struct dc_item *it,
                        size_t backlog)
{
    struct wr_file *f = &w->files[w->n];
    uint32_t nblocks = cache_dc_nblocks(it->len);
    int64_t now_us = cache_dc_now_us();
    int r = 1;

    if (inserts_paused(c)) {
        r = skip_insert(c, -ENOSPC);
        goto out;
    }
    if (batch_has(w, it)) {
        r = 0; /* already in this batch */
        goto out;
    }
    /* No index lookup here: it would wait for the committer's lock. A chunk
     * already cached is rarely inserted (inserts follow store loads, which
     * follow cache misses), and the commit drops a file whose row exists. */
    if (!budget_room(c, w, it->len)) {
        r = skip_insert(c, -ENOBUFS);
        goto out;
    }

    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->algo = it->algo;
    memcpy(f->key, it->key, CACHE_KEY_LEN);
    f->len = it->len;
    /* strictly increasing, so that no two incarnations share a data path */
    f->created = w->last_created = now_us > w->last_created ? now_us : w->last_created + 1;
    if (!(f->crcs = malloc((size_t)nblocks * 4))) {
        r = insert_failed(c, w, -ENOMEM);
        goto out;
    }
    for (uint32_t b = 0; b < nblocks; b++) {
        size_t off = (size_t)b * CACHE_DISK_BLOCK;
        size_t n = it->len - off < CACHE_DISK_BLOCK ? it->len - off : CACHE_DISK_BLOCK;
        cache_dc_put_le32(f->crcs + 4 * b, crc32_gzip_refl(0, it->bytes + off, n));
    }
    if (packed(c, w, it)) {
        if ((r = pack_append(c, w, f, it)) == 0) {
            /* finished by pack_flush() */
            w->n++;
            w->batch_bytes += f->len;
            w->batch_alloc += alloc_estimate(f->len);
            return;
        }
        if (r == -ENOSPC || r == -EDQUOT || r == -ENOMEM) {
            free(f->crcs);
            insert_failed(c, w, r);
            goto out;
        }
        /* no hard links or locks here: a file per chunk from now on */
        w->pack.unusable = true;
    }
    /* a chunk file's name (a packed chunk has none: two system calls saved
     * per chunk) */
    tmp_name(c, f->tmp, sizeof(f->tmp));
    f->fd = openat(c->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        r = -errno;
        free(f->crcs);
        insert_failed(c, w, r);
        goto out;
    }
    if (w->ninflight == WRITE_DEPTH)
        write_reap(c, w, 1);
    if (write_async(c, w, f, it, backlog) == 0) {
        /* finished by write_reap() */
        w->n++;
        w->batch_bytes += f->len;
        w->batch_alloc += alloc_estimate(f->len);
        return;
    }
    if ((r = write_chunk(c, w, f->fd, it->bytes, it->len, backlog)) < 0) {
        file_discard(c, f);
        free(f->crcs);
        insert_failed(c, w, r);
        goto out;
    }
    w->n++;
    w->batch_bytes += f->len;
    w->batch_alloc += alloc_estimate(f->len);
    file_written(c, w, f, it, 0);
    return;
out:
    item_finish(c, it, r);
}

/* Adds @len bytes of @path to the set @dirs (of capacity @max) if missing. */
static void dirs_add(char (*dirs)[DC_PATH_MAX], size_t *ndirs, size_t max, const char *path,
                     size_t len)
{
    for (size_t i = 0; i < *ndirs; i++) {
        if (strlen(dirs[i]) == len && !memcmp(dirs[i], path, len))
            return;
    }
    if (*ndirs < max && len < DC_PATH_MAX) {
        memcpy(dirs[*ndirs], path, len);
        dirs[*ndirs][len] = '\0';
        (*ndirs)++;
    }
}

/* Makes the directories of @path (data/<algo>/<xx>/<name>) of file @f. A
 * directory made here needs its parent fsync()ed too: those parents are added
 * to @dirs. */
static int make_dirs(struct cache_disk *c, struct wr_state *w, const struct wr_file *f,
                     const char *path, char (*dirs)[DC_PATH_MAX], size_t *ndirs, size_t max)
{
    char dir[DC_PATH_MAX];
    const char *algo_end = strchr(path + sizeof("data/") - 1, '/');
    const char *fan_end = algo_end ? strchr(algo_end + 1, '/') : NULL;
    const char *ends[2] = {algo_end, fan_end};
    uint8_t *made = cache_dc_algo_valid(f->algo) ? &w->made[f->algo - 1][f->key[0] >> 3] : NULL;
    uint8_t bit = (uint8_t)(1u << (f->key[0] & 7));

    if (!fan_end)
        return -EINVAL;
    if (made && (*made & bit))
        return 0;
    for (int i = 0; i < 2; i++) {
        size_t len = (size_t)(ends[i] - path);
        memcpy(dir, path, len);
        dir[len] = '\0';
        if (mkdirat(c->dirfd, dir, 0700) == 0)
            dirs_add(dirs, ndirs, max, dir, (size_t)(strrchr(dir, '/') - dir));
        else if (errno != EEXIST)
            return -errno;
    }
    if (made)
        *made |= bit;
    return 0;
}

static int fsync_dir(struct cache_disk *c, const char *dir)
{
    int fd = openat(c->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

static int meta_add(struct cache_disk *c, const char *key, int64_t delta)
{
    if (!delta)
        return 0;
    sqlite3_bind_text(c->st_meta_add, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->st_meta_add, 2, delta);
    return cache_dc_exec(c->st_meta_add);
}

struct deltas {
    int64_t entries, alloc, apparent;
    int64_t changes; /* rows added and removed (not their difference) */
};

static int meta_apply(struct cache_disk *c, const struct deltas *d)
{
    int r = meta_add(c, "entries", d->entries);
    if (r == 0)
        r = meta_add(c, "alloc", d->alloc);
    if (r == 0)
        r = meta_add(c, "apparent", d->apparent);
    if (r == 0)
        r = meta_add(c, "changes", d->changes);
    return r;
}

static int store_add(struct cache_disk *c, int64_t id, uint64_t hits, uint64_t misses,
                     uint64_t inserts, uint64_t evictions)
{
    sqlite3_bind_int64(c->st_store_add, 1, id);
    sqlite3_bind_int64(c->st_store_add, 2, (int64_t)hits);
    sqlite3_bind_int64(c->st_store_add, 3, (int64_t)misses);
    sqlite3_bind_int64(c->st_store_add, 4, (int64_t)inserts);
    sqlite3_bind_int64(c->st_store_add, 5, (int64_t)evictions);
    return cache_dc_exec(c->st_store_add);
}

/*
 * Deleting entries. The row is deleted in a transaction that is durable when
 * it commits (synchronous=FULL for it), and the file is unlinked only after
 * that commit. A crash in between leaves a file without a row (an orphan,
 * removed by gc/verify), never a row without its file. The unlink cannot hit
 * a newer copy of the chunk published meanwhile by another process, because
 * every incarnation has its own path (digest + created).
 */

/* Queues the bytes of a deleted row for unlink_doomed(). Out of memory: an
 * orphan for gc (a file), or pages that come back with their pack. */
static void doom(struct dc_vec *doomed, unsigned algo, const uint8_t *key, int64_t created,
                 int64_t pack, int64_t off, int64_t len)
{
    if (!cache_dc_vec_push(doomed, algo, key, created))
        return;
    doomed->v[doomed->n - 1].pack = pack > 0 ? pack : 0;
    doomed->v[doomed->n - 1].off = off > 0 ? (uint64_t)off : 0;
    doomed->v[doomed->n - 1].len = len > 0 ? (uint64_t)len : 0;
}

/* Inside a write transaction: deletes the row of @key if its created value
 * is @created (any when 0), and queues its file on @doomed. 1 if deleted. */
static int delete_entry(struct cache_disk *c, unsigned algo, const uint8_t *key, int64_t created,
                        struct deltas *d, struct dc_vec *doomed)
{
    int64_t alloc, len, row_created, pack, off;
    int rc, r;

    bind_key(c->st_get, algo, key);
    rc = sqlite3_step(c->st_get);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(c->st_get);
        return rc == SQLITE_DONE ? 0 : cache_dc_sql_errno(rc);
    }
    alloc = sqlite3_column_int64(c->st_get, 0);
    len = sqlite3_column_int64(c->st_get, 1);
    row_created = sqlite3_column_int64(c->st_get, 2);
    pack = sqlite3_column_int64(c->st_get, 3);
    off = sqlite3_column_int64(c->st_get, 4);
    sqlite3_reset(c->st_get);
    if (created && row_created != created)
        return 0; /* dropped and inserted again meanwhile: the new one stays */
    bind_key(c->st_delete, algo, key);
    if ((r = cache_dc_exec(c->st_delete)) < 0)
        return r;
    doom(doomed, algo, key, row_created, pack, off, len);
    d->changes++;
    d->entries--;
    d->alloc -= alloc;
    d->apparent -= len;
    return 1;
}

/* After the commit that deleted their rows (db_lock held): unlinks the
 * files, punches the pages of packed chunks, and removes packs left empty. */
static void unlink_doomed(struct cache_disk *c, struct dc_vec *doomed)
{
    int64_t last_pack = 0;
    for (size_t i = 0; i < doomed->n; i++) {
        const struct dc_keytime *d = &doomed->v[i];
        char path[DC_PATH_MAX];
        if (!cache_dc_algo_valid(d->algo))
            continue;
        if (d->pack) {
            cache_dc_pack_punch(c, d->pack, d->off, d->len);
        } else {
            cache_dc_data_path(d->algo, d->key, d->t, path);
            unlinkat(c->dirfd, path, 0); /* ENOENT: already gone, which is what we want */
        }
        cache_dc_forget_handle(c, d->algo, d->key);
    }
    /* victims come in last-use order, so mostly a few packs in runs */
    for (size_t i = 0; i < doomed->n; i++) {
        if (doomed->v[i].pack && doomed->v[i].pack != last_pack) {
            last_pack = doomed->v[i].pack;
            cache_dc_pack_reap(c, last_pack);
        }
    }
    doomed->n = 0;
}

/*
 * BEGIN IMMEDIATE; @durable: this transaction deletes rows (see above). The
 * pragma is run from its text each time: SQLite applies synchronous= when
 * it compiles the statement, so stepping a statement prepared earlier does
 * not set it again (the setting stayed NORMAL, and deletions were not
 * durable before their files went).
 */
static int txn_begin(struct cache_disk *c, bool durable)
{
    if (durable != c->sync_full) {
        int rc =
            sqlite3_exec(c->wdb, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                         NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return cache_dc_sql_errno(rc);
        c->sync_full = durable;
    }
    return cache_dc_exec(c->st_begin);
}

static int txn_commit(struct cache_disk *c)
{
    int r = cache_dc_exec(c->st_commit);
    if (r == 0)
        atomic_fetch_add(&c->sqlite_writes, 1);
    return r;
}

static void txn_rollback(struct cache_disk *c)
{
    if (!sqlite3_get_autocommit(c->wdb))
        cache_dc_exec(c->st_rollback);
}

void cache_dc_refresh_total(struct cache_disk *c)
{
    uint64_t entries, alloc, apparent;
    if (cache_dc_read_meta(c->st_meta_get, &entries, &alloc, &apparent, NULL) == 0)
        __atomic_store_n(&c->total_alloc, alloc, __ATOMIC_RELAXED);
}

int cache_dc_drop_row(struct cache_disk *c, unsigned algo, const uint8_t *key, int64_t created)
{
    struct dc_vec doomed = {0};
    struct deltas d = {0};
    int r = txn_begin(c, true);
    if (r < 0)
        return r;
    r = delete_entry(c, algo, key, created, &d, &doomed);
    if (r >= 0) {
        int r2 = meta_apply(c, &d);
        if (r2 == 0)
            r2 = txn_commit(c);
        if (r2 < 0)
            r = r2;
    }
    if (r < 0) {
        txn_rollback(c);
    } else {
        unlink_doomed(c, &doomed);
        cache_dc_refresh_total(c);
    }
    free(doomed.v);
    return r;
}

/* fdatasync() of a pack, once per batch: the result of its first call. */
static int fsync_pack(struct cache_disk *c, int64_t pack, int64_t *done, int *res, size_t *ndone)
{
    char path[DC_PATH_MAX];
    int fd, r = 0;
    for (size_t i = 0; i < *ndone; i++)
        if (done[i] == pack)
            return res[i];
    if (pack_bad(c, pack))
        return -EIO;
    cache_dc_pack_path(pack, path);
    fd = openat(c->dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fdatasync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r < 0)
        pack_mark_bad(c, pack);
    if (*ndone < RETIRED_MAX + 1) {
        done[*ndone] = pack;
        res[(*ndone)++] = r;
    }
    return r;
}

/* Step 1 of a commit: the bytes must be durable before anything names them. */
static size_t fsync_batch(struct cache_disk *c, struct wr_state *w)
{
    int64_t packs[RETIRED_MAX + 1];
    int res[RETIRED_MAX + 1];
    size_t nlive = 0, npacks = 0;
    for (size_t i = 0; i < w->n; i++) {
        struct wr_file *f = &w->files[i];
        struct stat st;
        if (!f->live)
            continue;
        if (f->pack) {
            int r = fsync_pack(c, f->pack, packs, res, &npacks);
            if (r < 0) {
                file_discard(c, f);
                insert_failed(c, w, r);
                continue;
            }
            f->alloc = alloc_estimate(f->len);
            nlive++;
            continue;
        }
        f->fd = openat(c->dirfd, f->tmp, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0 || fsync(f->fd) < 0 || fstat(f->fd, &st) < 0) {
            int err = -errno;
            file_discard(c, f);
            insert_failed(c, w, err);
            continue;
        }
        f->alloc = (uint64_t)st.st_blocks * 512;
        close(f->fd);
        f->fd = -1;
        nlive++;
    }
    return nlive;
}

/*
 * Publishes the live files of the batch (write transaction open, db_lock
 * held): rename into data/, then fsync every directory touched. Renaming
 * under the write lock lets gc/verify tell orphans from files about to get
 * their row. A file whose chunk another process published first is dropped.
 */
static int publish_batch(struct cache_disk *c, struct wr_state *w)
{
    char(*dirs)[DC_PATH_MAX] = malloc(BATCH_DIRS_MAX * sizeof(*dirs));
    size_t ndirs = 0, max = BATCH_DIRS_MAX;
    int r = 0;

    if (!dirs)
        return -ENOMEM;
    for (size_t i = 0; i < w->n; i++) {
        struct wr_file *f = &w->files[i];
        char path[DC_PATH_MAX];
        if (!f->live)
            continue;
        if ((r = cache_dc_row_created(c, f->algo, f->key, NULL)) != 0) {
            if (r < 0)
                goto out;
            file_discard(c, f);
            continue;
        }
        if (f->pack) {
            f->renamed = true; /* in place already, its pack synced */
            continue;
        }
        cache_dc_data_path(f->algo, f->key, f->created, path);
        r = make_dirs(c, w, f, path, dirs, &ndirs, max);
        if (r == 0 && renameat(c->dirfd, f->tmp, c->dirfd, path) < 0) {
            r = -errno;
            if (r == -ENOENT && cache_dc_algo_valid(f->algo)) {
                /* the directory went (cache clear in another process): again */
                w->made[f->algo - 1][f->key[0] >> 3] &= (uint8_t) ~(1u << (f->key[0] & 7));
                r = make_dirs(c, w, f, path, dirs, &ndirs, max);
                if (r == 0 && renameat(c->dirfd, f->tmp, c->dirfd, path) < 0)
                    r = -errno;
            }
        }
        if (r < 0) {
            int err = r;
            file_discard(c, f);
            insert_failed(c, w, err);
            continue;
        }
        f->renamed = true;
        dirs_add(dirs, &ndirs, max, path, (size_t)(strrchr(path, '/') - path));
    }
    r = 0;
    for (size_t j = 0; j < ndirs && r == 0; j++)
        r = fsync_dir(c, dirs[j]);
out:
    free(dirs);
    return r;
}

/* Rows of the published files. Number inserted, or -errno. */
static int insert_rows(struct cache_disk *c, struct wr_state *w, struct deltas *d)
{
    int64_t now = cache_dc_now_ms();
    int inserted = 0, r;

    for (size_t i = 0; i < w->n; i++) {
        struct wr_file *f = &w->files[i];
        if (!f->renamed)
            continue;
        bind_key(c->st_insert, f->algo, f->key);
        sqlite3_bind_int64(c->st_insert, 3, (int64_t)f->len);
        sqlite3_bind_int64(c->st_insert, 4, (int64_t)f->alloc);
        sqlite3_bind_blob(c->st_insert, 5, f->crcs, (int)(cache_dc_nblocks(f->len) * 4),
                          SQLITE_STATIC);
        sqlite3_bind_int64(c->st_insert, 6, now);
        sqlite3_bind_int64(c->st_insert, 7, f->created);
        sqlite3_bind_int64(c->st_insert, 8, c->store_id);
        sqlite3_bind_int64(c->st_insert, 9, f->pack);
        sqlite3_bind_int64(c->st_insert, 10, (int64_t)f->off);
        if ((r = cache_dc_exec(c->st_insert)) < 0)
            return r;
        if (sqlite3_changes(c->wdb) == 1) {
            d->changes++;
            d->entries++;
            d->alloc += (int64_t)f->alloc;
            d->apparent += (int64_t)f->len;
            inserted++;
        }
    }
    return inserted;
}

/*
 * Publishes the batch and writes the pending drops, last_use values and this
 * process's counters, in one transaction. Called on the writer thread.
 */
static void commit_batch(struct cache_disk *c, struct wr_state *w)
{
    struct dc_vec drops, touches = {0}, doomed = {0};
    struct deltas d = {0};
    uint64_t hits, misses;
    size_t nlive = fsync_batch(c, w);
    int inserted = 0, r = 0;

    pthread_mutex_lock(&c->q_lock);
    /* taken, but still visible to lookups until their deletion is committed */
    drops = c->drops_inflight = c->drops;
    memset(&c->drops, 0, sizeof(c->drops));
    pthread_mutex_unlock(&c->q_lock);
    cache_dc_collect_touches(c, &touches);
    hits = atomic_load(&c->hits);
    misses = atomic_load(&c->misses);

    pthread_mutex_lock(&c->db_lock);
    if (!nlive && !drops.n && !touches.n && hits == c->hits_flushed && misses == c->misses_flushed)
        goto out;
    if ((r = txn_begin(c, drops.n > 0)) < 0)
        goto fail;
    /* drops first, so that a chunk dropped and fetched again is published */
    for (size_t i = 0; i < drops.n && r >= 0; i++)
        r = delete_entry(c, drops.v[i].algo, drops.v[i].key, drops.v[i].t, &d, &doomed);
    if (r < 0 || (r = publish_batch(c, w)) < 0 || (inserted = r = insert_rows(c, w, &d)) < 0)
        goto fail;
    r = 0;
    for (size_t i = 0; i < touches.n && r == 0; i++) {
        bind_key(c->st_touch, touches.v[i].algo, touches.v[i].key);
        sqlite3_bind_int64(c->st_touch, 3, touches.v[i].t);
        r = cache_dc_exec(c->st_touch);
    }
    if (r == 0 && (inserted || hits != c->hits_flushed || misses != c->misses_flushed))
        r = store_add(c, c->store_id, hits - c->hits_flushed, misses - c->misses_flushed,
                      (uint64_t)inserted, 0);
    if (r == 0)
        r = meta_apply(c, &d);
    if (r == 0)
        r = txn_commit(c);
    if (r < 0)
        goto fail;

    c->hits_flushed = hits;
    c->misses_flushed = misses;
    atomic_fetch_add(&c->inserts, (uint64_t)inserted);
    if (inserted)
        w->inserted = true;
    for (size_t i = 0; i < w->n; i++)
        w->files[i].renamed = false; /* committed: the files belong to their rows */
    unlink_doomed(c, &doomed);
    cache_dc_refresh_total(c);
    goto out;

fail:
    /* nothing of this transaction is committed: its files go (their names are
     * unique to this process), rows and files of drops stay as they were */
    for (size_t i = 0; i < w->n; i++) {
        if (w->files[i].live) {
            file_discard(c, &w->files[i]);
            insert_failed(c, w, r);
        }
    }
    txn_rollback(c);
out:
    pthread_mutex_unlock(&c->db_lock);
    for (size_t i = 0; i < w->n; i++) {
        if (w->files[i].fd >= 0)
            close(w->files[i].fd);
        /* committed (visible to new lookups) or dropped */
        pending_remove(c, &w->files[i]);
        free(w->files[i].crcs);
    }
    w->n = 0;
    w->batch_bytes = 0;
    w->batch_alloc = 0;
    pthread_mutex_lock(&c->q_lock);
    memset(&c->drops_inflight, 0, sizeof(c->drops_inflight));
    /* settled (deleted, or found inserted again): lookups see the rows */
    if (drops.n)
        atomic_fetch_add(&c->drops_changes, 1);
    pthread_mutex_unlock(&c->q_lock);
    free(drops.v);
    free(touches.v);
    free(doomed.v);
}

int cache_dc_evict(struct cache_disk *c, uint64_t target, int64_t cutoff_ms, uint64_t *ret_evicted)
{
    struct dc_vec doomed = {0};
    int r = 0;

    for (;;) {
        struct {
            uint8_t algo;
            uint8_t key[CACHE_KEY_LEN];
            int64_t alloc, len, store, created, pack, off;
        } v[EVICT_STEP];
        struct deltas d = {0};
        uint64_t entries, alloc, apparent, va;
        size_t n = 0, ndel = 0;
        int rc;

        if ((r = txn_begin(c, true)) < 0)
            break;
        if ((r = cache_dc_read_meta(c->st_meta_get, &entries, &alloc, &apparent, NULL)) < 0)
            goto fail;
        __atomic_store_n(&c->total_alloc, alloc, __ATOMIC_RELAXED);
        /* a target of 0 means every entry, even files that take no blocks */
        if (alloc <= target && (target > 0 || entries == 0))
            goto done;
        sqlite3_bind_int64(c->st_victims, 1, cutoff_ms);
        sqlite3_bind_int(c->st_victims, 2, EVICT_STEP);
        while (n < EVICT_STEP && (rc = sqlite3_step(c->st_victims)) == SQLITE_ROW) {
            const void *k = sqlite3_column_blob(c->st_victims, 1);
            if (!k || sqlite3_column_bytes(c->st_victims, 1) != CACHE_KEY_LEN)
                continue;
            v[n].algo = (uint8_t)sqlite3_column_int(c->st_victims, 0);
            memcpy(v[n].key, k, CACHE_KEY_LEN);
            v[n].alloc = sqlite3_column_int64(c->st_victims, 2);
            v[n].len = sqlite3_column_int64(c->st_victims, 3);
            v[n].store = sqlite3_column_int64(c->st_victims, 4);
            v[n].created = sqlite3_column_int64(c->st_victims, 5);
            v[n].pack = sqlite3_column_int64(c->st_victims, 6);
            v[n].off = sqlite3_column_int64(c->st_victims, 7);
            n++;
        }
        sqlite3_reset(c->st_victims);
        if (n == 0)
            goto done; /* everything left is too young */
        for (size_t i = 0; i < n && (alloc > target || target == 0); i++) {
            bind_key(c->st_delete, v[i].algo, v[i].key);
            if ((r = cache_dc_exec(c->st_delete)) < 0 ||
                (r = store_add(c, v[i].store, 0, 0, 0, 1)) < 0)
                goto fail;
            doom(&doomed, v[i].algo, v[i].key, v[i].created, v[i].pack, v[i].off, v[i].len);
            d.changes++;
            d.entries--;
            d.alloc -= v[i].alloc;
            d.apparent -= v[i].len;
            va = v[i].alloc > 0 ? (uint64_t)v[i].alloc : 0;
            alloc = va < alloc ? alloc - va : 0;
            ndel++;
        }
        if ((r = meta_apply(c, &d)) < 0 || (r = txn_commit(c)) < 0)
            goto fail;
        __atomic_store_n(&c->total_alloc, alloc, __ATOMIC_RELAXED);
        atomic_fetch_add(&c->evictions, ndel);
        if (ret_evicted)
            *ret_evicted += ndel;
        unlink_doomed(c, &doomed);
        continue;
    done:
        txn_rollback(c); /* nothing written */
        break;
    fail:
        txn_rollback(c);
        break;
    }
    free(doomed.v);
    return r;
}

/* After a commit: keep the budget, and make room when the disk filled up. */
static void writer_evict(struct cache_disk *c, struct wr_state *w)
{
    uint64_t high = c->budget * c->high_pct / 100, low = c->budget * c->low_pct / 100;
    int64_t cutoff = cache_dc_now_ms() - c->min_age_ms;

    if (!w->inserted && !w->enospc)
        return; /* a process that adds nothing (stats, verify) never evicts */
    pthread_mutex_lock(&c->db_lock);
    if (w->enospc) {
        /* the filesystem is smaller than the budget: give back a tenth */
        uint64_t target = c->total_alloc * c->low_pct / 100;
        cache_dc_evict(c, target < low ? target : low, cutoff, NULL);
    } else if (c->total_alloc > high) {
        cache_dc_evict(c, low, cutoff, NULL);
    }
    /* Still past the budget: other daemons sharing the cache committed
     * while this one did (each checks the budget against what is committed,
     * not against the others' batches), or one with a smaller budget shares
     * it. A burst of this process alone gets here only by what its files
     * take beyond alloc_estimate() (its inserts are refused at the cap), so
     * the excess is taken back at once, least recently used first, whatever
     * its age: down to the budget, not to the low watermark. */
    if (c->total_alloc > c->budget)
        cache_dc_evict(c, c->budget, INT64_MAX, NULL);
    pthread_mutex_unlock(&c->db_lock);
    w->inserted = w->enospc = false;
}

/*
 * The committer: a second thread that fsyncs, publishes and commits the
 * batches the writer hands it, in order, so that the writer goes on writing
 * the next chunks while the disk catches up. Loaders wait for the writer only
 * (fs/chunks.c), so a cold read is paced by the writes, not by the disk's
 * fsyncs. Batches queue up to UNCOMMITTED_MAX bytes (allocation estimate;
 * a quarter of the budget if that is less, since the budget counts them):
 * beyond that the writer waits for commits, so that what a crash can lose
 * (files written, rows not committed) and the dirty page cache stay bounded.
 * The kernel throttles dirty pages on its own too.
 */
#define UNCOMMITTED_MAX ((uint64_t)1 << 30)

/* The budget counts uncommitted files: a small cache queues less. */
static uint64_t uncommitted_max(const struct cache_disk *c)
{
    return c->budget / 4 < UNCOMMITTED_MAX ? c->budget / 4 : UNCOMMITTED_MAX;
}

struct pending_batch {
    struct pending_batch *next;
    uint64_t bytes; /* allocation estimate (budget) */
    bool enospc;
    int retired[RETIRED_MAX]; /* packs to unlock once committed */
    size_t nretired;
    size_t n;
    struct wr_file files[];
};

struct committer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct wr_state *cw; /* the batch being committed (its own made[] and flags) */
    struct pending_batch *head, *tail;
    uint64_t bytes;        /* allocation estimate of the queued and the busy batches */
    uint64_t handed, done; /* batches handed over and committed */
    bool busy, quit;
    struct cache_disk *c;
};

static uint64_t committing_bytes(struct wr_state *w)
{
    uint64_t b;
    if (!w->k)
        return 0;
    pthread_mutex_lock(&w->k->lock);
    b = w->k->bytes;
    pthread_mutex_unlock(&w->k->lock);
    return b;
}

static void *committer_main(void *arg)
{
    struct committer *k = arg;
    pthread_mutex_lock(&k->lock);
    for (;;) {
        struct pending_batch *pb;
        uint64_t bytes;
        while (!k->head && !k->quit)
            pthread_cond_wait(&k->cond, &k->lock);
        if (!(pb = k->head))
            break;
        k->head = pb->next;
        if (!k->head)
            k->tail = NULL;
        k->busy = true;
        pthread_mutex_unlock(&k->lock);

        memcpy(k->cw->files, pb->files, pb->n * sizeof(pb->files[0]));
        k->cw->n = pb->n;
        k->cw->enospc |= pb->enospc;
        bytes = pb->bytes;
        commit_batch(k->c, k->cw);
        close_all(pb->retired, pb->nretired);
        free(pb);
        writer_evict(k->c, k->cw);

        pthread_mutex_lock(&k->lock);
        k->bytes -= bytes;
        k->busy = false;
        k->done++;
        pthread_cond_broadcast(&k->cond);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

static struct committer *committer_start(struct cache_disk *c)
{
    struct committer *k = calloc(1, sizeof(*k));
    if (!k || !(k->cw = calloc(1, sizeof(*k->cw)))) {
        free(k);
        return NULL;
    }
    k->c = c;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    if (pthread_create(&k->thread, NULL, committer_main, k) == 0) {
        (void)pthread_setname_np(k->thread, "lz-cachecommit");
    } else {
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->cond);
        free(k->cw);
        free(k);
        return NULL;
    }
    return k;
}

/* Commits everything handed over, stops the thread, frees it. */
static void committer_stop(struct committer *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->quit = true;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->cond);
    free(k->cw);
    free(k);
}

/*
 * Hands the writer's batch (possibly empty: the periodic flush of last-use
 * times and counters) to the committer, once the queue has room; with @wait,
 * returns once it is committed. Without a committer thread (it could not be
 * started), or without memory for the hand-over once the committer is idle,
 * commits on this thread.
 */
static void hand_over(struct cache_disk *c, struct wr_state *w, bool wait)
{
    struct committer *k = w->k;
    struct pending_batch *pb;
    uint64_t mine, bytes;

    if (!k) {
        commit_batch(c, w);
        close_all(w->retired, w->nretired);
        w->nretired = 0;
        writer_evict(c, w);
        return;
    }
    bytes = w->batch_alloc;
    pthread_mutex_lock(&k->lock);
    while ((k->head || k->busy) && k->bytes + bytes > uncommitted_max(c))
        pthread_cond_wait(&k->cond, &k->lock);
    pthread_mutex_unlock(&k->lock);
    if (!(pb = malloc(sizeof(*pb) + w->n * sizeof(w->files[0])))) {
        pthread_mutex_lock(&k->lock);
        while (k->head || k->busy)
            pthread_cond_wait(&k->cond, &k->lock);
        pthread_mutex_unlock(&k->lock);
        commit_batch(c, w); /* the committer is idle and stays so: nothing queued */
        close_all(w->retired, w->nretired);
        w->nretired = 0;
        writer_evict(c, w);
        return;
    }
    memcpy(pb->files, w->files, w->n * sizeof(w->files[0]));
    memcpy(pb->retired, w->retired, w->nretired * sizeof(w->retired[0]));
    pb->nretired = w->nretired;
    w->nretired = 0;
    pb->n = w->n;
    pb->enospc = w->enospc;
    pb->bytes = bytes;
    pb->next = NULL;
    w->n = 0;
    w->batch_bytes = 0;
    w->batch_alloc = 0;
    w->enospc = false;
    pthread_mutex_lock(&k->lock);
    if (k->tail)
        k->tail->next = pb;
    else
        k->head = pb;
    k->tail = pb;
    k->bytes += bytes;
    mine = ++k->handed;
    pthread_cond_broadcast(&k->cond);
    while (wait && k->done < mine)
        pthread_cond_wait(&k->cond, &k->lock);
    pthread_mutex_unlock(&k->lock);
}

/*
 * Whether entries dropped from the index (found bad or missing) wait for a
 * commit that nothing queued will make (q_lock held). A queued batch takes
 * them when it commits, deletions first, so that a chunk dropped and fetched
 * again is published; handing over another batch for them would only spin.
 */
static bool drops_due(struct cache_disk *c, struct wr_state *w)
{
    bool queued = false;
    if (!c->drops.n)
        return false;
    if (w->k) {
        pthread_mutex_lock(&w->k->lock);
        queued = w->k->head != NULL;
        pthread_mutex_unlock(&w->k->lock);
    }
    return !queued;
}

void *cache_dc_writer_main(void *arg)
{
    struct cache_disk *c = arg;
    struct wr_state *w = c->wstate;
    int64_t next_flush = cache_dc_mono_ms() + c->flush_ms;

    w->k = committer_start(c); /* NULL: this thread commits too */
    aio_open(w);
    pthread_mutex_lock(&c->q_lock);
    for (;;) {
        uint64_t req;
        size_t backlog;
        bool drained, stop;

        while (!c->q_head && !c->stop && c->sync_done == c->sync_req && !drops_due(c, w)) {
            int64_t now = cache_dc_mono_ms();
            bool stage_due = w->pack.nitems && now >= w->pack.staged_at + STAGE_LINGER_MS;
            if (w->ninflight || stage_due) {
                /* nothing queued: the next write to finish (its room in the
                 * queue lets a waiting insert in), or the staged chunks */
                pthread_mutex_unlock(&c->q_lock);
                if (w->ninflight)
                    write_reap(c, w, 1);
                else
                    pack_flush(c, w);
                pthread_mutex_lock(&c->q_lock);
                continue;
            }
            /* an open batch is committed flush_ms after it started */
            int64_t due = w->n ? w->batch_started + (int64_t)c->flush_ms : next_flush;
            struct timespec ts;
            if (now >= due)
                break;
            if (w->pack.nitems && w->pack.staged_at + STAGE_LINGER_MS < due)
                due = w->pack.staged_at + STAGE_LINGER_MS;
            ts.tv_sec = due / 1000;
            ts.tv_nsec = (due % 1000) * 1000000;
            pthread_cond_timedwait(&c->q_wake, &c->q_lock, &ts);
        }
        if (c->q_head) {
            struct dc_item *it = c->q_head;
            c->q_head = it->next;
            if (!c->q_head)
                c->q_tail = NULL;
            c->q_count--;
            c->q_bytes -= it->len;
            c->q_writing += it->len;
            c->q_taken++;
            pthread_cond_broadcast(&c->q_room);
            backlog = c->q_bytes;
            pthread_mutex_unlock(&c->q_lock);
            if (w->n == 0)
                w->batch_started = cache_dc_mono_ms();
            writer_take(c, w, it, backlog);
            pthread_mutex_lock(&c->q_lock);
            /* a sync, the close or a drop commits once the queue is
             * drained, not item by item */
            if (w->n < BATCH_MAX && w->batch_bytes < BATCH_BYTES &&
                cache_dc_mono_ms() - w->batch_started < (int64_t)c->flush_ms &&
                (c->q_head || (!c->stop && c->sync_done == c->sync_req && !drops_due(c, w))))
                continue;
        }
        drained = !c->q_head;
        req = c->sync_req;
        stop = c->stop;
        pthread_mutex_unlock(&c->q_lock);

        /* a batch is committed with its files written */
        write_reap(c, w, w->ninflight);
        pack_flush(c, w);
        /* a sync or the close waits for the commit; otherwise writing goes on */
        hand_over(c, w, (drained && req > c->sync_done) || stop);
        next_flush = cache_dc_mono_ms() + c->flush_ms;

        pthread_mutex_lock(&c->q_lock);
        if (drained && req > c->sync_done) {
            c->sync_done = req;
            pthread_cond_broadcast(&c->q_done);
        }
        if (stop && drained)
            break;
    }
    pthread_mutex_unlock(&c->q_lock);
    committer_stop(w->k); /* idle: the last hand-over waited */
    w->k = NULL;
    aio_close(w);
    if (w->pack.fd >= 0)
        close(w->pack.fd); /* every row naming it is committed */
    w->pack.fd = -1;
    stage_free(w->pack.stage);
    w->pack.stage = NULL;
    free(w->bounce);
    w->bounce = NULL;
    w->bounce_len = 0;
    pthread_mutex_lock(&c->q_lock);
    c->writer_running = false;
    pthread_cond_broadcast(&c->q_done);
    pthread_mutex_unlock(&c->q_lock);
    return NULL;
}

struct wr_state *cache_dc_wstate_new(void)
{
    struct wr_state *w = calloc(1, sizeof(struct wr_state));
    if (w)
        w->pack.fd = -1;
    return w;
}
