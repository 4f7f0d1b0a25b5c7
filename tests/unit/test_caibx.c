/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/caibx.h (casync index parsing and validation, casync.md
 * §2 and the reader checklist), the image of a blob index (holes, casync.md
 * §4) and the digest helpers of fetch/digest.h it relies on.
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
#include <unistd.h>

#include "fetch/caibx.h"
#include "fetch/digest.h"
#include "fixtures.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
/* casync defaults: min = avg/4, avg = 64 KiB, max = 4 avg */
#define MIN_DEF (16 * KIB)
#define AVG_DEF (64 * KIB)
#define MAX_DEF (256 * KIB)

/* offsets of the header fields and, relative to the tail, of the tail fields */
#define O_INDEX_SIZE 0
#define O_INDEX_TYPE 8
#define O_FLAGS 16
#define O_MIN 24
#define O_AVG 32
#define O_MAX 40
#define O_TABLE_SIZE 48
#define O_TABLE_TYPE 56
#define T_ZERO1 0
#define T_ZERO2 8
#define T_INDEX_OFFSET 16
#define T_SIZE 24
#define T_MARKER 32

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* @n pseudo chunk ids */
static uint8_t *ids(size_t n, uint64_t seed)
{
    uint8_t *d = fx_malloc(32 * (n ? n : 1));
    fx_fill_random(d, 32 * n, seed);
    return d;
}

/* End offsets of chunks with the given lengths. */
static uint64_t *ends_of(const uint64_t *lens, size_t n)
{
    uint64_t *e = fx_malloc(sizeof(*e) * (n ? n : 1)), at = 0;
    for (size_t i = 0; i < n; i++)
        e[i] = at += lens[i];
    return e;
}

/* A valid default-shaped index of @n chunks, lengths varying between 1 and max. */
static uint8_t *sample(size_t n, uint64_t flags, size_t *ret_len)
{
    uint64_t *lens = fx_malloc(sizeof(*lens) * (n ? n : 1)), *ends;
    uint8_t *id = ids(n, n + 7), *f;
    for (size_t i = 0; i < n; i++)
        lens[i] = i % 4 == 0 ? MAX_DEF : 1 + (i * 7919 * 13) % MAX_DEF;
    ends = ends_of(lens, n);
    f = fx_caibx(flags, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, n, ret_len);
    free(ends);
    free(id);
    free(lens);
    return f;
}

/* Parses a copy of @file; the parser takes ownership of its buffer. */
static int parse(const uint8_t *file, size_t len, struct fetch_caibx **ret, fetch_error *err)
{
    if (err)
        err->msg[0] = '\0';
    return fetch_caibx_parse(fx_memdup(file, len), len, ret, err);
}

static struct fetch_caibx *parse_ok(const uint8_t *file, size_t len, const char *what)
{
    struct fetch_caibx *idx = NULL;
    fetch_error err = {""};
    if (parse(file, len, &idx, &err) != 0)
        fail_msg("%s: valid index rejected: %s", what, err.msg);
    assert_non_null(idx);
    return idx;
}

/* The parse must fail with -EBADMSG and a message containing @needle (if not NULL). */
static void expect_bad(const uint8_t *file, size_t len, const char *what, const char *needle)
{
    struct fetch_caibx *idx = NULL;
    fetch_error err;
    int r = parse(file, len, &idx, &err);
    if (r != -EBADMSG)
        fail_msg("%s: got %d, expected -EBADMSG", what, r);
    if (!err.msg[0])
        fail_msg("%s: no error message", what);
    if (needle && !strstr(err.msg, needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", what, err.msg, needle);
    assert_null(idx); /* untouched on failure */
}

static uint8_t *tail_of(uint8_t *file, size_t len)
{
    return file + len - 40;
}

/* --- valid indexes ------------------------------------------------------- */

static void valid_many(void **state)
{
    size_t n = 1000, len;
    uint8_t *file = sample(n, FX_CA_FLAGS_CASYNC, &len);
    struct fetch_caibx *idx;
    uint64_t prev = 0;
    (void)state;

    assert_int_equal(len, 104 + 40 * n);
    idx = parse_ok(file, len, "1000 chunks");
    assert_int_equal(idx->flags, FX_CA_FLAGS_CASYNC);
    assert_int_equal(idx->chunk_min, MIN_DEF);
    assert_int_equal(idx->chunk_avg, AVG_DEF);
    assert_int_equal(idx->chunk_max, MAX_DEF);
    assert_int_equal(idx->algo, FETCH_DIGEST_SHA512_256);
    assert_int_equal(idx->count, n);
    /* the items stay in the caller's buffer, now owned by the index */
    assert_ptr_equal(idx->items, (const uint8_t *)idx->buf + 64);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *item = file + 64 + 40 * i;
        uint64_t end = fetch_caibx_end(idx, i);
        assert_int_equal(end, get_le64(item));
        assert_true(end > prev && end - prev <= MAX_DEF);
        assert_memory_equal(fetch_caibx_id(idx, i), item + 8, 32);
        prev = end;
    }
    assert_int_equal(idx->size, prev);
    fetch_caibx_free(idx);
    free(file);
}

static void valid_empty(void **state)
{
    size_t len;
    uint8_t *file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, NULL, NULL, 0, &len);
    struct fetch_caibx *idx;
    struct fetch_image *img = NULL;
    (void)state;

    assert_int_equal(len, 104);
    idx = parse_ok(file, len, "empty index");
    assert_int_equal(idx->count, 0);
    assert_int_equal(idx->size, 0);
    assert_int_equal(fetch_image_from_caibx(idx, &img, NULL), 0);
    assert_int_equal(img->size, 0);
    assert_int_equal(img->count, 0);
    assert_int_equal(img->stride, 0);
    assert_int_equal(img->data_bytes, 0);
    assert_int_equal(img->zero_count, 0);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_DATA), -ENXIO);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_HOLE), -ENXIO);
    fetch_image_free(img);
    fetch_caibx_free(idx);
    fetch_caibx_free(NULL);
    free(file);
}

static void valid_single_chunk(void **state)
{
    uint64_t ends[] = {1};
    uint8_t *id = ids(1, 5), *file;
    size_t len;
    struct fetch_caibx *idx;
    (void)state;

    /* one byte, the smallest blob */
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 1, &len);
    idx = parse_ok(file, len, "one 1-byte chunk");
    assert_int_equal(idx->count, 1);
    assert_int_equal(idx->size, 1);
    assert_int_equal(fetch_caibx_end(idx, 0), 1);
    assert_memory_equal(fetch_caibx_id(idx, 0), id, 32);
    fetch_caibx_free(idx);
    free(file);

    /* one chunk of exactly chunk_size_max */
    ends[0] = MAX_DEF;
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 1, &len);
    idx = parse_ok(file, len, "one max-size chunk");
    assert_int_equal(idx->size, MAX_DEF);
    fetch_caibx_free(idx);
    free(file);
    free(id);
}

static void valid_digest_flags(void **state)
{
    static const struct {
        uint64_t flags;
        enum fetch_digest_algo algo;
    } cases[] = {
        {0xb000000000000000ull, FETCH_DIGEST_SHA512_256}, /* casync make */
        {0x9000000000000000ull, FETCH_DIGEST_SHA256},     /* casync make --digest=sha256 */
        {0xa000000000000000ull, FETCH_DIGEST_SHA512_256}, /* desync make */
        {0xb0000001ffeffe26ull, FETCH_DIGEST_SHA512_256}, /* casync .caidx on overlayfs */
        {0x2000000000000000ull, FETCH_DIGEST_SHA512_256}, {0, FETCH_DIGEST_SHA256},
        {0xf0000001ffffffffull, FETCH_DIGEST_SHA512_256}, /* every known bit */
        {0xd0000001ffffffffull, FETCH_DIGEST_SHA256},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *file = sample(3, cases[i].flags, &len);
        struct fetch_caibx *idx = parse_ok(file, len, "digest flags");
        assert_int_equal(idx->flags, cases[i].flags);
        if (idx->algo != cases[i].algo)
            fail_msg("flags %016llx: algo %d, expected %d", (unsigned long long)cases[i].flags,
                     (int)idx->algo, (int)cases[i].algo);
        fetch_caibx_free(idx);
        free(file);
    }
}

static void valid_size_limits(void **state)
{
    uint64_t ends[3] = {1, 2, 3};
    uint8_t *id = ids(3, 9), *file;
    size_t len;
    struct fetch_caibx *idx;
    (void)state;

    /* min = avg = max = 1: every chunk one byte */
    file = fx_caibx(FX_CA_FLAGS_CASYNC, 1, 1, 1, ends, id, 3, &len);
    idx = parse_ok(file, len, "1:1:1");
    assert_int_equal(idx->size, 3);
    fetch_caibx_free(idx);
    free(file);

    /* max = 128 MiB, and chunks of that size */
    ends[0] = 128 * MIB;
    ends[1] = 256 * MIB;
    ends[2] = 256 * MIB + 1;
    file = fx_caibx(0, 1, 128 * MIB, 128 * MIB, ends, id, 3, &len);
    idx = parse_ok(file, len, "max 128 MiB");
    assert_int_equal(idx->size, 256 * MIB + 1);
    fetch_caibx_free(idx);
    free(file);

    /* the minimum is not enforced: chunks below chunk_size_min are fine */
    ends[0] = 1;
    ends[1] = 2;
    ends[2] = 2 + MAX_DEF;
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 3, &len);
    idx = parse_ok(file, len, "chunks below min");
    fetch_caibx_free(idx);
    free(file);
    free(id);
}

/* The real casync index of casync.md §2.4: its head and tail bytes verbatim. */
static const uint8_t example_head[0x50] = {
    0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf9, 0x9f, 0x12, 0x7b, 0x9c, 0x4d, 0x82, 0x96,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7d, 0x41, 0x17, 0x2f, 0x11, 0x9e, 0x5b, 0xe7,
    0xe3, 0x65, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0xa5, 0xed, 0x0e, 0xf9, 0x52, 0x20, 0x7e,
};
/* item 801: end offset and the first four id bytes, at 0x7d68 */
static const uint8_t example_last[12] = {0x00, 0x00, 0x00, 0x04, 0x00, 0x00,
                                         0x00, 0x00, 0xa1, 0x3a, 0x5d, 0x7a};
/* the tail, at 0x7d90 */
static const uint8_t example_tail[40] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x88, 0x7d, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xd1, 0xec, 0x49, 0x55, 0x0e, 0x05, 0x4f, 0x4b,
};
#define NULL_CHUNK_256K_SHA512_256                                                                 \
    "1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2"

/*
 * The §2.4 file: 802 items over 64 MiB, items 252..314 the 256 KiB null
 * chunk (casync.md §4); the bytes the document does not show are filled in
 * with lengths and ids of the same shape.
 */
static uint8_t *example_file(size_t *ret_len)
{
    const size_t n = 802, len = 32184;
    uint8_t *f = calloc(1, len), null_id[32];
    uint64_t end = 26083, rest = 64 * MIB - 26083 - 63 * MAX_DEF;
    size_t others = n - 1 - 63; /* items besides item 0 and the null run */

    if (!f)
        fx_die("out of memory");
    fx_unhex(NULL_CHUNK_256K_SHA512_256, null_id, 32);
    memcpy(f, example_head, sizeof(example_head));
    fx_fill_random(f + 0x48 + 8, 24, 1);
    for (size_t i = 1, k = 0; i < n; i++) {
        uint8_t *item = f + 64 + 40 * i;
        if (i >= 252 && i <= 314) {
            end += MAX_DEF;
            memcpy(item + 8, null_id, 32);
        } else {
            end += rest / others + (k < rest % others);
            k++;
            fx_fill_random(item + 8, 32, i);
        }
        fx_put_le64(item, end);
    }
    if (end != 64 * MIB)
        fx_die("example layout adds up to %llu", (unsigned long long)end);
    memcpy(f + 0x7d68, example_last, sizeof(example_last));
    memcpy(f + 0x7d90, example_tail, sizeof(example_tail));
    *ret_len = len;
    return f;
}

static void example_from_doc(void **state)
{
    size_t len;
    uint8_t *file = example_file(&len), null_id[32];
    struct fetch_caibx *idx;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    (void)state;

    idx = parse_ok(file, len, "casync.md §2.4 example");
    assert_int_equal(idx->flags, 0xb000000000000000ull);
    assert_int_equal(idx->chunk_min, 16384);
    assert_int_equal(idx->chunk_avg, 65536);
    assert_int_equal(idx->chunk_max, 262144);
    assert_int_equal(idx->algo, FETCH_DIGEST_SHA512_256);
    assert_int_equal(idx->count, 802);
    assert_int_equal(idx->size, 64 * MIB);
    assert_int_equal(fetch_caibx_end(idx, 0), 0x65e3);
    assert_memory_equal(fetch_caibx_id(idx, 0), "\x7b\xa5\xed\x0e\xf9\x52\x20\x7e", 8);
    assert_int_equal(fetch_caibx_end(idx, 801), 0x04000000);
    assert_memory_equal(fetch_caibx_id(idx, 801), "\xa1\x3a\x5d\x7a", 4);

    if (fetch_image_from_caibx(idx, &img, &err) != 0)
        fail_msg("image: %s", err.msg);
    fx_unhex(NULL_CHUNK_256K_SHA512_256, null_id, 32);
    assert_int_equal(img->size, 64 * MIB);
    assert_int_equal(img->count, 802);
    assert_int_equal(img->zero_count, 63);
    assert_int_equal(img->data_bytes, 64 * MIB - 63 * MAX_DEF);
    for (size_t i = 0; i < img->count; i++) {
        bool null = i >= 252 && i <= 314;
        assert_int_equal(img->extents[i].zero, null);
        if (null)
            assert_memory_equal(img->extents[i].digest, null_id, 32);
    }
    /* the hole is items 252..314; data before and after it */
    assert_int_equal(fetch_image_seek(img, 0, SEEK_DATA), 0);
    assert_int_equal(fetch_image_seek(img, 0, SEEK_HOLE), img->extents[252].offset);
    assert_int_equal(fetch_image_seek(img, img->extents[252].offset, SEEK_DATA),
                     img->extents[315].offset);
    assert_int_equal(fetch_image_seek(img, img->extents[315].offset, SEEK_HOLE), 64 * MIB);
    fetch_image_free(img);
    fetch_caibx_free(idx);
    free(file);
}

/* --- one test per validation rule ----------------------------------------- */

static void bad_file_size(void **state)
{
    size_t len;
    uint8_t *file = sample(4, FX_CA_FLAGS_CASYNC, &len), *big;
    (void)state;

    expect_bad(file, 0, "empty file", "shorter");
    expect_bad(file, 8, "8 bytes", "shorter");
    expect_bad(file, 64, "header only", "shorter");
    expect_bad(file, 103, "one byte short of the minimum", "shorter");
    expect_bad(file, len - 1, "last byte missing", "multiple of 40");
    expect_bad(file, len - 39, "39 bytes missing", "multiple of 40");
    expect_bad(file, len - 40, "a whole item missing", NULL);
    /* trailing bytes */
    big = fx_malloc(len + 40);
    memcpy(big, file, len);
    memset(big + len, 0, 40);
    expect_bad(big, len + 1, "one trailing byte", "multiple of 40");
    expect_bad(big, len + 40, "40 trailing zero bytes", NULL);
    memcpy(big + len, big + len - 40, 40); /* a second copy of the tail */
    expect_bad(big, len + 40, "tail repeated", NULL);
    free(big);
    free(file);
}

static void bad_file_too_large(void **state)
{
    /* the buffer is never read past the size check; calloc keeps it unbacked */
    size_t len = (size_t)FETCH_CAIBX_FILE_MAX + 40;
    uint8_t *buf = calloc(1, len);
    struct fetch_caibx *idx = NULL;
    fetch_error err = {""};
    (void)state;
    if (!buf)
        skip();
    assert_int_equal(fetch_caibx_parse(buf, len, &idx, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "limit"));
    assert_null(idx);
}

static void bad_index_header(void **state)
{
    static const uint64_t sizes[] = {0, 47, 49, 64, UINT64_MAX};
    size_t len;
    uint8_t *file = sample(4, FX_CA_FLAGS_CASYNC, &len);
    (void)state;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        fx_put_le64(file + O_INDEX_SIZE, sizes[i]);
        expect_bad(file, len, "INDEX size", "INDEX header size");
    }
    fx_put_le64(file + O_INDEX_SIZE, 48);
    for (size_t i = 0; i < 8; i++) {
        file[O_INDEX_TYPE + i] ^= 0x10;
        expect_bad(file, len, "INDEX type byte flipped", "type");
        file[O_INDEX_TYPE + i] ^= 0x10;
    }
    fx_put_le64(file + O_INDEX_TYPE, FX_CA_TABLE);
    expect_bad(file, len, "TABLE type in the INDEX header", "type");
    free(file);
}

static void bad_feature_flags(void **state)
{
    size_t len;
    uint8_t *file = sample(2, 0, &len);
    struct fetch_caibx *idx;
    (void)state;

    for (int bit = 0; bit < 64; bit++) {
        uint64_t flag = 1ull << bit;
        bool known = bit <= 32 || bit >= 60;
        fx_put_le64(file + O_FLAGS, flag);
        if (known) {
            idx = parse_ok(file, len, "known feature bit");
            fetch_caibx_free(idx);
        } else {
            expect_bad(file, len, "unknown feature bit", "feature flags");
        }
        /* an unknown bit among the usual ones */
        fx_put_le64(file + O_FLAGS, FX_CA_FLAGS_CASYNC | flag);
        if (!known)
            expect_bad(file, len, "unknown feature bit with defaults", "feature flags");
    }
    free(file);
}

static void bad_chunk_size_fields(void **state)
{
    static const struct {
        uint64_t min, avg, max;
    } bad[] = {
        {0, AVG_DEF, MAX_DEF},                         /* min 0 */
        {AVG_DEF + 1, AVG_DEF, MAX_DEF},               /* min > avg */
        {MIN_DEF, MAX_DEF + 1, MAX_DEF},               /* avg > max */
        {MIN_DEF, AVG_DEF, AVG_DEF - 1},               /* max < avg */
        {1, 1, 128 * MIB + 1},                         /* max over the limit */
        {128 * MIB + 1, 128 * MIB + 1, 128 * MIB + 1}, /* all over */
        {UINT64_MAX, UINT64_MAX, UINT64_MAX},
        {0, 0, 0},
    };
    size_t len;
    uint8_t *file;
    uint64_t ends[1] = {1};
    uint8_t *id = ids(1, 3);
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        file = fx_caibx(FX_CA_FLAGS_CASYNC, bad[i].min, bad[i].avg, bad[i].max, ends, id, 1, &len);
        expect_bad(file, len, "chunk size fields", "min");
        free(file);
    }
    free(id);
}

static void bad_table_header(void **state)
{
    size_t len;
    uint8_t *file = sample(4, FX_CA_FLAGS_CASYNC, &len);
    (void)state;

    fx_put_le64(file + O_TABLE_SIZE,
                16 + 40 * 4 + 40); /* the real size, which casync never writes */
    expect_bad(file, len, "TABLE size", "TABLE header size");
    fx_put_le64(file + O_TABLE_SIZE, UINT64_MAX - 1);
    expect_bad(file, len, "TABLE size", "TABLE header size");
    fx_put_le64(file + O_TABLE_SIZE, UINT64_MAX);
    fx_put_le64(file + O_TABLE_TYPE, FX_CA_INDEX);
    expect_bad(file, len, "INDEX type in the TABLE header", "TABLE header type");
    fx_put_le64(file + O_TABLE_TYPE, FX_CA_TABLE ^ 1);
    expect_bad(file, len, "TABLE type off by one bit", "TABLE header type");
    free(file);
}

static void bad_end_offsets(void **state)
{
    size_t len;
    uint8_t *file = sample(6, FX_CA_FLAGS_CASYNC, &len);
    uint8_t *item2 = file + 64 + 40 * 2;
    uint64_t e1 = get_le64(file + 64 + 40), e2 = get_le64(item2);
    (void)state;

    /* first chunk empty */
    {
        uint64_t e0 = get_le64(file + 64);
        fx_put_le64(file + 64, 0);
        expect_bad(file, len, "first end offset 0", "chunk 0 ends at 0");
        fx_put_le64(file + 64, e0);
    }
    fx_put_le64(item2, e1);
    expect_bad(file, len, "repeated end offset (empty chunk)", "chunk 2 ");
    fx_put_le64(item2, e1 - 1);
    expect_bad(file, len, "decreasing end offset", "strictly increase");
    /* wraps to a small positive length if subtracted before comparing */
    fx_put_le64(file + 64 + 40, UINT64_MAX - 5);
    fx_put_le64(item2, 10);
    expect_bad(file, len, "end offset wrapping around", NULL);
    fx_put_le64(file + 64 + 40, e1);
    fx_put_le64(item2, e2);
    /* the last item's end 0 looks like a streaming reader's tail */
    fx_put_le64(file + 64 + 40 * 5, 0);
    expect_bad(file, len, "last end offset 0", "chunk 5");
    free(file);
}

static void bad_chunk_too_large(void **state)
{
    uint64_t lens[5] = {100, MAX_DEF, 100, MAX_DEF, 100}, *ends;
    uint8_t *id = ids(5, 11), *file;
    size_t len;
    struct fetch_caibx *idx;
    (void)state;

    ends = ends_of(lens, 5);
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 5, &len);
    idx = parse_ok(file, len, "chunks of exactly max");
    fetch_caibx_free(idx);
    free(file);
    free(ends);

    for (size_t at = 0; at < 5; at++) {
        char needle[80];
        lens[at] += lens[at] == MAX_DEF ? 1 : MAX_DEF;
        ends = ends_of(lens, 5);
        file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 5, &len);
        snprintf(needle, sizeof(needle), "chunk %zu is %llu bytes, more than chunk_size_max %llu",
                 at, (unsigned long long)lens[at], (unsigned long long)MAX_DEF);
        expect_bad(file, len, "chunk over max", needle);
        free(file);
        free(ends);
        lens[at] -= lens[at] == MAX_DEF + 1 ? 1 : MAX_DEF;
    }
    /* a blob end far beyond anything n * max could reach */
    lens[4] = UINT64_MAX - 2 * MAX_DEF - 300;
    ends = ends_of(lens, 5);
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 5, &len);
    expect_bad(file, len, "huge last chunk", "more than chunk_size_max");
    free(file);
    free(ends);
    free(id);
}

static void bad_tail(void **state)
{
    size_t len;
    uint8_t *file = sample(3, FX_CA_FLAGS_CASYNC, &len), *tail = tail_of(file, len);
    uint8_t saved[40];
    (void)state;

    memcpy(saved, tail, 40);
    for (size_t i = 0; i < 16; i++) {
        tail[i] = 1;
        expect_bad(file, len, "zero fill not zero", "zero fill");
        tail[i] = 0;
    }
    fx_put_le64(tail + T_INDEX_OFFSET, 0);
    expect_bad(file, len, "index_offset 0", "index_offset");
    fx_put_le64(tail + T_INDEX_OFFSET, 64);
    expect_bad(file, len, "index_offset 64", "index_offset");
    memcpy(tail, saved, 40);

    {
        uint64_t sz = get_le64(tail + T_SIZE);
        assert_int_equal(sz + 48, len);
        static const int64_t deltas[] = {-1, 1, -40, 40, 48};
        for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
            fx_put_le64(tail + T_SIZE, sz + (uint64_t)deltas[i]);
            expect_bad(file, len, "tail size off", "tail table size");
        }
        fx_put_le64(tail + T_SIZE, UINT64_MAX);
        expect_bad(file, len, "tail size UINT64_MAX", "tail table size");
        fx_put_le64(tail + T_SIZE, UINT64_MAX - 47); /* + 48 wraps to 0 */
        expect_bad(file, len, "tail size wrapping", "tail table size");
        fx_put_le64(tail + T_SIZE, 0);
        expect_bad(file, len, "tail size 0", "tail table size");
        fx_put_le64(tail + T_SIZE, sz);
    }
    for (size_t i = 0; i < 8; i++) {
        tail[T_MARKER + i] ^= 0x80;
        expect_bad(file, len, "marker byte flipped", "tail marker");
        tail[T_MARKER + i] ^= 0x80;
    }
    fx_put_le64(tail + T_MARKER, 0x57446fa533702943ull); /* the catar GOODBYE marker */
    expect_bad(file, len, "goodbye marker", "tail marker");
    memcpy(tail, saved, 40);
    fetch_caibx_free(parse_ok(file, len, "restored tail"));
    free(file);
}

static void every_byte_flip_in_fixed_fields(void **state)
{
    size_t len;
    uint8_t *file = sample(2, FX_CA_FLAGS_CASYNC, &len), *tail = tail_of(file, len);
    (void)state;

    /* constants: INDEX size/type, TABLE size/type, tail index_offset, size, marker */
    static const size_t head_fields[] = {O_INDEX_SIZE, O_INDEX_TYPE, O_TABLE_SIZE, O_TABLE_TYPE};
    static const size_t tail_fields[] = {T_ZERO1, T_ZERO2, T_INDEX_OFFSET, T_SIZE, T_MARKER};
    for (size_t f = 0; f < sizeof(head_fields) / sizeof(head_fields[0]); f++)
        for (size_t b = 0; b < 8; b++) {
            file[head_fields[f] + b] ^= 0x01;
            expect_bad(file, len, "header constant changed", NULL);
            file[head_fields[f] + b] ^= 0x01;
        }
    for (size_t f = 0; f < sizeof(tail_fields) / sizeof(tail_fields[0]); f++)
        for (size_t b = 0; b < 8; b++) {
            tail[tail_fields[f] + b] ^= 0x01;
            expect_bad(file, len, "tail constant changed", NULL);
            tail[tail_fields[f] + b] ^= 0x01;
        }
    free(file);
}

/* --- digests of zero runs ------------------------------------------------ */

static void null_chunk_ids(void **state)
{
    static const uint64_t lens[] = {65536, 262144, 1048576};
    static const char *sha512_256[] = {
        "7f40d757cf2f63d4f32bd5b802f7bf2bafeb3d38f5f38e436ab8828f814f7d8e",
        "1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2",
        "a4567167dee5ac6bc22a4faed8deae186603b9e10306edfff49b60ce61181a3d",
    };
    static const char *sha256[] = {
        "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31",
        "8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90",
        "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58",
    };
    uint8_t out[3][32], want[32], *zeros = calloc(1, 1048576);
    char hex[65];
    (void)state;

    assert_non_null(zeros);
    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA512_256, lens, 3, out), 0);
    for (size_t i = 0; i < 3; i++) {
        fx_hex(out[i], 32, hex);
        assert_string_equal(hex, sha512_256[i]);
        /* the table agrees with OpenSSL over real zero buffers */
        fx_sha512_256(zeros, lens[i], want);
        assert_memory_equal(out[i], want, 32);
    }
    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA256, lens, 3, out), 0);
    for (size_t i = 0; i < 3; i++) {
        fx_hex(out[i], 32, hex);
        assert_string_equal(hex, sha256[i]);
        fx_sha256(zeros, lens[i], want);
        assert_memory_equal(out[i], want, 32);
    }
    /* a single length, and the same through fetch_digest */
    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA512_256, &lens[1], 1, out), 0);
    fx_hex(out[0], 32, hex);
    assert_string_equal(hex, sha512_256[1]);
    assert_int_equal(fetch_digest(FETCH_DIGEST_SHA512_256, zeros, 262144, out[1]), 0);
    assert_memory_equal(out[1], out[0], 32);
    free(zeros);
}

static void zeros_ladder_block_edges(void **state)
{
    /* SHA-256 blocks are 64 bytes, SHA-512 blocks 128; lengths around both, and
     * around the 64 KiB step in which zeros are fed */
    static const uint64_t lens[] = {0,     1,      55,     56,     63,     64,     65,    111,
                                    112,   127,    128,    129,    1000,   4096,   65535, 65536,
                                    65537, 131071, 131072, 200000, 262143, 262144, 262145};
    const size_t n = sizeof(lens) / sizeof(lens[0]);
    uint8_t(*out)[32] = fx_malloc(n * 32), want[32];
    uint8_t *zeros = calloc(1, 262145);
    (void)state;

    assert_non_null(zeros);
    for (int algo = 0; algo < 2; algo++) {
        assert_int_equal(fetch_digest_zeros_ladder((enum fetch_digest_algo)algo, lens, n, out), 0);
        for (size_t i = 0; i < n; i++) {
            if (algo == FETCH_DIGEST_SHA256)
                fx_sha256(zeros, lens[i], want);
            else
                fx_sha512_256(zeros, lens[i], want);
            if (memcmp(out[i], want, 32) != 0)
                fail_msg("algo %d: zero digest of %llu bytes wrong", algo,
                         (unsigned long long)lens[i]);
        }
    }
    free(zeros);
    free(out);
}

static void zeros_ladder_bad_args(void **state)
{
    uint64_t lens[3] = {10, 20, 30};
    uint8_t out[3][32];
    (void)state;

    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA256, lens, 0, out), 0);
    lens[1] = 10;
    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA256, lens, 3, out), -EINVAL);
    lens[1] = 5;
    assert_int_equal(fetch_digest_zeros_ladder(FETCH_DIGEST_SHA256, lens, 3, out), -EINVAL);
    lens[1] = 20;
    assert_int_equal(fetch_digest_zeros_ladder((enum fetch_digest_algo)7, lens, 3, out), -EINVAL);
    assert_int_equal(fetch_digest((enum fetch_digest_algo)7, "x", 1, out[0]), -EINVAL);
}

static void digest_matches_openssl(void **state)
{
    static const size_t sizes[] = {0, 1, 63, 64, 65, 127, 128, 129, 4096, 100000};
    uint8_t *data = fx_malloc(100000), got[32], want[32];
    uint8_t plain[32];
    (void)state;

    fx_fill_random(data, 100000, 42);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(fetch_digest(FETCH_DIGEST_SHA256, data, sizes[i], got), 0);
        fx_sha256(data, sizes[i], want);
        assert_memory_equal(got, want, 32);
        /* the PBS helper agrees */
        assert_int_equal(fetch_sha256(data, sizes[i], plain), 0);
        assert_memory_equal(plain, want, 32);
        assert_int_equal(fetch_digest(FETCH_DIGEST_SHA512_256, data, sizes[i], got), 0);
        fx_sha512_256(data, sizes[i], want);
        assert_memory_equal(got, want, 32);
    }
    /* SHA-512/256 is not truncated SHA-512: the empty input (FIPS 180-4) */
    fx_unhex("c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a", want, 32);
    assert_int_equal(fetch_digest(FETCH_DIGEST_SHA512_256, "", 0, got), 0);
    assert_memory_equal(got, want, 32);
    free(data);
}

/* --- images --------------------------------------------------------------- */

struct chunk_spec {
    uint64_t len;
    enum { DATA, ZEROS, FAKE_ZERO_ID } what;
    uint64_t zero_len; /* FAKE_ZERO_ID: the zero run whose digest is used as the id */
};

static void hash(enum fetch_digest_algo algo, const void *p, size_t len, uint8_t out[32])
{
    if (algo == FETCH_DIGEST_SHA256)
        fx_sha256(p, len, out);
    else
        fx_sha512_256(p, len, out);
}

/* Index and image of @specs; ids are real digests of the described contents. */
static struct fetch_image *image_of(const struct chunk_spec *specs, size_t n, uint64_t flags,
                                    uint64_t max, struct fetch_caibx **ret_idx)
{
    enum fetch_digest_algo algo =
        flags & FX_CA_SHA512_256 ? FETCH_DIGEST_SHA512_256 : FETCH_DIGEST_SHA256;
    uint64_t *lens = fx_malloc(n * sizeof(*lens)), *ends;
    uint8_t *id = fx_malloc(32 * n), *buf = calloc(1, max), *file;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    size_t len;

    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        lens[i] = specs[i].len;
        if (specs[i].what == DATA) {
            fx_fill_random(buf, specs[i].len, i + 1);
            hash(algo, buf, specs[i].len, id + 32 * i);
        } else {
            memset(buf, 0, max);
            hash(algo, buf, specs[i].what == ZEROS ? specs[i].len : specs[i].zero_len, id + 32 * i);
        }
    }
    ends = ends_of(lens, n);
    file = fx_caibx(flags, 1, max, max, ends, id, n, &len);
    *ret_idx = parse_ok(file, len, "image fixture");
    if (fetch_image_from_caibx(*ret_idx, &img, &err) != 0)
        fail_msg("fetch_image_from_caibx: %s", err.msg);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(img->extents[i].digest, id + 32 * i, 32);
    free(file);
    free(ends);
    free(buf);
    free(id);
    free(lens);
    return img;
}

static void check_holes(uint64_t flags)
{
    const struct chunk_spec specs[] = {
        {100000, DATA, 0},
        {MAX_DEF, ZEROS, 0}, /* the null chunk */
        {MAX_DEF, ZEROS, 0},
        {50000, ZEROS, 0},              /* a zero chunk shorter than max */
        {50000, DATA, 0},               /* same length, data */
        {60000, FAKE_ZERO_ID, 50000},   /* id of 50000 zeros on a 60000-byte chunk: data */
        {MAX_DEF, FAKE_ZERO_ID, 50000}, /* and on a max-size chunk */
        {MAX_DEF, DATA, 0},
        {77, ZEROS, 0}, /* a short zero tail */
    };
    const size_t n = sizeof(specs) / sizeof(specs[0]);
    enum fetch_digest_algo algo =
        flags & FX_CA_SHA512_256 ? FETCH_DIGEST_SHA512_256 : FETCH_DIGEST_SHA256;
    struct fetch_caibx *idx;
    struct fetch_image *img = image_of(specs, n, flags, MAX_DEF, &idx);
    uint64_t at = 0, data = 0;
    size_t zeros = 0;

    assert_int_equal(img->count, n);
    assert_int_equal(img->stride, 0);
    for (size_t i = 0; i < n; i++) {
        const struct fetch_extent *e = &img->extents[i];
        bool zero = specs[i].what == ZEROS;
        assert_int_equal(e->offset, at);
        assert_int_equal(e->length, specs[i].len);
        assert_int_equal(e->kind, FETCH_CHUNK_CASYNC);
        assert_int_equal(e->algo, algo);
        if (e->zero != zero)
            fail_msg("extent %zu: zero %d, expected %d", i, e->zero, zero);
        at += specs[i].len;
        if (zero)
            zeros++;
        else
            data += specs[i].len;
    }
    assert_int_equal(img->size, at);
    assert_int_equal(idx->size, at);
    assert_int_equal(img->data_bytes, data);
    assert_int_equal(img->zero_count, zeros);
    fetch_image_free(img);
    fetch_caibx_free(idx);
}

static void image_holes_sha512_256(void **state)
{
    (void)state;
    check_holes(FX_CA_FLAGS_CASYNC);
}

static void image_holes_sha256(void **state)
{
    (void)state;
    check_holes(FX_CA_FLAGS_SHA256);
}

/* An id of zeros under the other digest is no hole. */
static void image_other_algo_zero_is_data(void **state)
{
    uint8_t *zeros = calloc(1, MAX_DEF), id[2 * 32], *file;
    uint64_t ends[2] = {MAX_DEF, 2 * MAX_DEF};
    struct fetch_caibx *idx;
    struct fetch_image *img = NULL;
    size_t len;
    (void)state;

    assert_non_null(zeros);
    fx_sha256(zeros, MAX_DEF, id);
    fx_sha512_256(zeros, MAX_DEF, id + 32);
    file = fx_caibx(FX_CA_FLAGS_CASYNC, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 2, &len);
    idx = parse_ok(file, len, "SHA-512/256 index");
    assert_int_equal(fetch_image_from_caibx(idx, &img, NULL), 0);
    assert_false(img->extents[0].zero);
    assert_true(img->extents[1].zero);
    fetch_image_free(img);
    fetch_caibx_free(idx);
    free(file);

    file = fx_caibx(FX_CA_FLAGS_SHA256, MIN_DEF, AVG_DEF, MAX_DEF, ends, id, 2, &len);
    idx = parse_ok(file, len, "SHA-256 index");
    assert_int_equal(fetch_image_from_caibx(idx, &img, NULL), 0);
    assert_true(img->extents[0].zero);
    assert_false(img->extents[1].zero);
    assert_int_equal(img->extents[0].algo, FETCH_DIGEST_SHA256);
    fetch_image_free(img);
    fetch_caibx_free(idx);
    free(file);
    free(zeros);
}

/* What SEEK_DATA/SEEK_HOLE must answer, by walking every extent. */
static int64_t seek_ref(const struct fetch_image *img, uint64_t off, int whence)
{
    if (off >= img->size)
        return -ENXIO;
    for (size_t i = 0; i < img->count; i++) {
        const struct fetch_extent *e = &img->extents[i];
        if (e->offset + e->length <= off)
            continue;
        if (e->zero == (whence == SEEK_HOLE))
            return (int64_t)(off > e->offset ? off : e->offset);
    }
    return whence == SEEK_HOLE ? (int64_t)img->size : -ENXIO;
}

static void image_find_and_seek(void **state)
{
    const struct chunk_spec specs[] = {
        {1, DATA, 0},        {MAX_DEF, ZEROS, 0}, {3000, DATA, 0},     {2999, ZEROS, 0},
        {MAX_DEF, ZEROS, 0}, {17, ZEROS, 0},      {MAX_DEF, DATA, 0},  {65536, DATA, 0},
        {1, ZEROS, 0},       {40000, DATA, 0},    {MAX_DEF, ZEROS, 0},
    };
    const size_t n = sizeof(specs) / sizeof(specs[0]);
    struct fetch_caibx *idx;
    struct fetch_image *img = image_of(specs, n, FX_CA_FLAGS_CASYNC, MAX_DEF, &idx);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        const struct fetch_extent *e = &img->extents[i];
        uint64_t probes[] = {e->offset, e->offset + e->length / 2, e->offset + e->length - 1};
        for (size_t p = 0; p < 3; p++) {
            assert_int_equal(fetch_image_find(img, probes[p]), i);
            for (int w = SEEK_DATA; w <= SEEK_HOLE; w++) {
                int64_t got = fetch_image_seek(img, probes[p], w);
                int64_t want = seek_ref(img, probes[p], w);
                if (got != want)
                    fail_msg("seek(%llu, %s) = %lld, expected %lld", (unsigned long long)probes[p],
                             w == SEEK_DATA ? "DATA" : "HOLE", (long long)got, (long long)want);
            }
        }
    }
    assert_int_equal(fetch_image_seek(img, img->size, SEEK_DATA), -ENXIO);
    assert_int_equal(fetch_image_seek(img, img->size, SEEK_HOLE), -ENXIO);
    /* the last extent is a hole: no data after the last data extent */
    assert_int_equal(fetch_image_seek(img, img->extents[10].offset, SEEK_DATA), -ENXIO);
    fetch_image_free(img);
    fetch_caibx_free(idx);
}

/* Thousands of distinct lengths (as a real index has): one hash pass, correct flags. */
static void image_many_lengths(void **state)
{
    const size_t n = 3000;
    uint64_t *lens = fx_malloc(n * sizeof(*lens)), *ends;
    uint8_t *id = fx_malloc(32 * n), *zeros = calloc(1, MAX_DEF), *file;
    struct fetch_caibx *idx;
    struct fetch_image *img = NULL;
    size_t len, zero_count = 0;
    (void)state;

    assert_non_null(zeros);
    for (size_t i = 0; i < n; i++) {
        lens[i] = 1 + (i * 104729) % MAX_DEF;
        if (i % 3 == 0) {
            fx_sha512_256(zeros, lens[i], id + 32 * i);
            zero_count++;
        } else {
            fx_fill_random(id + 32 * i, 32, i);
        }
    }
    ends = ends_of(lens, n);
    file = fx_caibx(FX_CA_FLAGS_CASYNC, 1, MAX_DEF, MAX_DEF, ends, id, n, &len);
    idx = parse_ok(file, len, "3000 lengths");
    assert_int_equal(fetch_image_from_caibx(idx, &img, NULL), 0);
    assert_int_equal(img->zero_count, zero_count);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(img->extents[i].zero, i % 3 == 0);
    fetch_image_free(img);
    fetch_caibx_free(idx);
    free(file);
    free(ends);
    free(zeros);
    free(id);
    free(lens);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_many),
        cmocka_unit_test(valid_empty),
        cmocka_unit_test(valid_single_chunk),
        cmocka_unit_test(valid_digest_flags),
        cmocka_unit_test(valid_size_limits),
        cmocka_unit_test(example_from_doc),
        cmocka_unit_test(bad_file_size),
        cmocka_unit_test(bad_file_too_large),
        cmocka_unit_test(bad_index_header),
        cmocka_unit_test(bad_feature_flags),
        cmocka_unit_test(bad_chunk_size_fields),
        cmocka_unit_test(bad_table_header),
        cmocka_unit_test(bad_end_offsets),
        cmocka_unit_test(bad_chunk_too_large),
        cmocka_unit_test(bad_tail),
        cmocka_unit_test(every_byte_flip_in_fixed_fields),
        cmocka_unit_test(null_chunk_ids),
        cmocka_unit_test(zeros_ladder_block_edges),
        cmocka_unit_test(zeros_ladder_bad_args),
        cmocka_unit_test(digest_matches_openssl),
        cmocka_unit_test(image_holes_sha512_256),
        cmocka_unit_test(image_holes_sha256),
        cmocka_unit_test(image_other_algo_zero_is_data),
        cmocka_unit_test(image_find_and_seek),
        cmocka_unit_test(image_many_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
