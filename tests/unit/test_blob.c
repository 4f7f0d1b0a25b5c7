/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/blob.h (DataBlob decoding: magic, CRC, zstd, digest, limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "alloc_track.h"
#include "fetch/blob.h"
#include "fetch/pbs_key.h"
#include "fixtures.h"

/* Decodes a copy of @blob (fetch_blob_decode takes ownership of its input). */
static int decode(const uint8_t *blob, size_t len, size_t exp_len, size_t max_len,
                  const uint8_t *digest, fetch_data *out, fetch_error *err)
{
    struct fetch_blob_expect exp = {.len = exp_len, .max_len = max_len, .digest = digest};
    void *raw = fx_memdup(blob, len);
    memset(out, 0, sizeof(*out));
    if (err)
        err->msg[0] = '\0';
    return fetch_blob_decode(raw, len, &exp, out, err);
}

/* Decoding must fail with @want and leave a message. */
static void expect_fail(const uint8_t *blob, size_t len, size_t exp_len, size_t max_len,
                        const uint8_t *digest, int want, const char *what)
{
    fetch_data d;
    fetch_error err;
    int r = decode(blob, len, exp_len, max_len, digest, &d, &err);
    if (r != want)
        fail_msg("%s: got %d (%s), expected %d", what, r, r < 0 ? strerror(-r) : "success", want);
    if (!err.msg[0])
        fail_msg("%s: no error message", what);
    fetch_data_release(&d);
}

static void magics_match_spec(void **state)
{
    static const struct {
        const char *text;
        const uint8_t *magic;
    } m[] = {
        {"Proxmox Backup uncompressed blob v1.0", fx_magic_plain},
        {"Proxmox Backup zstd compressed blob v1.0", fx_magic_zstd},
        {"Proxmox Backup encrypted blob v1.0", fx_magic_encrypted},
        {"Proxmox Backup zstd compressed encrypted blob v1.0", fx_magic_encr_compr},
        {"Proxmox Backup fixed sized chunk index v1.0", fx_magic_fidx},
        {"Proxmox Backup dynamic sized chunk index v1.0", fx_magic_didx},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        uint8_t d[32];
        fx_sha256(m[i].text, strlen(m[i].text), d);
        assert_memory_equal(d, m[i].magic, 8);
    }
}

static void blob_kind(void **state)
{
    uint8_t buf[16] = {0};
    (void)state;
    memcpy(buf, fx_magic_plain, 8);
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), FETCH_BLOB_PLAIN);
    memcpy(buf, fx_magic_zstd, 8);
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), FETCH_BLOB_ZSTD);
    memcpy(buf, fx_magic_encrypted, 8);
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), FETCH_BLOB_ENCRYPTED);
    memcpy(buf, fx_magic_encr_compr, 8);
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), FETCH_BLOB_ENCRYPTED_ZSTD);
    assert_int_equal(fetch_blob_kind(buf, 8), FETCH_BLOB_ENCRYPTED_ZSTD);
    assert_int_equal(fetch_blob_kind(buf, 7), -EBADMSG);
    assert_int_equal(fetch_blob_kind(buf, 0), -EBADMSG);
    memcpy(buf, fx_magic_fidx, 8);
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), -EBADMSG);
    memcpy(buf, fx_magic_plain, 8);
    buf[7] ^= 1;
    assert_int_equal(fetch_blob_kind(buf, sizeof(buf)), -EBADMSG);
}

static void plain_ok_no_copy(void **state)
{
    enum { N = 1000 };
    uint8_t data[N], digest[32];
    size_t len;
    uint8_t *blob;
    struct fetch_blob_expect exp = {.len = N, .digest = digest};
    fetch_data d = {0};
    fetch_error err = {""};
    (void)state;

    fx_fill_random(data, N, 1);
    fx_sha256(data, N, digest);
    blob = fx_blob_plain(data, N, &len);
    assert_int_equal(len, N + 12);
    assert_int_equal(fetch_blob_decode(blob, len, &exp, &d, &err), 0);
    /* the plaintext is the payload inside the raw buffer: no copy */
    assert_ptr_equal(d.base, blob);
    assert_ptr_equal(d.bytes, blob + 12);
    assert_int_equal(d.len, N);
    assert_memory_equal(d.bytes, data, N);
    fetch_data_release(&d);
    assert_null(d.base);
    assert_null(d.bytes);
    assert_int_equal(d.len, 0);
    /* releasing twice and releasing NULL are harmless */
    fetch_data_release(&d);
    fetch_data_release(NULL);
}

/* larger than the library's hashing step, odd length: CRC and digest chained over steps */
static void plain_ok_large(void **state)
{
    const size_t n = 3 * FX_MIB + 3;
    uint8_t *data = fx_malloc(n), digest[32], *blob;
    size_t len;
    fetch_data d;
    fetch_error err = {""};
    (void)state;
    fx_fill_random(data, n, 21);
    fx_sha256(data, n, digest);
    blob = fx_blob_plain(data, n, &len);
    if (decode(blob, len, n, 0, digest, &d, &err) != 0)
        fail_msg("3 MiB plain blob: %s", err.msg);
    assert_int_equal(d.len, n);
    assert_memory_equal(d.bytes, data, n);
    fetch_data_release(&d);
    /* a flipped byte far into the payload */
    blob[12 + n - 100000] ^= 4;
    expect_fail(blob, len, n, 0, NULL, -EBADMSG, "3 MiB plain blob, flipped byte");
    free(blob);
    free(data);
}

static void plain_ok_unknown_len(void **state)
{
    enum { N = 3000 };
    uint8_t data[N];
    size_t len;
    uint8_t *blob;
    fetch_data d;
    (void)state;

    fx_fill_text(data, N, 2);
    blob = fx_blob_plain(data, N, &len);
    /* no digest, length unknown, limit above and exactly at the length */
    assert_int_equal(decode(blob, len, 0, 4096, NULL, &d, NULL), 0);
    assert_int_equal(d.len, N);
    assert_memory_equal(d.bytes, data, N);
    fetch_data_release(&d);
    assert_int_equal(decode(blob, len, 0, N, NULL, &d, NULL), 0);
    assert_int_equal(d.len, N);
    fetch_data_release(&d);
    free(blob);
}

static void plain_empty(void **state)
{
    uint8_t digest[32];
    size_t len;
    uint8_t *blob = fx_blob_plain("", 0, &len);
    fetch_data d;
    (void)state;
    fx_sha256("", 0, digest);
    assert_int_equal(len, 12);
    assert_int_equal(decode(blob, len, 0, 16, digest, &d, NULL), 0);
    assert_int_equal(d.len, 0);
    fetch_data_release(&d);
    free(blob);
}

static void zstd_ok(bool with_size)
{
    const size_t n = 256 * FX_KIB + 77;
    uint8_t *data = fx_malloc(n), digest[32], *blob;
    size_t len;
    fetch_data d;
    fetch_error err = {""};

    fx_fill_text(data, n, 3);
    fx_sha256(data, n, digest);
    blob = fx_blob_zstd(data, n, with_size, &len);
    assert_true(len < n / 4); /* really compressed */

    /* exact length known (a chunk) */
    if (decode(blob, len, n, 0, digest, &d, &err) != 0)
        fail_msg("zstd blob (content size %s): %s", with_size ? "present" : "absent", err.msg);
    assert_int_equal(d.len, n);
    assert_memory_equal(d.bytes, data, n);
    assert_ptr_equal(d.bytes, d.base);
    fetch_data_release(&d);

    /* length unknown, bounded by max_len (a .blob); the limit is above the
     * initial buffer, so a frame without content size makes it grow */
    if (decode(blob, len, 0, 4 * FX_MIB, digest, &d, &err) != 0)
        fail_msg("zstd blob, unknown length (content size %s): %s",
                 with_size ? "present" : "absent", err.msg);
    assert_int_equal(d.len, n);
    assert_memory_equal(d.bytes, data, n);
    fetch_data_release(&d);

    /* limit exactly the plaintext length */
    if (decode(blob, len, 0, n, NULL, &d, &err) != 0)
        fail_msg("zstd blob, max_len == length (content size %s): %s",
                 with_size ? "present" : "absent", err.msg);
    assert_int_equal(d.len, n);
    fetch_data_release(&d);

    free(blob);
    free(data);
}

static void zstd_ok_with_content_size(void **state)
{
    (void)state;
    zstd_ok(true);
}

static void zstd_ok_without_content_size(void **state)
{
    (void)state;
    zstd_ok(false);
}

static void zstd_ok_4mib_chunk(void **state)
{
    const size_t n = 4 * FX_MIB;
    uint8_t *data = fx_malloc(n), digest[32], *blob;
    size_t len;
    fetch_data d;
    (void)state;
    fx_fill_random(data, n / 2, 4);
    memset(data + n / 2, 0, n / 2);
    fx_sha256(data, n, digest);
    for (int with_size = 0; with_size < 2; with_size++) {
        blob = fx_blob_zstd(data, n, with_size, &len);
        assert_int_equal(decode(blob, len, n, 0, digest, &d, NULL), 0);
        assert_int_equal(d.len, n);
        assert_memory_equal(d.bytes, data, n);
        fetch_data_release(&d);
        free(blob);
    }
    free(data);
}

/* The hand-made RLE frames used for the bombs are valid zstd. */
static void rle_fixture_is_valid_zstd(void **state)
{
    const size_t n = 300 * FX_KIB + 5;
    uint8_t *ref = fx_malloc(n), *blob, *frame;
    size_t flen, len;
    fetch_data d;
    (void)state;
    for (int with_size = 0; with_size < 2; with_size++) {
        frame = fx_zstd_rle_frame(n, 0x5a, with_size, &flen);
        assert_int_equal(ZSTD_getFrameContentSize(frame, flen),
                         with_size ? (unsigned long long)n : ZSTD_CONTENTSIZE_UNKNOWN);
        {
            ZSTD_DCtx *dc = ZSTD_createDCtx();
            ZSTD_inBuffer in = {frame, flen, 0};
            ZSTD_outBuffer out = {ref, n, 0};
            size_t rc = ZSTD_decompressStream(dc, &out, &in);
            assert_false(ZSTD_isError(rc));
            assert_int_equal(rc, 0);
            assert_int_equal(out.pos, n);
            ZSTD_freeDCtx(dc);
        }
        for (size_t i = 0; i < n; i++)
            assert_int_equal(ref[i], 0x5a);
        blob = fx_blob(fx_magic_zstd, frame, flen, &len);
        assert_int_equal(decode(blob, len, n, 0, NULL, &d, NULL), 0);
        assert_int_equal(d.len, n);
        assert_memory_equal(d.bytes, ref, n);
        fetch_data_release(&d);
        free(blob);
        free(frame);
    }
    free(ref);
}

static void truncated(void **state)
{
    uint8_t data[64], *blob;
    size_t len;
    (void)state;
    fx_fill_random(data, sizeof(data), 5);
    blob = fx_blob_plain(data, sizeof(data), &len);
    /* shorter than the magic */
    for (size_t cut = 0; cut < 8; cut++)
        expect_fail(blob, cut, 0, 1024, NULL, -EBADMSG, "blob shorter than the magic");
    /* magic present, CRC missing or partial */
    for (size_t cut = 8; cut < 12; cut++)
        expect_fail(blob, cut, 0, 1024, NULL, -EBADMSG, "plain blob shorter than its header");
    /* payload cut: the CRC no longer matches (and the length differs) */
    expect_fail(blob, len - 1, 0, 1024, NULL, -EBADMSG, "plain blob missing its last byte");
    expect_fail(blob, len - 1, sizeof(data), 0, NULL, -EBADMSG,
                "plain blob missing its last byte, length known");
    free(blob);

    blob = fx_blob_zstd(data, sizeof(data), true, &len);
    for (size_t cut = 8; cut < 12; cut++)
        expect_fail(blob, cut, 0, 1024, NULL, -EBADMSG, "zstd blob shorter than its header");
    free(blob);
}

static void wrong_magic(void **state)
{
    uint8_t data[100], *blob;
    size_t len;
    (void)state;
    fx_fill_random(data, sizeof(data), 6);
    blob = fx_blob_plain(data, sizeof(data), &len);
    for (size_t i = 0; i < 8; i++) {
        blob[i] ^= 0x10;
        expect_fail(blob, len, sizeof(data), 0, NULL, -EBADMSG, "flipped magic byte");
        blob[i] ^= 0x10;
    }
    free(blob);
    /* a fixed-index magic is not a blob magic */
    blob = fx_blob(fx_magic_fidx, data, sizeof(data), &len);
    expect_fail(blob, len, sizeof(data), 0, NULL, -EBADMSG, "fidx magic");
    free(blob);
}

static void bad_crc(void **state)
{
    const size_t n = 5000;
    uint8_t *data = fx_malloc(n), digest[32], *blob;
    size_t len;
    (void)state;
    fx_fill_text(data, n, 7);
    fx_sha256(data, n, digest);

    for (int compress = 0; compress < 2; compress++) {
        blob = compress ? fx_blob_zstd(data, n, true, &len) : fx_blob_plain(data, n, &len);
        /* flip a payload byte (first, middle, last) */
        size_t at[] = {12, 12 + (len - 12) / 2, len - 1};
        for (size_t i = 0; i < 3; i++) {
            blob[at[i]] ^= 0x01;
            expect_fail(blob, len, n, 0, NULL, -EBADMSG, "flipped payload byte");
            expect_fail(blob, len, 0, 2 * n, NULL, -EBADMSG, "flipped payload byte, no length");
            blob[at[i]] ^= 0x01;
        }
        /* flip each CRC byte: caught without a digest; with one, an
         * uncompressed blob's bytes are proven by it (the CRC is not read),
         * a compressed one's CRC is still checked before decompressing */
        for (size_t i = 8; i < 12; i++) {
            blob[i] ^= 0x80;
            expect_fail(blob, len, n, 0, NULL, -EBADMSG, "flipped CRC byte");
            if (compress) {
                expect_fail(blob, len, n, 0, digest, -EBADMSG, "flipped CRC byte");
            } else {
                fetch_data d;
                assert_int_equal(decode(blob, len, n, 0, digest, &d, NULL), 0);
                assert_memory_equal(d.bytes, data, n);
                fetch_data_release(&d);
            }
            blob[i] ^= 0x80;
        }
        /* unmodified still decodes */
        {
            fetch_data d;
            assert_int_equal(decode(blob, len, n, 0, digest, &d, NULL), 0);
            fetch_data_release(&d);
        }
        free(blob);
    }
    free(data);
}

static void bad_digest(void **state)
{
    const size_t n = 2048;
    uint8_t *data = fx_malloc(n), digest[32], *blob;
    size_t len;
    (void)state;
    fx_fill_text(data, n, 8);
    fx_sha256(data, n, digest);
    for (int compress = 0; compress < 3; compress++) {
        blob = compress ? fx_blob_zstd(data, n, compress == 1, &len) : fx_blob_plain(data, n, &len);
        digest[31] ^= 1;
        expect_fail(blob, len, n, 0, digest, -EBADMSG, "wrong digest (last byte)");
        expect_fail(blob, len, 0, n, digest, -EBADMSG, "wrong digest, unknown length");
        digest[31] ^= 1;
        digest[0] ^= 0x80;
        expect_fail(blob, len, n, 0, digest, -EBADMSG, "wrong digest (first byte)");
        digest[0] ^= 0x80;
        free(blob);
    }
    /* the digest of different data with a valid CRC: a chunk stored under the wrong name */
    blob = fx_blob_plain(data, n - 1, &len);
    expect_fail(blob, len, n - 1, 0, digest, -EBADMSG, "digest of other data");
    free(blob);
    free(data);
}

static void plain_length_mismatch(void **state)
{
    const size_t n = 4096;
    uint8_t *data = fx_malloc(n), *blob;
    size_t len;
    (void)state;
    fx_fill_random(data, n, 9);
    blob = fx_blob_plain(data, n, &len);
    expect_fail(blob, len, n + 1, 0, NULL, -EBADMSG, "plain blob shorter than expected");
    expect_fail(blob, len, n - 1, 0, NULL, -EBADMSG, "plain blob longer than expected");
    expect_fail(blob, len, 2 * n, 0, NULL, -EBADMSG, "plain blob half the expected length");
    free(blob);
    free(data);
}

static void zstd_length_mismatch(void **state)
{
    const size_t n = 64 * FX_KIB;
    uint8_t *data = fx_malloc(n), *blob;
    size_t len;
    (void)state;
    fx_fill_text(data, n, 10);
    for (int with_size = 0; with_size < 2; with_size++) {
        blob = fx_blob_zstd(data, n, with_size, &len);
        /* decompresses to more than expected */
        expect_fail(blob, len, n - 1, 0, NULL, -EBADMSG, "zstd: one byte more than expected");
        expect_fail(blob, len, n / 2, 0, NULL, -EBADMSG, "zstd: twice the expected length");
        expect_fail(blob, len, 1, 0, NULL, -EBADMSG, "zstd: far more than expected");
        /* decompresses to less than expected */
        expect_fail(blob, len, n + 1, 0, NULL, -EBADMSG, "zstd: one byte less than expected");
        expect_fail(blob, len, 4 * FX_MIB, 0, NULL, -EBADMSG, "zstd: far less than expected");
        free(blob);
    }
    free(data);
}

static void encrypted(void **state)
{
    uint8_t payload[200], *blob;
    size_t len;
    (void)state;
    fx_fill_random(payload, sizeof(payload), 11);
    /* 44-byte header (IV and tag are not covered by the CRC, but a CRC over
     * the whole rest is as good as any for this test) */
    blob = fx_blob(fx_magic_encrypted, payload, sizeof(payload), &len);
    expect_fail(blob, len, 188, 0, NULL, -ENOKEY, "encrypted blob");
    expect_fail(blob, len, 0, 4096, NULL, -ENOKEY, "encrypted blob, unknown length");
    free(blob);
    blob = fx_blob(fx_magic_encr_compr, payload, sizeof(payload), &len);
    expect_fail(blob, len, 4 * FX_MIB, 0, NULL, -ENOKEY, "encrypted compressed blob");
    free(blob);
}

/* Decodes a copy of @blob with @key. */
static int decode_with(const struct fetch_pbs_key *key, const uint8_t *blob, size_t len,
                       size_t exp_len, const uint8_t *digest, fetch_data *out, fetch_error *err)
{
    struct fetch_blob_expect exp = {.len = exp_len, .digest = digest, .key = key};
    memset(out, 0, sizeof(*out));
    err->msg[0] = '\0';
    return fetch_blob_decode(fx_memdup(blob, len), len, &exp, out, err);
}

/* Encrypted blobs decrypt with the right key, to the right bytes, and
 * otherwise fail: a wrong key, a flipped byte of the ciphertext (CRC fixed
 * or not: the message tells which), a flipped tag, a digest that is not
 * keyed with the key's id; a wrong stored CRC alone does not matter. */
static void decrypted(void **state)
{
    /* an unprotected key file: the key is 0, 1, ..., 31 */
    const char *json = "{\"kdf\":null,\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}";
    struct fetch_pbs_key key, other;
    uint8_t iv[16], data[70000], *cat = fx_malloc(sizeof(data) + 32), digest[32], plain_digest[32];
    fetch_error err;
    fetch_data d;
    (void)state;

    assert_int_equal(fetch_pbs_key_load(json, strlen(json), NULL, &key, &err), 0);
    other = key;
    other.key[0] ^= 1;
    fx_fill_random(iv, sizeof(iv), 3);
    fx_fill_text(data, sizeof(data), 4);
    /* the keyed digest, computed here: SHA-256(data || id key) */
    memcpy(cat, data, sizeof(data));
    memcpy(cat + sizeof(data), key.id_key, 32);
    fx_sha256(cat, sizeof(data) + 32, digest);
    fx_sha256(data, sizeof(data), plain_digest);
    for (int compress = 0; compress < 2; compress++) {
        size_t len;
        uint8_t *blob = fx_blob_encrypted(key.key, iv, data, sizeof(data), compress, &len);

        assert_int_equal(decode_with(&key, blob, len, sizeof(data), digest, &d, &err), 0);
        assert_int_equal(d.len, sizeof(data));
        assert_memory_equal(d.bytes, data, sizeof(data));
        fetch_data_release(&d);
        assert_int_equal(decode_with(NULL, blob, len, sizeof(data), digest, &d, &err), -ENOKEY);
        assert_int_equal(decode_with(&other, blob, len, sizeof(data), digest, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "does not authenticate"));
        /* the unkeyed digest is not the chunk's */
        assert_int_equal(decode_with(&key, blob, len, sizeof(data), plain_digest, &d, &err),
                         -EBADMSG);
        assert_non_null(strstr(err.msg, "digest"));

        /* a stored CRC that is wrong, over ciphertext the tag proves: the
         * bytes are right (the CRC is read only to explain a failed tag) */
        blob[8] ^= 1;
        assert_int_equal(decode_with(&key, blob, len, sizeof(data), digest, &d, &err), 0);
        assert_memory_equal(d.bytes, data, sizeof(data));
        fetch_data_release(&d);
        blob[8] ^= 1;

        blob[len - 1] ^= 1; /* the tag fails, and the CRC says why */
        assert_int_equal(decode_with(&key, blob, len, sizeof(data), digest, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "CRC-32 mismatch"));
        /* with the CRC made to fit, the tag alone: the CRC is taken of the
         * ciphertext put back after the failed decryption (a CRC of the
         * decrypted garbage would not match) */
        fx_put_le32(blob + 8, fx_crc32(blob + 44, len - 44));
        assert_int_equal(decode_with(&key, blob, len, sizeof(data), digest, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "does not authenticate"));
        blob[len - 1] ^= 1;
        fx_put_le32(blob + 8, fx_crc32(blob + 44, len - 44));
        blob[30] ^= 0x40; /* the tag (not covered by the CRC) */
        assert_int_equal(decode_with(&key, blob, len, sizeof(data), digest, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "does not authenticate"));
        blob[30] ^= 0x40;
        /* a wrong key: its garbage put back to the ciphertext, whose CRC fits */
        assert_int_equal(decode_with(&other, blob, len, sizeof(data), NULL, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "does not authenticate"));
        free(blob);
    }
    free(cat);
}

static void zstd_garbage(void **state)
{
    uint8_t junk[512], *blob;
    size_t len;
    (void)state;
    /* random bytes with a valid CRC */
    fx_fill_random(junk, sizeof(junk), 12);
    blob = fx_blob(fx_magic_zstd, junk, sizeof(junk), &len);
    expect_fail(blob, len, 4096, 0, NULL, -EBADMSG, "zstd: random payload");
    expect_fail(blob, len, 0, 4096, NULL, -EBADMSG, "zstd: random payload, unknown length");
    free(blob);
    /* a zstd frame header (no content size, 128 KiB window) then a block of
     * the reserved type 3 and junk */
    fx_put_le32(junk, 0xFD2FB528u);
    junk[4] = 0x00;
    junk[5] = 7 << 3;
    junk[6] = (uint8_t)((100u << 3) | (3u << 1) | 1u);
    junk[7] = (uint8_t)((100u << 3) >> 8);
    junk[8] = 0;
    blob = fx_blob(fx_magic_zstd, junk, sizeof(junk), &len);
    expect_fail(blob, len, 4096, 0, NULL, -EBADMSG, "zstd: magic then junk");
    expect_fail(blob, len, 0, 4096, NULL, -EBADMSG, "zstd: magic then junk, unknown length");
    free(blob);
    /* an empty payload is not a frame */
    blob = fx_blob(fx_magic_zstd, "", 0, &len);
    expect_fail(blob, len, 10, 0, NULL, -EBADMSG, "zstd: empty payload");
    expect_fail(blob, len, 0, 4096, NULL, -EBADMSG, "zstd: empty payload, unknown length");
    free(blob);
}

static void zstd_truncated(void **state)
{
    const size_t n = 200 * FX_KIB;
    uint8_t *data = fx_malloc(n), *frame, *blob;
    size_t flen, len;
    (void)state;
    fx_fill_random(data, n / 2, 13);
    fx_fill_text(data + n / 2, n / 2, 13);
    for (int with_size = 0; with_size < 2; with_size++) {
        frame = fx_zstd_frame(data, n, with_size, &flen);
        size_t cuts[] = {1, 3, 4, 6, flen / 3, flen / 2, flen - 4, flen - 1};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            blob = fx_blob(fx_magic_zstd, frame, cuts[i], &len); /* valid CRC of the cut frame */
            expect_fail(blob, len, n, 0, NULL, -EBADMSG, "truncated zstd frame");
            expect_fail(blob, len, 0, 2 * n, NULL, -EBADMSG,
                        "truncated zstd frame, unknown length");
            free(blob);
        }
        free(frame);
    }
    free(data);
}

static void zstd_trailing_data(void **state)
{
    const size_t n = 10000;
    uint8_t *data = fx_malloc(n), *frame, *two, *blob;
    size_t flen, len;
    (void)state;
    fx_fill_text(data, n, 14);
    frame = fx_zstd_frame(data, n, true, &flen);
    /* one frame then junk */
    two = fx_malloc(2 * flen);
    memcpy(two, frame, flen);
    memset(two + flen, 0, 5);
    blob = fx_blob(fx_magic_zstd, two, flen + 5, &len);
    expect_fail(blob, len, n, 0, NULL, -EBADMSG, "zstd frame followed by junk");
    expect_fail(blob, len, 0, 4 * n, NULL, -EBADMSG, "zstd frame followed by junk, no length");
    free(blob);
    /* two frames: the format allows a single one */
    memcpy(two + flen, frame, flen);
    blob = fx_blob(fx_magic_zstd, two, 2 * flen, &len);
    expect_fail(blob, len, n, 0, NULL, -EBADMSG, "two zstd frames, first one expected");
    expect_fail(blob, len, 2 * n, 0, NULL, -EBADMSG, "two zstd frames, both expected");
    expect_fail(blob, len, 0, 4 * n, NULL, -EBADMSG, "two zstd frames, no length");
    free(blob);
    free(two);
    free(frame);
    free(data);
}

static void max_len_exceeded(void **state)
{
    const size_t n = 100000;
    uint8_t *data = fx_malloc(n), *blob;
    size_t len;
    (void)state;
    fx_fill_text(data, n, 15);
    blob = fx_blob_plain(data, n, &len);
    expect_fail(blob, len, 0, n - 1, NULL, -EFBIG, "plain blob over max_len");
    free(blob);
    blob = fx_blob_zstd(data, n, true, &len);
    expect_fail(blob, len, 0, n - 1, NULL, -EFBIG, "zstd blob with content size over max_len");
    expect_fail(blob, len, 0, 1000, NULL, -EFBIG, "zstd blob with content size over max_len");
    free(blob);
    blob = fx_blob_zstd(data, n, false, &len);
    expect_fail(blob, len, 0, n - 1, NULL, -EFBIG,
                "zstd blob without content size, one byte over max_len");
    expect_fail(blob, len, 0, 1000, NULL, -EFBIG, "zstd blob without content size over max_len");
    free(blob);
    free(data);
}

static void raw_over_128mib(void **state)
{
    const size_t n = 128 * FX_MIB + 1;
    struct fetch_blob_expect exp = {.len = 0, .max_len = 256 * FX_MIB};
    uint8_t *raw = calloc(1, 12 + n);
    fetch_data d = {0};
    (void)state;
    assert_non_null(raw);
    memcpy(raw, fx_magic_plain, 8);
    /* CRC left zero: the size limit must come first */
    assert_int_equal(fetch_blob_decode(raw, 12 + n, &exp, &d, NULL), -EFBIG);
}

/*
 * A decompression bomb: 64 GiB of zeros in 2 MiB of RLE blocks. Decoding it
 * against a 4 MiB chunk must fail after at most a few MiB of output, without
 * allocating more than the expected length.
 */
static void bomb(bool with_size, size_t exp_len, size_t max_len, int want)
{
    const uint64_t total = 64ull << 30;
    size_t flen, len;
    uint8_t *frame = fx_zstd_rle_frame(total, 0, with_size, &flen), *blob;
    struct fetch_blob_expect exp = {.len = exp_len, .max_len = max_len};
    fetch_data d = {0};
    fetch_error err = {""};
    struct timespec t0, t1;
    double secs;
    size_t limit = exp_len ? exp_len : max_len, largest_alloc;
    int r;

    blob = fx_blob(fx_magic_zstd, frame, flen, &len);
    free(frame);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fx_alloc_track_start();
    r = fetch_blob_decode(blob, len, &exp, &d, &err);
    largest_alloc = fx_alloc_track_stop();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fetch_data_release(&d);
    if (r != want)
        fail_msg("bomb (content size %s, len %zu, max %zu): got %d (%s), expected %d",
                 with_size ? "64 GiB" : "absent", exp_len, max_len, r, err.msg, want);
    /* the wrap is in effect: the output buffer of a chunk was seen */
    if (exp_len && largest_alloc < exp_len)
        fail_msg("bomb: allocation tracking saw only %zu bytes", largest_alloc);
    if (largest_alloc > limit + 64 * FX_KIB)
        fail_msg("bomb: allocated %zu bytes at once, limit %zu", largest_alloc, limit);
    /* decoding all 64 GiB would take far longer than this */
    if (secs > 5.0)
        fail_msg("bomb: took %.1f s", secs);
}

static void bomb_chunk_without_content_size(void **state)
{
    (void)state;
    bomb(false, 4 * FX_MIB, 0, -EBADMSG);
}

static void bomb_chunk_with_content_size(void **state)
{
    (void)state;
    bomb(true, 4 * FX_MIB, 0, -EBADMSG);
}

static void bomb_blob_with_content_size(void **state)
{
    (void)state;
    bomb(true, 0, 16 * FX_MIB, -EFBIG);
}

static void bomb_blob_without_content_size(void **state)
{
    (void)state;
    bomb(false, 0, 16 * FX_MIB, -EFBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(magics_match_spec),
        cmocka_unit_test(blob_kind),
        cmocka_unit_test(plain_ok_no_copy),
        cmocka_unit_test(plain_ok_large),
        cmocka_unit_test(plain_ok_unknown_len),
        cmocka_unit_test(plain_empty),
        cmocka_unit_test(zstd_ok_with_content_size),
        cmocka_unit_test(zstd_ok_without_content_size),
        cmocka_unit_test(zstd_ok_4mib_chunk),
        cmocka_unit_test(rle_fixture_is_valid_zstd),
        cmocka_unit_test(truncated),
        cmocka_unit_test(wrong_magic),
        cmocka_unit_test(bad_crc),
        cmocka_unit_test(bad_digest),
        cmocka_unit_test(plain_length_mismatch),
        cmocka_unit_test(zstd_length_mismatch),
        cmocka_unit_test(encrypted),
        cmocka_unit_test(decrypted),
        cmocka_unit_test(zstd_garbage),
        cmocka_unit_test(zstd_truncated),
        cmocka_unit_test(zstd_trailing_data),
        cmocka_unit_test(max_len_exceeded),
        cmocka_unit_test(raw_over_128mib),
        cmocka_unit_test(bomb_chunk_without_content_size),
        cmocka_unit_test(bomb_chunk_with_content_size),
        cmocka_unit_test(bomb_blob_with_content_size),
        cmocka_unit_test(bomb_blob_without_content_size),
    };
    return cmocka_run_group_tests_name("blob", tests, NULL, NULL);
}
