/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fetcher pool replaced by the test (link with -Wl,--wrap=fetch_pool_submit
 * -Wl,--wrap=fetch_pool_upgrade): each submitted job is recorded, and the
 * test completes it itself, in any order, as a pool worker would (decode,
 * then done). Jobs may be submitted from other threads; the test's thread
 * completes them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "fetch/pool.h"

#define FAKE_POOL_MAX_JOBS 64

struct fake_job {
    char path[512];
    size_t max_len;
    enum fetch_prio prio;
    fetch_decode_fn decode;
    fetch_done_fn done;
    void *arg;
    bool completed;
};

extern struct fake_job fake_jobs[FAKE_POOL_MAX_JOBS];
extern size_t fake_njobs;
extern int fake_upgrades;
extern enum fetch_prio fake_upgraded_to;

/* A pool pointer that is never dereferenced. */
struct fetch_pool *fake_pool(void);
/* Forgets every job (all must have completed). */
void fake_pool_reset(void);
/* Completes job @i with @object (copied) as its fetched bytes: decode, then done. */
void fake_pool_complete(size_t i, const void *object, size_t len);
/* Completes job @i with the fetch error @r. */
void fake_pool_fail(size_t i, int r);
/* The job whose path ends in @suffix, or -1. */
long fake_pool_find(const char *suffix);
/* The oldest job not completed yet, or -1. */
long fake_pool_next_pending(void);
