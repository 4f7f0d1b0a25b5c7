/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mkpbs_key.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* The client's defaults (pbs.md §5) */
#define SCRYPT_N 65536
#define SCRYPT_R 8
#define SCRYPT_P 1
#define PBKDF2_ITER 65535
#define SALT_LEN 32

void mkpbs_id_key(const uint8_t key[32], uint8_t id_key[32])
{
    if (PKCS5_PBKDF2_HMAC((const char *)key, 32, (const unsigned char *)"_id_key", 7, 10,
                          EVP_sha256(), 32, id_key) != 1)
        die("PBKDF2 failed");
}

void mkpbs_fingerprint(const uint8_t id_key[32], char out[96])
{
    static const char label[] = "Proxmox Backup Encryption Key Fingerprint";
    uint8_t buf[64], fp[32];
    unsigned n = 0;

    if (!EVP_Digest(label, strlen(label), buf, &n, EVP_sha256(), NULL) || n != 32)
        die("SHA-256 failed");
    memcpy(buf + 32, id_key, 32);
    if (!EVP_Digest(buf, sizeof(buf), fp, &n, EVP_sha256(), NULL) || n != 32)
        die("SHA-256 failed");
    for (size_t i = 0, pos = 0; i < 32; i++)
        pos += (size_t)snprintf(out + pos, 96 - pos, i ? ":%02x" : "%02x", fp[i]);
}

void mkpbs_sign(const uint8_t id_key[32], const void *data, size_t len, char out[65])
{
    uint8_t mac[32];
    size_t n = 0;

    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, id_key, 32, data, len, mac, sizeof(mac),
                   &n) ||
        n != 32)
        die("HMAC-SHA256 failed");
    hex_encode(mac, 32, out);
}

static char *base64(const uint8_t *in, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

static void json_put(json_object *o, const char *k, json_object *v)
{
    if (!v || json_object_object_add(o, k, v) != 0)
        die("out of memory (building the key file)");
}

/* The derived key and the "kdf" member for @kdf. */
static json_object *derive(const char *kdf, const char *password, uint8_t out[32])
{
    uint8_t salt[SALT_LEN];
    json_object *params = json_object_new_object(), *outer = json_object_new_object();
    char *salt64;

    if (!params || !outer)
        die("out of memory (building the key file)");
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        die("no random bytes for the salt");
    salt64 = base64(salt, sizeof(salt));
    if (!strcmp(kdf, "scrypt")) {
        if (EVP_PBE_scrypt(password, strlen(password), salt, sizeof(salt), SCRYPT_N, SCRYPT_R,
                           SCRYPT_P, 256ull << 20, out, 32) != 1)
            die("scrypt failed");
        json_put(params, "n", json_object_new_int64(SCRYPT_N));
        json_put(params, "r", json_object_new_int64(SCRYPT_R));
        json_put(params, "p", json_object_new_int64(SCRYPT_P));
        json_put(params, "salt", json_object_new_string(salt64));
        json_put(outer, "Scrypt", params);
    } else {
        if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, sizeof(salt), PBKDF2_ITER,
                              EVP_sha256(), 32, out) != 1)
            die("PBKDF2 failed");
        json_put(params, "iter", json_object_new_int64(PBKDF2_ITER));
        json_put(params, "salt", json_object_new_string(salt64));
        json_put(outer, "PBKDF2", params);
    }
    free(salt64);
    return outer;
}

/* @key wrapped under @wrap: iv(16) ‖ tag(16) ‖ AES-256-GCM(@key), no AAD. */
static void wrap_key(const uint8_t wrap[32], const uint8_t key[32], uint8_t out[64])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;

    if (!c || RAND_bytes(out, 16) != 1 ||
        !EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) ||
        !EVP_EncryptInit_ex(c, NULL, NULL, wrap, out) ||
        !EVP_EncryptUpdate(c, out + 32, &n1, key, 32) ||
        !EVP_EncryptFinal_ex(c, out + 32 + n1, &n2) || n1 + n2 != 32 ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 16))
        die("AES-256-GCM failed (wrapping the key)");
    EVP_CIPHER_CTX_free(c);
}

void mkpbs_write_keyfile(const char *path, const uint8_t key[32], const char *kdf,
                         const char *password)
{
    json_object *root = json_object_new_object();
    uint8_t id_key[32], wrap[32], data[64];
    char fp[96], now[32], *data64;
    const char *text;
    time_t t = time(NULL);
    struct tm tm;
    int fd;

    if (!root)
        die("out of memory (building the key file)");
    if (strcmp(kdf, "none") && strcmp(kdf, "scrypt") && strcmp(kdf, "pbkdf2"))
        die("--kdf: expected none, scrypt or pbkdf2, got '%s'", kdf);
    if (strcmp(kdf, "none") && (!password || !*password))
        die("--kdf %s needs a password (--keyfile-password-file)", kdf);
    if (!strcmp(kdf, "none")) {
        if (json_object_object_add(root, "kdf", NULL) != 0) /* JSON null */
            die("out of memory (building the key file)");
        data64 = base64(key, 32);
    } else {
        json_put(root, "kdf", derive(kdf, password, wrap));
        wrap_key(wrap, key, data);
        data64 = base64(data, sizeof(data));
        OPENSSL_cleanse(wrap, sizeof(wrap));
    }
    if (!gmtime_r(&t, &tm) || !strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm))
        die("cannot format the time");
    json_put(root, "created", json_object_new_string(now));
    json_put(root, "modified", json_object_new_string(now));
    json_put(root, "data", json_object_new_string(data64));
    mkpbs_id_key(key, id_key);
    mkpbs_fingerprint(id_key, fp);
    json_put(root, "fingerprint", json_object_new_string(fp));
    text = json_object_to_json_string_ext(root,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text)
        die("out of memory (serializing the key file)");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        die("cannot create %s: %s", path, strerror(errno));
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || write(fd, "\n", 1) != 1 ||
        close(fd) != 0)
        die("cannot write %s: %s", path, strerror(errno));
    OPENSSL_cleanse(data64, strlen(data64));
    free(data64);
    json_object_put(root);
}
