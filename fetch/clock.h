/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CLOCK_MONOTONIC readings for deadlines, ages and latencies within fetch/
 * (a step of the wall clock moves none of them).
 */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t fetch_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t fetch_mono_ms(void)
{
    return fetch_mono_us() / 1000u;
}
