/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "digest.h"
#include "sha256ni.h"
#include "simd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    fetch_simd_clean_upper(); /* OpenSSL's SHA-NI code is SSE: fetch/simd.h */
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

/* ---- one-shot SHA-256, two messages at a time -------------------------------
 *
 * On a CPU with the SHA extensions, one message hashes at the latency of its
 * rounds, and two interleaved hash in about the same time (fetch/sha256ni.h).
 * A thread hashing a long message (a "runner") looks for a partner every
 * SOLO_STEP blocks: another thread's message, posted in the exchange while
 * that thread sleeps. The runner then hashes both until one has no full
 * block left and hands the partner back; the partner's thread finishes its
 * message itself (its last block, or the rest as a runner in turn). Its CPU
 * is free for other work meanwhile. Its wait is a little longer than hashing
 * alone would have taken (the runner's next look, a sleep and a wake-up: 5%
 * more at the median for 4 MiB messages, 40–100% for 64 KiB ones in a
 * review's measurement), so only messages of PAIR_MIN bytes or more are
 * paired, and a runner with less than TAKE_MIN blocks left takes no one.
 * One runner at a time takes partners; a thread that finds that place taken
 * hashes alone. A patient thread (fetch_sha256_thread_patient: the pool's
 * decodes of readahead chunks) that finds no runner and no partner posts its
 * message all the same and waits up to PATIENCE_US: the next thread to come
 * becomes a runner and takes it; if none comes, it withdraws it (a runner
 * that looked just then finds no one under the lock) and hashes alone. Threads that run at a low
 * priority (the pool's hydration worker) neither take nor become partners: a reader's chunk must
 * not wait on them.
 */

#define PAIR_MIN (1024u * 1024) /* shorter messages are hashed alone */
#define SOLO_STEP 1024u         /* blocks (64 KiB) between looks for a partner */
#define TAKE_MIN 4096u          /* blocks (256 KiB) a runner needs left to take one */

static const uint32_t SHA256_IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

struct sha_msg {
    const uint8_t *p;
    size_t blocks, done; /* full 64-byte blocks, and how many of them are hashed */
    uint32_t h[8];
    bool waiting; /* posted as a partner and not yet handed back; exchange lock */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t back; /* a partner was handed back */
    bool open;           /* a runner takes a partner */
    struct sha_msg *partner;
    uint64_t paired, alone; /* blocks hashed two at a time, and alone */
} ex = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, NULL, 0, 0};

#define PATIENCE_US 3000u /* how long a patient message waits for a runner */

static __thread bool thread_solo, thread_patient;
static int ni_state = -1; /* whether the SHA extensions are used; -1: not yet asked */

static bool use_ni(void)
{
    int s = __atomic_load_n(&ni_state, __ATOMIC_RELAXED);
    if (s < 0) {
        const char *off = getenv("LAZYIMG_NO_SHA_NI");
        s = fetch_simd_has_sha() && !(off && *off && strcmp(off, "0") != 0);
        __atomic_store_n(&ni_state, s, __ATOMIC_RELAXED);
    }
    return s;
}

bool fetch_sha256_pairs(void)
{
    return use_ni();
}

void fetch_sha256_thread_solo(void)
{
    thread_solo = true;
}

void fetch_sha256_thread_patient(bool on)
{
    thread_patient = on;
}

/* With no runner, a patient @m waits as the partner of the next thread to
 * come (which becomes a runner and takes it) for up to PATIENCE_US, then
 * goes on alone. Exchange lock held; @m->waiting false on return. */
static void wait_for_runner(struct sha_msg *m)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl); /* a step of the wall clock cannot stretch it */
    dl.tv_nsec += (long)PATIENCE_US * 1000;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    m->waiting = true;
    __atomic_store_n(&ex.partner, m, __ATOMIC_RELAXED);
    while (m->waiting) {
        if (ex.partner != m) {
            /* taken: hashed beside a runner's until it hands it back */
            pthread_cond_wait(&ex.back, &ex.lock);
        } else if (pthread_cond_clockwait(&ex.back, &ex.lock, CLOCK_MONOTONIC, &dl) == ETIMEDOUT &&
                   ex.partner == m) {
            __atomic_store_n(&ex.partner, NULL, __ATOMIC_RELAXED);
            m->waiting = false;
        }
    }
}

/* Exchange lock held. */
static void hand_back(struct sha_msg *q)
{
    q->waiting = false;
    pthread_cond_broadcast(&ex.back);
}

/* The runner stops taking partners; one posted since its last look runs
 * itself. Exchange lock held. */
static void close_exchange(void)
{
    struct sha_msg *q = ex.partner;
    ex.open = false;
    if (q) {
        __atomic_store_n(&ex.partner, NULL, __ATOMIC_RELAXED);
        hand_back(q);
    }
}

/* Hashes @m's full blocks, beside a partner's where one comes. */
static void run(struct sha_msg *m)
{
    struct sha_msg *q;
    bool taking;

    pthread_mutex_lock(&ex.lock);
    if (ex.open && !ex.partner) {
        m->waiting = true;
        __atomic_store_n(&ex.partner, m, __ATOMIC_RELAXED);
        while (m->waiting)
            pthread_cond_wait(&ex.back, &ex.lock);
    } else if (!ex.open && !ex.partner && thread_patient && m->blocks >= TAKE_MIN) {
        wait_for_runner(m);
    }
    taking = m->blocks - m->done >= TAKE_MIN && !ex.open;
    if (taking)
        ex.open = true;
    pthread_mutex_unlock(&ex.lock);

    while (m->done < m->blocks) {
        size_t n = m->blocks - m->done;
        if (taking && n < TAKE_MIN) {
            pthread_mutex_lock(&ex.lock);
            close_exchange();
            taking = false;
            pthread_mutex_unlock(&ex.lock);
        }
        /* a racy look first: the lock only when there is someone to take
         * (only the runner that opened the exchange takes a partner out) */
        if (taking && __atomic_load_n(&ex.partner, __ATOMIC_RELAXED)) {
            pthread_mutex_lock(&ex.lock);
            if (!(q = ex.partner)) {
                /* a patient partner withdrew since the look (its time ran
                 * out): the next step goes alone */
                pthread_mutex_unlock(&ex.lock);
                continue;
            }
            __atomic_store_n(&ex.partner, NULL, __ATOMIC_RELAXED);
            ex.open = taking = false;
            pthread_mutex_unlock(&ex.lock);

            if (q->blocks - q->done < n)
                n = q->blocks - q->done;
            fetch_sha256ni_blocks_x2(m->h, m->p + 64 * m->done, q->h, q->p + 64 * q->done, n);
            m->done += n;
            q->done += n;

            pthread_mutex_lock(&ex.lock);
            ex.paired += 2 * n;
            hand_back(q);
            if (m->blocks - m->done >= TAKE_MIN && !ex.open)
                ex.open = taking = true;
            pthread_mutex_unlock(&ex.lock);
        } else {
            if (n > SOLO_STEP)
                n = SOLO_STEP;
            fetch_sha256ni_blocks(m->h, m->p + 64 * m->done, n);
            m->done += n;
            __atomic_fetch_add(&ex.alone, n, __ATOMIC_RELAXED);
        }
    }
    if (taking) {
        pthread_mutex_lock(&ex.lock);
        close_exchange();
        pthread_mutex_unlock(&ex.lock);
    }
}

/*
 * The bytes after the full blocks of @len bytes at @p that @h has taken: the
 * rest of them, the @sfx_len bytes at @sfx, the padding; and the digest.
 */
static void finish(uint32_t h[8], const uint8_t *p, size_t len, const uint8_t *sfx, size_t sfx_len,
                   uint8_t out[FETCH_SHA256_LEN])
{
    uint8_t tail[192] = {0}; /* 63 + 64 + 9 bytes round up to 3 blocks */
    size_t rest = len % 64, used = rest + sfx_len, nb = (used + 9 + 63) / 64;
    uint64_t bits = ((uint64_t)len + sfx_len) * 8;

    if (rest)
        memcpy(tail, p + (len - rest), rest);
    if (sfx_len)
        memcpy(tail + rest, sfx, sfx_len);
    tail[used] = 0x80;
    for (int i = 0; i < 8; i++)
        tail[64 * nb - 1 - i] = (uint8_t)(bits >> (8 * i));
    fetch_sha256ni_blocks(h, tail, nb);
    if (sfx_len)
        OPENSSL_cleanse(tail, sizeof(tail)); /* a suffix may be a key (pbs_key.h) */
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

int fetch_sha256_suffixed(const void *data, size_t len, const void *sfx, size_t sfx_len,
                          uint8_t out[FETCH_SHA256_LEN])
{
    EVP_MD_CTX *md;
    unsigned int n = 0;
    int ok;

    if (sfx_len > 64)
        return -EINVAL;
    if (use_ni()) {
        struct sha_msg m = {.p = data, .blocks = len / 64};
        memcpy(m.h, SHA256_IV, sizeof(m.h));
        if (len >= PAIR_MIN && !thread_solo) {
            run(&m);
        } else {
            fetch_sha256ni_blocks(m.h, m.p, m.blocks);
            __atomic_fetch_add(&ex.alone, m.blocks, __ATOMIC_RELAXED);
        }
        finish(m.h, data, len, sfx, sfx_len, out);
        return 0;
    }
    fetch_simd_clean_upper();
    if (!sfx_len)
        return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == FETCH_SHA256_LEN
                   ? 0
                   : -EIO;
    if (!(md = EVP_MD_CTX_new()))
        return -ENOMEM;
    ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, data, len) == 1 &&
         EVP_DigestUpdate(md, sfx, sfx_len) == 1 && EVP_DigestFinal_ex(md, out, &n) == 1 &&
         n == FETCH_SHA256_LEN;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -EIO;
}

int fetch_sha256(const void *data, size_t len, uint8_t out[FETCH_SHA256_LEN])
{
    return fetch_sha256_suffixed(data, len, NULL, 0, out);
}

void fetch_sha256_pair_stats(uint64_t *paired, uint64_t *alone)
{
    pthread_mutex_lock(&ex.lock);
    *paired = ex.paired;
    pthread_mutex_unlock(&ex.lock);
    *alone = __atomic_load_n(&ex.alone, __ATOMIC_RELAXED);
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
    if (algo == FETCH_DIGEST_SHA256)
        return fetch_sha256(data, len, out);
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
