/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/bucket.h (the token bucket of hydrate --bandwidth), with the
 * time given: no cap takes everything; an empty bucket makes the first
 * request wait its own length at the rate; tokens accrue with time up to one
 * second's worth (no burst after idling) or one request, if larger; the wait
 * returned is what is missing, and at least 1 ms; a clock that goes back
 * changes nothing; over a long run the bytes let through match the rate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/bucket.h"

static struct timespec at_ms(uint64_t ms)
{
    return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
}

static void no_cap(void **state)
{
    (void)state;
    struct fs_bucket b;
    struct timespec t = at_ms(5);
    fs_bucket_init(&b, 0, &t);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fs_bucket_take(&b, 4u << 20, &t), 0);
}

static void waits_and_accrues(void **state)
{
    (void)state;
    struct fs_bucket b;
    struct timespec t = at_ms(1000);
    uint64_t w;

    fs_bucket_init(&b, 1000000, &t); /* 1 MB/s, empty */
    /* 500 KB: half a second to wait (plus the 1 ms floor) */
    w = fs_bucket_take(&b, 500000, &t);
    assert_true(w >= 500000000ull && w <= 502000000ull);
    t = at_ms(1250);
    w = fs_bucket_take(&b, 500000, &t); /* 250 KB there: 250 ms more */
    assert_true(w >= 250000000ull && w <= 252000000ull);
    t = at_ms(1500);
    assert_int_equal(fs_bucket_take(&b, 500000, &t), 0);
    /* nothing left: even a byte waits at least 1 ms */
    w = fs_bucket_take(&b, 1, &t);
    assert_true(w >= 1000000ull && w <= 1100000ull);

    /* idle for a minute: one second's worth, not sixty */
    t = at_ms(61500);
    assert_int_equal(fs_bucket_take(&b, 1000000, &t), 0);
    assert_true(fs_bucket_take(&b, 1000, &t) > 0);

    /* a request larger than a second's worth can go once it has accrued */
    t = at_ms(70000);
    assert_int_equal(fs_bucket_take(&b, 4000000, &t), 0);
}

static void clock_going_back(void **state)
{
    (void)state;
    struct fs_bucket b;
    struct timespec t = at_ms(10000), back = at_ms(9000);
    fs_bucket_init(&b, 1000000, &t);
    assert_true(fs_bucket_take(&b, 100000, &back) > 0);
    t = at_ms(10100);
    assert_int_equal(fs_bucket_take(&b, 100000, &t), 0);
}

static void long_run_matches_rate(void **state)
{
    (void)state;
    struct fs_bucket b;
    uint64_t ms = 0, sent = 0;
    struct timespec t = at_ms(ms);
    fs_bucket_init(&b, 3000000, &t); /* 3 MB/s, 64 KiB requests */
    while (ms < 20000) {
        uint64_t w;
        t = at_ms(ms);
        w = fs_bucket_take(&b, 65536, &t);
        if (w == 0)
            sent += 65536;
        else
            ms += (w + 999999) / 1000000;
    }
    /* 20 s at 3 MB/s: 60 MB, within one request and the 1 ms floors */
    assert_true(sent <= 60000000ull + 65536);
    assert_true(sent >= 58000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_cap),
        cmocka_unit_test(waits_and_accrues),
        cmocka_unit_test(clock_going_back),
        cmocka_unit_test(long_run_matches_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
