/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for fetch/pool.c with local stores: priorities, upgrades,
 * errors, mirror failover, cancellation at free. Remote transfers are
 * exercised by the integration tests against real servers. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch/buf.h"
#include "fetch/pool.h"
#include "fetch/store.h"

static char dir_a[64], dir_b[64];

static void put_file(const char *dir, const char *name, const char *content)
{
    char path[128];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "we");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir_a, sizeof(dir_a), "/tmp/lazyimg-pool-a-XXXXXX");
    snprintf(dir_b, sizeof(dir_b), "/tmp/lazyimg-pool-b-XXXXXX");
    assert_non_null(mkdtemp(dir_a));
    assert_non_null(mkdtemp(dir_b));
    for (int i = 0; i < 32; i++) {
        char name[16], content[16];
        snprintf(name, sizeof(name), "o%d", i);
        snprintf(content, sizeof(content), "object %d", i);
        put_file(dir_a, name, content);
        put_file(dir_b, name, content);
    }
    put_file(dir_b, "only-b", "from b");
    put_file(dir_a, "bad", "corrupt");
    return 0;
}

static int teardown(void **state)
{
    char cmd[200];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir_a, dir_b);
    return system(cmd) == 0 ? 0 : -1;
}

/* Collects completions in order; the first decode can be held back. */
struct rec {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool hold;
    int held; /* decodes being held back */
    int order[64];
    int results[64];
    char text[64][400];
    int n;
};

struct item {
    struct rec *rec;
    int id;
    uintptr_t raw; /* where decode found the object's bytes */
};

static int decode_copy(void *arg, void *raw, size_t raw_len, fetch_data *ret, fetch_error *err)
{
    struct item *it = arg;
    struct rec *r = it->rec;
    pthread_mutex_lock(&r->lock);
    if (r->hold) {
        r->held++;
        pthread_cond_broadcast(&r->cond);
        while (r->hold)
            pthread_cond_wait(&r->cond, &r->lock);
    }
    it->raw = (uintptr_t)raw;
    pthread_mutex_unlock(&r->lock);
    if (raw_len == 7 && memcmp(raw, "corrupt", 7) == 0) {
        free(raw);
        return fetch_error_set(err, -EBADMSG, "bad bytes");
    }
    ret->base = raw;
    ret->bytes = raw;
    ret->len = raw_len;
    return 0;
}

static void done_rec(void *arg, int res, fetch_data *data, const fetch_error *err)
{
    struct item *it = arg;
    struct rec *r = it->rec;
    pthread_mutex_lock(&r->lock);
    r->order[r->n] = it->id;
    r->results[r->n] = res;
    if (res == 0)
        snprintf(r->text[r->n], sizeof(r->text[0]), "%.*s", (int)data->len, data->bytes);
    else
        snprintf(r->text[r->n], sizeof(r->text[0]), "%s", err->msg);
    r->n++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (res == 0)
        fetch_data_release(data);
}

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
}

static void rec_wait(struct rec *r, int n)
{
    pthread_mutex_lock(&r->lock);
    while (r->n < n)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/* A pool over @n stores as mirrors; pool_free() frees both. */
static struct fetch_mirrors *test_mirrors;

static struct fetch_pool *pool_new(struct fetch_store *const *stores, size_t n,
                                   const struct fetch_pool_config *cfg)
{
    assert_non_null(test_mirrors = fetch_mirrors_new(stores, n));
    return fetch_pool_new(test_mirrors, cfg);
}

static void pool_free(struct fetch_pool *p)
{
    fetch_pool_free(p);
    fetch_mirrors_free(test_mirrors);
    test_mirrors = NULL;
}

static struct fetch_store *open_store(const char *dir)
{
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    assert_int_equal(fetch_store_open_local(dir, &s, &err), 0);
    return s;
}

/* A submit that must be accepted; returns its job. */
static struct fetch_job *submit(struct fetch_pool *p, const char *path, size_t max_len,
                                enum fetch_prio prio, struct item *it)
{
    struct fetch_job *j = NULL;
    assert_int_equal(
        fetch_pool_submit(p, path, max_len, 0, prio, NULL, decode_copy, done_rec, it, &j), 0);
    assert_non_null(j);
    return j;
}

/* Lets the held decodes (and every later one) go on. */
static void rec_release(struct rec *r)
{
    pthread_mutex_lock(&r->lock);
    r->hold = false;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void wait_held(struct rec *r, int n)
{
    pthread_mutex_lock(&r->lock);
    while (r->held < n)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/* With the one foreground worker held on a first job, later demand and
 * readahead jobs complete strictly by class, FIFO within a class, and a
 * hydration job upgraded to demand moves up; the other hydration jobs are the
 * background worker's, in order. */
static void test_priorities(void **state)
{
    struct fetch_store *s = open_store(dir_a);
    struct fetch_pool_config cfg = {.workers = 1};
    struct fetch_pool *p = pool_new(&s, 1, &cfg);
    struct rec r;
    struct item items[8];
    struct fetch_job *upgraded = NULL;
    const enum fetch_prio prio[8] = {FETCH_PRIO_DEMAND,  FETCH_PRIO_HYDRATE, FETCH_PRIO_READAHEAD,
                                     FETCH_PRIO_HYDRATE, FETCH_PRIO_DEMAND,  FETCH_PRIO_READAHEAD,
                                     FETCH_PRIO_HYDRATE, FETCH_PRIO_DEMAND};
    const int expect_fg[6] = {0, 4, 7, 6, 2, 5}, expect_bg[2] = {1, 3};
    int nfg = 0, nbg = 0;
    (void)state;

    assert_non_null(p);
    rec_init(&r);
    r.hold = true;
    for (int i = 0; i < 8; i++) {
        char name[8];
        struct fetch_job *j;
        items[i] = (struct item){.rec = &r, .id = i};
        snprintf(name, sizeof(name), "o%d", i);
        j = submit(p, name, 1024, prio[i], &items[i]);
        /* the foreground worker holds job 0 and the background one job 1:
         * the rest queue up */
        if (i == 0)
            wait_held(&r, 1);
        if (i == 1)
            wait_held(&r, 2);
        if (i == 6)
            upgraded = j;
    }
    fetch_pool_upgrade(p, upgraded, FETCH_PRIO_DEMAND);
    {
        struct fetch_pool_stats st;
        fetch_pool_get_stats(p, &st);
        assert_int_equal(st.queued[FETCH_PRIO_DEMAND], 3);
        assert_int_equal(st.queued[FETCH_PRIO_READAHEAD], 2);
        assert_int_equal(st.queued[FETCH_PRIO_HYDRATE], 1);
    }
    rec_release(&r);
    rec_wait(&r, 8);
    for (int i = 0; i < 8; i++) {
        char want[16];
        int id = r.order[i];
        if (id == 1 || id == 3)
            assert_int_equal(id, expect_bg[nbg++]);
        else
            assert_int_equal(id, expect_fg[nfg++]);
        assert_int_equal(r.results[i], 0);
        snprintf(want, sizeof(want), "object %d", id);
        assert_string_equal(r.text[i], want);
    }
    assert_int_equal(nfg, 6);
    pool_free(p);
    fetch_store_free(s);
}

static void test_errors(void **state)
{
    struct fetch_store *s = open_store(dir_a);
    struct fetch_pool_config cfg = {.workers = 2};
    struct fetch_pool *p = pool_new(&s, 1, &cfg);
    struct rec r;
    struct item a = {.rec = &r, .id = 1}, b = {.rec = &r, .id = 2}, c = {.rec = &r, .id = 3};
    struct fetch_pool_stats st;
    (void)state;

    rec_init(&r);
    submit(p, "missing", 1024, FETCH_PRIO_DEMAND, &a);
    rec_wait(&r, 1);
    assert_int_equal(r.results[0], -ENOENT);
    submit(p, "bad", 1024, FETCH_PRIO_DEMAND, &b);
    rec_wait(&r, 2);
    assert_int_equal(r.results[1], -EBADMSG);
    assert_string_equal(r.text[1], "bad bytes");
    submit(p, "o1", 3, FETCH_PRIO_DEMAND, &c);
    rec_wait(&r, 3);
    assert_int_equal(r.results[2], -EFBIG);
    fetch_pool_get_stats(p, &st);
    assert_int_equal(st.done, 3);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.retries, 0); /* a local store's errors are final */
    pool_free(p);
    fetch_store_free(s);
}

/* Jobs still queued when the pool is freed complete with -ECANCELED. */
static void test_cancel(void **state)
{
    struct fetch_store *s = open_store(dir_a);
    struct fetch_pool_config cfg = {.workers = 1};
    struct fetch_pool *p = pool_new(&s, 1, &cfg);
    struct rec r;
    struct item items[4];
    (void)state;

    rec_init(&r);
    r.hold = true;
    for (int i = 0; i < 4; i++) {
        items[i] = (struct item){.rec = &r, .id = i};
        submit(p, "o1", 1024, FETCH_PRIO_READAHEAD, &items[i]);
        if (i == 0)
            wait_held(&r, 1);
    }
    rec_release(&r);
    pool_free(p);
    assert_int_equal(r.n, 4);
    for (int i = 0; i < 4; i++)
        assert_true(r.results[i] == 0 || r.results[i] == -ECANCELED);
    fetch_store_free(s);
}

/*
 * Readers: with the one worker held decoding a first job, the local jobs
 * after it are read all the same (by the readers, in class order) and wait
 * only for a worker to decode them; without readers they stay queued. Each
 * completes once, with its bytes, and the pool stops cleanly.
 */
static void test_readers(void **state)
{
    for (unsigned readers = 0; readers <= 2; readers += 2) {
        struct fetch_store *s = open_store(dir_a);
        struct fetch_pool_config cfg = {.workers = 1, .readers = readers};
        struct fetch_pool *p = pool_new(&s, 1, &cfg);
        struct fetch_pool_stats st;
        struct rec r;
        struct item items[5];
        (void)state;

        assert_non_null(p);
        rec_init(&r);
        r.hold = true;
        for (int i = 0; i < 5; i++) {
            items[i] = (struct item){.rec = &r, .id = i};
            submit(p, "o1", 1024, i % 2 ? FETCH_PRIO_DEMAND : FETCH_PRIO_READAHEAD, &items[i]);
            if (i == 0)
                wait_held(&r, 1);
        }
        for (int tries = 0; tries < 200; tries++) {
            fetch_pool_get_stats(p, &st);
            if (st.queued[FETCH_PRIO_DEMAND] + st.queued[FETCH_PRIO_READAHEAD] == 0)
                break;
            usleep(5000);
        }
        fetch_pool_get_stats(p, &st);
        if (readers) {
            assert_int_equal(st.queued[FETCH_PRIO_DEMAND] + st.queued[FETCH_PRIO_READAHEAD], 0);
            assert_int_equal(st.requests, 5); /* all read while the worker is held */
        } else {
            assert_int_equal(st.queued[FETCH_PRIO_DEMAND] + st.queued[FETCH_PRIO_READAHEAD], 4);
            assert_int_equal(st.requests, 1);
        }
        rec_release(&r);
        rec_wait(&r, 5);
        for (int i = 0; i < 5; i++)
            assert_int_equal(r.results[i], 0);
        pool_free(p);
        assert_int_equal(r.n, 5);
        fetch_store_free(s);
    }
}

/*
 * fetch_pool_stop(): queued jobs complete with -ECANCELED, each exactly once;
 * a submit after the stop fails at once with -ECANCELED and never completes,
 * even once the workers of a local store have left (they did: nothing was
 * queued). Before, such a job was queued for a completion nothing would run,
 * and whoever waited for it (hydration at unmount) waited forever.
 */
static void test_submit_after_stop(void **state)
{
    struct fetch_store *s = open_store(dir_a);
    struct fetch_pool_config cfg = {.workers = 2};
    struct fetch_pool *p = pool_new(&s, 1, &cfg);
    struct rec r;
    struct item items[9];
    struct fetch_job *j = NULL;
    struct fetch_pool_stats st;
    (void)state;

    assert_non_null(p);
    rec_init(&r);
    r.hold = true;
    for (int i = 0; i < 8; i++) {
        items[i] = (struct item){.rec = &r, .id = i};
        submit(p, "o1", 1024, i % 2 ? FETCH_PRIO_HYDRATE : FETCH_PRIO_DEMAND, &items[i]);
    }
    wait_held(&r, 1);
    fetch_pool_stop(p);
    rec_release(&r);
    rec_wait(&r, 8);
    for (int i = 0; i < 8; i++)
        assert_true(r.results[i] == 0 || r.results[i] == -ECANCELED);
    /* the workers of a local store leave once nothing is left to complete */
    usleep(100 * 1000);
    items[8] = (struct item){.rec = &r, .id = 8};
    for (int prio = 0; prio < FETCH_PRIO_COUNT; prio++) {
        assert_int_equal(fetch_pool_submit(p, "o2", 1024, 0, (enum fetch_prio)prio, NULL,
                                           decode_copy, done_rec, &items[8], &j),
                         -ECANCELED);
        assert_null(j); /* untouched */
    }
    fetch_pool_get_stats(p, &st);
    assert_int_equal(st.done, 8);
    assert_int_equal(st.queued[0] + st.queued[1] + st.queued[2] + st.inflight + st.decoding, 0);
    pool_free(p);
    assert_int_equal(r.n, 8); /* no completion for the refused submits */
    fetch_store_free(s);
}

/* An object of a chunk's size from a local store is placed where the caller
 * asks: the byte @skew in on a page boundary (a blob's payload, which the
 * disk cache then writes with O_DIRECT without a copy). */
static void test_skew_local(void **state)
{
    struct fetch_store *s = open_store(dir_a);
    struct fetch_pool_config cfg = {.workers = 1};
    struct fetch_pool *p = pool_new(&s, 1, &cfg);
    const size_t len = (1u << 20) + 12, skews[3] = {12, 44, 0};
    char path[128];
    uint8_t *bytes = malloc(len);
    struct fetch_buf_stats bs;
    struct rec r;
    struct item items[3];
    FILE *f;
    (void)state;

    assert_non_null(p);
    assert_non_null(bytes);
    for (size_t i = 0; i < len; i++)
        bytes[i] = (uint8_t)(i * 7);
    snprintf(path, sizeof(path), "%s/big", dir_a);
    assert_non_null(f = fopen(path, "we"));
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    rec_init(&r);
    for (int i = 0; i < 3; i++) {
        struct fetch_job *j = NULL;
        items[i] = (struct item){.rec = &r, .id = i};
        assert_int_equal(fetch_pool_submit(p, "big", len, skews[i], FETCH_PRIO_DEMAND, NULL,
                                           decode_copy, done_rec, &items[i], &j),
                         0);
        rec_wait(&r, i + 1);
        assert_int_equal(r.results[i], 0);
    }
    pool_free(p);
    fetch_store_free(s);
    fetch_buf_get_stats(&bs);
    if (bs.slot_allocs == 0)
        skip(); /* every buffer comes from malloc under AddressSanitizer */
    for (int i = 0; i < 3; i++)
        assert_int_equal((items[i].raw + skews[i]) % FETCH_BUF_ALIGN, 0);
}

/* Two local "mirrors": a missing object is final (-ENOENT, no failover),
 * and every found object comes back right whichever store served it. */
static void test_mirrors_local(void **state)
{
    struct fetch_store *s[2] = {open_store(dir_a), open_store(dir_b)};
    struct fetch_pool_config cfg = {.workers = 2};
    struct fetch_pool *p = pool_new(s, 2, &cfg);
    struct rec r;
    struct item a = {.rec = &r, .id = 1}, b = {.rec = &r, .id = 2};
    (void)state;

    rec_init(&r);
    submit(p, "only-b", 1024, FETCH_PRIO_DEMAND, &a);
    rec_wait(&r, 1);
    assert_int_equal(r.results[0], -ENOENT);
    submit(p, "o5", 1024, FETCH_PRIO_DEMAND, &b);
    rec_wait(&r, 2);
    assert_int_equal(r.results[1], 0);
    assert_string_equal(r.text[1], "object 5");
    pool_free(p);
    fetch_store_free(s[0]);
    fetch_store_free(s[1]);
}

static void test_latency_pct(void **state)
{
    struct fetch_pool_stats st = {0};
    (void)state;
    assert_int_equal(fetch_pool_latency_pct(&st, 50), 0);
    st.latency_us[10] = 90; /* [1024, 2048) µs */
    st.latency_us[20] = 10; /* [1 Mi, 2 Mi) µs */
    st.latency_count = 100;
    st.latency_min_us = 1024;
    st.latency_max_us = 1900000;
    /* interpolated in the bucket: 50 of its 90 requests, 90 of 90 */
    assert_int_equal(fetch_pool_latency_pct(&st, 50), 1024 + 1024 * 50 / 90);
    assert_int_equal(fetch_pool_latency_pct(&st, 90), 2048);
    /* 9 of the 10 in [1 Mi, 2 Mi) would be 1.9 Mi: no more than the slowest */
    assert_int_equal(fetch_pool_latency_pct(&st, 99), 1900000);
    /* every request took 5.0 s (bucket [4.19 s, 8.39 s)): 5.0 s, not the bound */
    memset(&st, 0, sizeof(st));
    st.latency_us[22] = 7;
    st.latency_count = 7;
    st.latency_min_us = st.latency_max_us = 5000000;
    assert_int_equal(fetch_pool_latency_pct(&st, 50), 5000000);
    assert_int_equal(fetch_pool_latency_pct(&st, 99), 5000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priorities),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cancel),        cmocka_unit_test(test_submit_after_stop),
        cmocka_unit_test(test_mirrors_local), cmocka_unit_test(test_skew_local),
        cmocka_unit_test(test_latency_pct),   cmocka_unit_test(test_readers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
