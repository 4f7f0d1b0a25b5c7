/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hydration: fetching every non-zero chunk of an image into the disk cache in
 * the background (`lazyimg hydrate`, `mount --hydrate`).
 *
 *  - One job per image; one worker thread runs the jobs one after another,
 *    in the order they were added.
 *  - A job walks the image's distinct non-zero chunks in offset order: a chunk
 *    already in the disk cache counts as done at once (so a rerun fetches
 *    only what is missing); the others are asked for through fs_chunks_cache()
 *    at FETCH_PRIO_HYDRATE (readers always go first), at most
 *    FS_HYDRATE_OUTSTANDING chunks and FS_HYDRATE_OUTSTANDING_BYTES at a
 *    time (many small casync chunks, or a few large PBS ones), paced by a
 *    token bucket when the job
 *    has a bandwidth cap (counted in chunk bytes, which bounds the bytes on
 *    the wire: chunks travel compressed or as is).
 *  - Each completion carries the disk cache's outcome: a chunk it refused
 *    (full filesystem, no room in its budget, a stalled writer) is counted in
 *    the job's "uncached" bytes with the first reason. At the end the inserts
 *    are committed and the chunks taken are looked up once: those evicted
 *    again (a budget smaller than the image) are counted there too.
 *  - Needs a disk cache: without one jobs are refused.
 * Thread-safe: a mutex guards the job list and every job's counters;
 * chunk completions (on pool workers) take it briefly.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "fs.h"

#define FS_HYDRATE_OUTSTANDING 512
#define FS_HYDRATE_OUTSTANDING_BYTES (32 * FS_READAHEAD_UNIT)

struct fs_hydrator;

enum fs_hydrate_state {
    FS_HYDRATE_QUEUED,
    FS_HYDRATE_RUNNING,
    FS_HYDRATE_DONE, /* finished, failed or cancelled: see the counters */
};

struct fs_hydrate_progress {
    uint64_t job;
    enum fs_hydrate_state state;
    bool cancelled;
    uint64_t total;           /* data bytes of the image (non-zero extents) */
    uint64_t done;            /* of which found in the cache or fetched */
    uint64_t fetched;         /* chunk bytes fetched from the store by this job */
    uint64_t errors;          /* chunks that could not be fetched */
    uint64_t uncached;        /* data bytes not in the cache at the end */
    uint64_t uncached_chunks; /* ... in that many distinct chunks */
    int uncached_why;         /* the first reason (-errno; -ESTALE evicted again) */
    double elapsed_s;         /* since the job started (0 while queued) */
    char path[256];           /* the image below the mountpoint */
    char error[320];          /* first error, "" if none */
};

/* A hydrator for @ctx (borrowed). NULL on ENOMEM or when its thread cannot start. */
struct fs_hydrator *fs_hydrator_new(struct fs_ctx *ctx);
/*
 * Asks the running job and the thread to stop; returns at once. From now on
 * no new chunk is asked for once the thread looks again (it may be inside one
 * fs_chunks_want() call). NULL-safe.
 */
void fs_hydrator_stop(struct fs_hydrator *h);

/*
 * Stops (as above) and waits up to @timeout_ms for the thread, which waits
 * for the completions of its outstanding chunks: stop the fetcher pool right
 * after fs_hydrator_stop() so that they come at once. Queued jobs are dropped.
 * Returns 0 once @h is freed, or -ETIMEDOUT when the thread did not end in
 * time (e.g. stuck loading an image index from a stalled server): then @h is
 * left allocated and the thread running; it still uses the tree and its
 * stores, the disk cache, the chunks and, in a short window, the pool, so the
 * caller must not free those (at unmount: sync the disk cache and _exit).
 * NULL-safe (0).
 */
int fs_hydrator_free(struct fs_hydrator *h, unsigned timeout_ms);

/*
 * Queues a job for image node @n with a cap of @bandwidth bytes per second
 * (0: none). When a job for @n is already queued or running, that job's id
 * is returned instead (and the job has one more requester). 0 and *ret_job, or -ENOTSUP (no disk
 * cache), -EINVAL
 * (@n is not an image), -ENOMEM; *ret_msg (static text) says why.
 */
int fs_hydrator_add(struct fs_hydrator *h, struct fs_node *n, uint64_t bandwidth, uint64_t *ret_job,
                    const char **ret_msg);

/*
 * Queues a job for every image of the tree (mount --hydrate), run one after
 * another, and logs how many. 0, or -ENOTSUP without a disk cache (logged),
 * -ENOMEM.
 */
int fs_hydrator_add_all(struct fs_hydrator *h, uint64_t bandwidth);

/* Asks job @job to stop (its outstanding chunks still complete): a job that
 * several asked for (fs_hydrator_add) stops once each has cancelled; a
 * finished one is left as it is. 0 or -ENOENT. */
int fs_hydrator_cancel(struct fs_hydrator *h, uint64_t job);

/* Progress of job @job. 0 or -ENOENT (unknown, or forgotten: the newest
 * finished jobs are kept, at least 256). */
int fs_hydrator_progress(struct fs_hydrator *h, uint64_t job, struct fs_hydrate_progress *ret);

/* Progress of the newest job of node @n. 0 or -ENOENT. */
int fs_hydrator_node_progress(struct fs_hydrator *h, const struct fs_node *n,
                              struct fs_hydrate_progress *ret);

/*
 * The JSON form: {"job","state":"queued"|"running"|"done","cancelled",
 * "finished","total","done","fetched","errors","uncached","uncached_chunks",
 * "elapsed_s","path"}, plus "error" (the first error) and "warning" (data not
 * cached) when there are any. NULL on ENOMEM.
 */
json_object *fs_hydrate_progress_json(const struct fs_hydrate_progress *p);
