/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/image.h and fetch_sha256_zeros (zero chunks, extents, SEEK_DATA/HOLE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/digest.h"
#include "fetch/fidx.h"
#include "fetch/image.h"
#include "fixtures.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)

/* pbs.md §6 */
static const struct {
    uint64_t len;
    const char *hex;
} zero_table[] = {
    {4 * MIB, "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"},
    {2 * MIB, "5647f05ec18958947d32874eeb788fa396a05d0bab7c1b71f112ceb7e9b31eee"},
    {1 * MIB, "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"},
    {512 * KIB, "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"},
    {256 * KIB, "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90"},
    {128 * KIB, "fa43239bcee7b97ca62f007cc68487560a39e19f74f3dde7486db3f98df8e471"},
    {64 * KIB, "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31"},
};

/* SHA-256 of @len zero bytes, with OpenSSL */
static void ref_zeros(uint64_t len, uint8_t out[32])
{
    uint8_t *z = calloc(1, len ? (size_t)len : 1);
    assert_non_null(z);
    fx_sha256(z, (size_t)len, out);
    free(z);
}

static void zero_digest_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(zero_table) / sizeof(zero_table[0]); i++) {
        uint8_t d[32], again[32];
        char hex[65];
        assert_int_equal(fetch_sha256_zeros(zero_table[i].len, d), 0);
        fx_hex(d, 32, hex);
        if (strcmp(hex, zero_table[i].hex) != 0)
            fail_msg("zeros(%llu) = %s, pbs.md §6 says %s", (unsigned long long)zero_table[i].len,
                     hex, zero_table[i].hex);
        /* the table itself agrees with OpenSSL */
        ref_zeros(zero_table[i].len, again);
        assert_memory_equal(d, again, 32);
        /* memoised result is the same */
        memset(again, 0, 32);
        assert_int_equal(fetch_sha256_zeros(zero_table[i].len, again), 0);
        assert_memory_equal(d, again, 32);
    }
}

static void zero_digest_odd_lengths(void **state)
{
    static const uint64_t lens[] = {0, 1, 1000, 65535, 65537, 100000, 540672, 3 * MIB + 7};
    (void)state;
    /* more lengths than any memo table holds, twice */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            uint8_t d[32], ref[32];
            assert_int_equal(fetch_sha256_zeros(lens[i], d), 0);
            ref_zeros(lens[i], ref);
            if (memcmp(d, ref, 32) != 0)
                fail_msg("zeros(%llu) wrong (round %d)", (unsigned long long)lens[i], round);
        }
        for (uint64_t l = 1; l <= 40; l++) {
            uint8_t d[32], ref[32];
            assert_int_equal(fetch_sha256_zeros(l * 4099, d), 0);
            ref_zeros(l * 4099, ref);
            assert_memory_equal(d, ref, 32);
        }
    }
}

static void sha256_helpers(void **state)
{
    const size_t n = 300000;
    uint8_t *data = fx_malloc(n), ref[32], d[32];
    fetch_sha256_ctx *c;
    (void)state;
    fx_fill_random(data, n, 77);
    fx_sha256(data, n, ref);
    assert_int_equal(fetch_sha256(data, n, d), 0);
    assert_memory_equal(d, ref, 32);
    c = fetch_sha256_new();
    assert_non_null(c);
    assert_int_equal(fetch_sha256_update(c, data, 1), 0);
    assert_int_equal(fetch_sha256_update(c, data + 1, 70000), 0);
    assert_int_equal(fetch_sha256_update(c, data + 70001, 0), 0);
    assert_int_equal(fetch_sha256_update(c, data + 70001, n - 70001), 0);
    memset(d, 0, 32);
    assert_int_equal(fetch_sha256_final(c, d), 0);
    assert_memory_equal(d, ref, 32);
    fetch_sha256_free(c);
    fetch_sha256_free(NULL);
    free(data);
}

/*
 * Builds an image through a real .fidx: @pattern has one letter per chunk,
 * 'D' data (digest of distinct bytes) or 'Z' zeros (digest of the chunk's
 * length of zeros, computed with OpenSSL); the last chunk is @last_len long.
 */
static struct fetch_image *build(uint64_t cs, const char *pattern, uint64_t last_len,
                                 uint8_t **ret_digests)
{
    size_t n = strlen(pattern), len;
    uint8_t *dg = fx_malloc(32 * (n ? n : 1)), *file;
    struct fetch_fidx *idx = NULL;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    uint64_t size = n ? (n - 1) * cs + last_len : 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t l = i + 1 == n ? last_len : cs;
        if (pattern[i] == 'Z') {
            ref_zeros(l, dg + 32 * i);
        } else {
            uint8_t seed[16];
            fx_fill_random(seed, sizeof(seed), i + 1000);
            fx_sha256(seed, sizeof(seed), dg + 32 * i);
        }
    }
    file = fx_fidx(size, cs, dg, n, &len);
    if (fetch_fidx_parse(file, len, &idx, &err) != 0)
        fail_msg("fixture index rejected: %s", err.msg);
    if (fetch_image_from_fidx(idx, NULL, &img, &err) != 0)
        fail_msg("fetch_image_from_fidx: %s", err.msg);
    fetch_fidx_free(idx);
    if (ret_digests)
        *ret_digests = dg;
    else
        free(dg);
    return img;
}

static void check_extents(const struct fetch_image *img, uint64_t cs, const char *pattern,
                          uint64_t last_len, const uint8_t *dg)
{
    size_t n = strlen(pattern);
    uint64_t data = 0;
    size_t zeros = 0;
    assert_int_equal(img->count, n);
    assert_int_equal(img->size, n ? (n - 1) * cs + last_len : 0);
    assert_int_equal(img->stride, cs);
    for (size_t i = 0; i < n; i++) {
        const struct fetch_extent *e = &img->extents[i];
        uint64_t l = i + 1 == n ? last_len : cs;
        assert_int_equal(e->offset, i * cs);
        assert_int_equal(e->length, l);
        if (e->zero != (pattern[i] == 'Z'))
            fail_msg("extent %zu: zero=%d, pattern %s", i, e->zero, pattern);
        if (dg)
            assert_memory_equal(e->digest, dg + 32 * i, 32);
        if (pattern[i] == 'Z')
            zeros++;
        else
            data += l;
    }
    assert_int_equal(img->data_bytes, data);
    assert_int_equal(img->zero_count, zeros);
}

static void zero_detection_4mib(void **state)
{
    uint8_t *dg = NULL;
    struct fetch_image *img = build(4 * MIB, "ZDZZDZ", 12345, &dg);
    uint8_t bb9f[32];
    (void)state;
    fx_unhex(zero_table[0].hex, bb9f, 32);
    assert_memory_equal(dg, bb9f, 32); /* the fixture used the §6 digest */
    check_extents(img, 4 * MIB, "ZDZZDZ", 12345, dg);
    free(dg);
    fetch_image_free(img);
}

static void zero_detection_64kib(void **state)
{
    uint8_t *dg = NULL;
    struct fetch_image *img = build(64 * KIB, "DZZDZ", 1000, &dg);
    uint8_t de2f[32];
    (void)state;
    fx_unhex(zero_table[6].hex, de2f, 32);
    assert_memory_equal(dg + 32, de2f, 32);
    check_extents(img, 64 * KIB, "DZZDZ", 1000, dg);
    assert_int_equal(img->data_bytes, 2 * 64 * KIB);
    assert_int_equal(img->zero_count, 3);
    free(dg);
    fetch_image_free(img);
}

static void zero_detection_every_chunk_size(void **state)
{
    (void)state;
    for (uint64_t cs = 64 * KIB; cs <= 4 * MIB; cs *= 2) {
        struct fetch_image *img = build(cs, "ZDZ", cs, NULL); /* full last chunk */
        check_extents(img, cs, "ZDZ", cs, NULL);
        fetch_image_free(img);
        img = build(cs, "DZZ", cs / 2 + 3, NULL); /* short all-zero last chunk */
        check_extents(img, cs, "DZZ", cs / 2 + 3, NULL);
        fetch_image_free(img);
    }
}

/* A zero digest of another length is data: it cannot decode to this extent. */
static void zero_digest_of_wrong_length_is_data(void **state)
{
    const uint64_t cs = 64 * KIB;
    uint8_t dg[3 * 32];
    size_t len;
    uint8_t *file;
    struct fetch_fidx *idx = NULL;
    struct fetch_image *img = NULL;
    (void)state;
    ref_zeros(2 * cs, dg);      /* zero digest of 128 KiB in a 64 KiB index */
    ref_zeros(cs / 2, dg + 32); /* zero digest of a short chunk, not last */
    ref_zeros(100, dg + 64);    /* last chunk is 200 bytes, digest of 100 zeros */
    file = fx_fidx(2 * cs + 200, cs, dg, 3, &len);
    assert_int_equal(fetch_fidx_parse(file, len, &idx, NULL), 0);
    assert_int_equal(fetch_image_from_fidx(idx, NULL, &img, NULL), 0);
    assert_false(img->extents[0].zero);
    assert_false(img->extents[1].zero);
    assert_false(img->extents[2].zero);
    assert_int_equal(img->zero_count, 0);
    assert_int_equal(img->data_bytes, 2 * cs + 200);
    fetch_image_free(img);
    fetch_fidx_free(idx);
}

static void find(void **state)
{
    const uint64_t cs = 64 * KIB;
    struct fetch_image *img = build(cs, "DZZDZ", 1000, NULL);
    (void)state;
    assert_int_equal(fetch_image_find(img, 0), 0);
    assert_int_equal(fetch_image_find(img, 1), 0);
    assert_int_equal(fetch_image_find(img, cs - 1), 0);
    assert_int_equal(fetch_image_find(img, cs), 1);
    assert_int_equal(fetch_image_find(img, 2 * cs + 17), 2);
    assert_int_equal(fetch_image_find(img, 4 * cs - 1), 3);
    assert_int_equal(fetch_image_find(img, 4 * cs), 4);
    assert_int_equal(fetch_image_find(img, img->size - 1), 4);
    /* every offset maps into its extent */
    for (uint64_t off = 0; off < img->size; off += 4093) {
        size_t i = fetch_image_find(img, off);
        assert_true(i < img->count);
        assert_true(img->extents[i].offset <= off);
        assert_true(off < img->extents[i].offset + img->extents[i].length);
    }
    fetch_image_free(img);
}

struct seek_case {
    uint64_t offset;
    int whence;
    int64_t want;
};

static void run_seeks(const struct fetch_image *img, const struct seek_case *c, size_t n,
                      const char *layout)
{
    for (size_t i = 0; i < n; i++) {
        int64_t got = fetch_image_seek(img, c[i].offset, c[i].whence);
        if (got != c[i].want)
            fail_msg("%s: %s from %llu = %lld, expected %lld", layout,
                     c[i].whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE",
                     (unsigned long long)c[i].offset, (long long)got, (long long)c[i].want);
    }
}

/* data, zero, zero, data, zero (short last chunk) */
static void seek_mixed(void **state)
{
    const int64_t cs = 64 * KIB, last = 1000, size = 4 * cs + last;
    struct fetch_image *img = build((uint64_t)cs, "DZZDZ", (uint64_t)last, NULL);
    const struct seek_case c[] = {
        {0, SEEK_DATA, 0},
        {100, SEEK_DATA, 100},
        {(uint64_t)cs - 1, SEEK_DATA, cs - 1},
        {(uint64_t)cs, SEEK_DATA, 3 * cs},
        {(uint64_t)cs + 5, SEEK_DATA, 3 * cs},
        {2 * (uint64_t)cs, SEEK_DATA, 3 * cs},
        {3 * (uint64_t)cs - 1, SEEK_DATA, 3 * cs},
        {3 * (uint64_t)cs, SEEK_DATA, 3 * cs},
        {3 * (uint64_t)cs + 7, SEEK_DATA, 3 * cs + 7},
        {4 * (uint64_t)cs - 1, SEEK_DATA, 4 * cs - 1},
        {4 * (uint64_t)cs, SEEK_DATA, -ENXIO}, /* only the trailing hole is left */
        {(uint64_t)size - 1, SEEK_DATA, -ENXIO},
        {(uint64_t)size, SEEK_DATA, -ENXIO},
        {(uint64_t)size + 1, SEEK_DATA, -ENXIO},
        {UINT64_MAX, SEEK_DATA, -ENXIO},

        {0, SEEK_HOLE, cs},
        {100, SEEK_HOLE, cs},
        {(uint64_t)cs - 1, SEEK_HOLE, cs},
        {(uint64_t)cs, SEEK_HOLE, cs},
        {(uint64_t)cs + 5, SEEK_HOLE, cs + 5},
        {3 * (uint64_t)cs - 1, SEEK_HOLE, 3 * cs - 1},
        {3 * (uint64_t)cs, SEEK_HOLE, 4 * cs},
        {3 * (uint64_t)cs + 7, SEEK_HOLE, 4 * cs},
        {4 * (uint64_t)cs, SEEK_HOLE, 4 * cs},
        {4 * (uint64_t)cs + 1, SEEK_HOLE, 4 * cs + 1},
        {(uint64_t)size - 1, SEEK_HOLE, size - 1},
        {(uint64_t)size, SEEK_HOLE, -ENXIO},
        {(uint64_t)size + 4096, SEEK_HOLE, -ENXIO},
    };
    (void)state;
    run_seeks(img, c, sizeof(c) / sizeof(c[0]), "DZZDZ");
    fetch_image_free(img);
}

/* data to the end: the only hole is the virtual one at EOF */
static void seek_all_data(void **state)
{
    const int64_t cs = 128 * KIB, last = 77, size = 2 * cs + last;
    struct fetch_image *img = build((uint64_t)cs, "DDD", (uint64_t)last, NULL);
    const struct seek_case c[] = {
        {0, SEEK_HOLE, size},
        {(uint64_t)cs, SEEK_HOLE, size},
        {(uint64_t)size - 1, SEEK_HOLE, size},
        {(uint64_t)size, SEEK_HOLE, -ENXIO},
        {0, SEEK_DATA, 0},
        {(uint64_t)cs + 3, SEEK_DATA, cs + 3},
        {(uint64_t)size - 1, SEEK_DATA, size - 1},
        {(uint64_t)size, SEEK_DATA, -ENXIO},
    };
    (void)state;
    assert_int_equal(img->zero_count, 0);
    assert_int_equal(img->data_bytes, (uint64_t)size);
    run_seeks(img, c, sizeof(c) / sizeof(c[0]), "DDD");
    fetch_image_free(img);
}

static void seek_all_zero(void **state)
{
    const int64_t cs = 4 * MIB, size = 3 * cs;
    struct fetch_image *img = build((uint64_t)cs, "ZZZ", (uint64_t)cs, NULL);
    const struct seek_case c[] = {
        {0, SEEK_DATA, -ENXIO},
        {(uint64_t)cs + 9, SEEK_DATA, -ENXIO},
        {(uint64_t)size - 1, SEEK_DATA, -ENXIO},
        {0, SEEK_HOLE, 0},
        {(uint64_t)cs + 9, SEEK_HOLE, cs + 9},
        {(uint64_t)size - 1, SEEK_HOLE, size - 1},
        {(uint64_t)size, SEEK_HOLE, -ENXIO},
    };
    (void)state;
    assert_int_equal(img->data_bytes, 0);
    assert_int_equal(img->zero_count, 3);
    run_seeks(img, c, sizeof(c) / sizeof(c[0]), "ZZZ");
    fetch_image_free(img);
}

/* a full-length zero chunk at the end: trailing hole up to EOF */
static void seek_trailing_hole(void **state)
{
    const int64_t cs = 64 * KIB, size = 3 * cs;
    struct fetch_image *img = build((uint64_t)cs, "ZDZ", (uint64_t)cs, NULL);
    const struct seek_case c[] = {
        {0, SEEK_DATA, cs},
        {0, SEEK_HOLE, 0},
        {(uint64_t)cs, SEEK_HOLE, 2 * cs},
        {(uint64_t)cs + 1, SEEK_HOLE, 2 * cs},
        {2 * (uint64_t)cs, SEEK_DATA, -ENXIO},
        {(uint64_t)size - 1, SEEK_HOLE, size - 1},
    };
    (void)state;
    run_seeks(img, c, sizeof(c) / sizeof(c[0]), "ZDZ");
    fetch_image_free(img);
}

static void empty_image(void **state)
{
    struct fetch_image *img = build(4 * MIB, "", 0, NULL);
    (void)state;
    assert_int_equal(img->size, 0);
    assert_int_equal(img->count, 0);
    assert_int_equal(img->data_bytes, 0);
    assert_int_equal(img->zero_count, 0);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_DATA), -ENXIO);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_HOLE), -ENXIO);
    fetch_image_free(img);
    fetch_image_free(NULL);
}

/* 1 TiB of zeros with one data chunk far beyond 4 GiB: 64-bit offsets throughout */
static void seek_large_image(void **state)
{
    const uint64_t cs = 4 * MIB, n = (1ull << 40) / cs, hit = 200000;
    uint8_t *dg = fx_malloc(32 * n), *file;
    struct fetch_fidx *idx = NULL;
    struct fetch_image *img = NULL;
    size_t len;
    (void)state;
    fx_unhex(zero_table[0].hex, dg, 32);
    for (uint64_t i = 1; i < n; i++)
        memcpy(dg + 32 * i, dg, 32);
    fx_sha256("data", 4, dg + 32 * hit);
    file = fx_fidx(n * cs, cs, dg, n, &len);
    assert_int_equal(fetch_fidx_parse(file, len, &idx, NULL), 0);
    assert_int_equal(fetch_image_from_fidx(idx, NULL, &img, NULL), 0);
    assert_int_equal(img->count, n);
    assert_int_equal(img->zero_count, n - 1);
    assert_int_equal(img->data_bytes, cs);
    assert_int_equal(img->extents[hit].offset, hit * cs);
    assert_int_equal(fetch_image_find(img, hit * cs + 5), hit);
    assert_int_equal(fetch_image_find(img, (1ull << 40) - 1), n - 1);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_DATA), (int64_t)(hit * cs));
    assert_int_equal(fetch_image_seek(img, hit * cs + 1, SEEK_DATA), (int64_t)(hit * cs + 1));
    assert_int_equal(fetch_image_seek(img, hit * cs, SEEK_HOLE), (int64_t)((hit + 1) * cs));
    assert_int_equal(fetch_image_seek(img, (hit + 1) * cs, SEEK_DATA), -ENXIO);
    assert_int_equal(fetch_image_seek(img, (1ull << 40) - 1, SEEK_HOLE),
                     (int64_t)((1ull << 40) - 1));
    fetch_image_free(img);
    fetch_fidx_free(idx);
    free(dg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zero_digest_table),
        cmocka_unit_test(zero_digest_odd_lengths),
        cmocka_unit_test(sha256_helpers),
        cmocka_unit_test(zero_detection_4mib),
        cmocka_unit_test(zero_detection_64kib),
        cmocka_unit_test(zero_detection_every_chunk_size),
        cmocka_unit_test(zero_digest_of_wrong_length_is_data),
        cmocka_unit_test(find),
        cmocka_unit_test(seek_mixed),
        cmocka_unit_test(seek_all_data),
        cmocka_unit_test(seek_all_zero),
        cmocka_unit_test(seek_trailing_hole),
        cmocka_unit_test(empty_image),
        cmocka_unit_test(seek_large_image),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
