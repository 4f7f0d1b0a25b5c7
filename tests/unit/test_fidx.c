/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/fidx.h (fixed index parsing and validation, pbs.md §3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/fidx.h"
#include "fixtures.h"

/* @n distinct pseudo digests */
static uint8_t *digests(size_t n, uint64_t seed)
{
    uint8_t *d = fx_malloc(32 * (n ? n : 1));
    fx_fill_random(d, 32 * n, seed);
    return d;
}

/* Parses a copy of @file; the parser takes ownership of its buffer. */
static int parse(const uint8_t *file, size_t len, struct fetch_fidx **ret, fetch_error *err)
{
    if (err)
        err->msg[0] = '\0';
    return fetch_fidx_parse(fx_memdup(file, len), len, ret, err);
}

static void expect_bad(const uint8_t *file, size_t len, const char *what)
{
    struct fetch_fidx *idx = NULL;
    fetch_error err;
    int r = parse(file, len, &idx, &err);
    if (r != -EBADMSG)
        fail_msg("%s: got %d, expected -EBADMSG", what, r);
    if (!err.msg[0])
        fail_msg("%s: no error message", what);
    assert_null(idx); /* untouched on failure */
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static void check_valid(uint64_t size, uint64_t cs)
{
    size_t n = (size_t)ceil_div(size, cs), len;
    uint8_t *dg = digests(n, size ^ cs), *file = fx_fidx(size, cs, dg, n, &len), csum[32];
    struct fetch_fidx *idx = NULL;
    fetch_error err = {""};
    void *buf = fx_memdup(file, len);

    if (fetch_fidx_parse(buf, len, &idx, &err) != 0)
        fail_msg("valid index (size %llu, chunk %llu) rejected: %s", (unsigned long long)size,
                 (unsigned long long)cs, err.msg);
    assert_non_null(idx);
    fx_sha256(dg, 32 * n, csum);
    assert_memory_equal(idx->uuid, fx_fidx_uuid, 16);
    assert_int_equal(idx->ctime, FX_FIDX_CTIME);
    assert_memory_equal(idx->csum, csum, 32);
    assert_int_equal(idx->size, size);
    assert_int_equal(idx->chunk_size, cs);
    assert_int_equal(idx->count, n);
    /* the digests stay in the caller's buffer, now owned by the index */
    assert_ptr_equal(idx->buf, buf);
    assert_ptr_equal(idx->digests, (uint8_t *)buf + 4096);
    if (n)
        assert_memory_equal(idx->digests, dg, 32 * n);
    fetch_fidx_free(idx);
    free(file);
    free(dg);
}

static void valid_all_chunk_sizes(void **state)
{
    (void)state;
    for (uint64_t cs = 64 * 1024; cs <= 4 * 1024 * 1024; cs *= 2) {
        check_valid(cs, cs);         /* one full chunk */
        check_valid(3 * cs, cs);     /* exact multiple */
        check_valid(3 * cs + 1, cs); /* one-byte last chunk */
        check_valid(5 * cs - 1, cs); /* last chunk one byte short */
        check_valid(1, cs);          /* a single short chunk */
    }
}

static void valid_real_sizes(void **state)
{
    (void)state;
    check_valid(540672, 4 * FX_MIB);      /* OVMF EFI vars disk */
    check_valid(4ull << 20, 4 * FX_MIB);  /* TPM state */
    check_valid(32ull << 30, 4 * FX_MIB); /* 32 GiB disk: 8192 digests */
    check_valid((32ull << 30) + 512, 4 * FX_MIB);
}

static void valid_size_zero(void **state)
{
    size_t len;
    uint8_t *file = fx_fidx(0, 4 * FX_MIB, NULL, 0, &len), empty[32];
    struct fetch_fidx *idx = NULL;
    (void)state;
    assert_int_equal(len, 4096);
    assert_int_equal(parse(file, len, &idx, NULL), 0);
    fx_sha256("", 0, empty);
    assert_int_equal(idx->size, 0);
    assert_int_equal(idx->count, 0);
    assert_memory_equal(idx->csum, empty, 32);
    fetch_fidx_free(idx);
    fetch_fidx_free(NULL);
    free(file);
}

static void truncated_header(void **state)
{
    uint8_t *dg = digests(2, 1), *file;
    size_t len;
    (void)state;
    file = fx_fidx(2 * 65536, 65536, dg, 2, &len);
    expect_bad(file, 0, "empty file");
    expect_bad(file, 8, "magic only");
    expect_bad(file, 80, "header fields only");
    expect_bad(file, 4095, "header one byte short");
    /* body cut inside a digest */
    expect_bad(file, len - 1, "last digest one byte short");
    expect_bad(file, len - 16, "last digest half present");
    expect_bad(file, 4096 + 1, "one byte of body");
    free(file);
    free(dg);
}

static void wrong_magic(void **state)
{
    uint8_t *dg = digests(4, 2), *file;
    size_t len;
    (void)state;
    file = fx_fidx(4 * 65536, 65536, dg, 4, &len);
    for (size_t i = 0; i < 8; i++) {
        file[i] ^= 0x04;
        expect_bad(file, len, "flipped magic byte");
        file[i] ^= 0x04;
    }
    memcpy(file, fx_magic_didx, 8);
    expect_bad(file, len, "dynamic index magic");
    memcpy(file, fx_magic_plain, 8);
    expect_bad(file, len, "blob magic");
    free(file);
    free(dg);
}

static void bad_chunk_size(void **state)
{
    static const uint64_t bad[] = {
        0,        1,         2,          4096,         32 * 1024, /* powers of two below 64 KiB */
        65535,    65537,     3 * 65536,  65536 + 4096, (4u << 20) - 1, (4u << 20) + 65536,
        8u << 20, 16u << 20, 1ull << 32, 1ull << 63,   UINT64_MAX,     3ull << 21,
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* a file consistent with the bad chunk size where one exists */
        uint64_t cs = bad[i];
        uint64_t size = 2 * 65536;
        size_t n = cs ? (size_t)ceil_div(size, cs) : 2, len;
        uint8_t *dg = digests(n, i), *file = fx_fidx(size, cs, dg, n, &len);
        char what[80];
        snprintf(what, sizeof(what), "chunk size %llu", (unsigned long long)cs);
        expect_bad(file, len, what);
        free(file);
        free(dg);
    }
}

static void digest_count_mismatch(void **state)
{
    const uint64_t cs = 256 * 1024;
    struct {
        uint64_t size;
        size_t n;
        const char *what;
    } cases[] = {
        {3 * cs, 4, "one digest too many"},
        {3 * cs, 2, "one digest too few"},
        {3 * cs + 1, 3, "short last chunk without its digest"},
        {3 * cs - 1, 4, "digest beyond the end"},
        {0, 1, "empty image with a digest"},
        {1, 0, "one-byte image without digest"},
        {UINT64_MAX, 2, "size overflowing the digest count"},
        {UINT64_MAX - cs + 2, 0, "size near 2^64"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *dg = digests(cases[i].n, i), *file;
        /* csum computed over the body as written, so only the count is wrong */
        file = fx_fidx(cases[i].size, cs, dg, cases[i].n, &len);
        expect_bad(file, len, cases[i].what);
        free(file);
        free(dg);
    }
}

static void wrong_index_checksum(void **state)
{
    const size_t n = 7;
    uint8_t *dg = digests(n, 3), *file;
    size_t len;
    (void)state;
    file = fx_fidx(n * 65536 - 100, 65536, dg, n, &len);
    /* a digest changed after the checksum was written */
    file[4096] ^= 1;
    expect_bad(file, len, "first digest altered");
    file[4096] ^= 1;
    file[len - 1] ^= 0x80;
    expect_bad(file, len, "last digest altered");
    file[len - 1] ^= 0x80;
    /* the checksum itself altered */
    for (size_t i = 32; i < 64; i += 31) {
        file[i] ^= 0x10;
        expect_bad(file, len, "checksum altered");
        file[i] ^= 0x10;
    }
    /* the checksum of the whole file instead of the body */
    fx_sha256(file, len, file + 32);
    expect_bad(file, len, "checksum over the whole file");
    free(file);
    free(dg);
}

static void ctime_passed_through(void **state)
{
    /* ctime is an i64 and is reported as such */
    const size_t n = 2;
    uint8_t *dg = digests(n, 4), *file;
    struct fetch_fidx *idx = NULL;
    size_t len;
    (void)state;
    file = fx_fidx(2 * 65536, 65536, dg, n, &len);
    fx_put_le64(file + 24, (uint64_t)-5); /* negative ctime */
    assert_int_equal(parse(file, len, &idx, NULL), 0);
    assert_int_equal(idx->ctime, -5);
    assert_int_equal(idx->count, 2);
    fetch_fidx_free(idx);
    free(file);
    free(dg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_all_chunk_sizes), cmocka_unit_test(valid_real_sizes),
        cmocka_unit_test(valid_size_zero),       cmocka_unit_test(truncated_header),
        cmocka_unit_test(wrong_magic),           cmocka_unit_test(bad_chunk_size),
        cmocka_unit_test(digest_count_mismatch), cmocka_unit_test(wrong_index_checksum),
        cmocka_unit_test(ctime_passed_through),
    };
    return cmocka_run_group_tests_name("fidx", tests, NULL, NULL);
}
