/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/didx.h, PBS dynamic indexes. The real index of a payload
 * stream made by the Proxmox Backup client (tests/data/pxar, from the
 * proxmox-backup sources) parses with its known answers; indexes written
 * here break one rule each and are refused with a message naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/didx.h"
#include "fetch/pbs_format.h"
#include "fixtures.h"

#define REAL_DIDX "pxar/backup-client-pxar-data.ppxar.didx"

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void real_index(void **state)
{
    size_t len = 0;
    uint8_t *buf = fx_read(TEST_DATA_DIR, REAL_DIDX, &len), body_sum[32];
    struct fetch_didx *idx = NULL;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    uint64_t prev = 0;
    (void)state;

    assert_int_equal(len, 8096);
    fx_sha256(buf + 4096, len - 4096, body_sum);
    assert_int_equal(fetch_didx_parse(buf, len, &idx, &err), 0);
    assert_int_equal(idx->count, 100);
    assert_int_equal(idx->ctime, 1715091951);
    assert_int_equal(idx->size, 104859232); /* the payload stream's length (README) */
    assert_memory_equal(idx->csum, body_sum, 32);

    assert_int_equal(fetch_image_from_didx(idx, NULL, &img, &err), 0);
    assert_int_equal(img->count, 100);
    assert_int_equal(img->size, idx->size);
    assert_int_equal(img->stride, 0);
    for (size_t i = 0; i < img->count; i++) {
        const struct fetch_extent *e = &img->extents[i];
        assert_int_equal(e->offset, prev);
        assert_int_equal(e->offset + e->length, le64(idx->items + i * 40));
        assert_memory_equal(e->digest, idx->items + i * 40 + 8, 32);
        assert_int_equal(e->kind, FETCH_CHUNK_PBS);
        assert_false(e->zero);
        prev = e->offset + e->length;
    }
    assert_int_equal(img->data_bytes, img->size);
    assert_int_equal(fetch_image_find(img, 0), 0);
    assert_int_equal(fetch_image_find(img, img->size - 1), 99);
    fetch_image_free(img);
    fetch_didx_free(idx);
}

/* A .didx with entries ending at @ends (digests: the first byte is the index),
 * its checksum right. */
static uint8_t *make_didx(const uint64_t *ends, size_t n, size_t *ret_len)
{
    size_t len = 4096 + 40 * n;
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    memcpy(b, PBS_MAGIC_DYNAMIC_INDEX, PBS_MAGIC_LEN);
    for (size_t i = 0; i < n; i++) {
        fx_put_le64(b + 4096 + 40 * i, ends[i]);
        b[4096 + 40 * i + 8] = (uint8_t)i;
    }
    fx_sha256(b + 4096, len - 4096, b + 32);
    *ret_len = len;
    return b;
}

static void refused(uint8_t *buf, size_t len, const char *rule)
{
    struct fetch_didx *idx = NULL;
    fetch_error err = {""};
    assert_int_equal(fetch_didx_parse(buf, len, &idx, &err), -EBADMSG);
    assert_null(idx);
    if (!strstr(err.msg, rule))
        fail_msg("expected \"%s\" in \"%s\"", rule, err.msg);
}

static void bad_indexes(void **state)
{
    const uint64_t ends[] = {1000, 5000, 5001};
    const uint64_t same[] = {1000, 1000};
    const uint64_t huge[] = {1000, 1000 + FETCH_DIDX_CHUNK_MAX + 1};
    struct fetch_didx *idx = NULL;
    fetch_error err = {""};
    uint8_t *b;
    size_t len;
    (void)state;

    b = make_didx(ends, 3, &len);
    assert_int_equal(fetch_didx_parse(b, len, &idx, &err), 0);
    assert_int_equal(idx->size, 5001);
    fetch_didx_free(idx);

    /* an empty stream is an index of no entries */
    b = make_didx(NULL, 0, &len);
    assert_int_equal(fetch_didx_parse(b, len, &idx, &err), 0);
    assert_int_equal(idx->size, 0);
    assert_int_equal(idx->count, 0);
    fetch_didx_free(idx);

    b = make_didx(ends, 3, &len);
    refused(b, 4095, "truncated");
    b = make_didx(ends, 3, &len);
    b[0] ^= 1;
    refused(b, len, "bad magic");
    b = make_didx(ends, 3, &len);
    refused(b, len - 1, "whole 40-byte entries");
    b = make_didx(ends, 3, &len);
    b[4096 + 40 + 9] ^= 0x80; /* a digest byte */
    refused(b, len, "checksum mismatch");
    b = make_didx(same, 2, &len);
    refused(b, len, "entry 1: end offset 1000 does not follow 1000");
    b = make_didx(huge, 2, &len);
    refused(b, len, "entry 1: a chunk of");
    /* refused on its length alone, before anything is read */
    b = make_didx(ends, 3, &len);
    refused(b, FETCH_DIDX_FILE_MAX + 40, "too large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_index),
        cmocka_unit_test(bad_indexes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
