/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cache/memcache: lookups, single-flight loads, failures, eviction. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/memcache.h"

static int released;

static void count_release(void *owner)
{
    released++;
    free(owner);
}

static void key_of(uint8_t key[CACHE_KEY_LEN], int n)
{
    memset(key, 0, CACHE_KEY_LEN);
    key[0] = (uint8_t)n;
    key[1] = (uint8_t)(n * 7);
    key[5] = (uint8_t)(n >> 8);
}

/* Fills pending entry @e with @len bytes of value @v. */
static void fill(struct cache_mem *c, struct cache_mem_entry *e, size_t len, uint8_t v)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, v, len);
    cache_mem_fill(c, e, buf, len, buf, count_release);
}

static void test_miss_fill_hit(void **state)
{
    struct cache_mem *c = cache_mem_new(1 << 20);
    struct cache_mem_entry *e, *e2;
    struct cache_mem_stats st;
    uint8_t key[CACHE_KEY_LEN];
    const uint8_t *bytes;
    size_t len;
    (void)state;

    released = 0;
    key_of(key, 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key), 0);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key, &e), 1);
    fill(c, e, 100, 0xab);
    cache_mem_release(c, e);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key), 1);
    /* the same digest under another algorithm is another key */
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA512_256, key), 0);

    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key, &e2), 0);
    assert_ptr_equal(e, e2);
    bytes = cache_mem_entry_bytes(e2, &len);
    assert_int_equal(len, 100);
    assert_int_equal(bytes[0], 0xab);
    assert_int_equal(bytes[99], 0xab);
    cache_mem_release(c, e2);

    cache_mem_get_stats(c, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, 100);
    cache_mem_free(c);
    assert_int_equal(released, 1);
}

struct waiter {
    struct cache_mem *c;
    uint8_t key[CACHE_KEY_LEN];
    int result;
    uint8_t first_byte;
};

static void *wait_for_chunk(void *arg)
{
    struct waiter *w = arg;
    struct cache_mem_entry *e = NULL;
    w->result = cache_mem_acquire(w->c, CACHE_ALGO_SHA256, w->key, &e);
    if (w->result == 0) {
        size_t len;
        w->first_byte = cache_mem_entry_bytes(e, &len)[0];
        cache_mem_release(w->c, e);
    }
    return NULL;
}

/* Waits until @n threads are blocked in acquire on the pending key. The test
 * has no hook for that, so poll: a waiter that got through early would have
 * returned 1 (a second load), which the assertions below catch. */
static void settle(void)
{
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void test_single_flight(void **state)
{
    struct cache_mem *c = cache_mem_new(1 << 20);
    struct waiter w[3];
    pthread_t t[3];
    struct cache_mem_entry *e;
    struct cache_mem_stats st;
    uint8_t key[CACHE_KEY_LEN];
    (void)state;

    key_of(key, 2);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key, &e), 1);
    for (int i = 0; i < 3; i++) {
        w[i].c = c;
        memcpy(w[i].key, key, sizeof(key));
        w[i].result = 99;
        assert_int_equal(pthread_create(&t[i], NULL, wait_for_chunk, &w[i]), 0);
    }
    settle();
    for (int i = 0; i < 3; i++)
        assert_int_equal(w[i].result, 99); /* still waiting for the one load */
    fill(c, e, 4096, 0x5a);
    cache_mem_release(c, e);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].result, 0);
        assert_int_equal(w[i].first_byte, 0x5a);
    }
    cache_mem_get_stats(c, &st);
    assert_int_equal(st.misses, 1); /* one load for four readers */
    assert_int_equal(st.waits, 3);
    cache_mem_free(c);
}

static void test_failed_load(void **state)
{
    struct cache_mem *c = cache_mem_new(1 << 20);
    struct waiter w[2];
    pthread_t t[2];
    struct cache_mem_entry *e;
    uint8_t key[CACHE_KEY_LEN];
    (void)state;

    key_of(key, 3);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key, &e), 1);
    for (int i = 0; i < 2; i++) {
        w[i].c = c;
        memcpy(w[i].key, key, sizeof(key));
        w[i].result = 99;
        assert_int_equal(pthread_create(&t[i], NULL, wait_for_chunk, &w[i]), 0);
    }
    settle();
    cache_mem_fail(c, e, -EBADMSG);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].result, -EBADMSG);
    }
    /* a failure is not remembered: the next reader loads again */
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key), 0);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key, &e), 1);
    fill(c, e, 10, 1);
    cache_mem_release(c, e);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key), 1);
    cache_mem_free(c);
}

static void test_eviction_lru_and_refs(void **state)
{
    struct cache_mem *c = cache_mem_new(100);
    struct cache_mem_entry *e[4], *held;
    struct cache_mem_stats st;
    uint8_t key[4][CACHE_KEY_LEN];
    (void)state;

    released = 0;
    for (int i = 0; i < 4; i++)
        key_of(key[i], 10 + i);
    /* 0 and 1 fit (80 bytes) */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[i], &e[i]), 1);
        fill(c, e[i], 40, (uint8_t)i);
        cache_mem_release(c, e[i]);
    }
    /* touch 0 so that 1 is the least recently used */
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    cache_mem_release(c, held);
    /* 2 pushes the total to 120: 1 goes */
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[2], &e[2]), 1);
    fill(c, e[2], 40, 2);
    cache_mem_release(c, e[2]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[2]), 1);
    assert_int_equal(released, 1);

    /* a referenced entry is never evicted, even over budget */
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[3], &e[3]), 1);
    fill(c, e[3], 90, 3);
    cache_mem_release(c, e[3]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 1);
    {
        size_t len;
        assert_int_equal(cache_mem_entry_bytes(held, &len)[0], 0);
        assert_int_equal(len, 40);
    }
    cache_mem_release(c, held);
    cache_mem_get_stats(c, &st);
    assert_true(st.bytes <= 100);
    assert_true(st.evictions >= 2);
    cache_mem_free(c);
    assert_int_equal(released, 4);
}

/* A sequential reader's prefetched chunks stay until it reads them: chunks
 * whose every byte a reader has had go first, even when loaded later. */
static void test_unread_evicted_last(void **state)
{
    struct cache_mem *c = cache_mem_new(100);
    struct cache_mem_entry *e[4], *held;
    uint8_t key[4][CACHE_KEY_LEN];
    (void)state;

    released = 0;
    for (int i = 0; i < 4; i++)
        key_of(key[i], 20 + i);
    /* 0 and 1 prefetched (nobody has read them), then 2 loaded for a reader */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[i], &e[i]), 1);
        fill(c, e[i], 30, (uint8_t)i);
        if (i == 2) {
            cache_mem_note_read(c, e[i], 10); /* part of it: not read yet */
            cache_mem_note_read(c, e[i], 20);
        }
        cache_mem_release(c, e[i]);
    }
    /* 3 is over budget: 2 (read, the most recent) goes, not 0 (the oldest) */
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[3], &e[3]), 1);
    fill(c, e[3], 30, 3);
    cache_mem_release(c, e[3]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[2]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 1);
    /* 0 read in two pieces, out of order or not: now the first to go */
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    cache_mem_note_read(c, held, 20);
    cache_mem_release(c, held);
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key[1], &held), 0);
    cache_mem_note_read(c, held, 29); /* one byte short: still unread */
    cache_mem_release(c, held);
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    cache_mem_note_read(c, held, 10);
    cache_mem_release(c, held);
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[2], &e[2]), 1);
    fill(c, e[2], 30, 2);
    cache_mem_release(c, e[2]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[3]), 1);
    /* with no read entry left, the least recently used unread one goes: 3
     * (1 was looked at since) */
    assert_int_equal(cache_mem_acquire(c, CACHE_ALGO_SHA256, key[0], &e[0]), 1);
    fill(c, e[0], 30, 0);
    cache_mem_release(c, e[0]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[3]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 1);
    assert_int_equal(released, 3);
    cache_mem_free(c);
    assert_int_equal(released, 6);
}

struct hammer {
    struct cache_mem *c;
    int loads;
    int bad;
};

/* Many threads over a small key space and a budget smaller than the set:
 * every read sees the bytes its key was filled with. */
static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    unsigned seed = (unsigned)(uintptr_t)&h;
    for (int i = 0; i < 20000; i++) {
        int k = (int)(rand_r(&seed) % 32);
        uint8_t key[CACHE_KEY_LEN];
        struct cache_mem_entry *e;
        const uint8_t *b;
        size_t len;
        int r;
        key_of(key, k);
        r = cache_mem_acquire(h->c, CACHE_ALGO_SHA256, key, &e);
        if (r < 0)
            continue;
        if (r == 1) {
            uint8_t *buf = malloc(64);
            if (!buf) {
                cache_mem_fail(h->c, e, -ENOMEM);
                continue;
            }
            memset(buf, k, 64);
            cache_mem_fill(h->c, e, buf, 64, buf, free);
            __atomic_add_fetch(&h->loads, 1, __ATOMIC_RELAXED);
        }
        b = cache_mem_entry_bytes(e, &len);
        if (len != 64 || b[0] != k || b[63] != k)
            __atomic_add_fetch(&h->bad, 1, __ATOMIC_RELAXED);
        cache_mem_release(h->c, e);
    }
    return NULL;
}

static void test_concurrent_consistency(void **state)
{
    struct hammer h = {.c = cache_mem_new(64 * 10)};
    pthread_t t[4];
    struct cache_mem_stats st;
    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &h), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h.bad, 0);
    cache_mem_get_stats(h.c, &st);
    assert_true(st.bytes <= 64 * 10);
    assert_true(h.loads > 32); /* the budget forced reloads */
    cache_mem_free(h.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_fill_hit),       cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_failed_load),         cmocka_unit_test(test_eviction_lru_and_refs),
        cmocka_unit_test(test_unread_evicted_last), cmocka_unit_test(test_concurrent_consistency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
