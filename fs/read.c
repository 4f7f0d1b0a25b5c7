/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The image read path: offsets to extents, holes from a zero buffer, chunks from fs/chunks. */
#include "read.h"
#include "fetch/buf.h"
#include "fetch/clock.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fetch/names.h"
#include "log.h"

/*
 * Holes are answered from this buffer of zeros. Its pages are written once
 * (fs_read_init): pages never written map the kernel's shared zero page, and
 * FUSE pins a reply's pages with get_user_pages, whose fast path does not
 * take the zero page; the slow path cost a fifth of the daemon's CPU on a warm
 * read of an image half made of holes.
 */
static uint8_t zero_buf[FS_MAX_READ] __attribute__((aligned(4096)));

void fs_read_init(void)
{
    long page = sysconf(_SC_PAGESIZE);
    volatile uint8_t *z = zero_buf;
    for (size_t i = 0; i<sizeof(zero_buf); i += page> 0 ? (size_t)page : 4096)
        z[i] = 0;
}

/*
 * Disk-cache hits are read into a per-thread buffer of FS_MAX_READ bytes, at
 * the offset of the piece in the request: the reply is sent from the same
 * thread before the buffer is reused, and no read allocates.
 */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    (void)pthread_key_create(&scratch_key, free);
}

static uint8_t *thread_scratch(void)
{
    uint8_t *b;
    pthread_once(&scratch_once, scratch_key_init);
    b = pthread_getspecific(scratch_key);
    if (!b && (b = malloc(FS_MAX_READ)) && pthread_setspecific(scratch_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

/* enough for a 1 MiB read over 64 KiB chunks, unaligned, without allocating */
#define STACK_IOV 24
/* a reply goes out in one writev() with a header: beyond this many pieces
 * (tiny chunks) the read is gathered into one buffer instead */
#define MAX_REPLY_IOV 1000

/* Read errors logged at most READ_ERR_BURST in each READ_ERR_WINDOW_MS: a
 * reader that retries a missing chunk in a loop logged a line per read (a
 * soak: 190 KiB of log a minute per daemon after snapshots were deleted).
 * The others are counted, and said with the next line logged. */
#define READ_ERR_BURST 10
#define READ_ERR_WINDOW_MS 10000
static pthread_mutex_t read_err_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t read_err_window; /* its start, ms */
static unsigned read_err_said;   /* lines in it */
static uint64_t read_err_quiet;  /* not logged since the last line */

static void log_chunk_error(const struct fs_node *n, const struct fetch_extent *e, int r,
                            const fetch_error *err)
{
    char path[512], more[80] = "";
    uint64_t now = fs_now_ms(), quiet = 0;
    bool say;

    pthread_mutex_lock(&read_err_lock);
    if (now - read_err_window >= READ_ERR_WINDOW_MS) {
        read_err_window = now;
        read_err_said = 0;
    }
    say = read_err_said < READ_ERR_BURST;
    if (say) {
        read_err_said++;
        quiet = read_err_quiet;
        read_err_quiet = 0;
    } else {
        read_err_quiet++;
    }
    pthread_mutex_unlock(&read_err_lock);
    if (!say)
        return;
    if (quiet)
        snprintf(more, sizeof(more), " (and %llu more read errors not logged before it)",
                 (unsigned long long)quiet);
    fs_node_path(n, path, sizeof(path));
    fs_err("%s: read error at offset %llu (chunk %zu bytes): %s%s", path,
           (unsigned long long)e->offset, (size_t)e->length,
           err && err->msg[0] ? err->msg : strerror(-r), more);
}

/*
 * A read that waits for chunks being fetched: answered by the completion of
 * the last chunk it waits for, on that pool worker. The reply points into the
 * chunks themselves (one reference held per piece until it is sent), so the
 * bytes are copied once, by the kernel; only pieces read from the disk cache
 * or gathered before the read had to wait are copied into @copy.
 */
struct pending {
    struct pending *prev, *next; /* in ctx->waits (fs_read_watch) */
    fuse_req_t req;
    struct fs_ctx *ctx;
    const struct fs_node *node;
    /* the image node whose index reference this read holds (the pieces
     * point into the index), or NULL (an archive's stream: never let go) */
    struct fs_node *hold;
    uint64_t off; /* the read's first image offset (for the watchdog) */
    /* when it started waiting (CLOCK_MONOTONIC, fetch_mono_us): for status
     * "reads": wait_us, and in ms for the watchdog (fs_now_ms is the same
     * clock, coarse: a tick behind at most) */
    uint64_t start_us;
    uint64_t said_ms; /* when the watchdog last logged it (0: never) */
    /* the reply is sent once: by the last completion, or with EINTR by the
     * reader's interrupt (see read_interrupted); @replied says it was */
    pthread_mutex_t ilock;
    bool replied;
    bool intr_registered;
    bool interrupted_early; /* the handler ran inside its registration */
    /* the reader's thread, once interrupted by a signal that does not end
     * it: the watchdog answers EINTR should it be told to end meanwhile */
    atomic_int intr_tid;
    bool listed;            /* in ctx->waits: from its setup's end until answered */
    atomic_int refs;        /* the completions' one, the interrupt handler's one */
    atomic_int outstanding; /* chunks still awaited, +1 while being set up */
    atomic_int error;       /* first errno, positive */
    size_t size;
    /* @size bytes, allocated when a read starts (the disk cache is on) and
     * written only by pieces copied in: from malloc, whose untouched pages
     * cost no memory, not from a reused chunk slot whose pages are all mapped */
    uint8_t *copy;
    size_t n; /* pieces used */
    struct reply_piece {
        const uint8_t *bytes; /* NULL: not there (yet) */
        size_t len;
        struct cache_mem_entry *ref;     /* held until the reply is sent */
        const struct fetch_extent *wait; /* the chunk awaited for it, or NULL */
        atomic_bool arrived;
    } pieces[];
};

/* A chunk awaited by a pending read. */
struct piece {
    struct pending *p;
    const struct fetch_extent *e;
    uint32_t chunk_off; /* where the piece starts in the chunk */
    uint32_t len;
    size_t slot; /* in p->pieces */
};

/* Counts a read's reply (status "reads"): @bytes answered, or the error @err. */
static void note_reply(struct fs_ctx *ctx, size_t bytes, int err)
{
    if (err)
        atomic_fetch_add_explicit(&ctx->read_errors, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&ctx->read_bytes, bytes, memory_order_relaxed);
}

/* Takes @p off the watchdog's list (once answered, nobody waits for it). */
static void pending_unlist(struct pending *p)
{
    struct fs_ctx *ctx = p->ctx;
    pthread_mutex_lock(&ctx->waits_lock);
    if (p->listed) {
        if (p->prev)
            p->prev->next = p->next;
        else
            ctx->waits = p->next;
        if (p->next)
            p->next->prev = p->prev;
        p->prev = p->next = NULL;
        p->listed = false;
    }
    pthread_mutex_unlock(&ctx->waits_lock);
}

static void pending_free(struct pending *p)
{
    struct fs_ctx *ctx = p->ctx;
    pending_unlist(p);
    for (size_t k = 0; k < p->n; k++)
        fs_chunks_put(ctx->chunks, p->pieces[k].ref);
    fs_image_put(ctx->tree, p->hold);
    pthread_mutex_destroy(&p->ilock);
    free(p->copy);
    free(p);
}

static void pending_unref(struct pending *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1)
        pending_free(p);
}

/* Whether the caller is the one to answer @p (the last completion, or an
 * interrupt): the first to ask is; @p is marked answered, and its wait
 * counted (status "reads": waits, wait_us). */
static bool take_reply(struct pending *p)
{
    bool mine;
    pthread_mutex_lock(&p->ilock);
    mine = !p->replied;
    p->replied = true;
    pthread_mutex_unlock(&p->ilock);
    if (mine) {
        uint64_t now = fetch_mono_us();
        atomic_fetch_add_explicit(&p->ctx->read_waits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->ctx->read_wait_us, now > p->start_us ? now - p->start_us : 0,
                                  memory_order_relaxed);
    }
    return mine;
}

/* The read whose interrupt handler this thread is registering (read_async). */
static __thread struct pending *registering;

/*
 * Whether thread @tid has a signal pending (not blocked) that asks a
 * program to end: SIGKILL (also what the kernel turns any fatal signal
 * into, on every thread of the process), SIGINT, SIGTERM, SIGQUIT, SIGHUP,
 * which programs often catch to clean up before they exit (dd prints its
 * counts). true when it cannot tell (no /proc entry for it here).
 */
static bool reader_ending(pid_t tid)
{
    static const int ending[] = {SIGKILL, SIGINT, SIGTERM, SIGQUIT, SIGHUP};
    char path[64], line[256];
    unsigned long long mask, pending = 0, blocked = 0, want = 0;
    int found = 0;
    FILE *f;

    if (tid <= 0)
        return true;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
    if (!(f = fopen(path, "re")))
        return true;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "SigPnd: %llx", &mask) == 1 || sscanf(line, "ShdPnd: %llx", &mask) == 1) {
            pending |= mask;
            found++;
        } else if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
            blocked = mask;
            found++;
        }
    }
    fclose(f);
    for (size_t i = 0; i < sizeof(ending) / sizeof(ending[0]); i++)
        want |= 1ULL << (ending[i] - 1);
    return found < 3 || (pending & ~blocked & want);
}

/* Answers @p with EINTR, unless it was answered already; by its interrupt
 * handler (@in_handler), or by another thread, which unregisters it first. */
static void answer_interrupted(struct pending *p, bool in_handler)
{
    if (!take_reply(p))
        return;
    if (!in_handler)
        fuse_req_interrupt_func(p->req, NULL, NULL); /* waits for a running one */
    fs_debug("a read waiting for chunks was interrupted: EINTR");
    pending_unlist(p);
    fuse_reply_err(p->req, EINTR);
    pending_unref(p); /* the handler's: it will not run again */
}

/*
 * The reader was interrupted while its read waits for chunks. The kernel
 * asks for any signal, and then keeps waiting for the answer even if the
 * signal kills the reader: a reader told to end (^C, SIGTERM, SIGKILL; see
 * reader_ending) gets EINTR at once, so that it dies or runs its handler;
 * the chunks still arrive (and are cached), and the last completion frees
 * the read without a second reply. Any other signal (a timer, SIGCHLD,
 * SIGWINCH) leaves the read to finish, as on a disk: EINTR would reach a
 * program that does not expect it from a file (a handler installed with
 * SA_RESTART); should that reader be told to end later, the watchdog
 * answers (fs_read_watch).
 * Runs on a FUSE thread, with the request's lock held by libfuse. When the
 * interrupt came before the handler was registered, libfuse calls it from
 * inside fuse_req_interrupt_func(), whose caller still uses the request
 * once the handler returns: a reply there would free it under libfuse's
 * feet, so the handler only notes it, and read_async() calls it again once
 * registered.
 */
static void read_interrupted(fuse_req_t req, void *data)
{
    struct pending *p = data;
    pid_t tid = fuse_req_ctx(req)->pid;

    if (registering == p) {
        p->interrupted_early = true;
        return;
    }
    if (!reader_ending(tid)) {
        fs_debug("a read waiting for chunks was interrupted by a signal that does not end its "
                 "reader: it goes on");
        atomic_store(&p->intr_tid, (int)tid);
        return;
    }
    answer_interrupted(p, true);
}

/*
 * Answers EINTR to the reads whose readers went on after an interrupt and
 * are told to end now (the kernel sends no second interrupt). At most 16 a
 * pass (once a second).
 */
static void answer_dying(struct fs_ctx *ctx)
{
    struct pending *dying[16];
    size_t n = 0;

    pthread_mutex_lock(&ctx->waits_lock);
    for (struct pending *p = ctx->waits; p && n < 16; p = p->next) {
        int tid = atomic_load(&p->intr_tid), refs;
        if (!tid || !reader_ending(tid))
            continue;
        /* a reference, unless its last one is being dropped (then it is
         * answered already and waits for this lock to be freed) */
        refs = atomic_load(&p->refs);
        while (refs > 0 && !atomic_compare_exchange_weak(&p->refs, &refs, refs + 1))
            ;
        if (refs > 0)
            dying[n++] = p;
    }
    pthread_mutex_unlock(&ctx->waits_lock);
    for (size_t i = 0; i < n; i++) {
        answer_interrupted(dying[i], false);
        pending_unref(dying[i]);
    }
}

/* Sends the reply from the pieces (gathered into one buffer when they are
 * too many for one writev) and frees @p. */
static void pending_reply(struct pending *p)
{
    struct iovec stack_iov[STACK_IOV] = {{0}}, *iov = stack_iov;
    uint8_t *flat;
    size_t at = 0;

    if (p->n <= MAX_REPLY_IOV) {
        if (p->n > STACK_IOV && !(iov = malloc(p->n * sizeof(*iov)))) {
            note_reply(p->ctx, 0, ENOMEM);
            fuse_reply_err(p->req, ENOMEM);
            return;
        }
        for (size_t k = 0; k < p->n; k++)
            iov[k] = (struct iovec){(void *)p->pieces[k].bytes, p->pieces[k].len};
        note_reply(p->ctx, p->size, 0);
        fuse_reply_iov(p->req, iov, (int)p->n);
        if (iov != stack_iov)
            free(iov);
        return;
    }
    if (!(flat = fetch_buf_alloc(p->size))) {
        note_reply(p->ctx, 0, ENOMEM);
        fuse_reply_err(p->req, ENOMEM);
        return;
    }
    for (size_t k = 0; k < p->n; k++) {
        memcpy(flat + at, p->pieces[k].bytes, p->pieces[k].len);
        at += p->pieces[k].len;
    }
    note_reply(p->ctx, at, 0);
    fuse_reply_buf(p->req, (const char *)flat, at);
    fetch_buf_free(flat);
}

static void pending_put(struct pending *p)
{
    int err;
    if (atomic_fetch_sub(&p->outstanding, 1) != 1)
        return;
    if (take_reply(p)) {
        if (p->intr_registered) {
            /* waits for a running handler, which now finds it replied */
            fuse_req_interrupt_func(p->req, NULL, NULL);
            pending_unref(p); /* the handler's */
        }
        if ((err = atomic_load(&p->error))) {
            note_reply(p->ctx, 0, err);
            fuse_reply_err(p->req, err);
        } else {
            pending_reply(p);
        }
    }
    pending_unref(p);
}

static void piece_done(void *arg, int r, struct cache_mem_entry *entry, const fetch_error *err)
{
    struct piece *pc = arg;
    struct pending *p = pc->p;

    if (r == 0) {
        size_t blen;
        const uint8_t *bytes = cache_mem_entry_bytes(entry, &blen);
        if (blen == pc->e->length) {
            fs_chunks_note_read(p->ctx->chunks, entry, pc->len);
            /* only this completion writes its piece; pending_put reads it
             * after the atomic decrement that orders the two */
            p->pieces[pc->slot].bytes = bytes + pc->chunk_off;
            p->pieces[pc->slot].ref = entry;
        } else {
            r = -EIO; /* one digest at two lengths: not this extent's bytes */
            fs_chunks_put(p->ctx->chunks, entry);
        }
    }
    if (r < 0) {
        int none = 0;
        log_chunk_error(p->node, pc->e, r, err);
        atomic_compare_exchange_strong(&p->error, &none, r == -ENOMEM ? ENOMEM : EIO);
    }
    atomic_store(&p->pieces[pc->slot].arrived, true);
    free(pc);
    pending_put(p);
}

/* Where the piece at @at of the reply goes when it must be copied. */
static uint8_t *pending_copy_area(struct pending *p, size_t at)
{
    if (!p->copy && !(p->copy = malloc(p->size)))
        return NULL;
    return p->copy + at;
}

/* A range of the image a read covers; a read of a file that is several
 * ranges of its image (a striped volume) is answered from them in order.
 * One at ZERO_RANGE is zeros, not the image's (an LVM2 "zero" segment). */
struct range {
    uint64_t off, len;
};
#define ZERO_RANGE UINT64_MAX

/* Whether a range at @at (ZERO_RANGE: zeros) continues @prev: zeros after
 * zeros, or the image's bytes right after @prev's. */
static bool range_continues(const struct range *prev, uint64_t at)
{
    if (prev->off == ZERO_RANGE || at == ZERO_RANGE)
        return prev->off == at;
    return prev->off + prev->len == at;
}

/* Appends @len bytes of zeros to the @niov pieces of @iov (merged with
 * zeros before them; a read is at most FS_MAX_READ long); their new count. */
static size_t add_zeros(struct iovec *iov, size_t niov, size_t len)
{
    if (niov && iov[niov - 1].iov_base == (void *)zero_buf) {
        iov[niov - 1].iov_len += len;
        return niov;
    }
    iov[niov] = (struct iovec){zero_buf, len};
    return niov + 1;
}

/* Pieces (extents cut by the ranges) of ranges [@r, @nr), from extent @i on in range @r. */
static size_t count_pieces(const struct fetch_image *img, const struct range *rg, size_t nr,
                           size_t r, size_t i)
{
    size_t slots = 0;
    for (; r < nr; r++, i = SIZE_MAX) {
        if (rg[r].off == ZERO_RANGE) {
            slots++;
            continue;
        }
        size_t first = i != SIZE_MAX ? i : fetch_image_find(img, rg[r].off);
        slots += fetch_image_find(img, rg[r].off + rg[r].len - 1) - first + 1;
    }
    return slots;
}

/*
 * Finishes a read that hit a chunk which must be fetched: the pieces already
 * gathered in @iov are kept, those in memory with their references @held[k]
 * (taken over: set to NULL), those read into a reused scratch buffer (no
 * reference) copied; the rest of the extents, from extent @i of range @r on
 * (SIZE_MAX: its first), are filled in or awaited. The reply is @size bytes.
 * @hold: as for read_ranges.
 */
static void read_async(struct fs_ctx *ctx, const struct fs_node *n, struct fs_node *hold,
                       const struct fetch_image *img, fuse_req_t req, const struct range *rg,
                       size_t nr, size_t r, size_t i, size_t size, const struct iovec *iov,
                       struct cache_mem_entry **held, size_t niov)
{
    size_t at, slots;
    struct pending *p;

    slots = niov + count_pieces(img, rg, nr, r, i);
    if (!(p = calloc(1, sizeof(*p) + slots * sizeof(p->pieces[0])))) {
        note_reply(ctx, 0, ENOMEM);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    p->req = req;
    p->ctx = ctx;
    p->node = n;
    /* the caller's reference lasts until this returns; the pieces outlive it */
    if ((p->hold = hold))
        fs_image_ref(hold);
    atomic_init(&p->outstanding, 1);
    atomic_init(&p->error, 0);
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->ilock, NULL);
    p->size = size;
    p->off = rg[0].off; /* where the read starts, also when it waits from a later range */
    p->start_us = fetch_mono_us();
    at = 0;
    for (size_t k = 0; k < niov; k++) {
        const uint8_t *bytes = iov[k].iov_base;
        if (held[k]) {
            /* a chunk in memory: its reference keeps the bytes */
            p->pieces[p->n++] =
                (struct reply_piece){.bytes = bytes, .len = iov[k].iov_len, .ref = held[k]};
            held[k] = NULL;
            at += iov[k].iov_len;
            continue;
        }
        if (bytes != zero_buf) {
            uint8_t *dst = pending_copy_area(p, at);
            if (!dst) {
                pending_free(p);
                note_reply(ctx, 0, ENOMEM);
                fuse_reply_err(req, ENOMEM);
                return;
            }
            memcpy(dst, bytes, iov[k].iov_len);
            bytes = dst;
        }
        p->pieces[p->n++] = (struct reply_piece){.bytes = bytes, .len = iov[k].iov_len};
        at += iov[k].iov_len;
    }
    for (; r < nr; r++, i = SIZE_MAX) {
        uint64_t off = rg[r].off, end = rg[r].off + rg[r].len;
        if (off == ZERO_RANGE) {
            p->pieces[p->n++] = (struct reply_piece){.bytes = zero_buf, .len = (size_t)rg[r].len};
            at += (size_t)rg[r].len;
            continue;
        }
        if (i == SIZE_MAX)
            i = fetch_image_find(img, off);
        for (; i < img->count && img->extents[i].offset < end; i++) {
            const struct fetch_extent *e = &img->extents[i];
            uint64_t from = off > e->offset ? off : e->offset;
            uint64_t to = end < e->offset + e->length ? end : e->offset + e->length;
            size_t len = (size_t)(to - from), buf_off = at;
            struct reply_piece *rp = &p->pieces[p->n++];
            struct cache_mem_entry *ref = NULL;
            uint8_t *area = NULL;
            const uint8_t *bytes;
            struct piece *pc;
            int rc;

            at += len;
            rp->len = len;
            if (e->zero) {
                rp->bytes = zero_buf;
                continue;
            }
            if (ctx->has_disk_cache && !(area = pending_copy_area(p, buf_off))) {
                rc = -ENOMEM;
            } else {
                rc = fs_chunks_peek(ctx->chunks, e, (uint32_t)(from - e->offset), len, area, &bytes,
                                    &ref);
                if (rc == 1) {
                    *rp = (struct reply_piece){.bytes = bytes, .len = len, .ref = ref};
                    continue;
                }
            }
            if (rc == 0 && (pc = malloc(sizeof(*pc)))) {
                *pc = (struct piece){p, e, (uint32_t)(from - e->offset), (uint32_t)len, p->n - 1};
                rp->wait = e;
                atomic_fetch_add(&p->outstanding, 1);
                if ((rc = fs_chunks_want(ctx->chunks, e, FETCH_PRIO_DEMAND, piece_done, pc)) == 0)
                    continue;
                atomic_fetch_sub(&p->outstanding, 1);
                free(pc);
            } else if (rc == 0) {
                rc = -ENOMEM;
            }
            log_chunk_error(n, e, rc, NULL);
            atomic_store(&p->error, rc == -ENOMEM ? ENOMEM : EIO);
            pending_put(p);
            return;
        }
    }
    /* the watchdog may look at it now: its pieces are set up (only their
     * arrival changes, atomically) */
    pthread_mutex_lock(&ctx->waits_lock);
    p->next = ctx->waits;
    if (p->next)
        p->next->prev = p;
    ctx->waits = p;
    p->listed = true;
    pthread_mutex_unlock(&ctx->waits_lock);
    /* the reader may give up (a signal) while the chunks are on their way */
    atomic_fetch_add(&p->refs, 1);
    p->intr_registered = true;
    registering = p;
    fuse_req_interrupt_func(req, read_interrupted, p);
    registering = NULL;
    /* interrupted before the handler was in place: answered now (the
     * request lives on: this setup's count keeps the completions from
     * replying) */
    if (p->interrupted_early)
        read_interrupted(req, p);
    pending_put(p);
}

size_t fs_read_watch(struct fs_ctx *ctx, uint64_t now_ms)
{
    uint64_t after = ctx->stuck_after_ms;
    size_t said = 0;

    answer_dying(ctx);
    if (!after)
        return 0;
    pthread_mutex_lock(&ctx->waits_lock);
    for (struct pending *p = ctx->waits; p; p = p->next) {
        char path[512], chunks[4 * 20 + 16];
        size_t waiting = 0, at = 0;

        /* (now_ms was read before the lock: a read listed since may have
         * started later) */
        if (now_ms < p->start_us / 1000 + after || (p->said_ms && now_ms < p->said_ms + after))
            continue;
        p->said_ms = now_ms;
        chunks[0] = '\0';
        for (size_t k = 0; k < p->n; k++) {
            const struct fetch_extent *e = p->pieces[k].wait;
            if (!e || atomic_load(&p->pieces[k].arrived))
                continue;
            if (waiting++ < 4 && at < sizeof(chunks) - 20) {
                at += (size_t)snprintf(chunks + at, sizeof(chunks) - at,
                                       "%s%02x%02x%02x%02x%02x%02x%02x%02x", at ? ", " : "",
                                       e->digest[0], e->digest[1], e->digest[2], e->digest[3],
                                       e->digest[4], e->digest[5], e->digest[6], e->digest[7]);
            }
        }
        if (!waiting)
            continue; /* all there: it is being answered */
        said++;
        fs_node_path(p->node, path, sizeof(path));
        fs_warn("%s: a read of %zu bytes at image offset %llu has waited %llu s for %zu chunk%s: "
                "%s%s",
                path, p->size, (unsigned long long)p->off,
                (unsigned long long)((now_ms - p->start_us / 1000) / 1000), waiting,
                waiting == 1 ? "" : "s", chunks, waiting > 4 ? ", ..." : "");
    }
    pthread_mutex_unlock(&ctx->waits_lock);
    return said;
}

/*
 * Sequential streams of one open file: a read that starts where a stream
 * ended, or past it with nothing but holes in between (a copy that skips
 * holes with SEEK_DATA), continues it and widens its window (doubling, up to
 * the --readahead limit) each time it enters a new chunk; any other read
 * starts a new stream (replacing the least recently used one) with no
 * window, so random access prefetches nothing. Windows are bytes of data
 * (units of FS_READAHEAD_UNIT; holes take no memory and no fetch, so they
 * do not count), so that an image of 64 KiB chunks reads as far ahead as one
 * of 4 MiB chunks, and the next run of data is on its way while a reader
 * goes through the holes before it: all the chunks a step reaches are
 * submitted at once.
 */

/*
 * Chunks of the disk cache are hinted to the kernel (fs_chunks_hint_disk)
 * this many windows further on: holes are answered at memory speed, so
 * without it the disk sat idle while a reader went through the holes before
 * the next run of data, until the window reached it. Page cache, not the
 * daemon's memory. The hints of a step stop at the first chunk not on disk
 * (a cold read then costs one more index lookup per step, not one per
 * chunk), and the rest of that step is not hinted later: those chunks get
 * their hint when the window itself reaches them.
 */
#define DISK_HINT_WINDOWS 4

/* Holes a window looks past, at most (4 GiB of 4 MiB chunks): the walk is
 * per read. */
#define AHEAD_HOLES_MAX 1024

/* Whether [@from, @to) of @img holds nothing but holes, AHEAD_HOLES_MAX at
 * most (@from < @to <= size): a stream is looked for at every read. */
static bool only_holes(const struct fetch_image *img, uint64_t from, uint64_t to)
{
    size_t i = fetch_image_find(img, from), n = 0;
    for (; i < img->count && img->extents[i].offset < to; i++)
        if (!img->extents[i].zero || ++n > AHEAD_HOLES_MAX)
            return false;
    return true;
}

/* The last extent of a window of @ahead bytes of data after extent @last:
 * at least one data extent where there is one within AHEAD_HOLES_MAX holes
 * (a chunk larger than the window, or a stream whose window has not opened
 * yet); @last itself at the end of the image. */
static size_t window_end(const struct fetch_image *img, size_t last, uint64_t ahead)
{
    size_t i = last, holes = 0;
    uint64_t data = 0;
    while (i + 1 < img->count && (data < ahead || !data)) {
        const struct fetch_extent *e = &img->extents[++i];
        if (!e->zero)
            data += e->length;
        else if (++holes > AHEAD_HOLES_MAX)
            break;
    }
    return i;
}

/*
 * How many sequential streams (of every open file) have read in this epoch
 * or the last one, @s counted now if @count; at least 1. A stream slot
 * counts once per epoch (a slot taken over keeps its epoch), and a stream
 * counts only once it has gone on past two chunks (its window has grown to
 * 2 units), so that random reads of a few touching requests do not shrink
 * everyone's window. A stream that stops is forgotten within two epochs.
 * Approximate when two threads start an epoch at once (a count may be lost
 * until the next one): it only sizes windows.
 */
static unsigned streams_active(struct fs_ctx *ctx, struct fs_stream *s, bool count)
{
    uint64_t e = fs_now_ms() / FS_STREAM_EPOCH_MS + 1; /* 0: never counted */
    uint64_t cur = atomic_load_explicit(&ctx->stream_epoch, memory_order_relaxed);
    unsigned now, last;

    if (cur < e && atomic_compare_exchange_strong(&ctx->stream_epoch, &cur, e)) {
        unsigned n = atomic_exchange(&ctx->stream_now, 0);
        atomic_store(&ctx->stream_last, cur + 1 == e ? n : 0);
    }
    if (count && s->epoch != e) {
        s->epoch = e;
        atomic_fetch_add(&ctx->stream_now, 1);
    }
    now = atomic_load_explicit(&ctx->stream_now, memory_order_relaxed);
    last = atomic_load_explicit(&ctx->stream_last, memory_order_relaxed);
    if (now < last)
        now = last;
    return now ? now : 1;
}

/*
 * The largest window, in FS_READAHEAD_UNITs, of a stream among @active:
 * prefetched chunks wait in memory until they are read, and memory evicts
 * the chunks read in full first, so the windows share what it holds for
 * chunks not read yet (@units of it), less the chunk each reader is in and
 * one arriving. At least one unit, at most --readahead.
 */
static uint64_t window_max(const struct fs_ctx *ctx, uint64_t units, unsigned active)
{
    uint64_t max = units > active + 1u ? (units - active - 1) / active : 0;
    if (max > ctx->readahead_max)
        max = ctx->readahead_max;
    return max ? max : 1;
}

static void prefetch_streams(struct fs_ctx *ctx, struct fs_file *f, const struct fetch_image *img,
                             uint64_t off, uint64_t end)
{
    struct fs_stream *s = NULL, *lru;
    size_t last, target, from, hint_to, hint_from;
    uint64_t max, ahead, units;
    bool batch;

    if (!f || !ctx->readahead_max)
        return;
    lru = &f->streams[0];
    last = fetch_image_find(img, end - 1);
    pthread_mutex_lock(&f->lock);
    f->clock++;
    for (unsigned k = 0; k < FS_STREAMS; k++) {
        struct fs_stream *x = &f->streams[k];
        if (x->used && off == x->next) {
            s = x;
            break;
        }
        if (x->used < lru->used)
            lru = x;
    }
    /* past holes only when no stream ends right there */
    for (unsigned k = 0; k < FS_STREAMS && !s; k++) {
        struct fs_stream *x = &f->streams[k];
        if (x->used && off > x->next && only_holes(img, x->next, off))
            s = x;
    }
    if (!s) {
        *lru = (struct fs_stream){.next = end,
                                  .used = f->clock,
                                  .chunk = last,
                                  .requested = last,
                                  .hinted = last,
                                  .epoch = lru->epoch};
        pthread_mutex_unlock(&f->lock);
        return;
    }
    s->used = f->clock;
    s->next = end;
    if (last != s->chunk) {
        s->chunk = last;
        s->window = s->window ? s->window * 2 : 1;
    }
    /* the memory cache's lock is a leaf: taken under the file's */
    units = fs_chunks_unread_room(ctx->chunks) / FS_READAHEAD_UNIT;
    max = window_max(ctx, units, streams_active(ctx, s, s->window >= 2));
    /* the bound may have shrunk since (more streams, a writer behind) */
    if (s->window > max)
        s->window = (unsigned)max;
    /* the window in bytes of data past the chunk of the read */
    ahead = (uint64_t)s->window * FS_READAHEAD_UNIT;
    target = window_end(img, last, ahead);
    from = s->requested > last ? s->requested + 1 : last + 1;
    if (target > s->requested)
        s->requested = target;
    hint_to = window_end(img, target, ahead * DISK_HINT_WINDOWS);
    hint_from = (s->hinted > target ? s->hinted : target) + 1;
    if (hint_to > s->hinted)
        s->hinted = hint_to;
    pthread_mutex_unlock(&f->lock);

    /* more than one chunk: one index transaction for their lookups */
    batch = from < target || hint_from < hint_to;
    if (batch)
        fs_chunks_batch_begin(ctx->chunks);
    for (size_t i = from; i <= target && i < img->count; i++)
        if (!img->extents[i].zero)
            (void)fs_chunks_want(ctx->chunks, &img->extents[i], FETCH_PRIO_READAHEAD, NULL, NULL);
    for (size_t i = hint_from; i <= hint_to && i < img->count; i++)
        if (!img->extents[i].zero && !fs_chunks_hint_disk(ctx->chunks, &img->extents[i]))
            break;
    if (batch)
        fs_chunks_batch_end(ctx->chunks);
}

uint64_t fs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Answers a read of the ranges @rg of @img (together at most FS_MAX_READ
 * bytes) in order: at once when every piece is a hole, in memory or in the
 * disk cache, else when the chunks it waits for arrive. @hold: the image
 * node whose index @img is (the caller holds a reference; a read that waits
 * takes one of its own), or NULL when @img lives as long as the mount.
 */
static void read_ranges(struct fs_ctx *ctx, const struct fs_node *n, struct fs_node *hold,
                        const struct fetch_image *img, fuse_req_t req, const struct range *rg,
                        size_t nr)
{
    struct iovec stack_iov[STACK_IOV], *iov = stack_iov;
    /* the reference that keeps each piece's bytes (NULL: zeros, scratch) */
    struct cache_mem_entry *stack_held[STACK_IOV] = {NULL}, **held = stack_held;
    size_t niov = 0, slots, size = 0, at = 0;
    uint8_t *scratch = NULL; /* disk-cache hits are read into it, at the request offset */
    int r = 0;

    for (size_t k = 0; k < nr; k++)
        size += (size_t)rg[k].len;
    slots = count_pieces(img, rg, nr, 0, SIZE_MAX);
    if (slots > MAX_REPLY_IOV) {
        read_async(ctx, n, hold, img, req, rg, nr, 0, SIZE_MAX, size, NULL, NULL, 0);
        return;
    }
    if (slots > STACK_IOV) {
        iov = calloc(slots, sizeof(*iov));
        held = calloc(slots, sizeof(*held));
        if (!iov || !held) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (size_t k = 0; k < nr; k++) {
        uint64_t off = rg[k].off, end = rg[k].off + rg[k].len;
        if (off == ZERO_RANGE) {
            niov = add_zeros(iov, niov, (size_t)rg[k].len);
            at += (size_t)rg[k].len;
            continue;
        }
        for (size_t i = fetch_image_find(img, off); i < img->count && img->extents[i].offset < end;
             i++) {
            const struct fetch_extent *e = &img->extents[i];
            uint64_t from = off > e->offset ? off : e->offset;
            uint64_t to = end < e->offset + e->length ? end : e->offset + e->length;
            size_t len = (size_t)(to - from);

            if (e->zero) {
                niov = add_zeros(iov, niov, len);
            } else {
                struct cache_mem_entry *ref = NULL;
                const uint8_t *bytes;
                if (!scratch && ctx->has_disk_cache && !(scratch = thread_scratch())) {
                    r = -ENOMEM;
                    goto out;
                }
                r = fs_chunks_peek(ctx->chunks, e, (uint32_t)(from - e->offset), len,
                                   scratch ? scratch + at : NULL, &bytes, &ref);
                if (r < 0) {
                    log_chunk_error(n, e, r, NULL);
                    goto out;
                }
                if (r == 0) {
                    /* to be fetched: the reply is sent when the chunks arrive */
                    read_async(ctx, n, hold, img, req, rg, nr, k, i, size, iov, held, niov);
                    r = 1;
                    goto out;
                }
                r = 0;
                held[niov] = ref;
                iov[niov++] = (struct iovec){(void *)bytes, len};
            }
            at += len;
        }
    }
out:
    if (r < 0) {
        note_reply(ctx, 0, r == -ENOMEM ? ENOMEM : EIO);
        fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
    } else if (r == 0) {
        note_reply(ctx, size, 0);
        fuse_reply_iov(req, iov, (int)niov);
    }
    for (size_t i = 0; i < niov; i++)
        fs_chunks_put(ctx->chunks, held[i]);
    if (iov != stack_iov)
        free(iov);
    if (held != stack_held)
        free(held);
}

/* fs_read_span, with @hold as for read_ranges */
static void read_span(struct fs_ctx *ctx, const struct fs_node *n, struct fs_node *hold,
                      const struct fetch_image *img, uint64_t base, uint64_t span,
                      struct fs_file *f, fuse_req_t req, uint64_t off, size_t size)
{
    struct range rg;

    atomic_fetch_add_explicit(&ctx->reads, 1, memory_order_relaxed);
    if (off >= span || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > FS_MAX_READ)
        size = FS_MAX_READ;
    atomic_store_explicit(&ctx->last_read_ms, fs_now_ms(), memory_order_relaxed);
    /* from here on, offsets are the image's */
    rg.off = base + off;
    rg.len = off + size > span ? span - off : size;
    prefetch_streams(ctx, f, img, rg.off, rg.off + rg.len);
    read_ranges(ctx, n, hold, img, req, &rg, 1);
}

void fs_read_span(struct fs_ctx *ctx, const struct fs_node *n, const struct fetch_image *img,
                  uint64_t base, uint64_t span, struct fs_file *f, fuse_req_t req, uint64_t off,
                  size_t size)
{
    read_span(ctx, n, NULL, img, base, span, f, req, off, size);
}

void fs_read_image(struct fs_ctx *ctx, struct fs_node *n, const struct fetch_image *img,
                   struct fs_file *f, fuse_req_t req, uint64_t off, size_t size)
{
    read_span(ctx, n, n, img, 0, img->size, f, req, off, size);
}

/* Prefetches the streams of a view read's ranges: the ranges that continue
 * each other in the image (one stripe's units in a striped volume) as one
 * read each, so that every stripe keeps its own stream. */
static void prefetch_ranges(struct fs_ctx *ctx, struct fs_file *f, const struct fetch_image *img,
                            const struct range *rg, size_t nr)
{
    struct range chain[FS_STREAMS];
    size_t nchain = 0;

    for (size_t k = 0; k < nr; k++) {
        size_t c = 0;
        if (rg[k].off == ZERO_RANGE)
            continue;
        while (c < nchain && chain[c].off + chain[c].len != rg[k].off)
            c++;
        if (c < nchain) {
            chain[c].len += rg[k].len;
        } else if (nchain < FS_STREAMS) {
            chain[nchain++] = rg[k];
        }
    }
    for (size_t c = 0; c < nchain; c++)
        prefetch_streams(ctx, f, img, chain[c].off, chain[c].off + chain[c].len);
}

void fs_read_view(struct fs_ctx *ctx, struct fs_node *n, const struct fetch_image *img,
                  const char *name, const char *why, atomic_bool *said, const struct fetch_view *v,
                  struct fs_file *f, fuse_req_t req, uint64_t off, size_t size)
{
    struct range stack_rg[16], *rg = stack_rg;
    size_t nr = 0, cap = sizeof(stack_rg) / sizeof(stack_rg[0]);
    uint64_t end;

    atomic_fetch_add_explicit(&ctx->reads, 1, memory_order_relaxed);
    if (off >= v->size || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > FS_MAX_READ)
        size = FS_MAX_READ;
    atomic_store_explicit(&ctx->last_read_ms, fs_now_ms(), memory_order_relaxed);
    end = off + size > v->size ? v->size : off + size;
    while (off < end) {
        uint64_t at, run;
        int m = fetch_view_map(v, off, &at, &run);
        if (m < 0) {
            char path[512], *slash;
            /* the file is @name beside image @n */
            fs_node_path(n, path, sizeof(path));
            slash = strrchr(path, '/');
            /* once per file at error level: readers retry, the kernel reads ahead */
            fs_log(atomic_exchange(said, true) ? FS_LOG_DEBUG : FS_LOG_ERR,
                   "%.*s%s: offset %llu cannot be read: %s", slash ? (int)(slash - path + 1) : 0,
                   path, name, (unsigned long long)off,
                   why ? why : "a segment that cannot be read");
            note_reply(ctx, 0, EIO);
            fuse_reply_err(req, EIO);
            goto out;
        }
        if (run > end - off)
            run = end - off;
        if (m == 1)
            at = ZERO_RANGE; /* zeros */
        if (nr && range_continues(&rg[nr - 1], at)) {
            rg[nr - 1].len += run; /* contiguous in the image too, or zeros */
        } else {
            if (nr == cap) {
                /* a fragmented map: up to one range per 512-byte sector */
                struct range *bigger = malloc(cap * 4 * sizeof(*bigger));
                if (!bigger) {
                    note_reply(ctx, 0, ENOMEM);
                    fuse_reply_err(req, ENOMEM);
                    goto out;
                }
                memcpy(bigger, rg, nr * sizeof(*rg));
                if (rg != stack_rg)
                    free(rg);
                rg = bigger;
                cap *= 4;
            }
            rg[nr++] = (struct range){at, run};
        }
        off += run;
    }
    prefetch_ranges(ctx, f, img, rg, nr);
    read_ranges(ctx, n, n, img, req, rg, nr);
out:
    if (rg != stack_rg)
        free(rg);
}

/* ---- reads that wait on this thread ------------------------------------- */

/* A chunk awaited by a metadata read, on this thread. */
struct wait_one {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int r;
    struct cache_mem_entry *entry;
    fetch_error err;
};

static void wait_done(void *arg, int r, struct cache_mem_entry *entry, const fetch_error *err)
{
    struct wait_one *w = arg;
    pthread_mutex_lock(&w->lock);
    w->r = r;
    w->entry = entry;
    if (r < 0 && err)
        w->err = *err;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Copies [@from, @from + @len) of chunk @e into @dst, waiting for a fetch. */
static int chunk_bytes(struct fs_ctx *ctx, const struct fetch_extent *e, uint32_t from, size_t len,
                       uint8_t *dst, fetch_error *err)
{
    struct wait_one w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct cache_mem_entry *ref = NULL;
    const uint8_t *bytes;
    size_t clen;
    int r;

    r = fs_chunks_peek(ctx->chunks, e, from, len, dst, &bytes, &ref);
    if (r == 1) {
        if (bytes != dst)
            memcpy(dst, bytes, len);
        fs_chunks_put(ctx->chunks, ref);
        return 0;
    }
    if (r < 0)
        return fetch_error_set(err, -EIO, "a chunk used with two lengths");
    if ((r = fs_chunks_want(ctx->chunks, e, FETCH_PRIO_DEMAND, wait_done, &w)) < 0)
        return fetch_error_set(err, r, "%s", strerror(-r));
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    if (w.r < 0) {
        *err = w.err;
        if (!err->msg[0])
            fetch_error_set(err, w.r, "%s", strerror(-w.r));
        return -EIO; /* never a wrong byte: the range fails */
    }
    bytes = cache_mem_entry_bytes(w.entry, &clen);
    if (clen != e->length || (size_t)from + len > clen) {
        fs_chunks_put(ctx->chunks, w.entry);
        return fetch_error_set(err, -EIO, "a chunk of %zu bytes where the index says %u", clen,
                               e->length);
    }
    memcpy(dst, bytes + from, len);
    fs_chunks_put(ctx->chunks, w.entry);
    return 0;
}

static int chunk_piece(void *arg, const struct fetch_extent *e, uint32_t from, size_t len,
                       uint8_t *dst, fetch_error *err)
{
    return chunk_bytes(arg, e, from, len, dst, err);
}

int fs_read_sync(struct fs_ctx *ctx, const struct fetch_image *img, uint64_t off, void *buf,
                 size_t len, fetch_error *err)
{
    return fetch_image_read(img, off, buf, len, chunk_piece, ctx, err);
}
