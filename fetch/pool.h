/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fetcher pool: gets objects (chunks) from a store, or from the first
 * working one of several mirrors, many at once, and decodes them on worker
 * threads.
 *
 *  - One thread drives a curl multi handle for remote stores: up to
 *    @concurrency transfers in flight, connections kept alive and reused,
 *    HTTP/2 multiplexing where the server offers it. Local stores are read by
 *    the workers directly, and by @readers threads that hand what they read
 *    to the workers.
 *  - @workers threads run the caller's decode function (CRC, decompression,
 *    digest verification) and then its completion, outside any pool lock.
 *  - Three strict priority classes for the jobs waiting for a transfer or a
 *    read (decodes are first in, first out); a queued job can be upgraded.
 *  - Failures that fetch_remote_retryable() accepts are retried with
 *    exponential backoff and jitter, up to @retries times; then the next
 *    mirror is tried (fetch/mirrors.h), and if it works it becomes the
 *    active store for every later job. -ENOENT (404) and -EACCES fail at once.
 *  - The pool does no single-flight: one job per submit (fs/chunks.c keeps
 *    one job per chunk).
 * Thread-safe. Completions run on worker threads.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "error.h"
#include "mirrors.h"
#include "store.h"

/* Objects up to this size count as small (fetch_pool_config.concurrency_small). */
#define FETCH_SMALL_OBJECT ((size_t)1 << 20)

enum fetch_prio {
    FETCH_PRIO_DEMAND,    /* someone waits for it */
    FETCH_PRIO_READAHEAD, /* a sequential stream will want it soon */
    FETCH_PRIO_HYDRATE,   /* background hydration */
    FETCH_PRIO_COUNT,
};

#define FETCH_POOL_READERS_MAX 8u

struct fetch_pool_config {
    unsigned concurrency; /* transfers in flight (remote stores); default 16 */
    /* transfers in flight when they are all of small objects (at most
     * FETCH_SMALL_OBJECT bytes as stored) from a far store (the quickest of
     * the last 32 answers started 10 ms late or more): such a store answers
     * each request a round trip late, so small chunks need more of them in
     * flight to fill its link; a large one counts as concurrency_small /
     * concurrency small ones. 0: the same as concurrency (every transfer
     * counts as one). */
    unsigned concurrency_small;
    unsigned workers; /* decode threads; default: online CPUs */
    /* threads that only read local stores' objects for demand and readahead
     * jobs and hand them to the workers (pool.c, reader_main), so that reads
     * overlap decoding; 0: the workers read them, one at a time each. At
     * most FETCH_POOL_READERS_MAX; none where every store is remote. */
    unsigned readers;
    unsigned retries;    /* extra attempts per store; default 4 */
    unsigned backoff_ms; /* first retry delay, doubled each time, with jitter; default 100 */
    /* A job whose store is unavailable (connections refused, unreachable or
     * cut, answers 5xx or 429) is retried for at least this long after the
     * first of those failures, its attempts spent or not, at most
     * FETCH_OUTAGE_STEP_MS apart (remote_internal.h): a store that restarts
     * must not fail the reads of its few seconds away. 0: the attempts only. */
    unsigned outage_ms;
};

/*
 * Turns the raw object into the caller's bytes; runs on a worker thread.
 * @raw is malloc()ed and owned by the decoder from now on (free it or keep it
 * in *ret). Returns 0 or a negative errno with @err set; -EBADMSG from a
 * remote store is retried as a corrupted transfer.
 */
typedef int (*fetch_decode_fn)(void *arg, void *raw, size_t raw_len, fetch_data *ret,
                               fetch_error *err);

/*
 * Called exactly once per job, on a worker thread, with 0 and the decoded
 * bytes (owned by the callee from now on) or a negative errno and a message.
 */
typedef void (*fetch_done_fn)(void *arg, int r, fetch_data *data, const fetch_error *err);

/*
 * Optional: sees the object's bytes as a remote transfer receives them, on
 * the transfer thread, while they are still in the CPU's cache: bytes
 * [@off, @off + @n) have just been placed at @obj + @off (@obj holds the
 * object so far). Every attempt, a local read included, starts with a call
 * with @obj NULL and @off and @n 0, before any of its bytes; so when decode
 * runs, a tap that saw as many bytes as decode gets saw exactly those bytes.
 * It runs on a transfer thread, which moves many transfers: keep it to work
 * that decoding would otherwise do (it is not called for error pages).
 */
typedef void (*fetch_tap_fn)(void *arg, const uint8_t *obj, size_t off, size_t n);

struct fetch_pool;
struct fetch_job;

/*
 * @mirrors: the store and its mirrors (fetch/mirrors.h: which one new jobs
 * start on, and when a failure moves a job to the next); borrowed, it must
 * outlive the pool. NULL on ENOMEM or when a thread cannot start.
 */
struct fetch_pool *fetch_pool_new(struct fetch_mirrors *mirrors,
                                  const struct fetch_pool_config *cfg);
/*
 * Cancels queued and waiting jobs and aborts running transfers: their
 * completions run (soon, on the workers) with -ECANCELED. From now on
 * fetch_pool_submit() fails at once with -ECANCELED. Returns at once.
 * NULL-safe. Teardown order: stop whatever submits (hydration), then the
 * pool, then free it.
 */
void fetch_pool_stop(struct fetch_pool *p);
/* Stops (as above), waits for every completion, ends the threads. Nothing may
 * call into the pool once this has begun. NULL-safe. */
void fetch_pool_free(struct fetch_pool *p);

/*
 * Queues a GET of object @path (copied) of at most @max_len bytes (a larger
 * object fails with -EFBIG) at priority @prio. The object's bytes are placed
 * so that the address @skew bytes in is page-aligned where the buffer allows
 * (fetch_buf_alloc_skewed(): a header before a payload decoded in place); @tap (NULL: none) sees
 * them as they arrive. Returns 0 and *ret_job,
 * valid until its completion has returned (the completion may run before this returns); or -ENOMEM,
 * or -ECANCELED when the pool is stopped: then there is no completion and *ret_job is untouched.
 */
int fetch_pool_submit(struct fetch_pool *p, const char *path, size_t max_len, size_t skew,
                      enum fetch_prio prio, fetch_tap_fn tap, fetch_decode_fn decode,
                      fetch_done_fn done, void *arg, struct fetch_job **ret_job);

/* Moves a still-queued job up to @prio (never down). The caller guarantees
 * that the job's completion has not returned yet. */
void fetch_pool_upgrade(struct fetch_pool *p, struct fetch_job *job, enum fetch_prio prio);

/* Fetch latency histogram: bucket i counts requests that took [2^i, 2^(i+1)) µs. */
#define FETCH_LAT_BUCKETS 32

struct fetch_pool_stats {
    uint64_t queued[FETCH_PRIO_COUNT]; /* waiting for a transfer slot */
    uint64_t inflight;                 /* transfers running or waiting for a retry */
    uint64_t decoding;                 /* fetched, being decoded */
    uint64_t done, failed;             /* jobs completed, of which failed */
    uint64_t requests;                 /* attempts, retries included */
    uint64_t retries, failovers;
    uint64_t bytes; /* raw bytes received, as they arrive (of transfers in flight too) */
    uint64_t latency_us[FETCH_LAT_BUCKETS];
    uint64_t latency_sum_us;                 /* of every request in the histogram */
    uint64_t latency_count;                  /* requests in the histogram */
    uint64_t latency_min_us, latency_max_us; /* of those requests */
    size_t active_store;                     /* index into the pool's mirrors */
    /* small objects: the least time to the first byte of the last 32 (µs;
     * 0: none yet), and how many of their transfers may be in flight now
     * (concurrency_small where that is 10 ms or more, else concurrency) */
    uint64_t small_ttfb_us;
    unsigned small_limit;
};
void fetch_pool_get_stats(struct fetch_pool *p, struct fetch_pool_stats *ret);
/* Latency (µs) below which @pct percent of the requests finished, from @s's
 * histogram: interpolated inside its power-of-two bucket, and within the
 * fastest and slowest request seen (all requests alike: that latency). */
uint64_t fetch_pool_latency_pct(const struct fetch_pool_stats *s, double pct);
