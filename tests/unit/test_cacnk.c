/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/cacnk.h (casync chunk store objects, casync.md §3): store
 * paths, codec detection by magic, exact-length decompression with zstd, xz
 * and gzip, raw chunks, digest verification, malformed objects and bombs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "alloc_track.h"
#include "fetch/cacnk.h"
#include "fixtures.h"

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

enum codec { ZSTD_STREAM, ZSTD_SIZED, XZ, GZIP, NCODECS };
static const char *const codec_name[] = {"zstd (streamed)", "zstd (with size)", "xz", "gzip"};

static uint8_t *compress(enum codec c, const void *data, size_t len, size_t *ret_len)
{
    switch (c) {
    case ZSTD_STREAM:
        return fx_zstd_stream(data, len, ret_len);
    case ZSTD_SIZED:
        return fx_zstd_frame(data, len, true, ret_len);
    case XZ:
        return fx_xz(data, len, ret_len);
    case GZIP:
        return fx_gzip(data, len, ret_len);
    case NCODECS:
        break;
    }
    fx_die("bad codec");
}

static void id_of(enum fetch_digest_algo algo, const void *data, size_t len, uint8_t id[32])
{
    if (algo == FETCH_DIGEST_SHA256)
        fx_sha256(data, len, id);
    else
        fx_sha512_256(data, len, id);
}

static const fetch_data sentinel = {(void *)1, (const uint8_t *)2, 3};

/* Decodes a copy of @obj (the call takes ownership of it). */
static int decode(enum fetch_digest_algo algo, const uint8_t id[32], size_t len, bool compressed,
                  const void *obj, size_t obj_len, fetch_data *ret, fetch_error *err)
{
    err->msg[0] = '\0';
    return fetch_cacnk_decode(algo, id, len, compressed, fx_memdup(obj, obj_len), obj_len, ret,
                              err);
}

static void expect_ok(enum fetch_digest_algo algo, const void *plain, size_t len, bool compressed,
                      const void *obj, size_t obj_len, const char *what)
{
    uint8_t id[32];
    fetch_data d = {0};
    fetch_error err;

    id_of(algo, plain, len, id);
    if (decode(algo, id, len, compressed, obj, obj_len, &d, &err) != 0)
        fail_msg("%s (%zu bytes): %s", what, len, err.msg);
    assert_non_null(d.base);
    assert_int_equal(d.len, len);
    assert_memory_equal(d.bytes, plain, len);
    fetch_data_release(&d);
}

/* Must fail with @want and a message containing @needle (if not NULL); @ret untouched. */
static void expect_err(int want, enum fetch_digest_algo algo, const uint8_t id[32], size_t len,
                       bool compressed, const void *obj, size_t obj_len, const char *what,
                       const char *needle)
{
    fetch_data d = sentinel;
    fetch_error err;
    int r = decode(algo, id, len, compressed, obj, obj_len, &d, &err);
    if (r != want)
        fail_msg("%s: got %d (%s), expected %d", what, r, err.msg, want);
    if (!err.msg[0])
        fail_msg("%s: no error message", what);
    if (needle && !strstr(err.msg, needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", what, err.msg, needle);
    assert_memory_equal(&d, &sentinel, sizeof(d));
}

static void expect_bad(enum fetch_digest_algo algo, const void *plain, size_t len, const void *obj,
                       size_t obj_len, const char *what, const char *needle)
{
    uint8_t id[32];
    id_of(algo, plain, len, id);
    expect_err(-EBADMSG, algo, id, len, true, obj, obj_len, what, needle);
}

/* --- paths ------------------------------------------------------------------ */

static void path_format(void **state)
{
    uint8_t id[32];
    char buf[FETCH_CACNK_PATH_MAX(14)], hex[65], want[128];
    const char *h = "1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2";
    (void)state;

    fx_unhex(h, id, 32);
    fx_hex(id, 32, hex);
    assert_int_equal(fetch_cacnk_path("", id, true, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1c81/1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2"
                             ".cacnk");
    assert_int_equal(fetch_cacnk_path("", id, false, buf, sizeof(buf)), 0);
    assert_string_equal(buf,
                        "1c81/1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2");
    assert_int_equal(fetch_cacnk_path("default.castr/", id, true, buf, sizeof(buf)), 0);
    snprintf(want, sizeof(want), "default.castr/%.4s/%s.cacnk", hex, hex);
    assert_string_equal(buf, want);
    assert_int_equal(strlen(buf) + 1, FETCH_CACNK_PATH_MAX(14));

    /* uppercase never appears; every byte value is encoded */
    for (size_t i = 0; i < 32; i++)
        id[i] = (uint8_t)(0xf0 + i * 7);
    assert_int_equal(fetch_cacnk_path("", id, false, buf, sizeof(buf)), 0);
    fx_hex(id, 32, hex);
    snprintf(want, sizeof(want), "%.4s/%s", hex, hex);
    assert_string_equal(buf, want);
}

static void path_too_long(void **state)
{
    uint8_t id[32] = {0xab, 0xcd};
    char buf[FETCH_CACNK_PATH_MAX(14)];
    (void)state;

    /* exactly enough, then one byte short */
    assert_int_equal(fetch_cacnk_path("default.castr/", id, true, buf, 14 + 76), 0);
    assert_int_equal(fetch_cacnk_path("default.castr/", id, true, buf, 14 + 75), -ENAMETOOLONG);
    assert_int_equal(fetch_cacnk_path("", id, false, buf, 70), 0);
    assert_int_equal(fetch_cacnk_path("", id, false, buf, 69), -ENAMETOOLONG);
    assert_int_equal(fetch_cacnk_path("", id, false, buf, 0), -ENAMETOOLONG);
}

static void max_raw_bounds(void **state)
{
    static const size_t lens[] = {0, 1, 4096, 64 * KIB, 256 * KIB, MIB, 128 * MIB};
    uint8_t *data = fx_malloc(MIB);
    (void)state;

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t m = fetch_cacnk_max_raw(lens[i]);
        assert_true(m >= lens[i]);
        assert_true(m >= ZSTD_compressBound(lens[i]));
    }
    /* incompressible data grows under every codec, within the bound */
    fx_fill_random(data, MIB, 77);
    for (size_t len = 1; len <= MIB; len *= 4) {
        for (int c = 0; c < NCODECS; c++) {
            size_t n;
            uint8_t *obj = compress((enum codec)c, data, len, &n);
            if (n > fetch_cacnk_max_raw(len))
                fail_msg("%s of %zu random bytes is %zu bytes, over the bound %zu", codec_name[c],
                         len, n, fetch_cacnk_max_raw(len));
            free(obj);
        }
    }
    assert_true(fetch_cacnk_max_raw(SIZE_MAX) == SIZE_MAX);
    free(data);
}

/* --- decoding ------------------------------------------------------------- */

static void decode_every_codec(void **state)
{
    static const size_t sizes[] = {1, 100, 4096, 64 * KIB + 3, 256 * KIB, MIB + 17};
    uint8_t *plain = fx_malloc(MIB + 17);
    (void)state;

    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (int fill = 0; fill < 3; fill++) {
            size_t len = sizes[s];
            if (fill == 0)
                fx_fill_random(plain, len, len);
            else if (fill == 1)
                fx_fill_text(plain, len, len);
            else
                memset(plain, 0, len);
            for (int c = 0; c < NCODECS; c++) {
                size_t n;
                uint8_t *obj = compress((enum codec)c, plain, len, &n);
                expect_ok(FETCH_DIGEST_SHA512_256, plain, len, true, obj, n, codec_name[c]);
                expect_ok(FETCH_DIGEST_SHA256, plain, len, true, obj, n, codec_name[c]);
                free(obj);
            }
            expect_ok(FETCH_DIGEST_SHA512_256, plain, len, false, plain, len, "raw");
            expect_ok(FETCH_DIGEST_SHA256, plain, len, false, plain, len, "raw");
        }
    }
    free(plain);
}

/* casync 2's zstd frames: "28 b5 2f fd 00 ..", no content size; the null chunk is tiny. */
static void decode_casync_zstd_null_chunk(void **state)
{
    uint8_t *zeros = calloc(1, 256 * KIB), id[32];
    size_t n;
    uint8_t *obj;
    fetch_data d = {0};
    fetch_error err = {""};
    (void)state;

    assert_non_null(zeros);
    obj = fx_zstd_stream(zeros, 256 * KIB, &n);
    assert_memory_equal(obj, "\x28\xb5\x2f\xfd\x00", 5);
    assert_int_equal(ZSTD_getFrameContentSize(obj, n), ZSTD_CONTENTSIZE_UNKNOWN);
    assert_true(n < 64);
    fx_unhex("1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2", id, 32);
    if (fetch_cacnk_decode(FETCH_DIGEST_SHA512_256, id, 256 * KIB, true, obj, n, &d, &err) != 0)
        fail_msg("null chunk: %s", err.msg);
    assert_int_equal(d.len, 256 * KIB);
    assert_memory_equal(d.bytes, zeros, 256 * KIB);
    fetch_data_release(&d);
    fetch_data_release(&d); /* safe twice */
    free(zeros);
}

static void decode_raw_reuses_buffer(void **state)
{
    uint8_t *plain = fx_malloc(5000), id[32], *raw;
    fetch_data d = {0};
    fetch_error err = {""};
    (void)state;

    fx_fill_random(plain, 5000, 3);
    fx_sha512_256(plain, 5000, id);
    raw = fx_memdup(plain, 5000);
    assert_int_equal(
        fetch_cacnk_decode(FETCH_DIGEST_SHA512_256, id, 5000, false, raw, 5000, &d, &err), 0);
    assert_ptr_equal(d.base, raw);
    assert_ptr_equal(d.bytes, raw);
    assert_int_equal(d.len, 5000);
    fetch_data_release(&d);

    /* raw data is not checked for a magic: it may start like a zstd frame */
    memcpy(plain, "\x28\xb5\x2f\xfd", 4);
    expect_ok(FETCH_DIGEST_SHA256, plain, 5000, false, plain, 5000, "raw with zstd magic");
    free(plain);
}

/* A hand-made frame: magic, descriptor @fhd, then @hdr (window, size...), a
 * block header (last, raw, @block_len), @data, then @tail. */
static uint8_t *stored_frame(uint8_t fhd, const uint8_t *hdr, size_t hdr_len, uint32_t block_len,
                             const uint8_t *data, size_t len, const uint8_t *tail, size_t tail_len,
                             size_t *ret_len)
{
    size_t n = 5 + hdr_len + 3 + len + tail_len, at = 0;
    uint8_t *f = fx_malloc(n);
    uint32_t bh = block_len << 3 | 1; /* raw, last */

    memcpy(f, "\x28\xb5\x2f\xfd", 4);
    f[4] = fhd;
    at = 5;
    if (hdr_len)
        memcpy(f + at, hdr, hdr_len);
    at += hdr_len;
    f[at++] = (uint8_t)bh;
    f[at++] = (uint8_t)(bh >> 8);
    f[at++] = (uint8_t)(bh >> 16);
    if (len)
        memcpy(f + at, data, len);
    if (tail_len)
        memcpy(f + at + len, tail, tail_len);
    *ret_len = n;
    return f;
}

/*
 * Data zstd cannot compress is stored in one raw block: decoding uses it in
 * place in the fetched object (no copy), checked by its digest all the same;
 * frames that are anything more go through zstd, with its errors.
 */
static void zstd_stored_block_in_place(void **state)
{
    const size_t len = 64 * KIB;
    uint8_t *plain = fx_malloc(len), id[32], *obj, *raw, win = 0x58 /* 2 MiB */;
    uint8_t fcs2[3] = {0x58, 0, 0};
    fetch_data d = {0};
    fetch_error err = {""};
    size_t n;
    (void)state;

    fx_fill_random(plain, len, 11);
    fx_sha256(plain, len, id);
    /* zstd itself writes random data this way: with and without a size */
    for (int with_size = 0; with_size < 2; with_size++) {
        obj = with_size ? fx_zstd_frame(plain, len, true, &n) : fx_zstd_stream(plain, len, &n);
        raw = fx_memdup(obj, n);
        assert_int_equal(fetch_cacnk_decode(FETCH_DIGEST_SHA256, id, len, true, raw, n, &d, &err),
                         0);
        assert_ptr_equal(d.base, raw); /* in place: the fetched object is the chunk */
        assert_ptr_equal(d.bytes, raw + (n - len));
        assert_int_equal(d.len, len);
        assert_memory_equal(d.bytes, plain, len);
        fetch_data_release(&d);
        /* a flipped bit in the stored bytes: the digest catches it */
        obj[n - 100] ^= 1;
        expect_bad(FETCH_DIGEST_SHA256, plain, len, obj, n, "stored block, flipped bit", "digest");
        free(obj);
    }
    /* hand-made: window descriptor, stored block */
    obj = stored_frame(0x00, &win, 1, (uint32_t)len, plain, len, NULL, 0, &n);
    expect_ok(FETCH_DIGEST_SHA256, plain, len, true, obj, n, "stored block");
    /* trailing bytes after the frame: an error, as from zstd */
    free(obj);
    obj = stored_frame(0x00, &win, 1, (uint32_t)len, plain, len, (const uint8_t *)"xy", 2, &n);
    expect_bad(FETCH_DIGEST_SHA256, plain, len, obj, n, "stored block, trailing bytes", NULL);
    free(obj);
    /* the block says fewer bytes than the chunk has */
    obj = stored_frame(0x00, &win, 1, (uint32_t)len - 1, plain, len - 1, NULL, 0, &n);
    expect_bad(FETCH_DIGEST_SHA256, plain, len, obj, n, "stored block, one byte short", NULL);
    free(obj);
    /* a content size (8 bytes) that lies: zstd's error */
    {
        uint8_t hdr[9] = {0x58};
        uint64_t lie = len + 1;
        for (int i = 0; i < 8; i++)
            hdr[1 + i] = (uint8_t)(lie >> (8 * i));
        obj = stored_frame(0xc0, hdr, 9, (uint32_t)len, plain, len, NULL, 0, &n);
        expect_bad(FETCH_DIGEST_SHA256, plain, len, obj, n, "stored block, size field lies", NULL);
        free(obj);
        /* the same frame telling the truth */
        lie = len;
        for (int i = 0; i < 8; i++)
            hdr[1 + i] = (uint8_t)(lie >> (8 * i));
        obj = stored_frame(0xc0, hdr, 9, (uint32_t)len, plain, len, NULL, 0, &n);
        expect_ok(FETCH_DIGEST_SHA256, plain, len, true, obj, n, "stored block, 8-byte size");
        free(obj);
    }
    /* a 2-byte size field counts from 256: 64 KiB is 0xff00 */
    fcs2[1] = 0x00;
    fcs2[2] = 0xff;
    obj = stored_frame(0x40, fcs2, 3, (uint32_t)len, plain, len, NULL, 0, &n);
    expect_ok(FETCH_DIGEST_SHA256, plain, len, true, obj, n, "stored block, 2-byte size");
    free(obj);
    /* a block beyond its window (1 KiB) breaks the format: not taken in
     * place, left to zstd (which accepts it) */
    win = 0x00;
    obj = stored_frame(0x00, &win, 1, (uint32_t)len, plain, len, NULL, 0, &n);
    raw = fx_memdup(obj, n);
    assert_int_equal(fetch_cacnk_decode(FETCH_DIGEST_SHA256, id, len, true, raw, n, &d, &err), 0);
    assert_ptr_not_equal(d.base, raw);
    assert_memory_equal(d.bytes, plain, len);
    fetch_data_release(&d);
    free(obj);
    free(plain);
}

static void empty_object_is_missing(void **state)
{
    uint8_t id[32] = {1, 2, 3};
    (void)state;
    expect_err(-ENOENT, FETCH_DIGEST_SHA512_256, id, 4096, true, "", 0, "empty .cacnk", NULL);
    expect_err(-ENOENT, FETCH_DIGEST_SHA256, id, 4096, false, "", 0, "empty raw chunk", NULL);
}

static void wrong_length(void **state)
{
    const size_t len = 64 * KIB;
    uint8_t *plain = fx_malloc(len + 4096);
    (void)state;

    fx_fill_text(plain, len + 4096, 9);
    for (int c = 0; c < NCODECS; c++) {
        size_t n;
        uint8_t *obj;
        /* the index says len; the object holds one byte less, one more, 4 KiB more */
        obj = compress((enum codec)c, plain, len - 1, &n);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, codec_name[c], "expected");
        free(obj);
        obj = compress((enum codec)c, plain, len + 1, &n);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, codec_name[c], "more than");
        free(obj);
        obj = compress((enum codec)c, plain, len + 4096, &n);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, codec_name[c], "more than");
        free(obj);
        /* an empty stream for a 1-byte chunk */
        obj = compress((enum codec)c, plain, 0, &n);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, 1, obj, n, codec_name[c], "expected");
        free(obj);
    }
    expect_bad(FETCH_DIGEST_SHA512_256, plain, len, plain, len, "plaintext as compressed",
               "unknown compression magic");
    {
        uint8_t id[32];
        fx_sha512_256(plain, len, id);
        expect_err(-EBADMSG, FETCH_DIGEST_SHA512_256, id, len, false, plain, len - 1,
                   "raw one byte short", "expected");
        expect_err(-EBADMSG, FETCH_DIGEST_SHA512_256, id, len, false, plain, len + 1,
                   "raw one byte long", "expected");
    }
    free(plain);
}

static void bad_digest(void **state)
{
    const size_t len = 10000;
    uint8_t *plain = fx_malloc(len), id[32], other[32];
    char needle[128], hex[65];
    (void)state;

    fx_fill_random(plain, len, 5);
    for (int c = 0; c < NCODECS; c++) {
        size_t n;
        uint8_t *obj = compress((enum codec)c, plain, len, &n);
        for (int algo = 0; algo < 2; algo++) {
            id_of((enum fetch_digest_algo)algo, plain, len, id);
            id[31] ^= 1;
            fx_hex(id, 32, hex);
            snprintf(needle, sizeof(needle), "chunk %s: digest mismatch", hex);
            expect_err(-EBADMSG, (enum fetch_digest_algo)algo, id, len, true, obj, n, codec_name[c],
                       needle);
            /* the right id under the other algorithm */
            id[31] ^= 1;
            expect_err(-EBADMSG, (enum fetch_digest_algo) !algo, id, len, true, obj, n,
                       "other algorithm", "digest mismatch");
        }
        free(obj);
    }
    fx_sha256(plain, len, id);
    fx_sha512_256(plain, len, other);
    expect_err(-EBADMSG, FETCH_DIGEST_SHA512_256, id, len, false, plain, len,
               "raw, SHA-256 id checked as SHA-512/256", "digest mismatch");
    expect_err(-EBADMSG, FETCH_DIGEST_SHA256, other, len, false, plain, len,
               "raw, SHA-512/256 id checked as SHA-256", "digest mismatch");
    plain[0] ^= 1;
    expect_err(-EBADMSG, FETCH_DIGEST_SHA256, id, len, false, plain, len, "raw, one bit flipped",
               "digest mismatch");
    free(plain);
}

static void unknown_magic(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *what;
    } objs[] = {
        {"\x04\x22\x4d\x18\x64\x40\xa7\x00\x00\x00\x00", 11, "lz4 frame"},
        {"BZh91AY&SY", 10, "bzip2"},
        {"\x28\xb5\x2f", 3, "zstd magic cut short"},
        {"\x28\xb5\x2f\xfe\x00\x00", 6, "zstd magic, last byte off"},
        {"\xfd\x37\x7a\x58\x5a", 5, "xz magic cut short"},
        {"\xfd\x37\x7a\x58\x5a\x01\x00\x00", 8, "xz magic, last byte off"},
        {"\x1f", 1, "one byte of gzip magic"},
        {"\x1f\x9d\x90", 3, "compress(1) .Z"},
        {"\x5d\x00\x00\x80\x00", 5, "legacy .lzma"},
        {"\0", 1, "one zero byte"},
    };
    uint8_t id[32] = {0};
    (void)state;
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
        expect_err(-EBADMSG, FETCH_DIGEST_SHA512_256, id, 100, true, objs[i].bytes, objs[i].len,
                   objs[i].what, "unknown compression magic");
}

static void truncated_streams(void **state)
{
    const size_t len = 200 * KIB;
    uint8_t *plain = fx_malloc(len);
    (void)state;

    fx_fill_text(plain, len, 21);
    for (int c = 0; c < NCODECS; c++) {
        size_t n;
        uint8_t *obj = compress((enum codec)c, plain, len, &n);
        size_t cuts[] = {2, 4, 6, 12, n / 4, n / 2, n - 8, n - 1};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            char what[64];
            if (cuts[i] >= n)
                continue;
            snprintf(what, sizeof(what), "%s cut to %zu of %zu bytes", codec_name[c], cuts[i], n);
            expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, cuts[i], what, NULL);
        }
        free(obj);
    }
    free(plain);
}

static void trailing_garbage(void **state)
{
    const size_t len = 30000;
    uint8_t *plain = fx_malloc(len);
    (void)state;

    fx_fill_text(plain, len, 8);
    for (int c = 0; c < NCODECS; c++) {
        size_t n;
        uint8_t *obj = compress((enum codec)c, plain, len, &n);
        uint8_t *more = fx_malloc(n + 64);
        memcpy(more, obj, n);
        fx_fill_random(more + n, 64, 1);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, more, n + 1, codec_name[c], NULL);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, more, n + 64, codec_name[c], NULL);
        memset(more + n, 0, 64);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, more, n + 8, codec_name[c], NULL);
        /* the object repeated: a second stream of the same data */
        free(more);
        more = fx_malloc(2 * n);
        memcpy(more, obj, n);
        memcpy(more + n, obj, n);
        expect_bad(FETCH_DIGEST_SHA512_256, plain, len, more, 2 * n, codec_name[c], NULL);
        free(more);
        free(obj);
    }
    free(plain);
}

static void corrupt_streams(void **state)
{
    const size_t len = 100 * KIB;
    uint8_t *plain = fx_malloc(len);
    (void)state;

    fx_fill_text(plain, len, 31);
    for (int c = 0; c < NCODECS; c++) {
        size_t n;
        uint8_t *obj = compress((enum codec)c, plain, len, &n);
        /* flip a byte at several places past the stream header (gzip's mtime
         * and OS bytes, 4..9, are covered by nothing and may change freely):
         * whatever the codec notices (checksum, structure) or not, the digest does */
        for (size_t at = 10; at < n; at += n / 9 + 1) {
            obj[at] ^= 0x55;
            expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, codec_name[c], NULL);
            obj[at] ^= 0x55;
        }
        free(obj);
    }
    free(plain);
}

/* A few KiB claiming a GiB: rejected at the index length, without a large allocation. */
static void decompression_bombs(void **state)
{
    const size_t len = 64 * KIB;
    uint8_t *zeros = calloc(1, 16 * MIB), id[32];
    size_t n, largest;
    (void)state;

    assert_non_null(zeros);
    fx_sha512_256(zeros, len, id);
    for (int c = 0; c < 5; c++) {
        uint8_t *obj;
        fetch_data d = {0};
        fetch_error err = {""};
        int r;
        if (c == 0)
            obj = fx_zstd_rle_frame(1ull << 30, 0, false, &n);
        else if (c == 1)
            obj = fx_zstd_rle_frame(1ull << 30, 0, true, &n);
        else if (c == 2)
            obj = fx_xz(zeros, 16 * MIB, &n);
        else if (c == 3)
            obj = fx_gzip(zeros, 16 * MIB, &n);
        else
            obj = fx_zstd_stream(zeros, 16 * MIB, &n);
        fx_alloc_track_start();
        r = fetch_cacnk_decode(FETCH_DIGEST_SHA512_256, id, len, true, obj, n, &d, &err);
        largest = fx_alloc_track_stop();
        if (r != -EBADMSG)
            fail_msg("bomb %d (%zu bytes): got %d (%s)", c, n, r, err.msg);
        if (!strstr(err.msg, "more than"))
            fail_msg("bomb %d: message \"%s\"", c, err.msg);
        if (largest > len + 4096)
            fail_msg("bomb %d: allocated %zu bytes at once for a %zu-byte chunk", c, largest, len);
    }
    free(zeros);
}

/* The content size field of a zstd frame is not believed: a lie is an error. */
static void zstd_content_size_lies(void **state)
{
    const size_t len = 5000;
    uint8_t *plain = fx_malloc(len), *obj;
    size_t n;
    (void)state;

    fx_fill_text(plain, len, 4);
    /* a frame whose header size differs from what its blocks hold */
    obj = fx_zstd_rle_frame(len, 'x', true, &n);
    memset(plain, 'x', len);
    expect_ok(FETCH_DIGEST_SHA512_256, plain, len, true, obj, n, "RLE frame with size");
    assert_int_equal(obj[4], 0xc0);
    obj[6] = (uint8_t)(len + 1); /* low byte of the content size field: now 5001 */
    expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, "content size larger than data", NULL);
    obj[6] = (uint8_t)(len - 1);
    expect_bad(FETCH_DIGEST_SHA512_256, plain, len, obj, n, "content size smaller than data", NULL);
    free(obj);
    free(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(path_format),
        cmocka_unit_test(path_too_long),
        cmocka_unit_test(max_raw_bounds),
        cmocka_unit_test(decode_every_codec),
        cmocka_unit_test(decode_casync_zstd_null_chunk),
        cmocka_unit_test(decode_raw_reuses_buffer),
        cmocka_unit_test(empty_object_is_missing),
        cmocka_unit_test(wrong_length),
        cmocka_unit_test(bad_digest),
        cmocka_unit_test(unknown_magic),
        cmocka_unit_test(truncated_streams),
        cmocka_unit_test(trailing_garbage),
        cmocka_unit_test(corrupt_streams),
        cmocka_unit_test(decompression_bombs),
        cmocka_unit_test(zstd_content_size_lies),
        cmocka_unit_test(zstd_stored_block_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
