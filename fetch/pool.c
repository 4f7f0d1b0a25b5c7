/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fetcher pool (pool.h). One mutex guards the queues and the counters;
 * it is never held across a transfer, a file read, a decode or a completion.
 *
 * A job moves through: queued (in one of the priority queues) → running (a
 * curl transfer on a transfer thread, struct lane, or a file read on a
 * worker for a local store) → waiting for a retry (the retry list, ordered
 * by nothing: it is short) or fetched (the decode queue) → decoded and
 * completed on a worker.
 */
#include "pool.h"
#include "buf.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "digest.h"
#include "remote_internal.h"

struct lane;

struct fetch_job {
    struct fetch_job *next;
    char *path;
    size_t max_len;
    size_t skew;  /* fetch_pool_submit() */
    size_t units; /* of its lane's slots, while it is a transfer there */
    enum fetch_prio prio;
    bool queued; /* in a priority queue (upgradable) */
    bool in_bg;  /* in the background decode queue */
    fetch_tap_fn tap;
    fetch_decode_fn decode;
    fetch_done_fn done;
    void *arg;

    size_t store; /* index of the store being tried */
    unsigned stores_tried;
    unsigned attempt;        /* on this store */
    uint64_t not_before;     /* µs, CLOCK_MONOTONIC: when a retry may start */
    unsigned retry_after_ms; /* a busy server's Retry-After, for the next retry */
    uint64_t started;

    /* transfer */
    struct lane *lane; /* whose multi handle runs it */
    CURL *easy;
    bool paused; /* a hydration giving way to readers (give_way) */
    /* the next attempt asks for the rest, from len (resume), or must not;
     * range_refused: this attempt's was (the next starts at once, uncounted) */
    bool resume, no_resume, range_refused;
    size_t resumed_from; /* this attempt's first byte */
    uint8_t *buf;
    size_t len, cap;
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];
    /* the start of an error answer's body, for the store to explain
     * (ERRBODY_MAX bytes, allocated at the first error answer) */
    char *errbody;
    size_t errlen;

    int result;
    fetch_error err;
};

/* AWS's error answers carry the request's canonical form or a session
 * token: several KiB before the end of the <Error> */
#define ERRBODY_MAX ((size_t)16 << 10)

struct queue {
    struct fetch_job *head, *tail;
    size_t n;
};

/*
 * A transfer thread ("lz-http") with its own multi handle and its share of
 * the transfers in flight (the concurrency divided evenly). Two where there
 * are two CPUs: each thread copies what it receives and, through the taps,
 * hashes it while it is in that CPU's cache (fetch/chunk.h), which made one
 * thread the bottleneck of a fast store (measured on 2 cores, a cold read
 * over HTTP on 127.0.0.1: 906 MB/s with one, 1050 with two). Where the
 * decoders hash chunks two at a time instead (fetch_sha256_pairs()), two
 * still beat one: 1,087 against 1,007 MB/s `--no-cache`, 1,073 against
 * 995 filling (3 alternating runs each).
 */
struct lane {
    struct fetch_pool *p;
    CURLM *multi;
    pthread_t thread;
    bool started; /* its thread runs and is to be joined; pool lock */
    /* wake-ups (see wake_curl): bumped for each reason to look at the
     * queues again; whether it sleeps in curl_multi_poll(), and whether it
     * has been woken from that sleep already */
    uint64_t gen;
    bool polling, woken;
    /* its share of the transfers in flight, in units: a small object's
     * transfer takes one, a large one's big_units (fetch_pool_config's
     * concurrency_small over concurrency); units in use */
    size_t slots, big_units, units;
    struct queue transfers; /* in this multi */
};

#define LANES_MAX 2
/* far_store()'s window of small transfers */
#define TTFB_WINDOW 32

struct fetch_pool {
    struct fetch_mirrors *mirrors; /* borrowed */
    size_t nstores;
    struct fetch_pool_config cfg;
    bool any_remote;

    pthread_mutex_t lock;
    pthread_cond_t work; /* workers: a job to decode, or a local job to read */
    struct queue prio[FETCH_PRIO_COUNT];
    struct queue decode;    /* fetched or failed: to decode/complete */
    struct queue decode_bg; /* the same for hydration jobs: the background worker's */
    struct queue retry;     /* waiting for not_before */
    bool stopping;
    unsigned workers_running;

    struct lane lanes[LANES_MAX];
    unsigned nlanes;
    struct queue idle_easy; /* reusable easy handles (job shells) */
    pthread_t *worker_threads;
    unsigned nworkers;

    struct fetch_pool_stats st; /* queued[] and inflight derived on read */
    /* st.bytes, counted as they arrive (transfer threads add without the
     * lock): on a slow link a transfer takes minutes, and a rate taken from
     * finished ones read 0 MB/s while every transfer was moving */
    _Atomic uint64_t received;
    uint64_t running;        /* transfers or local reads in progress */
    _Atomic unsigned paused; /* hydration transfers paused for readers (give_way) */
    /* small objects' transfers: their times to the first byte (µs), the
     * last TTFB_WINDOW of them, and the least of those (far_store()) */
    uint64_t ttfb[TTFB_WINDOW];
    unsigned ttfb_n, ttfb_next;
    uint64_t small_ttfb_us;
    uint64_t decoding;
    unsigned rand_state;
};

static void q_push(struct queue *q, struct fetch_job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

static void q_push_front(struct queue *q, struct fetch_job *j)
{
    j->next = q->head;
    q->head = j;
    if (!q->tail)
        q->tail = j;
    q->n++;
}

static struct fetch_job *q_pop(struct queue *q)
{
    struct fetch_job *j = q->head;
    if (!j)
        return NULL;
    q->head = j->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    j->next = NULL;
    return j;
}

static bool q_remove(struct queue *q, struct fetch_job *j)
{
    struct fetch_job *prev = NULL;
    for (struct fetch_job *x = q->head; x; prev = x, x = x->next) {
        if (x != j)
            continue;
        if (prev)
            prev->next = x->next;
        else
            q->head = x->next;
        if (q->tail == x)
            q->tail = prev;
        q->n--;
        x->next = NULL;
        return true;
    }
    return false;
}

static bool is_remote(const struct fetch_pool *p, size_t store)
{
    return fetch_mirrors_store(p->mirrors, store)->ops->setup_get != NULL;
}

/* Highest-priority queued job of classes [@from, @to] for the given kind of
 * store; pool lock held. */
static struct fetch_job *take_queued(struct fetch_pool *p, bool remote, int from, int to)
{
    for (int c = from; c <= to; c++) {
        for (struct fetch_job *j = p->prio[c].head; j; j = j->next) {
            if (is_remote(p, j->store) != remote)
                continue;
            q_remove(&p->prio[c], j);
            j->queued = false;
            return j;
        }
    }
    return NULL;
}

/*
 * Tells the transfer threads to look at the queues again; pool lock held.
 * Only a thread asleep in curl_multi_poll() needs curl_multi_wakeup() (a
 * write to a socket pair), and once per sleep: a busy one sees its gen move
 * before it sleeps. A cold read of 64 KiB chunks submits some 16,000 jobs
 * per GiB. Every lane is told: the first to look takes at most its share.
 */
static void wake_curl(struct fetch_pool *p)
{
    for (unsigned i = 0; i < p->nlanes; i++) {
        struct lane *l = &p->lanes[i];
        l->gen++;
        if (l->multi && l->polling && !l->woken) {
            l->woken = true;
            curl_multi_wakeup(l->multi);
        }
    }
}

/* Hands a finished (fetched or failed) job to the workers; pool lock held. */
static void to_decode(struct fetch_pool *p, struct fetch_job *j)
{
    j->in_bg = j->prio == FETCH_PRIO_HYDRATE;
    q_push(j->in_bg ? &p->decode_bg : &p->decode, j);
    p->decoding++;
    pthread_cond_broadcast(&p->work);
}

/* Places a job back in its priority queue for a (new) store; pool lock held. */
static void requeue(struct fetch_pool *p, struct fetch_job *j)
{
    j->queued = true;
    q_push_front(&p->prio[j->prio], j);
    if (is_remote(p, j->store))
        wake_curl(p);
    else
        pthread_cond_broadcast(&p->work);
}

static unsigned jitter(struct fetch_pool *p, unsigned ms)
{
    /* up to +50%: spreads retries of many chunks that failed together */
    return ms + (unsigned)(rand_r(&p->rand_state) % (ms / 2 + 1));
}

/*
 * Decides what a failed attempt leads to; pool lock held. Returns true when
 * the job was placed for another attempt, false when it has failed for good
 * (the caller completes it with j->result).
 */
static bool after_failure(struct fetch_pool *p, struct fetch_job *j)
{
    int r = j->result;
    bool conn_failed = r == -ECONNREFUSED || r == -EHOSTUNREACH;
    bool unavailable = fetch_remote_unavailable(r);
    uint64_t now = fetch_mono_us();
    struct fetch_store *s = fetch_mirrors_store(p->mirrors, j->store);
    bool outage;

    /* the store's outage: begun (an HTTP answer, busy or not, was noted
     * when the transfer ended: finish_transfer) */
    if (unavailable)
        fetch_store_note_answer(s, true, now);
    if (p->stopping || !fetch_remote_retryable(r))
        return false;
    /* still within the time a store unavailable is waited for (the store's
     * outage, begun by this job or by any request to it: once it has lasted
     * cfg.outage_ms, reads fail after their attempts again until it answers;
     * a guest booting from a store gone for good must not wait that long at
     * every read), when no mirror is left to try (one that is would answer
     * now) */
    outage = unavailable && j->stores_tried + 1 >= p->nstores &&
             fetch_store_outage_young(s, now, p->cfg.outage_ms);
    if (j->range_refused) {
        /* the server sent the whole object when asked for the rest: at
         * once, from byte 0, and not counted as a failed attempt */
        j->range_refused = false;
        j->resume = false;
        j->not_before = now;
        q_push(&p->retry, j);
        wake_curl(p);
        return true;
    }
    /* a server that refuses connections is down: go to a mirror at once,
     * if one is left to try (the last one is retried as a single store is:
     * a restart or a DNS hiccup must not fail every read in flight) */
    if ((j->attempt < p->cfg.retries || outage) &&
        !(conn_failed && j->stores_tried + 1 < p->nstores)) {
        unsigned ms = p->cfg.backoff_ms << (j->attempt < 10 ? j->attempt : 10);
        if (j->attempt >= p->cfg.retries && ms > FETCH_OUTAGE_STEP_MS)
            ms = FETCH_OUTAGE_STEP_MS; /* back soon after the store is */
        /* bytes of the object arrived (this attempt or one before, cut off:
         * a reset, a truncated body, a stall, then maybe a refusal or a 503):
         * the next attempt asks for the rest (chunks do not change; the
         * whole is verified as ever). Not after bytes that failed
         * verification, nor from a server that sent the whole object when
         * asked for the rest. */
        bool progressed = j->len > j->resumed_from;
        j->resume = !j->no_resume && j->len > 0 && j->buf && r != -EBADMSG;
        if (j->retry_after_ms > ms)
            ms = j->retry_after_ms; /* what a busy server asked for */
        j->retry_after_ms = 0;
        /* an attempt that moved the object on is not a failed one: a paused
         * hydration transfer cut by the server's send timeout, or a flaky
         * link, resumes with its attempts intact */
        if (progressed && j->resume)
            j->attempt = 0;
        else
            j->attempt++;
        p->st.retries++;
        j->not_before = now + (uint64_t)jitter(p, ms) * 1000u;
        q_push(&p->retry, j);
        wake_curl(p);
        if (!is_remote(p, j->store))
            pthread_cond_broadcast(&p->work);
        return true;
    }
    if (j->stores_tried + 1 < p->nstores && fetch_mirrors_fail_over(p->mirrors, r)) {
        fetch_buf_free(j->buf); /* what the failed attempt received */
        j->buf = NULL;
        j->len = j->cap = 0;
        j->resume = j->no_resume = false; /* another server: the whole object */
        j->retry_after_ms = 0;            /* the busy server's wish, not the mirror's */
        j->stores_tried++;
        j->store = fetch_mirrors_next(p->mirrors, j->store);
        j->attempt = 0;
        requeue(p, j);
        return true;
    }
    return false;
}

/* A job worked on store j->store: after a failover, it becomes the active store. */
static void note_success(struct fetch_pool *p, struct fetch_job *j)
{
    fetch_mirrors_worked(p->mirrors, j->store, j->stores_tried);
}

static void record_latency(struct fetch_pool *p, uint64_t us)
{
    unsigned b = 0;
    while (b + 1 < FETCH_LAT_BUCKETS && (us >> (b + 1)))
        b++;
    p->st.latency_us[b]++;
    p->st.latency_sum_us += us;
    if (p->st.latency_count++ == 0 || us < p->st.latency_min_us)
        p->st.latency_min_us = us;
    if (us > p->st.latency_max_us)
        p->st.latency_max_us = us;
}

/* ---- transfer threads ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct fetch_job *j = userdata;
    size_t n = size * nmemb;
    long status = 0;
    /* an error page is not the object: the status says what happened, and
     * the start of the page may say why (fetch_store_ops.explain) */
    if (curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        (status < 200 || status > 299)) {
        size_t room = ERRBODY_MAX - j->errlen;
        if (!j->errbody && !(j->errbody = malloc(ERRBODY_MAX)))
            return n; /* the status alone, then */
        memcpy(j->errbody + j->errlen, data, n < room ? n : room);
        j->errlen += n < room ? n : room;
        return n;
    }
    if (n > j->max_len - j->len) {
        j->too_big = true;
        return 0;
    }
    if (j->len + n > j->cap) {
        size_t cap = j->cap ? j->cap : 64 * 1024;
        curl_off_t cl = -1;
        uint8_t *b;
        if (curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (uint64_t)cl <= j->max_len && (size_t)cl >= j->len + n)
            cap = (size_t)cl;
        while (cap < j->len + n)
            cap *= 2;
        if (cap > j->max_len)
            cap = j->max_len;
        if (!(b = j->buf ? fetch_buf_realloc(j->buf, cap) : fetch_buf_alloc_skewed(cap, j->skew)))
            return 0;
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, data, n);
    atomic_fetch_add_explicit(&j->lane->p->received, n, memory_order_relaxed);
    if (j->tap)
        j->tap(j->arg, j->buf, j->len, n);
    j->len += n;
    return n;
}

/*
 * Whether even the quickest of the last TTFB_WINDOW transfers of small
 * objects (at least TTFB_SAMPLES of them) waited 10 ms or more for its first
 * byte: a far store, answering each request a round trip late, whose link
 * only more of them in flight can fill (fetch_pool_config.concurrency_small).
 * The least, not an average: a server's queue (or this thread's own delay)
 * adds to some answers, not to all, unless the server is busy all along. On
 * a LAN an answer starts within a millisecond or two. Pool lock held.
 */
#define FAR_TTFB_US 10000
#define TTFB_SAMPLES 8
static bool far_store(const struct fetch_pool *p)
{
    return p->ttfb_n >= TTFB_SAMPLES && p->small_ttfb_us >= FAR_TTFB_US;
}

/* A small object's transfer that succeeded: its time to the first byte
 * into the window. */
static void note_small_ttfb(struct fetch_pool *p, CURL *easy)
{
    curl_off_t ttfb = 0;
    uint64_t least = UINT64_MAX;
    if (curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &ttfb) != CURLE_OK || ttfb <= 0)
        return;
    p->ttfb[p->ttfb_next] = (uint64_t)ttfb;
    p->ttfb_next = (p->ttfb_next + 1) % TTFB_WINDOW;
    if (p->ttfb_n < TTFB_WINDOW)
        p->ttfb_n++;
    for (unsigned i = 0; i < p->ttfb_n; i++)
        if (p->ttfb[i] < least)
            least = p->ttfb[i];
    p->small_ttfb_us = least;
}

/* Starts the transfer of @j on @l; pool lock held (setup_get only formats). */
static int start_transfer(struct fetch_pool *p, struct lane *l, struct fetch_job *j)
{
    struct fetch_store *s = fetch_mirrors_store(p->mirrors, j->store);
    int r;

    if (!j->easy && !(j->easy = curl_easy_init()))
        return fetch_error_set(&j->err, -ENOMEM, "out of memory");
    curl_easy_reset(j->easy);
    if (!j->resume || !j->buf || !j->len) {
        j->len = 0;
        if (j->tap)
            j->tap(j->arg, NULL, 0, 0); /* a new attempt */
    }
    j->resume = false;
    j->resumed_from = j->len; /* the tap goes on from there: the same bytes, in order */
    j->too_big = false;
    j->errbuf[0] = '\0';
    j->errlen = 0;
    r = s->ops->setup_get(s, j->easy, j->path, &j->err);
    if (r < 0) {
        curl_easy_cleanup(j->easy); /* the next attempt tries a fresh one */
        j->easy = NULL;
        return r;
    }
    if (j->resumed_from)
        curl_easy_setopt(j->easy, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)j->resumed_from);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
    if (curl_multi_add_handle(l->multi, j->easy) != CURLM_OK)
        return fetch_error_set(&j->err, -ENOMEM, "cannot start a transfer");
    j->started = fetch_mono_us();
    j->lane = l;
    j->units = j->max_len <= FETCH_SMALL_OBJECT && far_store(p) ? 1 : l->big_units;
    l->units += j->units;
    q_push(&l->transfers, j);
    p->running++;
    p->st.requests++;
    return 0;
}

static void finish_transfer(struct fetch_pool *p, struct fetch_job *j, CURLcode cc)
{
    long status = 0;
    if (j->paused) {
        j->paused = false;
        atomic_fetch_sub(&p->paused, 1);
    } else if (j->prio != FETCH_PRIO_HYDRATE && atomic_load(&p->paused)) {
        wake_curl(p); /* the lanes see whether hydration may go on */
    }
    curl_multi_remove_handle(j->lane->multi, j->easy);
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    q_remove(&j->lane->transfers, j);
    j->lane->units -= j->units;
    p->running--;
    record_latency(p, fetch_mono_us() - j->started);
    if (j->too_big) {
        j->result = fetch_error_set(&j->err, -EFBIG, "%s: object larger than %zu bytes", j->path,
                                    j->max_len);
    } else if (cc == CURLE_WRITE_ERROR) {
        j->result = fetch_error_set(&j->err, -ENOMEM, "%s: out of memory", j->path);
    } else if (cc == CURLE_RANGE_ERROR && j->resumed_from && status >= 200 && status <= 299) {
        /* the server sent the whole object, not the rest: from 0 again */
        j->no_resume = true;
        j->range_refused = true;
        j->result = fetch_error_set(&j->err, -EPROTO, "%s: the server did not resume at byte %zu",
                                    j->path, j->resumed_from);
    } else if (cc == CURLE_RANGE_ERROR && j->resumed_from) {
        /* libcurl 7.88 reports any other answer with a body to a range
         * request so: the answer's own status says what happened */
        j->err.msg[0] = '\0';
        j->result = fetch_remote_result(CURLE_OK, status, NULL, j->path, &j->err);
        if (j->result == 0)
            j->result = fetch_error_set(&j->err, -EPROTO, "%s: HTTP %ld to a range request",
                                        j->path, status);
        j->retry_after_ms = fetch_remote_retry_after_ms(j->easy, status);
    } else {
        j->err.msg[0] = '\0';
        fetch_remote_connect_detail(j->easy, (int)cc, j->errbuf);
        j->result = fetch_remote_result((int)cc, status, j->errbuf, j->path, &j->err);
        if (cc == CURLE_OK)
            j->retry_after_ms = fetch_remote_retry_after_ms(j->easy, status);
        if (cc == CURLE_OK && j->result < 0 && j->errlen) {
            struct fetch_store *s = fetch_mirrors_store(p->mirrors, j->store);
            if (s->ops->explain)
                (void)s->ops->explain(s, status, j->errbody, j->errlen, j->path, &j->err);
        }
    }
    /* the store answered (any HTTP answer, as for every other request to it:
     * fetch/remote.c), busy or not: its outage goes on, or is over; a
     * transport failure that says it is unavailable begins one
     * (after_failure) */
    if (cc == CURLE_OK || (cc == CURLE_RANGE_ERROR && status > 0))
        fetch_store_note_answer(fetch_mirrors_store(p->mirrors, j->store),
                                fetch_remote_unavailable(j->result), fetch_mono_us());
    if (cc != CURLE_OK) {
        /* a handle whose transfer failed may keep state that a reset does
         * not clear (libcurl 7.88 keeps its receive buffer after a refused
         * redirect): the next attempt, and later jobs, get a fresh one (the
         * lane's multi handle keeps the connections) */
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
    }
    if (j->result == 0) {
        if (j->max_len <= FETCH_SMALL_OBJECT && !j->resumed_from && j->easy)
            note_small_ttfb(p, j->easy);
        to_decode(p, j);
        return;
    }
    if (!after_failure(p, j))
        to_decode(p, j);
}

/* Moves due retries back to their queues (*@moved, unless NULL: whether
 * any was); returns ms until the next one (or -1). */
static long due_retries(struct fetch_pool *p, bool *moved)
{
    uint64_t now = fetch_mono_us(), next = UINT64_MAX;
    struct queue keep = {0};
    struct fetch_job *j;
    bool any = false;

    while ((j = q_pop(&p->retry))) {
        if (j->not_before <= now) {
            requeue(p, j);
            any = true;
        } else {
            if (j->not_before < next)
                next = j->not_before;
            q_push(&keep, j);
        }
    }
    p->retry = keep;
    if (moved)
        *moved = any;
    return next == UINT64_MAX ? -1 : (long)((next - now) / 1000u + 1);
}

/*
 * Hydration gives way to readers on a link that is the bottleneck. A reader's
 * transfer (demand or readahead) that has run for GIVE_WAY_AFTER_MS or more
 * shares the link with the hydration transfers in flight, which the queue's
 * priorities cannot help: on a 4 Mbit/s link with 12 of them, a cold 4 KiB
 * read took 202 s instead of 8.8 s (a 4 MiB chunk arrives in 5-40 ms on a LAN,
 * where nothing waits). Then hydration transfers are paused (libcurl stops
 * reading their sockets, so TCP stops their senders once the receive buffer
 * is full) and no new one starts, until no such reader transfer is left.
 * Not over HTTP/2: a paused stream stops its whole connection in libcurl
 * 7.88, readers' streams included, so there hydration only starts no new
 * transfer.
 */
#define GIVE_WAY_AFTER_MS 250

/* Whether a reader's transfer has run for GIVE_WAY_AFTER_MS, in any lane;
 * *wake_ms: when the next one does (-1: none runs); pool lock held. */
static bool readers_waiting(struct fetch_pool *p, uint64_t now, long *wake_ms)
{
    const uint64_t after = (uint64_t)GIVE_WAY_AFTER_MS * 1000u;
    bool waiting = false;
    *wake_ms = -1;
    for (unsigned i = 0; i < p->nlanes; i++) {
        for (struct fetch_job *j = p->lanes[i].transfers.head; j; j = j->next) {
            if (j->prio == FETCH_PRIO_HYDRATE)
                continue;
            if (now - j->started >= after) {
                waiting = true;
            } else {
                long ms = (long)((j->started + after - now) / 1000u) + 1;
                if (*wake_ms < 0 || ms < *wake_ms)
                    *wake_ms = ms;
            }
        }
    }
    return waiting;
}

/* Pauses this lane's hydration transfers while @hold, resumes them after;
 * on the lane's thread (the only one that changes its transfers), without
 * the pool lock: resuming may call on_body() and the job's tap at once. */
static void give_way(struct fetch_pool *p, struct lane *l, bool hold)
{
    for (struct fetch_job *j = l->transfers.head; j; j = j->next) {
        bool want = hold && __atomic_load_n(&j->prio, __ATOMIC_RELAXED) == FETCH_PRIO_HYDRATE;
        long version = 0;
        if (want == j->paused)
            continue;
        if (want && (curl_easy_getinfo(j->easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK ||
                     version == 0 || version >= CURL_HTTP_VERSION_2_0))
            continue; /* not known to be HTTP/1 yet, or multiplexed */
        if (curl_easy_pause(j->easy, want ? CURLPAUSE_RECV : CURLPAUSE_CONT) == CURLE_OK) {
            j->paused = want;
            if (want)
                atomic_fetch_add(&p->paused, 1);
            else
                atomic_fetch_sub(&p->paused, 1);
        }
    }
}

static void *curl_main(void *arg)
{
    struct lane *l = arg;
    struct fetch_pool *p = l->p;
    const size_t slots = l->slots;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct fetch_job *j;
        CURLMsg *msg;
        int left, finished, timeout_ms = 1000;
        uint64_t gen = l->gen;
        long next, wake_ms;
        bool hold;

        if (p->stopping && l->transfers.n == 0)
            break;
        next = due_retries(p, NULL);
        if (next >= 0 && next < timeout_ms)
            timeout_ms = (int)next;
        hold = readers_waiting(p, fetch_mono_us(), &wake_ms);
        if (wake_ms >= 0 && wake_ms < timeout_ms)
            timeout_ms = (int)wake_ms;
        /* a quarter of the slots stays free of hydration for readers (a
         * transfer starts while a unit is free: a large one among small
         * ones may go a few units over) */
        while (!p->stopping &&
               ((l->units < slots &&
                 (j = take_queued(p, true, FETCH_PRIO_DEMAND, FETCH_PRIO_READAHEAD))) ||
                (!hold && l->units < slots - slots / 4 &&
                 (j = take_queued(p, true, FETCH_PRIO_HYDRATE, FETCH_PRIO_HYDRATE))))) {
            int r = start_transfer(p, l, j);
            if (r < 0) {
                j->result = r;
                to_decode(p, j);
            }
        }
        pthread_mutex_unlock(&p->lock);
        give_way(p, l, hold);

        curl_multi_perform(l->multi, &left);
        pthread_mutex_lock(&p->lock);
        finished = 0;
        while ((msg = curl_multi_info_read(l->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            finish_transfer(p, j, msg->data.result);
            finished++;
        }
        if (p->stopping) {
            /* abort what runs: completions see -ECANCELED */
            while ((j = q_pop(&l->transfers))) {
                l->units -= j->units;
                curl_multi_remove_handle(l->multi, j->easy);
                if (j->paused) {
                    j->paused = false;
                    atomic_fetch_sub(&p->paused, 1);
                }
                p->running--;
                j->result = fetch_error_set(&j->err, -ECANCELED, "%s: cancelled", j->path);
                to_decode(p, j);
            }
            continue;
        }
        /* free slots, or jobs (or retries, or a stop) that came while curl
         * ran and sent no wake-up: look at the queues before waiting */
        if (finished || l->gen != gen)
            continue;
        l->polling = true;
        pthread_mutex_unlock(&p->lock);
        curl_multi_poll(l->multi, NULL, 0, timeout_ms, NULL);
        pthread_mutex_lock(&p->lock);
        l->polling = false;
        l->woken = false;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- workers ---- */

/* A local store's object, read on this worker. */
static void read_local(struct fetch_pool *p, struct fetch_job *j)
{
    struct fetch_store *s = fetch_mirrors_store(p->mirrors, j->store);
    void *buf = NULL;
    size_t len = 0;
    uint64_t t0 = fetch_mono_us();
    int r;

    j->err.msg[0] = '\0';
    if (j->tap)
        j->tap(j->arg, NULL, 0, 0); /* a new attempt, whose bytes it does not see */
    if (s->ops->get_buf)
        r = s->ops->get_buf(s, j->path, j->max_len, j->skew, &buf, &len, &j->err);
    else
        r = fetch_store_get(s, j->path, j->max_len, &buf, &len, &j->err);
    pthread_mutex_lock(&p->lock);
    p->running--;
    record_latency(p, fetch_mono_us() - t0);
    if (r == 0) {
        atomic_fetch_add_explicit(&p->received, len, memory_order_relaxed);
        j->buf = buf;
        j->len = len;
    }
    j->result = r;
    /* the store answered (its object, or "not found"), as an HTTP answer
     * does in finish_transfer: an outage begun by failures that said it
     * was unavailable (after_failure) is over */
    if (r == 0 || r == -ENOENT)
        fetch_store_note_answer(s, false, 0);
    if (r == 0 || !after_failure(p, j))
        to_decode(p, j);
    pthread_mutex_unlock(&p->lock);
}

/* A local job just taken from its queue, read on this thread (by a worker
 * or a reader); pool lock held, and held again on return. */
static void read_taken(struct fetch_pool *p, struct fetch_job *j)
{
    p->running++;
    p->st.requests++;
    pthread_mutex_unlock(&p->lock);
    read_local(p, j);
    pthread_mutex_lock(&p->lock);
}

static void complete(struct fetch_pool *p, struct fetch_job *j)
{
    fetch_data data = {0};
    int r = j->result;

    if (r == 0 && __atomic_load_n(&p->stopping, __ATOMIC_RELAXED))
        r = fetch_error_set(&j->err, -ECANCELED, "%s: cancelled", j->path);
    if (r == 0) {
        void *raw = j->buf;
        j->buf = NULL;
        j->cap = 0;
        j->err.msg[0] = '\0';
        /* a chunk no reader waits for yet may wait a little to be hashed
         * beside another (fetch_sha256_thread_patient), when another worker
         * can bring one */
        fetch_sha256_thread_patient(p->cfg.workers >= 2 &&
                                    __atomic_load_n(&j->prio, __ATOMIC_RELAXED) ==
                                        FETCH_PRIO_READAHEAD);
        r = j->decode(j->arg, raw, j->len, &data, &j->err);
        fetch_sha256_thread_patient(false);
        if (r == -EBADMSG && is_remote(p, j->store)) {
            /* bytes damaged in transit look like a corrupt chunk: fetch again */
            pthread_mutex_lock(&p->lock);
            p->decoding--;
            j->result = r;
            if (after_failure(p, j)) {
                pthread_mutex_unlock(&p->lock);
                return;
            }
            p->decoding++;
            pthread_mutex_unlock(&p->lock);
        }
    }
    pthread_mutex_lock(&p->lock);
    p->decoding--;
    p->st.done++;
    if (r < 0)
        p->st.failed++;
    else
        note_success(p, j);
    /* keep the easy handle (and its connection cache state) for a later job */
    if (j->easy) {
        struct fetch_job *shell = calloc(1, sizeof(*shell));
        if (shell) {
            shell->easy = j->easy;
            j->easy = NULL;
            q_push(&p->idle_easy, shell);
        }
    }
    pthread_mutex_unlock(&p->lock);

    j->done(j->arg, r, r == 0 ? &data : NULL, &j->err);
    if (j->easy)
        curl_easy_cleanup(j->easy);
    fetch_buf_free(j->buf);
    free(j->errbody);
    free(j->path);
    free(j);
}

/* Whether a transfer thread still runs (workers wait for its last
 * completions); pool lock held. */
static bool lanes_started(const struct fetch_pool *p)
{
    for (unsigned i = 0; i < p->nlanes; i++)
        if (p->lanes[i].started)
            return true;
    return false;
}

/*
 * Foreground workers decode demand and readahead jobs (and read them from
 * local stores); the background worker does the same for hydration at the
 * lowest CPU priority (nice 19), so that hydrating an image costs the readers
 * of a mount little latency.
 */
static void worker_loop(struct fetch_pool *p, bool bg)
{
    struct queue *dq = bg ? &p->decode_bg : &p->decode;
    struct queue *other = bg ? &p->decode : &p->decode_bg;
    int from = bg ? FETCH_PRIO_HYDRATE : FETCH_PRIO_DEMAND;
    int to = bg ? FETCH_PRIO_HYDRATE : FETCH_PRIO_READAHEAD;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct fetch_job *j = q_pop(dq);
        /* when stopping, every worker drains both queues: the jobs cancelled
         * by fetch_pool_stop land in both, and either kind may have gone */
        if (!j && p->stopping)
            j = q_pop(other);
        if (j) {
            j->in_bg = false;
            pthread_mutex_unlock(&p->lock);
            complete(p, j);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (!p->stopping && (j = take_queued(p, false, from, to))) {
            read_taken(p, j);
            continue;
        }
        if (!p->any_remote && p->retry.n) {
            /* local retries have no transfer thread to wake them */
            bool moved;
            long ms = due_retries(p, &moved);
            /* (a job moved back is taken now: requeue()'s wakeup went out
             * while this worker held the lock, so no wait would see it) */
            if (dq->n || moved || (ms < 0 && p->prio[0].n + p->prio[1].n + p->prio[2].n))
                continue;
            if (ms >= 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += (ms % 1000) * 1000000L;
                ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&p->work, &p->lock, &ts);
                continue;
            }
        }
        if (p->stopping && !dq->n && !other->n && p->running == 0 && !lanes_started(p))
            break;
        pthread_cond_wait(&p->work, &p->lock);
    }
    p->workers_running--;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    worker_loop(arg, false);
    return NULL;
}

/*
 * Readers ("lz-read") read local stores' objects for demand and readahead
 * jobs and hand them to the workers to decode, so that the next chunks are
 * being read while the workers verify the ones before: a worker that reads
 * a job itself waits for the disk before it can verify, and with a worker
 * per CPU no more reads than CPUs were in flight. Measured on this project's
 * VM (a cold --no-cache read of 4 MiB chunks, the datastore's files out of
 * the page cache, read with O_DIRECT; 4 alternating pairs of a test build
 * with and without two readers): 1,279-1,494 MB/s against 667-1,134; with
 * the files in the page cache, within the runs' spread (bench-ab.sh, the
 * median per pair of local --no-cache, filling and encrypted reads: 1.028,
 * 1.110, 1.005). Hydration's jobs stay with the background worker,
 * at its low priority; the workers still read local jobs when no reader has.
 */
static void *reader_main(void *arg)
{
    struct fetch_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct fetch_job *j = take_queued(p, false, FETCH_PRIO_DEMAND, FETCH_PRIO_READAHEAD);
        if (!j) {
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        read_taken(p, j);
    }
    p->workers_running--;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *bg_worker_main(void *arg)
{
    /* per thread on Linux; failure only costs the readers some latency */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    fetch_sha256_thread_solo(); /* no reader's chunk may wait on this thread */
    worker_loop(arg, true);
    return NULL;
}

/* ---- lifecycle ---- */

struct fetch_pool *fetch_pool_new(struct fetch_mirrors *mirrors,
                                  const struct fetch_pool_config *cfg)
{
    struct fetch_pool *p;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    bool any_local = false;

    if (!(p = calloc(1, sizeof(*p))))
        return NULL;
    p->mirrors = mirrors;
    p->nstores = fetch_mirrors_count(mirrors);
    p->cfg = *cfg;
    if (!p->cfg.concurrency)
        p->cfg.concurrency = 16;
    if (p->cfg.concurrency_small < p->cfg.concurrency)
        p->cfg.concurrency_small = p->cfg.concurrency;
    if (!p->cfg.workers)
        p->cfg.workers = ncpu > 0 ? (unsigned)ncpu : 2;
    if (p->cfg.readers > FETCH_POOL_READERS_MAX)
        p->cfg.readers = FETCH_POOL_READERS_MAX;
    if (!p->cfg.backoff_ms)
        p->cfg.backoff_ms = 100;
    p->rand_state = (unsigned)fetch_mono_us();
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < p->nstores; i++) {
        if (is_remote(p, i))
            p->any_remote = true;
        else
            any_local = true;
    }

    if (p->any_remote) {
        p->nlanes = ncpu > 1 ? LANES_MAX : 1;
        if (p->nlanes > p->cfg.concurrency)
            p->nlanes = p->cfg.concurrency;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            goto fail;
        for (unsigned i = 0; i < p->nlanes; i++) {
            struct lane *l = &p->lanes[i];
            l->p = p;
            /* the concurrency split evenly, the first lanes taking the rest */
            size_t big = p->cfg.concurrency / p->nlanes + (i < p->cfg.concurrency % p->nlanes);
            l->slots =
                p->cfg.concurrency_small / p->nlanes + (i < p->cfg.concurrency_small % p->nlanes);
            l->big_units = (l->slots + big - 1) / big;
            if (!(l->multi = curl_multi_init()))
                goto fail;
            curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
            curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)l->slots * 2);
            curl_multi_setopt(l->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)l->slots);
        }
        for (unsigned i = 0; i < p->nlanes; i++) {
            struct lane *l = &p->lanes[i];
            if (pthread_create(&l->thread, NULL, curl_main, l) != 0)
                goto fail;
            pthread_mutex_lock(&p->lock);
            l->started = true;
            pthread_mutex_unlock(&p->lock);
            (void)pthread_setname_np(l->thread, "lz-http"); /* top -H, perf */
        }
    }
    if (!(p->worker_threads = calloc(p->cfg.workers + 1 + p->cfg.readers, sizeof(pthread_t))))
        goto fail;
    for (unsigned i = 0; i <= p->cfg.workers; i++) {
        if (pthread_create(&p->worker_threads[i], NULL,
                           i < p->cfg.workers ? worker_main : bg_worker_main, p) != 0)
            goto fail;
        (void)pthread_setname_np(p->worker_threads[i],
                                 i < p->cfg.workers ? "lz-fetch" : "lz-fetch-bg");
        pthread_mutex_lock(&p->lock);
        p->workers_running++;
        p->nworkers++;
        pthread_mutex_unlock(&p->lock);
    }
    for (unsigned i = 0; any_local && i < p->cfg.readers; i++) {
        pthread_t *t = &p->worker_threads[p->nworkers];
        if (pthread_create(t, NULL, reader_main, p) != 0)
            goto fail;
        (void)pthread_setname_np(*t, "lz-read");
        pthread_mutex_lock(&p->lock);
        p->workers_running++;
        p->nworkers++;
        pthread_mutex_unlock(&p->lock);
    }
    return p;
fail:
    fetch_pool_free(p);
    return NULL;
}

static void cancel_queue(struct fetch_pool *p, struct queue *q)
{
    struct fetch_job *j;
    while ((j = q_pop(q))) {
        j->queued = false;
        j->result = fetch_error_set(&j->err, -ECANCELED, "%s: cancelled", j->path);
        to_decode(p, j);
    }
}

void fetch_pool_stop(struct fetch_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->stopping, true, __ATOMIC_RELAXED);
    for (int c = 0; c < FETCH_PRIO_COUNT; c++)
        cancel_queue(p, &p->prio[c]);
    cancel_queue(p, &p->retry);
    wake_curl(p);
    pthread_mutex_unlock(&p->lock);
}

void fetch_pool_free(struct fetch_pool *p)
{
    struct fetch_job *j;
    if (!p)
        return;
    fetch_pool_stop(p);

    for (unsigned i = 0; i < p->nlanes; i++) {
        struct lane *l = &p->lanes[i];
        if (!l->started)
            continue;
        /* running transfers are aborted: their jobs complete with -ECANCELED */
        pthread_mutex_lock(&p->lock);
        wake_curl(p);
        pthread_mutex_unlock(&p->lock);
        pthread_join(l->thread, NULL);
        pthread_mutex_lock(&p->lock);
        l->started = false;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nworkers; i++)
        pthread_join(p->worker_threads[i], NULL);
    free(p->worker_threads);
    while ((j = q_pop(&p->idle_easy))) {
        curl_easy_cleanup(j->easy);
        free(j);
    }
    for (unsigned i = 0; i < p->nlanes; i++)
        if (p->lanes[i].multi)
            curl_multi_cleanup(p->lanes[i].multi);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p);
}

int fetch_pool_submit(struct fetch_pool *p, const char *path, size_t max_len, size_t skew,
                      enum fetch_prio prio, fetch_tap_fn tap, fetch_decode_fn decode,
                      fetch_done_fn done, void *arg, struct fetch_job **ret_job)
{
    struct fetch_job *j = calloc(1, sizeof(*j)), *shell;
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return -ENOMEM;
    }
    j->max_len = max_len;
    j->skew = skew;
    j->prio = prio < FETCH_PRIO_COUNT ? prio : FETCH_PRIO_HYDRATE;
    j->tap = tap;
    j->decode = decode;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        /* no completion: the workers may be gone already (a local store's
         * leave once the last job is done), and nothing would run it */
        pthread_mutex_unlock(&p->lock);
        free(j->path);
        free(j);
        return -ECANCELED;
    }
    if ((shell = q_pop(&p->idle_easy))) {
        j->easy = shell->easy;
        free(shell);
    }
    j->store = fetch_mirrors_active(p->mirrors);
    j->queued = true;
    q_push(&p->prio[j->prio], j);
    /* before the unlock: once a worker has it, the completion may free the
     * caller's memory that @ret_job points into */
    *ret_job = j;
    if (is_remote(p, j->store))
        wake_curl(p);
    else
        pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void fetch_pool_upgrade(struct fetch_pool *p, struct fetch_job *j, enum fetch_prio prio)
{
    pthread_mutex_lock(&p->lock);
    if (prio < j->prio) {
        if (j->queued && q_remove(&p->prio[j->prio], j)) {
            q_push(&p->prio[prio], j);
            if (is_remote(p, j->store))
                wake_curl(p);
            else
                pthread_cond_broadcast(&p->work);
        } else if (j->in_bg && q_remove(&p->decode_bg, j)) {
            /* fetched for hydration, now wanted by a reader: decode it now */
            j->in_bg = false;
            q_push(&p->decode, j);
            pthread_cond_broadcast(&p->work);
        }
        /* a retry or a failover requeues it at the new class; a decode
         * running now keeps what it was told at its start (its patience,
         * fetch_sha256_thread_patient: a reader may wait out the rest of it) */
        __atomic_store_n(&j->prio, prio, __ATOMIC_RELAXED);
        if (atomic_load(&p->paused))
            wake_curl(p); /* a transfer paused for readers is one now */
    }
    pthread_mutex_unlock(&p->lock);
}

void fetch_pool_get_stats(struct fetch_pool *p, struct fetch_pool_stats *ret)
{
    pthread_mutex_lock(&p->lock);
    *ret = p->st;
    ret->bytes = atomic_load_explicit(&p->received, memory_order_relaxed);
    for (int c = 0; c < FETCH_PRIO_COUNT; c++)
        ret->queued[c] = p->prio[c].n;
    ret->inflight = p->running + p->retry.n;
    ret->decoding = p->decoding;
    ret->small_ttfb_us = p->small_ttfb_us;
    ret->small_limit = far_store(p) ? p->cfg.concurrency_small : p->cfg.concurrency;
    ret->active_store = fetch_mirrors_active(p->mirrors);
    ret->failovers = fetch_mirrors_failovers(p->mirrors);
    pthread_mutex_unlock(&p->lock);
}

uint64_t fetch_pool_latency_pct(const struct fetch_pool_stats *s, double pct)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < FETCH_LAT_BUCKETS; i++)
        total += s->latency_us[i];
    if (!total)
        return 0;
    for (int i = 0; i < FETCH_LAT_BUCKETS; i++) {
        double want = pct * (double)total / 100.0, lo = i ? (double)(1ull << i) : 0.0;
        double hi = (double)(2ull << i), v;
        if (!s->latency_us[i] || (double)(seen + s->latency_us[i]) < want) {
            seen += s->latency_us[i];
            continue;
        }
        /* [2^i, 2^(i+1)) µs: where in it, if its requests spread evenly */
        v = lo + (hi - lo) * (want - (double)seen) / (double)s->latency_us[i];
        if (s->latency_count && v > (double)s->latency_max_us)
            v = (double)s->latency_max_us;
        if (s->latency_count && v < (double)s->latency_min_us)
            v = (double)s->latency_min_us;
        return (uint64_t)v;
    }
    return s->latency_max_us;
}
