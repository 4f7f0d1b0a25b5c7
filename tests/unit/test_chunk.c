/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/chunk.h (the chunk format table): every extent kind
 * names, bounds and decodes its chunks through its format, alternate names
 * are offered in order, and a kind this build does not know is refused
 * (and its object freed) rather than decoded as another kind. A PBS chunk
 * with a keyed digest is decrypted with the context's key: refused without
 * one, and refused when its object is not encrypted.
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
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, blob, blob_len, &d, &err), 0);
    assert_int_equal(d.len, sizeof(data));
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);

    /* a flipped byte: the digest does not verify */
    blob = fx_blob_plain(data, sizeof(data), &blob_len);
    blob[100] ^= 1;
    fx_blob_fix_crc(blob, blob_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, blob, blob_len, &d, &err), -EBADMSG);
    assert_null(d.bytes);
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
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, z, z_len, &d, &err), 0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    assert_int_equal(
        fetch_chunk_decode(&ctx, &ch, 1, fx_memdup(data, sizeof(data)), sizeof(data), &d, &err), 0);
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    /* a compressed object fetched under the raw name is not the plaintext */
    z = fx_zstd_frame(data, sizeof(data), true, &z_len);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 1, z, z_len, &d, &err), -EBADMSG);
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
    assert_int_equal(
        fetch_chunk_decode(&ctx, &ch, 0, fx_memdup(data, sizeof(data)), sizeof(data), &d, &err),
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

    assert_int_equal(fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(blob, blen), blen, &d, &err), 0);
    assert_int_equal(d.len, sizeof(data));
    assert_memory_equal(d.bytes, data, sizeof(data));
    fetch_data_release(&d);
    assert_int_equal(fetch_chunk_decode(&ctx, &ch, 0, fx_memdup(blob, blen), blen, &d, &err),
                     -ENOKEY);
    /* a plain object in an encrypted archive, even one whose digest would fit */
    assert_int_equal(fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(plain, plen), plen, &d, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "not encrypted"));
    /* an encrypted object where a plain chunk is expected needs a key it is not given */
    ch.algo = FETCH_DIGEST_SHA256;
    assert_int_equal(fetch_chunk_decode(&keyed, &ch, 0, fx_memdup(blob, blen), blen, &d, &err),
                     -ENOKEY);
    free(blob);
    free(plain);
    fetch_pbs_key_clear(&key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pbs_paths_and_decode),
        cmocka_unit_test(cacnk_names_in_order),
        cmocka_unit_test(unknown_kind_refused),
        cmocka_unit_test(keyed_pbs_chunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
