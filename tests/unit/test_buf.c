/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fetch/buf: chunk buffers reused from slots, warm pages bounded, malloc fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch/buf.h"

/* Resident pages of [p, p + len) */
static size_t resident(const void *p, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t n = (len + ((uintptr_t)p - a) + (size_t)page - 1) / (size_t)page, count = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)a, n * (size_t)page, vec), 0);
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count * (size_t)page;
}

/* A buffer from a slot; skips the test where every buffer comes from malloc
 * (under AddressSanitizer). */
static uint8_t *slot_or_skip(size_t len, size_t skew)
{
    struct fetch_buf_stats st;
    uint8_t *p = fetch_buf_alloc_skewed(len, skew);
    assert_non_null(p);
    fetch_buf_get_stats(&st);
    if (st.slot_allocs == 0) {
        fetch_buf_free(p);
        skip();
    }
    return p;
}

static void test_reuse_and_bounds(void **state)
{
    struct fetch_buf_stats st;
    uint8_t *a, *b, *c;
    enum { N = (FETCH_BUF_WARM_MAX / (4u << 20)) + 3 };
    uint8_t *v[N];
    (void)state;

    /* a freed chunk buffer is the next one handed out: its pages are still mapped */
    a = fetch_buf_alloc(4u << 20);
    assert_non_null(a);
    fetch_buf_get_stats(&st);
    if (st.slot_allocs == 0) {
        fetch_buf_free(a);
        skip(); /* every buffer comes from malloc under AddressSanitizer */
    }
    memset(a, 1, 4u << 20);
    fetch_buf_free(a);
    b = fetch_buf_alloc(3u << 20);
    assert_ptr_equal(a, b);
    assert_true(resident(b, 3u << 20) == 3u << 20);
    /* growing within the slot keeps the pointer and the bytes */
    c = fetch_buf_realloc(b, FETCH_BUF_SLOT);
    assert_ptr_equal(c, b);
    assert_int_equal(c[12345], 1);
    /* beyond a slot: another buffer, same bytes */
    c = fetch_buf_realloc(c, FETCH_BUF_SLOT + 1);
    assert_non_null(c);
    assert_ptr_not_equal(c, b);
    assert_int_equal(c[(4u << 20) - 1], 1);
    fetch_buf_free(c);

    /* small and huge sizes come from malloc and are freed by fetch_buf_free */
    c = fetch_buf_alloc(100);
    assert_non_null(c);
    fetch_buf_free(c);
    c = malloc(4u << 20); /* a caller's malloc()ed buffer is accepted too */
    fetch_buf_free(c);
    fetch_buf_free(NULL);

    /* the pages kept by free buffers are bounded: the oldest give theirs back */
    for (int i = 0; i < N; i++) {
        v[i] = fetch_buf_alloc(4u << 20);
        assert_non_null(v[i]);
        memset(v[i], 2, 4u << 20);
    }
    for (int i = 0; i < N; i++)
        fetch_buf_free(v[i]);
    fetch_buf_get_stats(&st);
    assert_int_equal(st.slots_used, 0);
    assert_true(st.warm_bytes <= FETCH_BUF_WARM_MAX);
    assert_true(st.released >= 3);
    assert_int_equal(resident(v[0], 4u << 20), 0);            /* freed first: released */
    assert_int_equal(resident(v[N - 1], 4u << 20), 4u << 20); /* freed last: warm */
}

/* A buffer placed for a payload after a header: the payload page-aligned,
 * realloc within the slot keeps it so, free takes the interior pointer. */
static void test_skewed(void **state)
{
    struct fetch_buf_stats st;
    uint8_t *p, *q;
    (void)state;

    p = slot_or_skip((4u << 20) + 12, 12);
    assert_int_equal((uintptr_t)(p + 12) % FETCH_BUF_ALIGN, 0);
    memset(p, 9, (4u << 20) + 12);
    /* grows within what is left of the slot: same place */
    q = fetch_buf_realloc(p, FETCH_BUF_SLOT - (FETCH_BUF_ALIGN - 12));
    assert_ptr_equal(q, p);
    /* beyond it: a heap copy of the bytes */
    q = fetch_buf_realloc(p, FETCH_BUF_SLOT);
    assert_non_null(q);
    assert_ptr_not_equal(q, p);
    assert_int_equal(q[(4u << 20) + 11], 9);
    fetch_buf_free(q);
    /* the slot came back: no slot is in use */
    fetch_buf_get_stats(&st);
    assert_int_equal(st.slots_used, 0);
    /* a header larger than a page */
    p = fetch_buf_alloc_skewed(1u << 20, 5000);
    assert_non_null(p);
    assert_int_equal((uintptr_t)(p + 5000) % FETCH_BUF_ALIGN, 0);
    fetch_buf_free(p);
    /* an object that cannot fit once placed: from the heap */
    p = fetch_buf_alloc_skewed(FETCH_BUF_SLOT, 12);
    assert_non_null(p);
    fetch_buf_free(p);
}

/* Free slots keep their pages until they have been idle for the time
 * fetch_buf_trim() is given; a release per free cost a fault per page. */
static void test_trim_idle(void **state)
{
    struct fetch_buf_stats st;
    uint8_t *a, *b, *c;
    unsigned long long before;
    (void)state;

    a = fetch_buf_alloc(4u << 20);
    b = fetch_buf_alloc(4u << 20);
    assert_non_null(a);
    assert_non_null(b);
    fetch_buf_get_stats(&st);
    if (st.slot_allocs == 0) {
        fetch_buf_free(a);
        fetch_buf_free(b);
        skip();
    }
    memset(a, 3, 4u << 20);
    memset(b, 4, 4u << 20);
    fetch_buf_free(a);
    fetch_buf_free(b);
    fetch_buf_get_stats(&st);
    before = st.released;
    /* freed just now: kept, pages and all */
    assert_int_equal(fetch_buf_trim(60000), 0);
    assert_int_equal(resident(a, 4u << 20), 4u << 20);
    assert_int_equal(resident(b, 4u << 20), 4u << 20);
    usleep(30 * 1000);
    /* b is used again: only a stays idle */
    c = fetch_buf_alloc(4u << 20);
    assert_ptr_equal(c, b);
    assert_int_equal(c[100], 4);
    assert_true(fetch_buf_trim(20) >= 1);
    assert_int_equal(resident(a, 4u << 20), 0);
    assert_int_equal(resident(c, 4u << 20), 4u << 20);
    fetch_buf_get_stats(&st);
    assert_true(st.released >= before + 1);
    /* a slot given back holds no old bytes when it is used again */
    fetch_buf_free(c);
    usleep(5 * 1000);
    assert_true(fetch_buf_trim(1) >= 1);
    assert_int_equal(resident(c, 4u << 20), 0);
    c = fetch_buf_alloc(4u << 20);
    assert_non_null(c);
    assert_int_equal(c[100], 0);
    fetch_buf_free(c);
}

static long minor_faults(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_minflt;
}

/* A slot used for the first time costs a fault per huge page, not one per
 * 4 KiB (1024 for a 4 MiB chunk), where the kernel has huge pages. */
static void test_huge_pages(void **state)
{
    char mode[128] = "";
    uint8_t *p;
    long before, faults;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    (void)state;
    if (f) {
        if (!fgets(mode, sizeof(mode), f))
            mode[0] = 0;
        fclose(f);
    }
    if (!mode[0] || strstr(mode, "[never]"))
        skip(); /* no transparent huge pages on this kernel */

    /* every free slot gives its pages back: the next one is fresh */
    usleep(5 * 1000);
    fetch_buf_trim(1);
    p = slot_or_skip((4u << 20) + 12, 12);
    assert_int_equal(resident(p, (4u << 20) + 12), 0);
    before = minor_faults();
    memset(p, 5, (4u << 20) + 12);
    faults = minor_faults() - before;
    print_message("first touch of a 4 MiB chunk's slot: %ld faults\n", faults);
    /* two huge pages and the small tail page; a fallback to small pages for
     * one of the two (no free huge page) would still pass */
    assert_true(faults < 600);
    /* the header room past the huge pages stays in small pages: the slot
     * costs what it holds, not a third huge page */
    assert_int_equal(resident(p + 12 + (4u << 20) - 4096, 4096), 4096);
    assert_int_equal(resident(p + 12 + (4u << 20), 1u << 20), 0);
    fetch_buf_free(p);

    /* a buffer smaller than a huge page, in a fresh slot, takes small pages:
     * a casync chunk of 512 KiB holds 512 KiB, not 2 MiB */
    usleep(5 * 1000);
    fetch_buf_trim(1);
    p = fetch_buf_alloc(512u << 10);
    assert_non_null(p);
    assert_int_equal(resident(p, 2u << 20), 0);
    memset(p, 6, 512u << 10);
    assert_int_equal(resident(p, 2u << 20), 512u << 10);
    fetch_buf_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_bounds),
        cmocka_unit_test(test_trim_idle),
        cmocka_unit_test(test_skewed),
        cmocka_unit_test(test_huge_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
