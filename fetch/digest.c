/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "digest.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct fetch_sha256_ctx {
    EVP_MD_CTX *md;
};

fetch_sha256_ctx *fetch_sha256_new(void)
{
    fetch_sha256_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->md = EVP_MD_CTX_new();
    if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
        fetch_sha256_free(c);
        return NULL;
    }
    return c;
}

int fetch_sha256_update(fetch_sha256_ctx *c, const void *data, size_t len)
{
    return EVP_DigestUpdate(c->md, data, len) == 1 ? 0 : -EIO;
}

int fetch_sha256_final(fetch_sha256_ctx *c, uint8_t out[FETCH_SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(c->md, out, &n) != 1 || n != FETCH_SHA256_LEN)
        return -EIO;
    return 0;
}

int fetch_sha256_reset(fetch_sha256_ctx *c)
{
    return EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

void fetch_sha256_free(fetch_sha256_ctx *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

int fetch_sha256(const void *data, size_t len, uint8_t out[FETCH_SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != FETCH_SHA256_LEN)
        return -EIO;
    return 0;
}

#define ZERO_MEMO 16

static struct {
    pthread_mutex_t lock;
    size_t n;
    uint64_t len[ZERO_MEMO];
    uint8_t digest[ZERO_MEMO][FETCH_SHA256_LEN];
} zero_memo = {.lock = PTHREAD_MUTEX_INITIALIZER};

int fetch_sha256_zeros(uint64_t len, uint8_t out[FETCH_SHA256_LEN])
{
    static const uint8_t zeros[64 * 1024];
    fetch_sha256_ctx *c;
    int r = 0;

    pthread_mutex_lock(&zero_memo.lock);
    for (size_t i = 0; i < zero_memo.n; i++) {
        if (zero_memo.len[i] == len) {
            memcpy(out, zero_memo.digest[i], FETCH_SHA256_LEN);
            pthread_mutex_unlock(&zero_memo.lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&zero_memo.lock);

    c = fetch_sha256_new();
    if (!c)
        return -ENOMEM;
    for (uint64_t done = 0; done < len && r == 0;) {
        size_t step = len - done < sizeof(zeros) ? (size_t)(len - done) : sizeof(zeros);
        r = fetch_sha256_update(c, zeros, step);
        done += step;
    }
    if (r == 0)
        r = fetch_sha256_final(c, out);
    fetch_sha256_free(c);
    if (r < 0)
        return r;

    pthread_mutex_lock(&zero_memo.lock);
    if (zero_memo.n < ZERO_MEMO) {
        zero_memo.len[zero_memo.n] = len;
        memcpy(zero_memo.digest[zero_memo.n], out, FETCH_SHA256_LEN);
        zero_memo.n++;
    }
    pthread_mutex_unlock(&zero_memo.lock);
    return 0;
}

static const EVP_MD *digest_md(enum fetch_digest_algo algo)
{
    switch (algo) {
    case FETCH_DIGEST_SHA256:
        return EVP_sha256();
    case FETCH_DIGEST_SHA512_256:
        return EVP_sha512_256();
    case FETCH_DIGEST_SHA256_KEYED:
        break; /* needs the key */
    }
    return NULL;
}

int fetch_digest(enum fetch_digest_algo algo, const void *data, size_t len, uint8_t out[32])
{
    const EVP_MD *md = digest_md(algo);
    unsigned int n = 0;
    if (!md)
        return -EINVAL;
    if (EVP_Digest(data, len, out, &n, md, NULL) != 1 || n != 32)
        return -EIO;
    return 0;
}

/* Feeds @len zero bytes to @md. */
static int feed_zeros(EVP_MD_CTX *md, uint64_t len)
{
    static const uint8_t zeros[64 * 1024];
    while (len) {
        size_t step = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        if (EVP_DigestUpdate(md, zeros, step) != 1)
            return -EIO;
        len -= step;
    }
    return 0;
}

/* The ladder of @type digests of zeros, each followed by @suffix (NULL: none). */
static int zeros_ladder(const EVP_MD *type, const uint8_t *suffix, size_t suffix_len,
                        const uint64_t *lens, size_t n, uint8_t (*out)[32])
{
    EVP_MD_CTX *run = NULL, *fork = NULL;
    uint64_t fed = 0;
    int r = 0;

    if (!type)
        return -EINVAL;
    for (size_t i = 1; i < n; i++)
        if (lens[i] <= lens[i - 1])
            return -EINVAL;
    if (n == 0)
        return 0;
    run = EVP_MD_CTX_new();
    fork = EVP_MD_CTX_new();
    if (!run || !fork) {
        r = -ENOMEM;
        goto out;
    }
    if (EVP_DigestInit_ex(run, type, NULL) != 1) {
        r = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned int got = 0;
        /* the running state advances to lens[i]; finalizing a copy leaves it
         * free to go on towards the next length */
        if ((r = feed_zeros(run, lens[i] - fed)) < 0)
            goto out;
        fed = lens[i];
        if (EVP_MD_CTX_copy_ex(fork, run) != 1 ||
            (suffix && EVP_DigestUpdate(fork, suffix, suffix_len) != 1) ||
            EVP_DigestFinal_ex(fork, out[i], &got) != 1 || got != 32) {
            r = -EIO;
            goto out;
        }
    }
out:
    EVP_MD_CTX_free(fork);
    EVP_MD_CTX_free(run);
    return r;
}

int fetch_digest_zeros_ladder(enum fetch_digest_algo algo, const uint64_t *lens, size_t n,
                              uint8_t (*out)[32])
{
    return zeros_ladder(digest_md(algo), NULL, 0, lens, n, out);
}

int fetch_digest_zeros_ladder_keyed(const uint8_t id_key[32], const uint64_t *lens, size_t n,
                                    uint8_t (*out)[32])
{
    return zeros_ladder(EVP_sha256(), id_key, 32, lens, n, out);
}
