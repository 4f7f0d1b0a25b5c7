/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cache/memcache: lookups, inserts (one winner per key), references, eviction. */
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

/* Inserts @key with @len bytes of value @v: the return of cache_mem_insert,
 * the entry in *ret (the test's buffer is freed here when it lost). */
static int insert(struct cache_mem *c, const uint8_t *key, size_t len, uint8_t v,
                  struct cache_mem_entry **ret)
{
    uint8_t *buf = malloc(len);
    int r;
    assert_non_null(buf);
    memset(buf, v, len);
    r = cache_mem_insert(c, CACHE_ALGO_SHA256, key, buf, len, buf, count_release, ret);
    if (r != 1)
        free(buf);
    return r;
}

static void test_insert_lookup(void **state)
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
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key, &e), -ENOENT);
    assert_int_equal(insert(c, key, 100, 0xab, &e), 1);
    cache_mem_release(c, e);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key), 1);
    /* the same digest under another algorithm is another key */
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA512_256, key), 0);

    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key, &e2), 0);
    assert_ptr_equal(e, e2);
    bytes = cache_mem_entry_bytes(e2, &len);
    assert_int_equal(len, 100);
    assert_int_equal(bytes[0], 0xab);
    assert_int_equal(bytes[99], 0xab);
    cache_mem_release(c, e2);

    /* a second insert of the key gets the entry that is there; its bytes stay */
    assert_int_equal(insert(c, key, 50, 0x11, &e2), 0);
    assert_ptr_equal(e, e2);
    bytes = cache_mem_entry_bytes(e2, &len);
    assert_int_equal(len, 100);
    assert_int_equal(bytes[0], 0xab);
    cache_mem_release(c, e2);
    assert_int_equal(released, 0);

    cache_mem_get_stats(c, &st);
    assert_int_equal(st.misses, 1); /* lookups count, inserts do not */
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, 100);
    cache_mem_free(c);
    assert_int_equal(released, 1);
}

struct racer {
    struct cache_mem *c;
    const uint8_t *key;
    pthread_barrier_t *start;
    int result;
    struct cache_mem_entry *entry;
};

static void *race_insert(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    r->result = insert(r->c, r->key, 4096, 0x5a, &r->entry);
    return NULL;
}

/* Threads inserting one key at once: one of them wins, all hold that entry. */
static void test_insert_race(void **state)
{
    enum { N = 8 };
    struct cache_mem *c = cache_mem_new(1 << 20);
    struct racer r[N];
    pthread_t t[N];
    pthread_barrier_t start;
    uint8_t key[CACHE_KEY_LEN];
    int winners = 0;
    (void)state;

    released = 0;
    key_of(key, 2);
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.c = c, .key = key, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, race_insert, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_true(r[i].result == 0 || r[i].result == 1);
        winners += r[i].result;
        assert_ptr_equal(r[i].entry, r[0].entry);
    }
    assert_int_equal(winners, 1);
    for (int i = 0; i < N; i++)
        cache_mem_release(c, r[i].entry);
    pthread_barrier_destroy(&start);
    cache_mem_free(c);
    assert_int_equal(released, 1);
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
        assert_int_equal(insert(c, key[i], 40, (uint8_t)i, &e[i]), 1);
        cache_mem_release(c, e[i]);
    }
    /* touch 0 so that 1 is the least recently used */
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    cache_mem_release(c, held);
    /* 2 pushes the total to 120: 1 goes */
    assert_int_equal(insert(c, key[2], 40, 2, &e[2]), 1);
    cache_mem_release(c, e[2]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[2]), 1);
    assert_int_equal(released, 1);

    /* a referenced entry is never evicted, even over budget */
    assert_int_equal(cache_mem_lookup(c, CACHE_ALGO_SHA256, key[0], &held), 0);
    assert_int_equal(insert(c, key[3], 90, 3, &e[3]), 1);
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
        assert_int_equal(insert(c, key[i], 30, (uint8_t)i, &e[i]), 1);
        if (i == 2) {
            cache_mem_note_read(c, e[i], 10); /* part of it: not read yet */
            cache_mem_note_read(c, e[i], 20);
        }
        cache_mem_release(c, e[i]);
    }
    /* 3 is over budget: 2 (read, the most recent) goes, not 0 (the oldest) */
    assert_int_equal(insert(c, key[3], 30, 3, &e[3]), 1);
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
    assert_int_equal(insert(c, key[2], 30, 2, &e[2]), 1);
    cache_mem_release(c, e[2]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[0]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 1);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[3]), 1);
    /* with no read entry left, the least recently used unread one goes: 3
     * (1 was looked at since) */
    assert_int_equal(insert(c, key[0], 30, 0, &e[0]), 1);
    cache_mem_release(c, e[0]);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[3]), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, key[1]), 1);
    assert_int_equal(released, 3);
    cache_mem_free(c);
    assert_int_equal(released, 6);
}

/* The room for entries not read yet is the budget less the entries read in
 * full that someone still holds (the disk cache's writer behind a reader):
 * those are not evicted, the others read in full go first. */
static void test_unread_room(void **state)
{
    struct cache_mem *c = cache_mem_new(100);
    struct cache_mem_entry *a, *b, *u;
    uint8_t ka[CACHE_KEY_LEN], kb[CACHE_KEY_LEN], ku[CACHE_KEY_LEN];
    (void)state;

    released = 0;
    key_of(ka, 40);
    key_of(kb, 41);
    key_of(ku, 42);
    assert_int_equal(cache_mem_unread_room(c), 100);
    /* a prefetched entry, not read, held or not: all the room stays */
    assert_int_equal(insert(c, ku, 30, 1, &u), 1);
    assert_int_equal(cache_mem_unread_room(c), 100);
    cache_mem_release(c, u);
    /* read in part while held: not read yet */
    assert_int_equal(insert(c, ka, 20, 2, &a), 1);
    cache_mem_note_read(c, a, 10);
    assert_int_equal(cache_mem_unread_room(c), 100);
    /* read in full, still held: its bytes are taken from the room */
    cache_mem_note_read(c, a, 10);
    assert_int_equal(cache_mem_unread_room(c), 80);
    assert_int_equal(insert(c, kb, 25, 3, &b), 1);
    cache_mem_note_read(c, b, 25);
    assert_int_equal(cache_mem_unread_room(c), 55);
    /* released: nobody holds it (it goes first when room is needed), so its room is back */
    cache_mem_release(c, a);
    assert_int_equal(cache_mem_unread_room(c), 75);
    /* over budget: a (read) goes, then u (not read), never b (held) */
    key_of(ka, 43);
    assert_int_equal(insert(c, ka, 60, 4, &a), 1);
    cache_mem_release(c, a);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, ku), 0);
    assert_int_equal(cache_mem_contains(c, CACHE_ALGO_SHA256, kb), 1);
    assert_int_equal(cache_mem_unread_room(c), 75);
    cache_mem_release(c, b);
    assert_int_equal(cache_mem_unread_room(c), 100);
    assert_int_equal(released, 2);
    cache_mem_free(c);
    assert_int_equal(released, 4);
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
        r = cache_mem_lookup(h->c, CACHE_ALGO_SHA256, key, &e);
        if (r < 0) {
            uint8_t *buf = malloc(64);
            if (!buf)
                continue;
            memset(buf, k, 64);
            r = cache_mem_insert(h->c, CACHE_ALGO_SHA256, key, buf, 64, buf, free, &e);
            if (r != 1)
                free(buf);
            if (r < 0)
                continue;
            if (r == 1)
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
        cmocka_unit_test(test_insert_lookup),         cmocka_unit_test(test_insert_race),
        cmocka_unit_test(test_eviction_lru_and_refs), cmocka_unit_test(test_unread_evicted_last),
        cmocka_unit_test(test_unread_room),           cmocka_unit_test(test_concurrent_consistency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
