/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fetch/view.c: offsets of partitions and logical volumes to image offsets,
 * holes and data through them, and the bounds check. The expected values
 * are worked out by hand from the layouts below. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch/view.h"

/* An image of 8 extents of 1 MiB; extents 2, 3 and 6 are holes. */
#define MIB (1024u * 1024)
static struct fetch_extent ext[8];
static struct fetch_image img = {.size = 8 * MIB, .stride = MIB, .count = 8, .extents = ext};

static void image_init(void)
{
    for (size_t i = 0; i < 8; i++)
        ext[i] = (struct fetch_extent){
            .offset = i * MIB, .length = MIB, .zero = i == 2 || i == 3 || i == 6};
}

/* A view striped over two areas of the image in 64 KiB units: stripe 0 at
 * 1 MiB, stripe 1 at 5 MiB, 1 MiB each (2 MiB in all), after a linear
 * segment of 512 KiB at 7.5 MiB, and a segment that cannot be read. */
static struct fetch_view *striped(void)
{
    struct fetch_view *v = calloc(1, sizeof(*v));
    v->count = 3;
    v->segs = calloc(3, sizeof(*v->segs));
    v->segs[0] = (struct fetch_view_seg){0, 512 * 1024, 1, 0, malloc(sizeof(uint64_t)), false};
    v->segs[0].base[0] = 7 * MIB + 512 * 1024;
    v->segs[1] = (struct fetch_view_seg){
        512 * 1024, 2 * MIB, 2, 64 * 1024, malloc(2 * sizeof(uint64_t)), false};
    v->segs[1].base[0] = 1 * MIB;
    v->segs[1].base[1] = 5 * MIB;
    v->segs[2] = (struct fetch_view_seg){512 * 1024 + 2 * MIB, 4096, 0, 0, NULL, false};
    v->size = 512 * 1024 + 2 * MIB + 4096;
    return v;
}

static void test_span(void **state)
{
    struct fetch_view *v;
    uint64_t at, run;
    (void)state;
    image_init();
    assert_int_equal(fetch_view_span(1536 * 1024, 4 * MIB, &v), 0);
    assert_int_equal(fetch_view_check(v, img.size), 0);
    assert_int_equal(fetch_view_map(v, 0, &at, &run), 0);
    assert_int_equal(at, 1536 * 1024);
    assert_int_equal(run, 4 * MIB);
    assert_int_equal(fetch_view_map(v, 100, &at, &run), 0);
    assert_int_equal(at, 1536 * 1024 + 100);
    assert_int_equal(run, 4 * MIB - 100);
    /* image holes at [2, 4) MiB: view [0.5, 2.5) MiB */
    assert_int_equal(fetch_view_seek(v, &img, 0, SEEK_HOLE), 512 * 1024);
    assert_int_equal(fetch_view_seek(v, &img, 512 * 1024, SEEK_DATA), 2560 * 1024);
    assert_int_equal(fetch_view_seek(v, &img, 4 * MIB, SEEK_DATA), -ENXIO);
    assert_int_equal(fetch_view_data_bytes(v, &img), 2 * MIB);
    /* one byte past the image */
    assert_int_equal(fetch_view_check(v, 1536 * 1024 + 4 * MIB - 1), -EINVAL);
    fetch_view_free(v);
}

static void test_striped(void **state)
{
    struct fetch_view *v = striped();
    uint64_t at, run;
    (void)state;
    image_init();
    assert_int_equal(fetch_view_check(v, img.size), 0);
    /* unit 0 of the striped segment: stripe 0, row 0 */
    assert_int_equal(fetch_view_map(v, 512 * 1024, &at, &run), 0);
    assert_int_equal(at, 1 * MIB);
    assert_int_equal(run, 64 * 1024);
    /* unit 1: stripe 1, row 0, 10 bytes in */
    assert_int_equal(fetch_view_map(v, 512 * 1024 + 64 * 1024 + 10, &at, &run), 0);
    assert_int_equal(at, 5 * MIB + 10);
    assert_int_equal(run, 64 * 1024 - 10);
    /* unit 5: stripe 1, row 2 */
    assert_int_equal(fetch_view_map(v, 512 * 1024 + 5 * 64 * 1024, &at, &run), 0);
    assert_int_equal(at, 5 * MIB + 2 * 64 * 1024);
    /* the linear start at 7.5 MiB */
    assert_int_equal(fetch_view_map(v, 1000, &at, &run), 0);
    assert_int_equal(at, 7 * MIB + 512 * 1024 + 1000);
    assert_int_equal(run, 512 * 1024 - 1000);
    /* the unreadable tail */
    assert_int_equal(fetch_view_map(v, v->size - 1, &at, &run), -EIO);
    assert_int_equal(run, 1);
    /* linear part: image 7.5-8 MiB is data; stripe 0 (1-2 MiB) is data,
     * stripe 1 (5-6 MiB) is data: nothing but data, then the tail */
    assert_int_equal(fetch_view_seek(v, &img, 0, SEEK_HOLE), (int64_t)v->size);
    assert_int_equal(fetch_view_data_bytes(v, &img), v->size);
    fetch_view_free(v);
}

static void test_striped_holes(void **state)
{
    struct fetch_view *v = striped();
    (void)state;
    image_init();
    /* stripe 1 on the image's hole at 2 MiB: every odd unit is a hole */
    v->segs[1].base[1] = 2 * MIB;
    assert_int_equal(fetch_view_check(v, img.size), 0);
    assert_int_equal(fetch_view_seek(v, &img, 0, SEEK_HOLE), 512 * 1024 + 64 * 1024);
    assert_int_equal(fetch_view_seek(v, &img, 512 * 1024 + 64 * 1024, SEEK_DATA),
                     512 * 1024 + 128 * 1024);
    assert_int_equal(fetch_view_seek(v, &img, 512 * 1024 + 100 * 1024, SEEK_HOLE),
                     512 * 1024 + 100 * 1024);
    assert_int_equal(fetch_view_data_bytes(v, &img), v->size - MIB);
    /* a stripe that leaves the image */
    v->segs[1].base[1] = 7 * MIB + 1;
    assert_int_equal(fetch_view_check(v, img.size), -EINVAL);
    fetch_view_free(v);
}

static void test_check_tiling(void **state)
{
    struct fetch_view *v = striped();
    (void)state;
    image_init();
    v->segs[1].start += 1; /* a gap */
    assert_int_equal(fetch_view_check(v, img.size), -EINVAL);
    v->segs[1].start -= 1;
    v->size += 1; /* segments short of the size */
    assert_int_equal(fetch_view_check(v, img.size), -EINVAL);
    v->size -= 1;
    v->segs[1].stripe_size = 0;
    assert_int_equal(fetch_view_check(v, img.size), -EINVAL);
    /* a partial row: stripe 0 would run past its area into the next */
    v->segs[1].stripe_size = 768 * 1024;
    assert_int_equal(fetch_view_check(v, img.size), -EINVAL);
    fetch_view_free(v);
}

/* SEEK_DATA over a large, almost empty striped volume looks at each stripe
 * once, not once per unit (a per-unit walk takes minutes here). */
static void test_seek_large_sparse(void **state)
{
    enum { N = 1 << 16 };
    const uint64_t chunk = 64 * 1024, half = (uint64_t)N / 2 * chunk;
    struct fetch_extent *big = calloc(N, sizeof(*big));
    struct fetch_image bi = {.size = N * chunk, .stride = chunk, .count = N, .extents = big};
    struct fetch_view *v = calloc(1, sizeof(*v));
    (void)state;
    for (size_t i = 0; i < N; i++)
        big[i] = (struct fetch_extent){
            .offset = i * chunk, .length = (uint32_t)chunk, .zero = i != N - 1 && i != 7};
    /* two stripes of 4 KiB units: the image's halves */
    v->count = 1;
    v->size = 2 * half;
    v->segs = calloc(1, sizeof(*v->segs));
    v->segs[0] = (struct fetch_view_seg){0, 2 * half, 2, 4096, malloc(2 * sizeof(uint64_t)), false};
    v->segs[0].base[0] = 0;
    v->segs[0].base[1] = half;
    assert_int_equal(fetch_view_check(v, bi.size), 0);
    /* extent 7 (stripe 0, image 448 KiB = row 112): view unit 224 */
    assert_int_equal(fetch_view_seek(v, &bi, 0, SEEK_DATA), 224 * 4096);
    /* extent 7 is rows 112-127 of stripe 0: view units 224, 226, ..., 254;
     * after them the last extent, at the end of stripe 1 */
    assert_int_equal(fetch_view_seek(v, &bi, 240 * 4096, SEEK_DATA), 240 * 4096);
    assert_int_equal(fetch_view_seek(v, &bi, 256 * 4096, SEEK_DATA),
                     (int64_t)((half - chunk) / 4096 * 2 + 1) * 4096);
    assert_int_equal(fetch_view_seek(v, &bi, 224 * 4096, SEEK_HOLE), 225 * 4096);
    assert_int_equal(fetch_view_data_bytes(v, &bi), 2 * chunk);
    fetch_view_free(v);
    free(big);
}

/* An LVM2 "zero" segment between a linear one (image data at 0) and one
 * that cannot be read: zeros, a hole, no image bytes. */
static void test_zero_segment(void **state)
{
    struct fetch_view *v = calloc(1, sizeof(*v));
    uint64_t at, run;
    (void)state;
    image_init();
    v->count = 3;
    v->segs = calloc(3, sizeof(*v->segs));
    v->segs[0] = (struct fetch_view_seg){0, MIB, 1, 0, malloc(sizeof(uint64_t)), false};
    v->segs[0].base[0] = 0; /* extent 0: data */
    v->segs[1] = (struct fetch_view_seg){MIB, 2 * MIB, 0, 0, NULL, true};
    v->segs[2] = (struct fetch_view_seg){3 * MIB, 4096, 0, 0, NULL, false};
    v->size = 3 * MIB + 4096;
    assert_int_equal(fetch_view_check(v, img.size), 0);
    assert_int_equal(fetch_view_map(v, MIB + 100, &at, &run), 1);
    assert_int_equal(run, 2 * MIB - 100);
    assert_int_equal(fetch_view_map(v, 3 * MIB, &at, &run), -EIO);
    /* a hole: data resumes at the unreadable segment (counted as data) */
    assert_int_equal(fetch_view_seek(v, &img, 0, SEEK_HOLE), MIB);
    assert_int_equal(fetch_view_seek(v, &img, MIB, SEEK_DATA), 3 * MIB);
    assert_int_equal(fetch_view_seek(v, &img, MIB + 5, SEEK_HOLE), MIB + 5);
    assert_int_equal(fetch_view_data_bytes(v, &img), MIB + 4096);
    fetch_view_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span),
        cmocka_unit_test(test_striped),
        cmocka_unit_test(test_striped_holes),
        cmocka_unit_test(test_check_tiling),
        cmocka_unit_test(test_seek_large_sparse),
        cmocka_unit_test(test_zero_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
