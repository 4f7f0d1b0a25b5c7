/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pbs_key.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "digest.h"

/* Bounds on the parameters a key file may ask for (the client's defaults:
 * scrypt n 65536, r 8, p 1; PBKDF2 65535 iterations). */
#define SCRYPT_N_MAX (1u << 20)
#define SCRYPT_R_MAX 32u
#define SCRYPT_P_MAX 16u
#define SCRYPT_MEM_MAX ((uint64_t)2 << 30)
#define PBKDF2_ITER_MAX 10000000u
#define SALT_MAX 1024u
#define FINGERPRINT_INPUT "Proxmox Backup Encryption Key Fingerprint"

/* A GCM context for @key and @iv (16 bytes) that decrypts (@enc: encrypts), or NULL. */
static EVP_CIPHER_CTX *gcm_context(const uint8_t key[32], const uint8_t iv[16], int enc)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx && (!EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) ||
                !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) ||
                !EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc))) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static EVP_CIPHER_CTX *gcm_start(const uint8_t key[32], const uint8_t iv[16])
{
    return gcm_context(key, iv, 0);
}

/*
 * Puts back the ciphertext that @len bytes of @buf were decrypted from, in
 * place: GCM encrypts and decrypts with the same key stream, so encrypting
 * the (unauthenticated) plaintext again with the same key and IV gives the
 * ciphertext. 0, or -ENOMEM / -EIO with @buf wiped.
 */
static int gcm_restore(const uint8_t key[32], const uint8_t iv[16], uint8_t *buf, size_t len)
{
    EVP_CIPHER_CTX *ctx = gcm_context(key, iv, 1);
    int r = ctx ? 0 : -ENOMEM;
    for (size_t off = 0; r == 0 && off < len; off += INT_MAX) {
        int n = (int)(len - off < INT_MAX ? len - off : INT_MAX), got = 0;
        if (!EVP_EncryptUpdate(ctx, buf + off, &got, buf + off, n) || got != n)
            r = -EIO;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (r < 0)
        OPENSSL_cleanse(buf, len);
    return r;
}

/* Whether the tag authenticates what @ctx decrypted. */
static bool gcm_finish(EVP_CIPHER_CTX *ctx, const uint8_t tag[16])
{
    unsigned char end[16];
    int n = 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) &&
           EVP_DecryptFinal_ex(ctx, end, &n);
}

int fetch_pbs_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16], const uint8_t tag[16],
                          const void *in, size_t len, void *out)
{
    EVP_CIPHER_CTX *ctx = gcm_start(key, iv);
    int n = 0, ok;
    if (!ctx)
        return -ENOMEM;
    ok = len <= INT_MAX && EVP_DecryptUpdate(ctx, out, &n, in, (int)len) && (size_t)n == len &&
         gcm_finish(ctx, tag);
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        OPENSSL_cleanse(out, len);
    return ok ? 0 : -EBADMSG;
}

int fetch_pbs_gcm_decrypt_steps(const uint8_t key[32], const uint8_t iv[16], const uint8_t tag[16],
                                uint8_t *buf, size_t len, size_t step, fetch_pbs_gcm_step_fn after,
                                void *arg)
{
    EVP_CIPHER_CTX *ctx = gcm_start(key, iv);
    bool forged = false; /* all of @buf decrypted, and the tag refused it */
    int r = 0;
    if (!ctx)
        return -ENOMEM;
    if (step == 0 || step > INT_MAX)
        step = INT_MAX;
    for (size_t off = 0; r == 0 && off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        int got = 0;
        if (!EVP_DecryptUpdate(ctx, buf + off, &got, buf + off, (int)n) || (size_t)got != n)
            r = -EIO;
        else if (after)
            r = after(arg, buf + off, n);
    }
    if (r == 0 && !gcm_finish(ctx, tag)) {
        r = -EBADMSG;
        forged = true;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (forged) {
        int e = gcm_restore(key, iv, buf, len);
        if (e < 0)
            r = e;
    } else if (r == -EIO) {
        OPENSSL_cleanse(buf, len);
    }
    return r;
}

int fetch_pbs_key_digest(const struct fetch_pbs_key *k, const void *data, size_t len,
                         uint8_t out[32])
{
    return fetch_sha256_suffixed(data, len, k->id_key, sizeof(k->id_key), out);
}

void fetch_pbs_fingerprint_str(const uint8_t fp[32], char out[FETCH_PBS_FINGERPRINT_STR])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 3 * i, 4, "%02x%s", fp[i], i < 31 ? ":" : "");
}

int fetch_pbs_fingerprint_parse(const char *s, uint8_t out[32])
{
    if (strlen(s) != FETCH_PBS_FINGERPRINT_STR - 1)
        return -EINVAL;
    for (int i = 0; i < 32; i++) {
        const char *p = s + 3 * i;
        char hex[3] = {p[0], p[1], 0};
        if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
            (i < 31 && p[2] != ':'))
            return -EINVAL;
        out[i] = (uint8_t)strtoul(hex, NULL, 16);
    }
    return 0;
}

int fetch_pbs_key_hmac(const struct fetch_pbs_key *k, const void *data, size_t len, uint8_t out[32])
{
    size_t n = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->id_key, sizeof(k->id_key), data, len, out,
                   32, &n) ||
        n != 32)
        return -EIO;
    return 0;
}

void fetch_pbs_key_clear(struct fetch_pbs_key *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}

/* Base64 (RFC 4648, with padding) of the string @s into @out (@cap bytes):
 * the length, or -1 when malformed or too long. */
static int unbase64(const char *s, uint8_t *out, size_t cap)
{
    size_t len = strlen(s), pad = 0;
    uint8_t tmp[2048];
    int n;
    if (len == 0 || len % 4 || len / 4 * 3 > sizeof(tmp))
        return -1;
    while (pad < 2 && s[len - 1 - pad] == '=')
        pad++;
    n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad > cap) {
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return -1;
    }
    n -= (int)pad;
    memcpy(out, tmp, (size_t)n);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return n;
}

static bool get_u64(json_object *o, const char *name, uint64_t *ret)
{
    json_object *v;
    int64_t i;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
        return false;
    i = json_object_get_int64(v);
    if (i < 0)
        return false;
    *ret = (uint64_t)i;
    return true;
}

static const char *get_str(json_object *o, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Derives the 32-byte wrapping key from @password with the file's kdf object. */
static int derive(json_object *kdf, const char *password, uint8_t out[32], fetch_error *err)
{
    json_object *params;
    uint8_t salt[SALT_MAX];
    const char *salt64;
    int saltlen;

    if (json_object_object_get_ex(kdf, "Scrypt", &params) &&
        json_object_is_type(params, json_type_object)) {
        uint64_t n, r, p;
        if (!get_u64(params, "n", &n) || !get_u64(params, "r", &r) || !get_u64(params, "p", &p) ||
            !(salt64 = get_str(params, "salt")))
            return fetch_error_set(err, -EBADMSG, "key file: scrypt parameters missing");
        if (n < 2 || n > SCRYPT_N_MAX || (n & (n - 1)) || r == 0 || r > SCRYPT_R_MAX || p == 0 ||
            p > SCRYPT_P_MAX || 128 * n * r * p > SCRYPT_MEM_MAX)
            return fetch_error_set(err, -EBADMSG,
                                   "key file: scrypt parameters out of bounds (n %llu, r %llu, p "
                                   "%llu)",
                                   (unsigned long long)n, (unsigned long long)r,
                                   (unsigned long long)p);
        if ((saltlen = unbase64(salt64, salt, sizeof(salt))) <= 0)
            return fetch_error_set(err, -EBADMSG, "key file: bad scrypt salt");
        if (!EVP_PBE_scrypt(password, strlen(password), salt, (size_t)saltlen, n, r, p,
                            SCRYPT_MEM_MAX + (1u << 20), out, 32))
            return fetch_error_set(err, -ENOMEM, "key file: scrypt failed");
        return 0;
    }
    if (json_object_object_get_ex(kdf, "PBKDF2", &params) &&
        json_object_is_type(params, json_type_object)) {
        uint64_t iter;
        if (!get_u64(params, "iter", &iter) || !(salt64 = get_str(params, "salt")))
            return fetch_error_set(err, -EBADMSG, "key file: PBKDF2 parameters missing");
        if (iter == 0 || iter > PBKDF2_ITER_MAX)
            return fetch_error_set(err, -EBADMSG, "key file: PBKDF2 iterations out of bounds");
        if ((saltlen = unbase64(salt64, salt, sizeof(salt))) <= 0)
            return fetch_error_set(err, -EBADMSG, "key file: bad PBKDF2 salt");
        if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, saltlen, (int)iter,
                               EVP_sha256(), 32, out))
            return fetch_error_set(err, -ENOMEM, "key file: PBKDF2 failed");
        return 0;
    }
    return fetch_error_set(err, -EBADMSG, "key file: unknown kdf (Scrypt, PBKDF2 or null)");
}

/* id key and fingerprint of @k->key. */
static int finish(struct fetch_pbs_key *k, fetch_error *err)
{
    uint8_t fp_const[32];
    if (!PKCS5_PBKDF2_HMAC((const char *)k->key, sizeof(k->key), (const unsigned char *)"_id_key",
                           7, 10, EVP_sha256(), sizeof(k->id_key), k->id_key) ||
        fetch_sha256(FINGERPRINT_INPUT, strlen(FINGERPRINT_INPUT), fp_const) < 0 ||
        fetch_pbs_key_digest(k, fp_const, sizeof(fp_const), k->fingerprint) < 0)
        return fetch_error_set(err, -EIO, "key file: deriving the id key failed");
    return 0;
}

int fetch_pbs_key_load(const char *json, size_t len, const char *password,
                       struct fetch_pbs_key *ret, fetch_error *err)
{
    struct json_tokener *tok = json_tokener_new();
    json_object *root = NULL, *kdf = NULL;
    /* straight into @ret (no copy of the key on this stack to wipe) */
    struct fetch_pbs_key *k = ret;
    uint8_t data[128], wrap[32];
    const char *data64 = NULL, *fp;
    int n, r;

    memset(k, 0, sizeof(*k));
    if (!tok)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if (len > 65536 || !(root = json_tokener_parse_ex(tok, json, (int)len)) ||
        !json_object_is_type(root, json_type_object)) {
        r = fetch_error_set(err, -EBADMSG, "key file: not a JSON object");
        goto out;
    }
    /* one object and white space, as the PBS client reads it */
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
        if (!strchr(" \t\r\n", json[i]) || !json[i]) {
            r = fetch_error_set(err, -EBADMSG, "key file: bytes after its JSON object");
            goto out;
        }
    }
    if (!(data64 = get_str(root, "data")) || (n = unbase64(data64, data, sizeof(data))) < 0) {
        r = fetch_error_set(err, -EBADMSG, "key file: no base64 \"data\"");
        goto out;
    }
    json_object_object_get_ex(root, "kdf", &kdf);
    if (!kdf || json_object_is_type(kdf, json_type_null)) {
        /* not protected: the key itself */
        if (n != 32) {
            r = fetch_error_set(err, -EBADMSG, "key file: a key of %d bytes (32 expected)", n);
            goto out;
        }
        memcpy(k->key, data, 32);
    } else {
        if (!json_object_is_type(kdf, json_type_object)) {
            r = fetch_error_set(err, -EBADMSG, "key file: \"kdf\" is not an object");
            goto out;
        }
        if (n != 16 + 16 + 32) {
            r = fetch_error_set(err, -EBADMSG,
                                "key file: wrapped key data of %d bytes (64 expected)", n);
            goto out;
        }
        if (!password) {
            r = fetch_error_set(err, -ENOKEY,
                                "the key file is protected by a password: give it with "
                                "--keyfile-password-file FILE or LAZYIMG_KEY_PASSWORD");
            goto out;
        }
        if ((r = derive(kdf, password, wrap, err)) < 0)
            goto out;
        r = fetch_pbs_gcm_decrypt(wrap, data, data + 16, data + 32, 32, k->key);
        if (r < 0) {
            r = fetch_error_set(err, -EKEYREJECTED,
                                "wrong password for the key file (its key does not "
                                "authenticate)");
            goto out;
        }
    }
    if ((r = finish(k, err)) < 0)
        goto out;
    if ((fp = get_str(root, "fingerprint"))) {
        char mine[FETCH_PBS_FINGERPRINT_STR];
        fetch_pbs_fingerprint_str(k->fingerprint, mine);
        if (strcmp(fp, mine)) {
            r = fetch_error_set(err, -EBADMSG,
                                "key file: its fingerprint %.100s is not that of its key (%s)", fp,
                                mine);
            goto out;
        }
    }
    r = 0;
out:
    if (r < 0)
        OPENSSL_cleanse(k, sizeof(*k));
    /* json-c's copy of "data" (the key itself without a kdf): the string is
     * the object's own memory, freed below without being wiped */
    if (data64)
        OPENSSL_cleanse((char *)data64, strlen(data64));
    OPENSSL_cleanse(data, sizeof(data));
    OPENSSL_cleanse(wrap, sizeof(wrap));
    json_object_put(root);
    json_tokener_free(tok);
    return r;
}
