/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "bucket.h"

void fs_bucket_init(struct fs_bucket *b, uint64_t rate, const struct timespec *now)
{
    b->rate = rate;
    b->tokens = 0;
    b->last = *now;
}

uint64_t fs_bucket_take(struct fs_bucket *b, uint32_t len, const struct timespec *now)
{
    double cap, dt;
    if (!b->rate)
        return 0;
    cap = (double)(b->rate > len ? b->rate : len);
    dt = (double)(now->tv_sec - b->last.tv_sec) + (double)(now->tv_nsec - b->last.tv_nsec) / 1e9;
    if (dt > 0) {
        b->tokens += dt * (double)b->rate;
        b->last = *now;
    }
    if (b->tokens > cap)
        b->tokens = cap;
    if (b->tokens >= len) {
        b->tokens -= len;
        return 0;
    }
    return (uint64_t)(((double)len - b->tokens) / (double)b->rate * 1e9) + 1000000;
}
