/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fetch_sha256() against OpenSSL (fixtures.c's fx_sha256): every length
 * that changes the padding, long messages from odd addresses, and many
 * threads at once, so that messages are hashed two at a time beside each
 * other (the SHA-extension path), or by OpenSSL when the test runs with
 * LAZYIMG_NO_SHA_NI=1 (the "-openssl" run).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch/digest.h"
#include "fixtures.h"

static bool openssl_run(void)
{
    const char *e = getenv("LAZYIMG_NO_SHA_NI");
    return e && *e && strcmp(e, "0") != 0;
}

static void check(const uint8_t *p, size_t len)
{
    uint8_t got[32], want[32];
    fx_sha256(p, len, want);
    assert_int_equal(fetch_sha256(p, len, got), 0);
    if (memcmp(got, want, 32) != 0)
        fail_msg("SHA-256 of %zu bytes at offset %zu differs from OpenSSL's", len,
                 (size_t)((uintptr_t)p & 63));
    assert_int_equal(fetch_digest(FETCH_DIGEST_SHA256, p, len, got), 0);
    assert_memory_equal(got, want, 32);
}

/* Known answers (FIPS 180-4's examples), so that a fault shared with the
 * reference could not pass. */
static void known_answers(void **state)
{
    (void)state;
    static const char *abc = "abc";
    static const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    uint8_t got[32], want[32];

    assert_int_equal(fetch_sha256(abc, 3, got), 0);
    fx_unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, 32);
    assert_memory_equal(got, want, 32);
    assert_int_equal(fetch_sha256(two, strlen(two), got), 0);
    fx_unhex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", want, 32);
    assert_memory_equal(got, want, 32);
    assert_int_equal(fetch_sha256("", 0, got), 0);
    fx_unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want, 32);
    assert_memory_equal(got, want, 32);
}

/* Every length up to three blocks and a half, at each alignment class. */
static void short_lengths(void **state)
{
    (void)state;
    uint8_t buf[300];
    fx_fill_random(buf, sizeof(buf), 3);
    for (size_t len = 0; len <= 230; len++)
        for (size_t off = 0; off < 8 && off + len <= sizeof(buf); off += 3)
            check(buf + off, len);
}

/* Around 64 KiB and 1 MiB (the shortest message that may be paired), and long ones. */
static void long_lengths(void **state)
{
    (void)state;
    static const size_t lens[] = {65535,         65536,         65537,          65536 + 55,
                                  65536 + 56,    (1 << 20) - 1, 1 << 20,        1048589,
                                  (4 << 20) - 1, 4 << 20,       (4 << 20) + 64, 131072 + 119};
    size_t cap = (4 << 20) + 128;
    uint8_t *buf = malloc(cap + 16);
    assert_non_null(buf);
    fx_fill_random(buf, cap + 16, 5);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        check(buf, lens[i]);
        check(buf + 13, lens[i]);
    }
    free(buf);
}

/* SHA-256(data ‖ suffix) in one call, as the keyed digests of encrypted
 * PBS chunks take it, against OpenSSL's of the two joined. */
static void suffixed(void **state)
{
    (void)state;
    static const size_t sfx_lens[] = {0, 1, 31, 32, 55, 56, 63, 64};
    static const size_t lens[] = {0,  1,   7,    55,    56,         63,     64,
                                  65, 127, 1000, 65536, 65536 + 40, 1 << 20};
    size_t cap = (1 << 20) + 64;
    uint8_t *buf = malloc(cap), *joined = malloc(cap + 64), sfx[65], got[32], want[32];

    assert_non_null(buf);
    assert_non_null(joined);
    fx_fill_random(buf, cap, 21);
    fx_fill_random(sfx, sizeof(sfx), 22);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t j = 0; j < sizeof(sfx_lens) / sizeof(sfx_lens[0]); j++) {
            size_t len = lens[i], sl = sfx_lens[j];
            memcpy(joined, buf + 3, len);
            memcpy(joined + len, sfx, sl);
            fx_sha256(joined, len + sl, want);
            assert_int_equal(fetch_sha256_suffixed(buf + 3, len, sfx, sl, got), 0);
            if (memcmp(got, want, 32) != 0)
                fail_msg("SHA-256 of %zu bytes and a %zu-byte suffix differs from OpenSSL's", len,
                         sl);
        }
    }
    assert_int_equal(fetch_sha256_suffixed(buf, 10, sfx, 65, got), -EINVAL);
    free(buf);
    free(joined);
}

#define THREADS 4
#define PER_THREAD 48

struct worker {
    const uint8_t *pool;
    size_t pool_len;
    unsigned seed;
    bool solo;
    int bad;
};

/* Messages of 64 KiB to 1.6 MiB (and a few of 4 MiB) from anywhere in the
 * pool, each checked against OpenSSL. */
static void *hash_many(void *arg)
{
    struct worker *w = arg;
    if (w->solo)
        fetch_sha256_thread_solo();
    for (int i = 0; i < PER_THREAD; i++) {
        uint8_t got[32], want[32];
        size_t len = i % 8 == 0 ? (size_t)4 << 20 : 65536 + (size_t)(rand_r(&w->seed) % (3 << 19));
        size_t off = (size_t)rand_r(&w->seed) % (w->pool_len - len);
        if (fetch_sha256(w->pool + off, len, got) != 0)
            w->bad++;
        fx_sha256(w->pool + off, len, want);
        if (memcmp(got, want, 32) != 0)
            w->bad++;
    }
    return NULL;
}

static void threads_at_once(void **state)
{
    (void)state;
    size_t pool_len = (size_t)24 << 20;
    uint8_t *pool = malloc(pool_len);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    uint64_t paired0, alone0, paired, alone;

    assert_non_null(pool);
    fx_fill_random(pool, pool_len, 9);
    fetch_sha256_pair_stats(&paired0, &alone0);
    for (int i = 0; i < THREADS; i++) {
        /* one thread hashes alone, as the pool's hydration worker does */
        w[i] = (struct worker){.pool = pool,
                               .pool_len = pool_len,
                               .seed = 100u + (unsigned)i,
                               .solo = i == THREADS - 1};
        assert_int_equal(pthread_create(&t[i], NULL, hash_many, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
    }
    fetch_sha256_pair_stats(&paired, &alone);
    if (openssl_run()) {
        assert_false(fetch_sha256_pairs());
        assert_int_equal(paired, 0);
        assert_int_equal(alone, 0);
    } else if (fetch_sha256_pairs()) {
        /* three threads hashing megabytes at once pair up */
        print_message("blocks hashed two at a time: %llu, alone: %llu\n",
                      (unsigned long long)(paired - paired0), (unsigned long long)(alone - alone0));
        assert_true(paired - paired0 > 0);
        assert_true(alone - alone0 > 0);
    }
    free(pool);
}

/* ---- a partner posted at the last moment is never left waiting ---- */

static uint8_t *late_buf;
static pthread_barrier_t late_bar;
static unsigned late_delay_us;

static void *late_runner(void *arg)
{
    uint8_t o[32];
    (void)arg;
    pthread_barrier_wait(&late_bar);
    fetch_sha256(late_buf, (size_t)2 << 20, o); /* about 1.2 ms alone */
    return NULL;
}

static void *late_partner(void *arg)
{
    uint8_t o[32], want[32];
    int *bad = arg;
    pthread_barrier_wait(&late_bar);
    usleep(late_delay_us);
    fetch_sha256(late_buf + ((size_t)2 << 20), (size_t)1 << 20, o);
    fx_sha256(late_buf + ((size_t)2 << 20), (size_t)1 << 20, want);
    *bad = memcmp(o, want, 32) != 0;
    return NULL;
}

/*
 * Two threads, the second starting at a random moment of the first's hash:
 * whenever it posts its message (before the runner's first look, between
 * looks, after the runner closed the exchange), it gets it back. Nothing
 * else hashes, so a partner the runner forgot would wait forever: each
 * round must end within seconds.
 */
static void late_partner_returns(void **state)
{
    (void)state;
    unsigned seed = 7;
    uint64_t p0, a0, p1, a1;
    late_buf = malloc((size_t)3 << 20);
    assert_non_null(late_buf);
    fx_fill_random(late_buf, (size_t)3 << 20, 31);
    fetch_sha256_pair_stats(&p0, &a0);
    for (int round = 0; round < 300; round++) {
        pthread_t a, b;
        struct timespec dl;
        int bad = 0;
        late_delay_us = (unsigned)(rand_r(&seed) % 1600);
        assert_int_equal(pthread_barrier_init(&late_bar, NULL, 2), 0);
        assert_int_equal(pthread_create(&a, NULL, late_runner, NULL), 0);
        assert_int_equal(pthread_create(&b, NULL, late_partner, &bad), 0);
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 10;
        if (pthread_timedjoin_np(a, NULL, &dl) != 0 || pthread_timedjoin_np(b, NULL, &dl) != 0)
            fail_msg("round %d: a thread never got its message back (start %u us late)", round,
                     late_delay_us);
        assert_int_equal(bad, 0);
        pthread_barrier_destroy(&late_bar);
    }
    fetch_sha256_pair_stats(&p1, &a1);
    if (fetch_sha256_pairs())
        assert_true(p1 > p0); /* some rounds did pair */
    free(late_buf);
}

struct patient {
    const uint8_t *msg;
    bool patient;
    unsigned delay_us;
    int bad;
    double took_ms;
};

static pthread_barrier_t pat_bar;

/* Hashes 4 MiB at @msg, after a delay, patient or not; checked against OpenSSL. */
static void *patient_hash(void *arg)
{
    struct patient *p = arg;
    struct timespec t0, t1;
    uint8_t got[32], want[32];
    pthread_barrier_wait(&pat_bar);
    usleep(p->delay_us);
    fetch_sha256_thread_patient(p->patient);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    p->bad += fetch_sha256(p->msg, (size_t)4 << 20, got) != 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fetch_sha256_thread_patient(false);
    fx_sha256(p->msg, (size_t)4 << 20, want);
    p->bad += memcmp(got, want, 32) != 0;
    p->took_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    return NULL;
}

/* Runs one round of two threads (@b NULL: @a alone); joins within 10 s. */
static void patient_round(struct patient *a, struct patient *b)
{
    pthread_t ta, tb;
    struct timespec dl;
    assert_int_equal(pthread_barrier_init(&pat_bar, NULL, b ? 2 : 1), 0);
    assert_int_equal(pthread_create(&ta, NULL, patient_hash, a), 0);
    if (b)
        assert_int_equal(pthread_create(&tb, NULL, patient_hash, b), 0);
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    if (pthread_timedjoin_np(ta, NULL, &dl) != 0 || (b && pthread_timedjoin_np(tb, NULL, &dl) != 0))
        fail_msg("a patient message never came back (second thread %u us late)",
                 b ? b->delay_us : 0);
    assert_int_equal(a->bad, 0);
    if (b)
        assert_int_equal(b->bad, 0);
    pthread_barrier_destroy(&pat_bar);
}

/*
 * A patient message that finds nobody hashing waits for the next thread's:
 * one that comes 1 ms later takes it along (almost every block of both is
 * hashed two at a time); alone, it waits its 3 ms and is hashed alone. With
 * the second thread at random moments (patient or not, before, during or
 * after the wait), every message comes back right.
 */
static void patient_waits_for_a_partner(void **state)
{
    (void)state;
    size_t len = (size_t)8 << 20;
    uint8_t *buf = malloc(len);
    unsigned seed = 11;
    uint64_t p0, a0, p1, a1;
    struct patient a, b;

    assert_non_null(buf);
    fx_fill_random(buf, len, 51);

    /* under load a thread may start late for either side of the wait:
     * one of ten tries must pair */
    for (int try = 0; try < 10; try++) {
        fetch_sha256_pair_stats(&p0, &a0);
        a = (struct patient){.msg = buf, .patient = true};
        b = (struct patient){.msg = buf + len / 2, .delay_us = 1000};
        patient_round(&a, &b);
        fetch_sha256_pair_stats(&p1, &a1);
        if (!fetch_sha256_pairs() || p1 - p0 >= 2 * 60000) /* of 2 x 65,536 blocks */
            break;
        if (try == 9)
            fail_msg("a message 1 ms after a patient one never took it along (%llu blocks paired)",
                     (unsigned long long)(p1 - p0));
    }

    fetch_sha256_pair_stats(&p0, &a0);
    a = (struct patient){.msg = buf, .patient = true};
    patient_round(&a, NULL);
    fetch_sha256_pair_stats(&p1, &a1);
    if (fetch_sha256_pairs()) {
        assert_int_equal(p1, p0);
        assert_true(a1 - a0 >= 65536);
        assert_true(a.took_ms >= 3.0);
    }

    /* the second thread at random moments; around 3 ms it may look at the
     * patient message just as its time runs out and it withdraws */
    for (int round = 0; round < 400; round++) {
        a = (struct patient){.msg = buf, .patient = true};
        b = (struct patient){.msg = buf + len / 2,
                             .patient = round % 2,
                             .delay_us = round % 4 ? (unsigned)(rand_r(&seed) % 5000)
                                                   : 2800 + (unsigned)(rand_r(&seed) % 400)};
        patient_round(&a, &b);
    }
    free(buf);
}

static void *solo_hash(void *arg)
{
    struct worker *w = arg;
    fetch_sha256_thread_solo();
    for (int i = 0; i < 12; i++) {
        uint8_t got[32], want[32];
        const uint8_t *p = w->pool + (size_t)(i % 4) * ((size_t)4 << 20);
        if (fetch_sha256(p, (size_t)4 << 20, got) != 0)
            w->bad++;
        fx_sha256(p, (size_t)4 << 20, want);
        w->bad += memcmp(got, want, 32) != 0;
    }
    return NULL;
}

/* Threads marked solo (the hydration worker) never pair, even all at once. */
static void solo_threads_never_pair(void **state)
{
    (void)state;
    size_t pool_len = (size_t)16 << 20;
    uint8_t *pool = malloc(pool_len);
    pthread_t t[3];
    struct worker w[3];
    uint64_t p0, a0, p1, a1;

    assert_non_null(pool);
    fx_fill_random(pool, pool_len, 41);
    fetch_sha256_pair_stats(&p0, &a0);
    for (int i = 0; i < 3; i++) {
        w[i] = (struct worker){.pool = pool, .pool_len = pool_len};
        assert_int_equal(pthread_create(&t[i], NULL, solo_hash, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
    }
    fetch_sha256_pair_stats(&p1, &a1);
    assert_int_equal(p1, p0);
    if (fetch_sha256_pairs())
        assert_true(a1 - a0 >= 3 * 12 * (((size_t)4 << 20) / 64));
    free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),
        cmocka_unit_test(short_lengths),
        cmocka_unit_test(long_lengths),
        cmocka_unit_test(suffixed),
        cmocka_unit_test(threads_at_once),
        cmocka_unit_test(late_partner_returns),
        cmocka_unit_test(solo_threads_never_pair),
        cmocka_unit_test(patient_waits_for_a_partner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
