/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hydrate.h"
#include "bucket.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/diskcache.h"
#include "log.h"

/* Finished jobs kept for progress queries; older ones are forgotten. */
#define KEEP_FINISHED 256

struct job {
    struct job *next;
    uint64_t id;
    struct fs_node *node;
    uint64_t bandwidth;
    enum fs_hydrate_state state;
    bool cancel;
    /* who asked for it (mount --hydrate, each lazyimg hydrate): it stops only
     * when every one of them has cancelled */
    unsigned requesters;
    uint64_t total, done, fetched, errors, uncached, uncached_chunks;
    int uncached_why; /* the first refusal's -errno; -ESTALE: evicted again */
    unsigned outstanding;
    uint64_t outstanding_bytes;
    uint64_t last_submit_ms; /* when the last step started (yield_to_readers) */
    uint64_t step_bytes;     /* asked for in this step */
    struct timespec started, ended;
    char error[320];
};

struct fs_hydrator {
    struct fs_ctx *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* new job, stop, a completion */
    pthread_t thread;
    bool stop;
    bool exited;      /* the thread has left its loop (it may still be returning) */
    struct job *jobs; /* oldest first */
    size_t finished;
    uint64_t next_id;
};

/* A distinct non-zero chunk of the image and the bytes of the image using it. */
struct uniq {
    size_t extent;
    uint64_t bytes;
    bool cached; /* the disk cache took it (or had it) */
};

/* One chunk asked for by a job. */
struct want {
    struct fs_hydrator *h;
    struct job *job;
    struct uniq *u;
    uint32_t len;
};

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* lock held */
static void job_error(struct job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_error(struct job *job, const char *fmt, ...)
{
    va_list ap;
    if (job->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
}

/* lock held */
static void job_uncached(struct job *job, uint64_t bytes, int why)
{
    job->uncached_chunks++;
    job->uncached += bytes;
    if (!job->uncached_why)
        job->uncached_why = why;
}

static void chunk_cached(void *arg, int fetch_r, int cache_r, const fetch_error *err)
{
    struct want *w = arg;
    struct fs_hydrator *h = w->h;
    struct job *job = w->job;

    pthread_mutex_lock(&h->lock);
    if (fetch_r < 0) {
        job->errors++;
        job_error(job, "%s", err && err->msg[0] ? err->msg : strerror(-fetch_r));
    } else {
        if (fetch_r > 0)
            job->fetched += w->len; /* from the store, not from memory */
        job->done += w->u->bytes;
        if (cache_r >= 0)
            w->u->cached = true;
        else
            job_uncached(job, w->u->bytes, cache_r);
    }
    job->outstanding--;
    job->outstanding_bytes -= w->len;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    free(w);
}

static uint64_t digest_hash(const uint8_t d[32])
{
    uint64_t v;
    memcpy(&v, d, sizeof(v));
    return v;
}

/*
 * The distinct non-zero chunks of @img in offset order, each with the bytes
 * of the image that use it (so that done bytes add up to data_bytes).
 */
static int distinct_chunks(const struct fetch_image *img, struct uniq **ret, size_t *ret_n)
{
    size_t nonzero = img->count - img->zero_count, cap = 16, n = 0;
    uint32_t *table;
    struct uniq *u;

    if (img->count >= UINT32_MAX)
        return -EFBIG;
    while (cap < 2 * nonzero)
        cap <<= 1;
    table = calloc(cap, sizeof(*table)); /* uniq index + 1; 0 = empty */
    u = malloc((nonzero ? nonzero : 1) * sizeof(*u));
    if (!table || !u) {
        free(table);
        free(u);
        return -ENOMEM;
    }
    for (size_t i = 0; i < img->count; i++) {
        const struct fetch_extent *e = &img->extents[i];
        size_t slot;
        if (e->zero)
            continue;
        for (slot = digest_hash(e->digest) & (cap - 1); table[slot];
             slot = (slot + 1) & (cap - 1)) {
            const struct fetch_extent *o = &img->extents[u[table[slot] - 1].extent];
            if (o->length == e->length && !memcmp(o->digest, e->digest, 32))
                break;
        }
        if (table[slot]) {
            u[table[slot] - 1].bytes += e->length;
        } else if (n < nonzero) {
            u[n] = (struct uniq){i, e->length, false};
            table[slot] = (uint32_t)++n;
        }
    }
    free(table);
    *ret = u;
    *ret_n = n;
    return 0;
}

/* Whether the job should stop submitting; lock held. */
static bool job_stopping(struct fs_hydrator *h, struct job *job)
{
    return h->stop || job->cancel;
}

/* Waits @ns nanoseconds unless the job is stopped first; lock held. */
static void wait_ns(struct fs_hydrator *h, struct job *job, uint64_t ns)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ns / 1000000000u);
    until.tv_nsec += (long)(ns % 1000000000u);
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (!job_stopping(h, job)) {
        if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
            break;
    }
}

/* Token bucket of a job with a bandwidth cap; starts empty. */
/* Waits until @len bytes may go; lock held. false when the job is stopped. */
static bool bucket_take(struct fs_hydrator *h, struct job *job, struct fs_bucket *b, uint32_t len)
{
    for (;;) {
        struct timespec now;
        uint64_t wait;
        if (job_stopping(h, job))
            return false;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!(wait = fs_bucket_take(b, len, &now)))
            return true;
        wait_ns(h, job, wait);
    }
}

/*
 * Hydration is background work: while the mount is being read (a read in the
 * last HYDRATE_QUIET_MS), it keeps one step in flight and starts one at most
 * every HYDRATE_QUIET_MS, so that readers keep the CPU, the disk and the
 * network; at full speed otherwise. A step is one chunk, or as many chunks
 * as fit in HYDRATE_STEP_BYTES (small casync chunks go in batches). Lock held.
 */
#define HYDRATE_QUIET_MS 100
#define HYDRATE_STEP_BYTES (1u << 20)

static void yield_to_readers(struct fs_hydrator *h, struct job *job, uint32_t len)
{
    if (job->step_bytes && job->step_bytes + len <= HYDRATE_STEP_BYTES) {
        job->step_bytes += len; /* the step goes on */
        return;
    }
    for (;;) {
        uint64_t now = fs_now_ms();
        uint64_t last = atomic_load_explicit(&h->ctx->last_read_ms, memory_order_relaxed);
        /* a reader may have stored a newer time than @now */
        if (job_stopping(h, job) || (last <= now && now - last >= HYDRATE_QUIET_MS)) {
            job->step_bytes = 0; /* no readers: no steps */
            break;
        }
        if (job->outstanding == 0 && now - job->last_submit_ms >= HYDRATE_QUIET_MS) {
            job->step_bytes = len;
            break;
        }
        wait_ns(h, job, 10 * 1000000ull);
    }
    job->last_submit_ms = fs_now_ms();
}

/*
 * Asks for chunks @list[0..@n) of @img (those already in the disk cache count
 * as done at once) and waits for every completion.
 */
static void run_pass(struct fs_hydrator *h, struct job *job, const struct fetch_image *img,
                     struct uniq *list, size_t n, struct fs_bucket *b)
{
    struct fs_chunks *chunks = h->ctx->chunks;

    pthread_mutex_lock(&h->lock);
    job->step_bytes = 0;
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++) {
        const struct fetch_extent *e = &img->extents[list[i].extent];
        struct want *w;
        int r;

        if (fs_chunks_on_disk(chunks, e)) {
            bool stopping;
            pthread_mutex_lock(&h->lock);
            job->done += list[i].bytes;
            list[i].cached = true;
            stopping = job_stopping(h, job);
            pthread_mutex_unlock(&h->lock);
            if (stopping)
                break;
            continue;
        }
        pthread_mutex_lock(&h->lock);
        while ((job->outstanding >= FS_HYDRATE_OUTSTANDING ||
                job->outstanding_bytes >= FS_HYDRATE_OUTSTANDING_BYTES) &&
               !job_stopping(h, job))
            pthread_cond_wait(&h->cond, &h->lock);
        yield_to_readers(h, job, e->length);
        if (!bucket_take(h, job, b, e->length)) {
            pthread_mutex_unlock(&h->lock);
            break;
        }
        job->outstanding++;
        job->outstanding_bytes += e->length;
        pthread_mutex_unlock(&h->lock);

        w = malloc(sizeof(*w));
        r = w ? 0 : -ENOMEM;
        if (w) {
            *w = (struct want){h, job, &list[i], e->length};
            r = fs_chunks_cache(chunks, e, chunk_cached, w);
        }
        if (r < 0) {
            free(w);
            pthread_mutex_lock(&h->lock);
            job->outstanding--;
            job->outstanding_bytes -= e->length;
            job->errors++;
            job_error(job, "%s", strerror(-r));
            pthread_mutex_unlock(&h->lock);
            if (r == -ECANCELED)
                break; /* the pool is stopped: so will every other chunk be */
        }
    }
    /* completions point at the job: wait for all of them, stopped or not
     * (at unmount the pool is stopped next, which completes them at once) */
    pthread_mutex_lock(&h->lock);
    while (job->outstanding)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

/*
 * The disk cache told each completion whether it took the chunk; a chunk it
 * took may have been evicted since, by this job's later chunks when the
 * budget is smaller than the image (older entries go first): once the
 * inserts are committed, the chunks counted as cached are looked up once.
 */
static void count_evicted(struct fs_hydrator *h, struct job *job, const struct fetch_image *img,
                          const struct uniq *list, size_t n)
{
    cache_disk_sync(h->ctx->disk);
    for (size_t i = 0; i < n; i++) {
        if (list[i].cached && !fs_chunks_on_disk(h->ctx->chunks, &img->extents[list[i].extent])) {
            pthread_mutex_lock(&h->lock);
            job_uncached(job, list[i].bytes, -ESTALE);
            pthread_mutex_unlock(&h->lock);
        }
    }
}

static void run_job(struct fs_hydrator *h, struct job *job)
{
    const struct fetch_image *img;
    struct fs_bucket b;
    struct timespec now;
    fetch_error err = {""};
    struct uniq *list = NULL;
    size_t n = 0;
    bool stopping;
    int r;

    /* the job holds the index until its last completion has come */
    r = fs_image_get(h->ctx->tree, job->node, &img, &err);
    pthread_mutex_lock(&h->lock);
    if (job_stopping(h, job)) {
        /* stopped while the index loaded (a remote one may take long) */
        pthread_mutex_unlock(&h->lock);
        if (r == 0)
            fs_image_put(h->ctx->tree, job->node);
        return;
    }
    pthread_mutex_unlock(&h->lock);
    if (r == 0 && (r = distinct_chunks(img, &list, &n)) < 0)
        fs_image_put(h->ctx->tree, job->node);
    if (r < 0) {
        pthread_mutex_lock(&h->lock);
        job->errors++;
        job_error(job, "%s", err.msg[0] ? err.msg : strerror(-r));
        pthread_mutex_unlock(&h->lock);
        return;
    }
    pthread_mutex_lock(&h->lock);
    job->total = img->data_bytes;
    pthread_mutex_unlock(&h->lock);
    clock_gettime(CLOCK_MONOTONIC, &now);
    fs_bucket_init(&b, job->bandwidth, &now);

    run_pass(h, job, img, list, n, &b);
    pthread_mutex_lock(&h->lock);
    stopping = job_stopping(h, job);
    pthread_mutex_unlock(&h->lock);
    /* stopped: not worth a lookup of every chunk */
    if (!stopping)
        count_evicted(h, job, img, list, n);
    free(list);
    fs_image_put(h->ctx->tree, job->node);
}

/* Why chunks are missing from the cache, for people. */
static const char *uncached_why(int why)
{
    switch (why) {
    case -ESTALE:
        return "evicted again: the cache budget is smaller than the image";
    case -ENOBUFS:
        return "no room within the cache budget (nothing old enough to evict)";
    case -ENOSPC:
    case -EDQUOT:
        return "the cache filesystem is full";
    case -EAGAIN:
        return "the cache writer made no progress (a hung disk?)";
    default:
        return strerror(-why);
    }
}

/* Forgets the oldest finished jobs beyond KEEP_FINISHED; lock held. */
static void prune(struct fs_hydrator *h)
{
    struct job **jp = &h->jobs;
    while (h->finished > KEEP_FINISHED && *jp) {
        struct job *j = *jp;
        if (j->state == FS_HYDRATE_DONE) {
            *jp = j->next;
            free(j);
            h->finished--;
        } else {
            jp = &j->next;
        }
    }
}

static void *worker(void *arg)
{
    struct fs_hydrator *h = arg;
    char path[256];

    pthread_mutex_lock(&h->lock);
    for (;;) {
        struct job *job = h->jobs;
        while (job && job->state != FS_HYDRATE_QUEUED)
            job = job->next;
        if (h->stop)
            break;
        if (!job) {
            pthread_cond_wait(&h->cond, &h->lock);
            continue;
        }
        job->state = FS_HYDRATE_RUNNING;
        clock_gettime(CLOCK_MONOTONIC, &job->started);
        if (job->cancel) {
            job->ended = job->started;
        } else {
            pthread_mutex_unlock(&h->lock);
            fs_node_path(job->node, path, sizeof(path));
            fs_debug("hydrate %s: started (job %llu)", path, (unsigned long long)job->id);
            run_job(h, job);
            pthread_mutex_lock(&h->lock);
            clock_gettime(CLOCK_MONOTONIC, &job->ended);
            if (h->stop)
                fs_debug("hydrate %s: stopped at unmount, %llu bytes fetched", path,
                         (unsigned long long)job->fetched);
            else if (job->errors)
                fs_warn("hydrate %s: %llu chunks failed: %s", path, (unsigned long long)job->errors,
                        job->error);
            else if (job->uncached)
                fs_warn("hydrate %s: %llu chunks (%llu bytes) are not in the disk cache: %s", path,
                        (unsigned long long)job->uncached_chunks, (unsigned long long)job->uncached,
                        uncached_why(job->uncached_why));
            else
                fs_debug("hydrate %s: %s, %llu bytes fetched", path,
                         job->cancel || h->stop ? "stopped" : "done",
                         (unsigned long long)job->fetched);
        }
        job->state = FS_HYDRATE_DONE;
        h->finished++;
        prune(h);
        pthread_cond_broadcast(&h->cond);
    }
    h->exited = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

struct fs_hydrator *fs_hydrator_new(struct fs_ctx *ctx)
{
    struct fs_hydrator *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->ctx = ctx;
    h->next_id = 1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&h->thread, NULL, worker, h) != 0) {
        pthread_mutex_destroy(&h->lock);
        pthread_cond_destroy(&h->cond);
        free(h);
        return NULL;
    }
    return h;
}

void fs_hydrator_stop(struct fs_hydrator *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

int fs_hydrator_free(struct fs_hydrator *h, unsigned timeout_ms)
{
    struct timespec until;
    bool exited;

    if (!h)
        return 0;
    fs_hydrator_stop(h);
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->lock);
    while (!h->exited && pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
        ;
    exited = h->exited;
    pthread_mutex_unlock(&h->lock);
    if (!exited)
        return -ETIMEDOUT; /* left running, and @h with it */
    pthread_join(h->thread, NULL);
    while (h->jobs) {
        struct job *j = h->jobs;
        h->jobs = j->next;
        free(j);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
    return 0;
}

int fs_hydrator_add(struct fs_hydrator *h, struct fs_node *n, uint64_t bandwidth, uint64_t *ret_job,
                    const char **ret_msg)
{
    struct job *job, **jp;

    if (!h->ctx->disk) {
        *ret_msg = "hydration needs the disk cache (mounted with --no-cache, or the cache "
                   "could not be opened)";
        return -ENOTSUP;
    }
    if (n->kind != FS_NODE_IMAGE) {
        *ret_msg = "not an image";
        return -EINVAL;
    }
    pthread_mutex_lock(&h->lock);
    for (jp = &h->jobs; *jp; jp = &(*jp)->next) {
        job = *jp;
        if (job->node == n && job->state != FS_HYDRATE_DONE && !job->cancel) {
            job->requesters++;
            *ret_job = job->id;
            pthread_mutex_unlock(&h->lock);
            return 0;
        }
    }
    if (!(job = calloc(1, sizeof(*job)))) {
        pthread_mutex_unlock(&h->lock);
        *ret_msg = "out of memory";
        return -ENOMEM;
    }
    job->id = h->next_id++;
    job->requesters = 1;
    job->node = n;
    job->bandwidth = bandwidth;
    job->state = FS_HYDRATE_QUEUED;
    if (fs_node_loaded(n))
        job->total = n->data_bytes;
    *jp = job;
    *ret_job = job->id;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* lock held */
static struct job *find_job(struct fs_hydrator *h, uint64_t id)
{
    for (struct job *j = h->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

int fs_hydrator_add_all(struct fs_hydrator *h, uint64_t bandwidth)
{
    struct fs_tree *t = h->ctx->tree;
    size_t jobs = 0;

    if (!h->ctx->disk) {
        fs_warn("--hydrate: hydration needs the disk cache (mounted with --no-cache)");
        return -ENOTSUP;
    }
    for (size_t i = 0; i < t->count; i++) {
        struct fs_node *n = t->by_ino[i];
        const char *msg = "";
        uint64_t job;
        int r;
        if (!n || n->kind != FS_NODE_IMAGE)
            continue;
        if ((r = fs_hydrator_add(h, n, bandwidth, &job, &msg)) < 0)
            return r;
        jobs++;
    }
    fs_info("hydrating %zu images in the background", jobs);
    return 0;
}

int fs_hydrator_cancel(struct fs_hydrator *h, uint64_t id)
{
    struct job *j;
    pthread_mutex_lock(&h->lock);
    j = find_job(h, id);
    /* a finished job has nothing to stop; one that others asked for too goes on */
    if (j && j->state != FS_HYDRATE_DONE && j->requesters > 1) {
        j->requesters--;
    } else if (j && j->state != FS_HYDRATE_DONE) {
        j->cancel = true;
        pthread_cond_broadcast(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    return j ? 0 : -ENOENT;
}

/* lock held */
static void fill_progress(const struct job *j, struct fs_hydrate_progress *p)
{
    struct timespec now;
    *p = (struct fs_hydrate_progress){
        .job = j->id,
        .state = j->state,
        /* a cancel that came after every chunk was asked for stopped nothing */
        .cancelled = j->cancel && (j->state != FS_HYDRATE_DONE || j->done < j->total),
        .total = j->total,
        .done = j->done,
        .fetched = j->fetched,
        .errors = j->errors,
        .uncached = j->uncached,
        .uncached_chunks = j->uncached_chunks,
        .uncached_why = j->uncached_why,
    };
    if (j->state == FS_HYDRATE_RUNNING) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        p->elapsed_s = seconds_between(&j->started, &now);
    } else if (j->state == FS_HYDRATE_DONE) {
        p->elapsed_s = seconds_between(&j->started, &j->ended);
    }
    fs_node_path(j->node, p->path, sizeof(p->path));
    snprintf(p->error, sizeof(p->error), "%s", j->error);
}

int fs_hydrator_progress(struct fs_hydrator *h, uint64_t id, struct fs_hydrate_progress *ret)
{
    struct job *j;
    pthread_mutex_lock(&h->lock);
    j = find_job(h, id);
    if (j)
        fill_progress(j, ret);
    pthread_mutex_unlock(&h->lock);
    return j ? 0 : -ENOENT;
}

int fs_hydrator_node_progress(struct fs_hydrator *h, const struct fs_node *n,
                              struct fs_hydrate_progress *ret)
{
    struct job *last = NULL;
    pthread_mutex_lock(&h->lock);
    for (struct job *j = h->jobs; j; j = j->next)
        if (j->node == n)
            last = j;
    if (last)
        fill_progress(last, ret);
    pthread_mutex_unlock(&h->lock);
    return last ? 0 : -ENOENT;
}

static int add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object *x = json_object_new_uint64(v);
    return x ? json_object_object_add(o, key, x) : -1;
}

json_object *fs_hydrate_progress_json(const struct fs_hydrate_progress *p)
{
    static const char *const states[] = {"queued", "running", "done"};
    json_object *o = json_object_new_object();
    char num[32];
    int bad = 0;

    if (!o)
        return NULL;
    snprintf(num, sizeof(num), "%.3f", p->elapsed_s);
    bad |= add_u64(o, "job", p->job);
    bad |= json_object_object_add(o, "state", json_object_new_string(states[p->state]));
    bad |=
        json_object_object_add(o, "finished", json_object_new_boolean(p->state == FS_HYDRATE_DONE));
    bad |= json_object_object_add(o, "cancelled", json_object_new_boolean(p->cancelled));
    bad |= json_object_object_add(o, "path", json_object_new_string(p->path));
    bad |= add_u64(o, "total", p->total);
    bad |= add_u64(o, "done", p->done);
    bad |= add_u64(o, "fetched", p->fetched);
    bad |= add_u64(o, "errors", p->errors);
    bad |= add_u64(o, "uncached", p->uncached);
    bad |= add_u64(o, "uncached_chunks", p->uncached_chunks);
    bad |= json_object_object_add(o, "elapsed_s", json_object_new_double_s(p->elapsed_s, num));
    if (p->error[0])
        bad |= json_object_object_add(o, "error", json_object_new_string(p->error));
    if (p->uncached) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%llu chunks (%llu bytes) are not in the disk cache: %s",
                 (unsigned long long)p->uncached_chunks, (unsigned long long)p->uncached,
                 uncached_why(p->uncached_why));
        bad |= json_object_object_add(o, "warning", json_object_new_string(msg));
    }
    if (bad) {
        json_object_put(o);
        return NULL;
    }
    return o;
}
