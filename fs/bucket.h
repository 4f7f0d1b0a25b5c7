/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A token bucket for a bandwidth cap (hydrate --bandwidth): @rate bytes per
 * second accrue, up to one second's worth (or one request, if larger), and a
 * request of @len bytes goes when that many are there. Time is passed in, so
 * that the arithmetic is tested without waiting. Not thread-safe: one bucket
 * per job, used under the job's lock.
 */
#pragma once

#include <stdint.h>
#include <time.h>

struct fs_bucket {
    uint64_t rate; /* bytes per second; 0: no cap */
    double tokens;
    struct timespec last;
};

/* An empty bucket of @rate bytes per second at time @now. */
void fs_bucket_init(struct fs_bucket *b, uint64_t rate, const struct timespec *now);

/*
 * At time @now, takes @len bytes and returns 0 if they may go, else leaves
 * the bucket as it is and returns how many nanoseconds to wait before asking
 * again (at least 1 ms, so a waiter does not spin).
 */
uint64_t fs_bucket_take(struct fs_bucket *b, uint32_t len, const struct timespec *now);
