/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/chunk.h (the chunk format table): every extent kind
 * names, bounds and decodes its chunks through its format, alternate names
 * are offered in order, and a kind this build does not know is refused
 * (and its object freed) rather than decoded as another kind. A PBS chunk
 * with a keyed digest is decrypted with the context's key: refused without
 * one, and refused when its object is not encrypted. The tap (the digest
 * taken while an object arrives) is used only when it hashed every byte of
 * the object decoded, in order, in the current attempt, and only for
 * unencrypted uncompressed PBS blobs.
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

#include "fetch/chunk.h"
#include "fetch/digest.h"
#include "fetch/pbs_key.h"
#include "fixtures.h"

static void ref_for(uint8_t kind, uint8_t algo, const void *data, size_t len,
                    struct fetch_chunk_ref *ch)
{
    struct fetch_extent e = {.offset = 0, .length = (uint32_t)len, .kind = kind, .algo = algo};
    if (algo == FETCH_DIGEST_SHA256)
        fx_sha256(data, len, e.digest);
    else
        fx_sha512_256(data, len, e.digest);
    fetch_chunk_ref_of(&e, ch);
    assert_int_equal(ch->kind, kind);
    assert_int_equal(ch->len, len);
    assert_memory_equal(ch->digest, e.digest, 32);
}

static void pbs_paths_and_decode(void **state)
{
    (void)state;
    uint8_t data[5000];
    struct fetch_chunk_ref ch;
    struct fetch_chunk_ctx ctx = {.prefix = ""}, sub = {.prefix = "ds/"};
    char path[FETCH_CHUNK_PATH_MAX], hex[65], want[128];
    fetch_data d = {0};
    fetch_error err = {""};
    size_t blob_len;
    uint8_t *blob;

    fx_fill_random(data, sizeof(data), 7);
    ref_for(FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    fx_hex(ch.digest, 32, hex);
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 0, path, sizeof(path)), 0);
    snprintf(want, sizeof(want), ".chunks/%.4s/%s", hex, hex);
    assert_string_equal(path, want);
    assert_int_equal(fetch_chunk_path(&sub, &ch, 0, path, sizeof(path)), 0);
    snprintf(want, sizeof(want), "ds/.chunks/%.4s/%s", hex, hex);
    assert_string_equal(path, want);
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 0, path, 20), -ENAMETOOLONG);
    /* one name only */
    assert_false(fetch_chunk_has_next_name(&ch, 0));
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 1, path, sizeof(path)), -EINVAL);
    assert_true(fetch_chunk_max_raw(&ch, 0) >= sizeof(data) + 12);

    blob = fx_blob_plain(data, sizeof(data), &blob_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, blob, blob_len, NULL, &d, &err), 0);
    assert_int_equal(d.len, sizeof(data));
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);

    /* a flipped byte: the digest does not verify */
    blob = fx_blob_plain(data, sizeof(data), &blob_len);
    blob[100] ^= 1;
    fx_blob_fix_crc(blob, blob_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, blob, blob_len, NULL, &d, &err), -EBADMSG);
    assert_null(d.bytes);

    /* an empty object (a file, or an HTTP 200 with no body) is a missing
     * chunk, for PBS and casync alike: another name or store may have it */
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, malloc(1), 0, NULL, &d, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "is missing (empty object)"));
    ref_for(FETCH_CHUNK_CASYNC, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, malloc(1), 0, NULL, &d, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "is missing (empty object)"));
    assert_null(d.bytes);
}

/* Feeds @t the object @obj as a transfer would: a new attempt, then pieces
 * of the given sizes (the rest in one piece), in order. */
static void tap_feed_pieces(struct fetch_chunk_tap *t, const struct fetch_chunk_ref *ch,
                            const uint8_t *obj, size_t len, const size_t *pieces, size_t npieces)
{
    size_t off = 0;
    fetch_chunk_tap_feed(t, ch, 0, NULL, 0, 0);
    for (size_t i = 0; i < npieces && off < len; i++) {
        size_t n = pieces[i] < len - off ? pieces[i] : len - off;
        fetch_chunk_tap_feed(t, ch, 0, obj, off, n);
        off += n;
    }
    if (off < len)
        fetch_chunk_tap_feed(t, ch, 0, obj, off, len - off);
}

static int decode_copy(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                       const uint8_t *obj, size_t len, struct fetch_chunk_tap *tap, fetch_data *d)
{
    fetch_error err = {""};
    return fetch_chunk_decode(ctx, ch, 0, fx_memdup(obj, len), len, tap, d, &err);
}

static void tap_plain_blob(void **state)
{
    (void)state;
    uint8_t data[70000];
    struct fetch_chunk_ref ch;
    struct fetch_chunk_ctx ctx = {.prefix = ""};
    struct fetch_chunk_tap tap = {0};
    fetch_data d = {0};
    size_t blob_len;
    /* a header cut in two, odd sizes, a piece across the header's end */
    static const size_t split[] = {5, 3, 1, 4096, 7, 65536};
    static const size_t across[] = {11, 30000};
    uint8_t *blob, *bad;

    fx_fill_random(data, sizeof(data), 11);
    ref_for(FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    blob = fx_blob_plain(data, sizeof(data), &blob_len);
    bad = fx_memdup(blob, blob_len);
    bad[blob_len - 1] ^= 0x40; /* the payload's last byte */
    fx_blob_fix_crc(bad, blob_len);

    if (fetch_sha256_pairs()) {
        /* the decoder's one fetch_sha256() call costs less than hashing as
         * the bytes arrive: the tap hashes nothing, and a tap that saw the
         * right bytes does not make others pass (this test runs again with
         * LAZYIMG_NO_SHA_NI=1 for the tap's own work) */
        tap_feed_pieces(&tap, &ch, blob, blob_len, split, 6);
        assert_null(tap.sha);
        assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);
        tap_feed_pieces(&tap, &ch, blob, blob_len, split, 6);
        assert_int_equal(decode_copy(&ctx, &ch, blob, blob_len, &tap, &d), 0);
        assert_memory_equal(d.bytes, data, sizeof(data));
        fetch_data_release(&d);
        fetch_chunk_tap_release(&tap);
        free(blob);
        free(bad);
        return;
    }

    /* the right bytes, in pieces: decoded */
    tap_feed_pieces(&tap, &ch, blob, blob_len, split, 6);
    assert_int_equal(tap.fed, blob_len);
    assert_int_equal(decode_copy(&ctx, &ch, blob, blob_len, &tap, &d), 0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);

    /* a tap that saw every byte is trusted, and the plaintext is not hashed
     * again: shown by decoding other bytes than it saw (which a transfer
     * never does) */
    tap_feed_pieces(&tap, &ch, blob, blob_len, across, 2);
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), 0);
    fetch_data_release(&d);
    /* ... once: the tap is spent until its next attempt */
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);

    /* damaged bytes as they arrived: refused; the right ones: their digest
     * disagrees with the tap's, so they are hashed and pass */
    tap_feed_pieces(&tap, &ch, bad, blob_len, split, 6);
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);
    tap_feed_pieces(&tap, &ch, bad, blob_len, split, 6);
    assert_int_equal(decode_copy(&ctx, &ch, blob, blob_len, &tap, &d), 0);
    fetch_data_release(&d);

    /* not every byte of this attempt: a new attempt the tap saw nothing of
     * (a local read), one byte short, bytes out of order: not used */
    tap_feed_pieces(&tap, &ch, blob, blob_len, split, 6);
    fetch_chunk_tap_feed(&tap, &ch, 0, NULL, 0, 0);
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);
    tap_feed_pieces(&tap, &ch, blob, blob_len - 1, split, 6);
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);
    fetch_chunk_tap_feed(&tap, &ch, 0, NULL, 0, 0);
    fetch_chunk_tap_feed(&tap, &ch, 0, blob, 0, 100);
    fetch_chunk_tap_feed(&tap, &ch, 0, blob, 200, blob_len - 200);
    fetch_chunk_tap_feed(&tap, &ch, 0, blob, 100, 100);
    assert_int_equal(tap.fed, blob_len);
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, &tap, &d), -EBADMSG);
    /* without a tap at all */
    assert_int_equal(decode_copy(&ctx, &ch, bad, blob_len, NULL, &d), -EBADMSG);
    assert_int_equal(decode_copy(&ctx, &ch, blob, blob_len, NULL, &d), 0);
    fetch_data_release(&d);

    fetch_chunk_tap_release(&tap);
    fetch_chunk_tap_release(&tap); /* idempotent */
    free(blob);
    free(bad);
}

/* Objects whose plaintext is not the bytes after a header are not hashed as
 * they arrive: a compressed blob, a keyed (encrypted archive's) chunk, a
 * casync chunk. Each decodes as without a tap. */
static void tap_not_for_other_objects(void **state)
{
    (void)state;
    uint8_t data[20000];
    struct fetch_chunk_ref ch;
    struct fetch_chunk_ctx ctx = {.prefix = ""};
    struct fetch_chunk_tap tap = {0};
    fetch_data d = {0};
    static const size_t one[] = {SIZE_MAX};
    size_t len;
    uint8_t *obj;

    fx_fill_text(data, sizeof(data), 5);
    ref_for(FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    obj = fx_blob_zstd(data, sizeof(data), true, &len);
    tap_feed_pieces(&tap, &ch, obj, len, one, 1);
    assert_null(tap.sha); /* never started hashing */
    assert_int_equal(decode_copy(&ctx, &ch, obj, len, &tap, &d), 0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    free(obj);

    /* keyed digest: a plain blob's bytes are not its plaintext's digest */
    ch.algo = FETCH_DIGEST_SHA256_KEYED;
    obj = fx_blob_plain(data, sizeof(data), &len);
    tap_feed_pieces(&tap, &ch, obj, len, one, 1);
    assert_null(tap.sha);
    free(obj);

    ref_for(FETCH_CHUNK_CASYNC, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    tap_feed_pieces(&tap, &ch, data, sizeof(data), one, 1);
    assert_null(tap.sha);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 1, fx_memdup(data, sizeof(data)), sizeof(data),
                                        &tap, &d, &(fetch_error){""}),
                     0);
    fetch_data_release(&d);
    fetch_chunk_tap_release(&tap);
}

static void cacnk_names_in_order(void **state)
{
    (void)state;
    uint8_t data[3000];
    struct fetch_chunk_ref ch;
    struct fetch_chunk_ctx ctx = {.prefix = "default.castr/"};
    char path[FETCH_CHUNK_PATH_MAX], hex[65], want[160];
    fetch_data d = {0};
    fetch_error err = {""};
    size_t z_len;
    uint8_t *z;

    fx_fill_text(data, sizeof(data), 3);
    ref_for(FETCH_CHUNK_CASYNC, FETCH_DIGEST_SHA512_256, data, sizeof(data), &ch);
    fx_hex(ch.digest, 32, hex);
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 0, path, sizeof(path)), 0);
    snprintf(want, sizeof(want), "default.castr/%.4s/%s.cacnk", hex, hex);
    assert_string_equal(path, want);
    assert_true(fetch_chunk_has_next_name(&ch, 0));
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 1, path, sizeof(path)), 0);
    snprintf(want, sizeof(want), "default.castr/%.4s/%s", hex, hex);
    assert_string_equal(path, want);
    assert_false(fetch_chunk_has_next_name(&ch, 1));
    /* the uncompressed name holds exactly the plaintext */
    assert_int_equal(fetch_chunk_max_raw(&ch, 1), sizeof(data));
    assert_true(fetch_chunk_max_raw(&ch, 0) > sizeof(data));

    z = fx_zstd_frame(data, sizeof(data), true, &z_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, z, z_len, NULL, &d, &err), 0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 1, fx_memdup(data, sizeof(data)), sizeof(data),
                                        NULL, &d, &err),
                     0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    /* a compressed object fetched under the raw name is not the plaintext */
    z = fx_zstd_frame(data, sizeof(data), true, &z_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 1, z, z_len, NULL, &d, &err), -EBADMSG);
}

static void unknown_kind_refused(void **state)
{
    (void)state;
    uint8_t data[100] = {1};
    struct fetch_chunk_ref ch;
    struct fetch_chunk_ctx ctx = {.prefix = ""};
    char path[FETCH_CHUNK_PATH_MAX];
    fetch_data d = {0};
    fetch_error err = {""};

    ref_for(FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256, data, sizeof(data), &ch);
    ch.kind = 200;
    assert_null(fetch_chunk_format_of(200));
    assert_false(fetch_chunk_has_next_name(&ch, 0));
    assert_int_equal(fetch_chunk_path(&ctx, &ch, 0, path, sizeof(path)), -EINVAL);
    assert_int_equal(fetch_chunk_max_raw(&ch, 0), 0);
    /* the object is freed (ASan/LSan would report it otherwise) */
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, fx_memdup(data, sizeof(data)), sizeof(data),
                                        NULL, &d, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "unknown kind"));
    assert_non_null(fetch_chunk_format_of(FETCH_CHUNK_PBS));
    assert_non_null(fetch_chunk_format_of(FETCH_CHUNK_CASYNC));
}

static void keyed_pbs_chunk(void **state)
{
    /* an unprotected key file: the key is 0, 1, ..., 31 */
    const char *json = "{\"kdf\":null,\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}";
    struct fetch_pbs_key key;
    struct fetch_chunk_ctx ctx = {.prefix = ""}, keyed = {.prefix = "", .key = &key};
    struct fetch_chunk_ref ch = {.kind = FETCH_CHUNK_PBS, .algo = FETCH_DIGEST_SHA256_KEYED};
    uint8_t data[3000], iv[16] = {7}, cat[3000 + 32], *blob, *plain;
    size_t blen, plen;
    fetch_data d = {0};
    fetch_error err = {""};
    (void)state;

    assert_int_equal(fetch_pbs_key_load(json, strlen(json), NULL, &key, &err), 0);
    fx_fill_text(data, sizeof(data), 9);
    memcpy(cat, data, sizeof(data));
    memcpy(cat + sizeof(data), key.id_key, 32);
    fx_sha256(cat, sizeof(cat), ch.digest);
    ch.len = sizeof(data);
    blob = fx_blob_encrypted(key.key, iv, data, sizeof(data), true, &blen);
    plain = fx_blob(fx_magic_plain, data, sizeof(data), &plen);

    assert_int_equal(
        fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(blob, blen), blen, NULL, &d, &err), 0);
    assert_int_equal(d.len, sizeof(data));
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, fx_memdup(blob, blen), blen, NULL, &d, &err),
                     -ENOKEY);
    /* a plain object in an encrypted archive, even one whose digest would fit */
    assert_int_equal(
        fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(plain, plen), plen, NULL, &d, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "not encrypted"));
    /* an encrypted object where a plain chunk is expected: refused as such,
     * whatever key the mount has */
    ch.algo = FETCH_DIGEST_SHA256;
    assert_int_equal(
        fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(blob, blen), blen, NULL, &d, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "is encrypted, although the manifest says its archive is not"));
    free(blob);
    free(plain);
    fetch_pbs_key_clear(&key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pbs_paths_and_decode), cmocka_unit_test(cacnk_names_in_order),
        cmocka_unit_test(unknown_kind_refused), cmocka_unit_test(keyed_pbs_chunk),
        cmocka_unit_test(tap_plain_blob),       cmocka_unit_test(tap_not_for_other_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
