/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/pbs_key.h over the key files the official Proxmox Backup
 * client made (tests/data/pbs-keys, known answers in its README): unwrapping
 * the scrypt and the PBKDF2 key with the passphrase recomputes the
 * fingerprints the files give and the keyed digests of the 4 MiB zero
 * chunk; a wrong or missing password, a flipped byte of the wrapped key, a
 * fingerprint that is not the key's, an unprotected key file, and malformed
 * files each give their error. With the scrypt key: the keyed zero chunk is
 * a hole of fixed and variable indexes (and only with the key); HMAC and a
 * manifest signature whose canonical JSON and HMAC were computed apart, by
 * Python's json (sort_keys, compact, ensure_ascii=False) and hmac modules,
 * verify; a changed manifest, another key's fingerprint, a null in the
 * signed part and an unsigned manifest each give their answer. And the
 * known answers of Proxmox Backup's own tests (proxmox-backup
 * tests/blob_writer.rs, pbs-key-config fingerprint_checks, pbs-datastore
 * manifest.rs test_manifest_signature; values only, read from the public
 * sources): a keyed digest, a fingerprint, a manifest signature. In-place
 * decryption in steps gives the plaintext, and on a refused tag puts back
 * exactly the ciphertext it was given (blob.c takes its CRC then).
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

#include "fetch/digest.h"
#include "fetch/fidx.h"
#include "fetch/image.h"
#include "fetch/manifest.h"
#include "fetch/pbs_key.h"
#include "fixtures.h"

#define PASS "throwaway-passphrase-for-test"
#define SCRYPT_FP                                                                                  \
    "be:6c:3e:ae:84:21:9c:ef:a0:89:aa:b2:71:b5:96:7b:91:97:f6:71:6f:1b:ac:b5:ae:e9:cc:d0:d6:2a:"   \
    "b7:97"
#define PBKDF2_FP                                                                                  \
    "70:44:ba:5f:a7:22:e3:a1:d1:3e:32:d7:3f:58:d6:95:83:44:c3:7d:d6:1c:02:b7:7b:5a:c9:41:8f:9e:"   \
    "c1:ca"
#define SCRYPT_ZERO "d21efcaa8661cfb986792810577dd7276aaf7476294aaf85d44484e78d051473"
#define PBKDF2_ZERO "41d2767ee74e5dd2636bf1f31941bbb6e11edc1d0aa91a8dd2d6b9e517637dda"

/* The file's bytes, NUL-terminated (the tests edit them as a string). */
static char *load_file(const char *name, size_t *len)
{
    char rel[128], *s;
    uint8_t *raw;
    snprintf(rel, sizeof(rel), "pbs-keys/%s", name);
    raw = fx_read(TEST_DATA_DIR, rel, len);
    s = fx_malloc(*len + 1);
    memcpy(s, raw, *len);
    s[*len] = '\0';
    free(raw);
    return s;
}

static void check_known(const char *file, const char *fp, const char *zero_hex)
{
    size_t len;
    char *json = load_file(file, &len), shown[FETCH_PBS_FINGERPRINT_STR];
    struct fetch_pbs_key k;
    fetch_error err = {""};
    uint8_t want[32], got[32], *zeros = calloc(1, 4u << 20);
    int r;

    assert_non_null(zeros);
    r = fetch_pbs_key_load(json, len, PASS, &k, &err);
    if (r)
        fail_msg("%s: %d %s", file, r, err.msg);
    fetch_pbs_fingerprint_str(k.fingerprint, shown);
    assert_string_equal(shown, fp);
    assert_int_equal(fetch_pbs_key_digest(&k, zeros, 4u << 20, got), 0);
    fx_unhex(zero_hex, want, 32);
    assert_memory_equal(got, want, 32);
    fetch_pbs_key_clear(&k);
    free(zeros);
    free(json);
}

static void official_keys(void **state)
{
    (void)state;
    check_known("official-scrypt.key", SCRYPT_FP, SCRYPT_ZERO);
    check_known("official-pbkdf2.key", PBKDF2_FP, PBKDF2_ZERO);
}

static void wrong_password(void **state)
{
    size_t len;
    char *json = load_file("official-pbkdf2.key", &len);
    struct fetch_pbs_key k;
    fetch_error err = {""};
    (void)state;
    assert_int_equal(fetch_pbs_key_load(json, len, "not-the-passphrase", &k, &err), -EKEYREJECTED);
    assert_non_null(strstr(err.msg, "wrong password"));
    assert_int_equal(fetch_pbs_key_load(json, len, NULL, &k, &err), -ENOKEY);
    assert_non_null(strstr(err.msg, "--keyfile-password-file"));
    free(json);
}

/* A copy of @json with @from replaced by @to (same length). */
static char *edited(const char *json, const char *from, const char *to)
{
    char *s = strdup(json), *at;
    assert_non_null(s);
    at = strstr(s, from);
    assert_non_null(at);
    assert_int_equal(strlen(from), strlen(to));
    memcpy(at, to, strlen(to));
    return s;
}

static void damaged_files(void **state)
{
    size_t len;
    char *json = load_file("official-pbkdf2.key", &len), *bad;
    struct fetch_pbs_key k;
    fetch_error err = {""};
    (void)state;

    /* a flipped byte of the wrapped key (the data's last base64 group) */
    bad = edited(json, "nA1J1a6g==", "nA1J1b6g==");
    assert_int_equal(fetch_pbs_key_load(bad, len, PASS, &k, &err), -EKEYREJECTED);
    free(bad);
    /* a fingerprint that is not the key's */
    bad = edited(json, "\"fingerprint\":\"70:44", "\"fingerprint\":\"71:44");
    assert_int_equal(fetch_pbs_key_load(bad, len, PASS, &k, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "fingerprint"));
    free(bad);
    /* absurd parameters are refused before any work */
    bad = edited(json, "\"iter\":65535", "\"iter\":    0");
    assert_int_equal(fetch_pbs_key_load(bad, len, PASS, &k, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "out of bounds"));
    free(bad);
    bad = edited(json, "PBKDF2", "PBKDF3");
    assert_int_equal(fetch_pbs_key_load(bad, len, PASS, &k, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "unknown kdf"));
    free(bad);
    assert_int_equal(fetch_pbs_key_load("[1]", 3, PASS, &k, &err), -EBADMSG);
    assert_int_equal(fetch_pbs_key_load("{\"kdf\":null,\"data\":\"AAAA\"}", 26, NULL, &k, &err),
                     -EBADMSG);
    free(json);
}

/* kdf null: data is the key itself; no password needed. */
static void unprotected(void **state)
{
    const char *json = "{\"kdf\":null,\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}";
    struct fetch_pbs_key k;
    fetch_error err = {""};
    (void)state;
    assert_int_equal(fetch_pbs_key_load(json, strlen(json), NULL, &k, &err), 0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k.key[i], i);
    /* white space after the object is fine; anything else is not (as the
     * PBS client reads a key file) */
    {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s \r\n\n", json);
        assert_int_equal(fetch_pbs_key_load(buf, strlen(buf), NULL, &k, &err), 0);
        snprintf(buf, sizeof(buf), "%s\n{}", json);
        assert_int_equal(fetch_pbs_key_load(buf, strlen(buf), NULL, &k, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "bytes after its JSON object"));
        snprintf(buf, sizeof(buf), "%sX", json);
        assert_int_equal(fetch_pbs_key_load(buf, strlen(buf), NULL, &k, &err), -EBADMSG);
        memcpy(buf, json, strlen(json));
        buf[strlen(json)] = '\0';
        assert_int_equal(fetch_pbs_key_load(buf, strlen(json) + 1, NULL, &k, &err), -EBADMSG);
    }
}

static void load_scrypt(struct fetch_pbs_key *k)
{
    size_t len;
    char *json = load_file("official-scrypt.key", &len);
    fetch_error err = {""};
    if (fetch_pbs_key_load(json, len, PASS, k, &err))
        fail_msg("official-scrypt.key: %s", err.msg);
    free(json);
}

/* The 4 MiB zero chunk of the key's archives is a hole; a plain index's is not. */
static void keyed_holes(void **state)
{
    struct fetch_pbs_key k;
    uint8_t digests[3 * 32], items[3 * FETCH_IMAGE_ITEM];
    struct fetch_fidx idx = {.size = 12u << 20, .chunk_size = 4u << 20, .count = 3};
    struct fetch_image *img;
    (void)state;

    load_scrypt(&k);
    memset(digests, 0x5a, sizeof(digests));
    fx_unhex(SCRYPT_ZERO, digests + 32, 32);
    assert_int_equal(fetch_sha256_zeros(4u << 20, digests + 64), 0); /* the plain one */
    idx.digests = digests;
    assert_int_equal(fetch_image_from_fidx(&idx, k.id_key, &img, NULL), 0);
    assert_false(img->extents[0].zero);
    assert_true(img->extents[1].zero);
    assert_false(img->extents[2].zero); /* a plain zero chunk is data in an encrypted index */
    assert_int_equal(img->extents[1].algo, FETCH_DIGEST_SHA256_KEYED);
    assert_int_equal(img->data_bytes, 8u << 20);
    fetch_image_free(img);
    assert_int_equal(fetch_image_from_fidx(&idx, NULL, &img, NULL), 0);
    assert_false(img->extents[1].zero);
    assert_true(img->extents[2].zero);
    assert_int_equal(img->extents[1].algo, FETCH_DIGEST_SHA256);
    fetch_image_free(img);

    /* a variable index: the same, at the 4 MiB length only (lengths 4M-1, 4M+1, 4M) */
    {
        static const uint64_t ends[3] = {(4u << 20) - 1, 8u << 20, 12u << 20};
        for (int i = 0; i < 3; i++) {
            for (int b = 0; b < 8; b++)
                items[i * FETCH_IMAGE_ITEM + b] = (uint8_t)(ends[i] >> (8 * b));
            fx_unhex(SCRYPT_ZERO, items + i * FETCH_IMAGE_ITEM + 8, 32);
        }
    }
    assert_int_equal(fetch_image_from_items(items, 3, FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256_KEYED,
                                            k.id_key, &img, NULL),
                     0);
    assert_false(img->extents[0].zero);
    assert_false(img->extents[1].zero);
    assert_true(img->extents[2].zero);
    fetch_image_free(img);
    assert_int_equal(fetch_image_from_items(items, 3, FETCH_CHUNK_PBS, FETCH_DIGEST_SHA256_KEYED,
                                            NULL, &img, NULL),
                     -EINVAL);
    fetch_pbs_key_clear(&k);
}

/* Python: hmac.new(id_key, b"abc", hashlib.sha256).hexdigest() */
#define HMAC_ABC "11d81a6cd89ddedd3de05140be151d41a8f318341ea121607c72be08ec07f965"

static void hmac_and_fingerprints(void **state)
{
    struct fetch_pbs_key k;
    uint8_t mac[32], want[32], fp[32];
    (void)state;
    load_scrypt(&k);
    assert_int_equal(fetch_pbs_key_hmac(&k, "abc", 3, mac), 0);
    fx_unhex(HMAC_ABC, want, 32);
    assert_memory_equal(mac, want, 32);
    assert_int_equal(fetch_pbs_fingerprint_parse(SCRYPT_FP, fp), 0);
    assert_memory_equal(fp, k.fingerprint, 32);
    assert_int_equal(fetch_pbs_fingerprint_parse("BE:6C:3E:AE:84:21:9C:EF:A0:89:AA:B2:71:B5:96:7B:"
                                                 "91:97:F6:71:6F:1B:AC:B5:AE:E9:CC:D0:D6:2A:B7:97",
                                                 fp),
                     0);
    assert_memory_equal(fp, k.fingerprint, 32);
    assert_int_equal(fetch_pbs_fingerprint_parse("be:6c", fp), -EINVAL);
    assert_int_equal(fetch_pbs_fingerprint_parse(SCRYPT_FP "0", fp), -EINVAL);
    assert_int_equal(fetch_pbs_fingerprint_parse("be-6c-3e:ae:84:21:9c:ef:a0:89:aa:b2:71:b5:96:7b:"
                                                 "91:97:f6:71:6f:1b:ac:b5:ae:e9:cc:d0:d6:2a:b7:97",
                                                 fp),
                     -EINVAL);
    assert_int_equal(fetch_pbs_fingerprint_parse("zz:6c:3e:ae:84:21:9c:ef:a0:89:aa:b2:71:b5:96:7b:"
                                                 "91:97:f6:71:6f:1b:ac:b5:ae:e9:cc:d0:d6:2a:b7:97",
                                                 fp),
                     -EINVAL);
    fetch_pbs_key_clear(&k);
}

/* A manifest with keys out of order, nested values, escapes and UTF-8. */
#define MANIFEST_HEAD                                                                              \
    "{\n  \"files\": [ {\"size\": 4194304, \"filename\": \"drive-scsi0.img.fidx\", \"csum\": "     \
    "\"0000000000000000000000000000000000000000000000000000000000000000\", \"crypt-mode\": "       \
    "\"sign-only\"} ],\n  \"backup-type\": \"vm\", \"backup-time\": %s, \"backup-id\": "           \
    "\"100\",\n "                                                                                  \
    " \"notes\": {\"z\": [1, true, false, -5, \"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\"], \"a\": "     \
    "{}%s},\n "                                                                                    \
    " \"unprotected\": {\"key-fingerprint\": \"%s\", \"x\": null},\n  \"signature\": %s\n}"
/* Python: json.dumps(signed part, sort_keys=True, separators=(",", ":"), ensure_ascii=False) */
#define CANONICAL                                                                                  \
    "{\"backup-id\":\"100\",\"backup-time\":1700000000,\"backup-type\":\"vm\",\"files\":[{"        \
    "\"crypt-"                                                                                     \
    "mode\":\"sign-only\",\"csum\":"                                                               \
    "\"0000000000000000000000000000000000000000000000000000000000000000\",\"filename\":\"drive-"   \
    "scsi0.img.fidx\",\"size\":4194304}],\"notes\":{\"a\":{},\"z\":[1,true,false,-5,"              \
    "\"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\"]}}"
/* Python: hmac.new(id_key, CANONICAL, hashlib.sha256).hexdigest() */
#define SIGNATURE "\"ade5ed623434dc2a45e5eea34c99c66c52ac9ef6e0149933a32c33e95e17379a\""

/* the message of verify()'s last refusal */
static char verify_msg[sizeof(((fetch_error *)0)->msg)];

/* fetch_manifest_verify's answer for the manifest made of these parts. */
static int verify(const struct fetch_pbs_key *k, const char *time, const char *extra,
                  const char *fp, const char *sig, struct fetch_manifest **keep)
{
    char json[2048];
    struct fetch_manifest *m;
    fetch_error err = {""};
    int r;
    snprintf(json, sizeof(json), MANIFEST_HEAD, time, extra, fp, sig);
    if (fetch_manifest_parse(json, strlen(json), &m, &err))
        fail_msg("manifest: %s", err.msg);
    r = fetch_manifest_verify(m, k, &err);
    memcpy(verify_msg, err.msg, sizeof(verify_msg));
    if (keep)
        *keep = m;
    else
        fetch_manifest_free(m);
    return r;
}

static void manifest_signature(void **state)
{
    struct fetch_pbs_key k;
    struct fetch_manifest *m;
    (void)state;
    load_scrypt(&k);
    assert_int_equal(verify(&k, "1700000000", "", SCRYPT_FP, SIGNATURE, &m), 0);
    assert_non_null(m->signed_json);
    assert_int_equal(m->signed_len, strlen(CANONICAL));
    assert_memory_equal(m->signed_json, CANONICAL, m->signed_len);
    assert_true(m->has_fingerprint && m->has_signature);
    fetch_manifest_free(m);
    /* changed after signing: a protected value, an added member */
    assert_int_equal(verify(&k, "1700000001", "", SCRYPT_FP, SIGNATURE, NULL), -EBADMSG);
    assert_non_null(strstr(verify_msg, "it was changed after the backup"));
    assert_int_equal(verify(&k, "1700000000", ", \"b\": 1", SCRYPT_FP, SIGNATURE, NULL), -EBADMSG);
    /* signed with another key, or not at all, or not canonical */
    assert_int_equal(verify(&k, "1700000000", "", PBKDF2_FP, SIGNATURE, NULL), -EKEYREJECTED);
    /* not signed: refused when made with a key (a fingerprint, a signed
     * archive), for the client signs every such manifest */
    assert_int_equal(verify(&k, "1700000000", "", SCRYPT_FP, "null", NULL), -EBADMSG);
    assert_int_equal(verify(&k, "1700000000", "", PBKDF2_FP, "null", NULL), -EBADMSG);
    assert_int_equal(verify(&k, "1700000000", "", "be:6c", "null", NULL), -EBADMSG);
    assert_int_equal(verify(&k, "1700000000", ", \"n\": null", SCRYPT_FP, SIGNATURE, NULL),
                     -EBADMSG);
    assert_int_equal(verify(&k, "1700000000", "", SCRYPT_FP, "\"zz\"", NULL), -EBADMSG);
    /* a malformed fingerprint (unprotected) is ignored, the signature still checked */
    assert_int_equal(verify(&k, "1700000000", "", "be:6c", SIGNATURE, &m), 0);
    assert_false(m->has_fingerprint);
    fetch_manifest_free(m);
    /* without a fingerprint, a signature that does not verify may be another key's */
    assert_int_equal(verify(&k, "1700000001", "", "be:6c", SIGNATURE, NULL), -EBADMSG);
    assert_non_null(strstr(verify_msg, "either the backup was made with another key or the "
                                       "manifest was changed after it"));
    fetch_pbs_key_clear(&k);
}

/* A manifest made without a key (no fingerprint, plain archives) need not be signed. */
static void manifest_unsigned_plain(void **state)
{
    static const char json[] =
        "{\"backup-type\": \"vm\", \"backup-id\": \"100\", \"backup-time\": 1700000000, "
        "\"files\": [{\"filename\": \"drive-scsi0.img.fidx\", \"crypt-mode\": \"%s\", "
        "\"size\": 4194304, \"csum\": "
        "\"0000000000000000000000000000000000000000000000000000000000000000\"}], "
        "\"unprotected\": {}, \"signature\": null}";
    static const char *const modes[] = {"none", "sign-only", "encrypt"};
    static const int want[] = {-ENODATA, -EBADMSG, -EBADMSG};
    struct fetch_pbs_key k;
    (void)state;
    load_scrypt(&k);
    for (size_t i = 0; i < 3; i++) {
        char text[1024];
        struct fetch_manifest *m;
        fetch_error err = {""};
        snprintf(text, sizeof(text), json, modes[i]);
        assert_int_equal(fetch_manifest_parse(text, strlen(text), &m, &err), 0);
        assert_int_equal(fetch_manifest_verify(m, &k, &err), want[i]);
        if (want[i] == -EBADMSG)
            assert_non_null(strstr(err.msg, "not signed, although its archives are"));
        fetch_manifest_free(m);
    }
    fetch_pbs_key_clear(&k);
}

/* A kdf-null key file holding @b64 (the raw key in base64). */
static void load_raw(const char *b64, struct fetch_pbs_key *k)
{
    char json[256];
    fetch_error err = {""};
    snprintf(json, sizeof(json), "{\"kdf\":null,\"data\":\"%s\"}", b64);
    if (fetch_pbs_key_load(json, strlen(json), NULL, k, &err))
        fail_msg("raw key: %s", err.msg);
}

static void pbs_known_answers(void **state)
{
    struct fetch_pbs_key k;
    uint8_t *data = fx_malloc(100000), got[32], want[32];
    char fp[FETCH_PBS_FINGERPRINT_STR], json[2048];
    struct fetch_manifest *m;
    fetch_error err = {""};
    (void)state;

    /* blob_writer.rs: key [1; 32], data[i] = i % 255, 100000 bytes */
    load_raw("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", &k);
    for (size_t i = 0; i < 100000; i++)
        data[i] = (uint8_t)(i % 255);
    assert_int_equal(fetch_pbs_key_digest(&k, data, 100000, got), 0);
    fx_unhex("32a2bf5dff84090e7f175c27f666f5cc8268046ab6efda0e501196bceffdc675", want, 32);
    assert_memory_equal(got, want, 32);

    /* fingerprint_checks: the key 0, 1, ..., 31 */
    load_raw("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &k);
    fx_unhex("0eabd4460b6eb9ca345023dee2b778c790e54a1683b9659c0a57ae199090159b", want, 32);
    assert_memory_equal(k.fingerprint, want, 32);
    fetch_pbs_fingerprint_str(k.fingerprint, fp);
    assert_string_equal(fp, "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:"
                            "65:9c:0a:57:ae:19:90:90:15:9b");

    /* test_manifest_signature: the key scrypt("test", no salt, 65536, 8, 1); a
     * manifest of host/elsa/2020-06-26T13:56:05Z with two files (in the
     * pretty-printed order of the client, not the canonical one), and an
     * unprotected note that the signature does not cover */
    load_raw("KM2xo77zk5bDhg4A1Ej+eg79gkRIarb+swRXaB0xWX4=", &k);
    snprintf(
        json, sizeof(json),
        "{\n  \"backup-type\": \"host\",\n  \"backup-id\": \"elsa\",\n  \"backup-time\": "
        "1593179765,\n  \"files\": [\n    {\n      \"filename\": \"test1.img.fidx\",\n      "
        "\"crypt-mode\": \"encrypt\",\n      \"size\": 200,\n      \"csum\": \"%s\"\n    },\n    "
        "{\n      \"filename\": \"abc.blob\",\n      \"crypt-mode\": \"none\",\n      \"size\": "
        "200,\n      \"csum\": \"%s\"\n    }\n  ],\n  \"unprotected\": {\n    \"note\": "
        "\"This is not protected by the signature.\"\n  },\n  \"signature\": "
        "\"d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9\"\n}",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "0202020202020202020202020202020202020202020202020202020202020202");
    if (fetch_manifest_parse(json, strlen(json), &m, &err))
        fail_msg("manifest: %s", err.msg);
    assert_int_equal(fetch_manifest_verify(m, &k, &err), 0);
    fetch_manifest_free(m);
    /* one byte of a protected value changed */
    json[strstr(json, "1593179765") - json + 9] = '6';
    assert_int_equal(fetch_manifest_parse(json, strlen(json), &m, &err), 0);
    assert_int_equal(fetch_manifest_verify(m, &k, &err), -EBADMSG);
    fetch_manifest_free(m);
    fetch_pbs_key_clear(&k);
    free(data);
}

/* Counts the plaintext steps decrypt_steps() shows. */
static int count_step(void *arg, const uint8_t *bytes, size_t len)
{
    (void)bytes;
    *(size_t *)arg += len;
    return 0;
}

/*
 * In-place decryption in steps: the plaintext with the right tag; with a
 * flipped tag, a flipped ciphertext byte or another key, -EBADMSG and the
 * buffer holding exactly the ciphertext again (for the caller's CRC), at
 * lengths around the step and OpenSSL's block.
 */
static void decrypt_steps_put_back(void **state)
{
    const size_t lens[] = {1, 15, 16, 17, 4095, 4096, 70001};
    uint8_t key[32], other[32], iv[16];
    (void)state;
    fx_fill_random(key, sizeof(key), 21);
    memcpy(other, key, sizeof(other));
    other[31] ^= 0x80;
    fx_fill_random(iv, sizeof(iv), 22);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len = lens[i], blen, seen = 0;
        uint8_t *data = fx_malloc(len), *blob, *ct, *buf = fx_malloc(len);
        fx_fill_random(data, len, (unsigned)(30 + i));
        blob = fx_blob_encrypted(key, iv, data, len, false, &blen);
        assert_int_equal(blen, 44 + len);
        ct = blob + 44; /* magic, CRC, IV, tag */
        memcpy(buf, ct, len);
        assert_int_equal(fetch_pbs_gcm_decrypt_steps(key, blob + 12, blob + 28, buf, len, 4096,
                                                     count_step, &seen),
                         0);
        assert_memory_equal(buf, data, len);
        assert_int_equal(seen, len);

        blob[28] ^= 1; /* the tag */
        memcpy(buf, ct, len);
        assert_int_equal(
            fetch_pbs_gcm_decrypt_steps(key, blob + 12, blob + 28, buf, len, 4096, NULL, NULL),
            -EBADMSG);
        assert_memory_equal(buf, ct, len);
        blob[28] ^= 1;

        memcpy(buf, ct, len);
        buf[len / 2] ^= 4; /* a ciphertext byte: the damaged ciphertext comes back */
        assert_int_equal(
            fetch_pbs_gcm_decrypt_steps(key, blob + 12, blob + 28, buf, len, 0, NULL, NULL),
            -EBADMSG);
        assert_int_equal(buf[len / 2], ct[len / 2] ^ 4);
        buf[len / 2] ^= 4;
        assert_memory_equal(buf, ct, len);

        memcpy(buf, ct, len);
        assert_int_equal(
            fetch_pbs_gcm_decrypt_steps(other, blob + 12, blob + 28, buf, len, 4096, NULL, NULL),
            -EBADMSG);
        assert_memory_equal(buf, ct, len);
        free(data);
        free(blob);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(official_keys),      cmocka_unit_test(wrong_password),
        cmocka_unit_test(damaged_files),      cmocka_unit_test(unprotected),
        cmocka_unit_test(keyed_holes),        cmocka_unit_test(hmac_and_fingerprints),
        cmocka_unit_test(manifest_signature), cmocka_unit_test(manifest_unsigned_plain),
        cmocka_unit_test(pbs_known_answers),  cmocka_unit_test(decrypt_steps_put_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
