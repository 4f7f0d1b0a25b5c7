/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/pbs_key.h over the key files the official Proxmox Backup
 * client made (tests/data/pbs-keys, known answers in its README): unwrapping
 * the scrypt and the PBKDF2 key with the passphrase recomputes the
 * fingerprints the files give and the keyed digests of the 4 MiB zero
 * chunk; a wrong or missing password, a flipped byte of the wrapped key, a
 * fingerprint that is not the key's, an unprotected key file, and malformed
 * files each give their error.
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(official_keys),
        cmocka_unit_test(wrong_password),
        cmocka_unit_test(damaged_files),
        cmocka_unit_test(unprotected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
