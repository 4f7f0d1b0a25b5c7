/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fake_pool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fixtures.h"

struct fake_job fake_jobs[FAKE_POOL_MAX_JOBS];
size_t fake_njobs;
int fake_upgrades;
enum fetch_prio fake_upgraded_to;

int __wrap_fetch_pool_submit(struct fetch_pool *p, const char *path, size_t max_len, size_t skew,
                             enum fetch_prio prio, fetch_tap_fn tap, fetch_decode_fn decode,
                             fetch_done_fn done, void *arg, struct fetch_job **ret_job);
void __wrap_fetch_pool_upgrade(struct fetch_pool *p, struct fetch_job *job, enum fetch_prio prio);

/* Jobs may be submitted from another thread (the hydrator's): the table's
 * entries are filled under this lock before fake_njobs counts them. */
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;

int __wrap_fetch_pool_submit(struct fetch_pool *p, const char *path, size_t max_len, size_t skew,
                             enum fetch_prio prio, fetch_tap_fn tap, fetch_decode_fn decode,
                             fetch_done_fn done, void *arg, struct fetch_job **ret_job)
{
    struct fake_job *j;
    (void)skew;
    (void)tap; /* the fake hands decode the whole object: nothing arrives in pieces */
    assert_ptr_equal(p, fake_pool());
    pthread_mutex_lock(&jobs_lock);
    assert_true(fake_njobs < FAKE_POOL_MAX_JOBS);
    j = &fake_jobs[fake_njobs];
    *j = (struct fake_job){
        .max_len = max_len, .prio = prio, .decode = decode, .done = done, .arg = arg};
    snprintf(j->path, sizeof(j->path), "%s", path);
    *ret_job = (struct fetch_job *)j;
    fake_njobs++;
    pthread_mutex_unlock(&jobs_lock);
    return 0;
}

long fake_pool_next_pending(void)
{
    long found = -1;
    pthread_mutex_lock(&jobs_lock);
    for (size_t i = 0; i < fake_njobs && found < 0; i++) {
        if (!fake_jobs[i].completed)
            found = (long)i;
    }
    pthread_mutex_unlock(&jobs_lock);
    return found;
}

void __wrap_fetch_pool_upgrade(struct fetch_pool *p, struct fetch_job *job, enum fetch_prio prio)
{
    struct fake_job *j = (struct fake_job *)job;
    assert_ptr_equal(p, fake_pool());
    assert_false(j->completed);
    fake_upgrades++;
    fake_upgraded_to = prio;
    j->prio = prio;
}

struct fetch_pool *fake_pool(void)
{
    return (struct fetch_pool *)fake_jobs;
}

void fake_pool_reset(void)
{
    pthread_mutex_lock(&jobs_lock);
    for (size_t i = 0; i < fake_njobs; i++)
        assert_true(fake_jobs[i].completed); /* every flight ended */
    memset(fake_jobs, 0, sizeof(fake_jobs));
    fake_njobs = 0;
    fake_upgrades = 0;
    pthread_mutex_unlock(&jobs_lock);
}

void fake_pool_complete(size_t i, const void *object, size_t len)
{
    struct fake_job *j = &fake_jobs[i];
    fetch_data d = {0};
    fetch_error err = {""};
    int r;
    assert_true(i < fake_njobs);
    assert_false(j->completed);
    j->completed = true;
    r = j->decode(j->arg, fx_memdup(object, len), len, &d, &err);
    j->done(j->arg, r, r == 0 ? &d : NULL, &err);
}

void fake_pool_fail(size_t i, int r)
{
    struct fake_job *j = &fake_jobs[i];
    fetch_error err = {""};
    assert_true(i < fake_njobs);
    j->completed = true;
    fetch_error_set(&err, r, "test: %s", strerror(-r));
    j->done(j->arg, r, NULL, &err);
}

long fake_pool_find(const char *suffix)
{
    size_t sl = strlen(suffix);
    long found = -1;
    pthread_mutex_lock(&jobs_lock);
    for (size_t i = 0; i < fake_njobs && found < 0; i++) {
        size_t l = strlen(fake_jobs[i].path);
        if (l >= sl && !strcmp(fake_jobs[i].path + l - sl, suffix))
            found = (long)i;
    }
    pthread_mutex_unlock(&jobs_lock);
    return found;
}
