/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/hydrate.h (whole images into the disk cache) over the real
 * chunk layer and a real disk cache in a temporary directory, with the
 * fetcher pool replaced by the test (fake_pool.h): the hydrator's thread
 * submits jobs, the test's thread completes them as a pool worker would.
 * Checked: every distinct non-zero chunk fetched once, at hydration
 * priority, holes and repeated chunks not fetched again; progress that adds
 * up (done = data bytes, fetched = distinct bytes); a rerun fetching
 * nothing; a chunk already in memory cached without a fetch; a failed fetch
 * counted with its message while the rest is cached; a cache budget smaller
 * than the image reported as "uncached" with the disk cache's reason.
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
#include <time.h>

#include "cache/diskcache.h"
#include "fetch/digest.h"
#include "fake_image.h"
#include "fake_pool.h"
#include "fixtures.h"
#include "fs/chunks.h"
#include "fs/hydrate.h"
#include "fs/log.h"
#include "fs/tree.h"

#define KIB 1024u
#define CHUNK (64 * KIB)
#define NCHUNKS 12
#define HOLE 3      /* a zero extent */
#define REPEAT_OF 1 /* extent REPEAT has the same bytes as this one */
#define REPEAT 7
#define DISTINCT (NCHUNKS - 2)

static struct fake_image fi;

static char *dir;
static struct cache_disk *disk;
static struct fs_ctx ctx;
static struct fs_hydrator *hyd;

static int setup(void **state)
{
    (void)state;
    fake_image_init(&fi, NCHUNKS, CHUNK, HOLE, REPEAT, REPEAT_OF, 500);
    fs_log_set_level(FS_LOG_ERR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_image_free(&fi);
    return 0;
}

/* A fresh disk cache (budget @budget, 0 = default), chunk layer and hydrator. */
static void start(uint64_t budget)
{
    struct cache_disk_options o = {.budget = budget, .flush_ms = 20, .store = "test"};
    char err[256] = "";
    fake_pool_reset();
    dir = fx_tmpdir();
    o.dir = dir;
    assert_int_equal(cache_disk_open(&o, &disk, err, sizeof(err)), 0);
    ctx = (struct fs_ctx){.disk = disk, .has_disk_cache = true};
    ctx.chunks = fs_chunks_new(fake_pool(), 4u << 20, disk, "", NULL);
    assert_non_null(ctx.chunks);
    hyd = fs_hydrator_new(&ctx);
    assert_non_null(hyd);
}

static int per_test_end(void **state)
{
    (void)state;
    assert_int_equal(fs_hydrator_free(hyd, 5000), 0);
    fake_pool_reset();
    fs_chunks_free(ctx.chunks);
    cache_disk_close(disk);
    fx_rmtree(dir);
    free(dir);
    return 0;
}

/* The extent whose chunk job @j fetches. */
static size_t chunk_of_job(long j)
{
    for (size_t i = 0; i < NCHUNKS; i++) {
        size_t pl = strlen(fake_jobs[j].path);
        if (pl >= 64 && !strcmp(fake_jobs[j].path + pl - 64, fi.names[i]))
            return i;
    }
    fail_msg("job %ld fetches an unknown chunk: %s", j, fake_jobs[j].path);
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Acts as the pool until job @id is done: completes every submitted job with
 * its chunk (or fails the one of extent @fail_chunk, -1 for none). Returns
 * its progress.
 */
static struct fs_hydrate_progress serve(uint64_t id, long fail_chunk)
{
    struct fs_hydrate_progress p;
    for (int spins = 0; spins < 20000; spins++) {
        long j = fake_pool_next_pending();
        if (j >= 0) {
            size_t i = chunk_of_job(j);
            assert_int_equal(fake_jobs[j].prio, FETCH_PRIO_HYDRATE);
            if ((long)i == fail_chunk)
                fake_pool_fail((size_t)j, -EBADMSG);
            else
                fake_pool_complete((size_t)j, fi.blobs[i], fi.blob_lens[i]);
            continue;
        }
        assert_int_equal(fs_hydrator_progress(hyd, id, &p), 0);
        if (p.state == FS_HYDRATE_DONE)
            return p;
        sleep_ms(1);
    }
    fail_msg("hydration job %llu did not finish", (unsigned long long)id);
    return p;
}

static uint64_t add_job(void)
{
    uint64_t id = 0;
    const char *msg = NULL;
    assert_int_equal(fs_hydrator_add(hyd, &fi.node, 0, &id, &msg), 0);
    return id;
}

static void every_chunk_once(void **state)
{
    struct fs_hydrate_progress p;
    (void)state;
    start(0);
    p = serve(add_job(), -1);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.total, fi.img.data_bytes);
    assert_int_equal(p.done, fi.img.data_bytes);
    assert_int_equal(p.fetched, DISTINCT * (uint64_t)CHUNK);
    assert_int_equal(p.uncached, 0);
    /* one fetch per distinct chunk, none for the hole */
    assert_int_equal(fake_njobs, DISTINCT);
    assert_int_equal(fake_pool_find(fi.names[HOLE]), -1);
    for (size_t i = 0; i < NCHUNKS; i++) {
        if (i != HOLE)
            assert_true(fs_chunks_on_disk(ctx.chunks, &fi.extents[i]));
    }

    /* a rerun finds everything in the cache and fetches nothing */
    p = serve(add_job(), -1);
    assert_int_equal(p.done, fi.img.data_bytes);
    assert_int_equal(p.fetched, 0);
    assert_int_equal(fake_njobs, DISTINCT);
}

/* A chunk a reader has in memory goes to the disk cache without a fetch. */
static void chunk_in_memory(void **state)
{
    struct fs_hydrate_progress p;
    (void)state;
    start(0);
    assert_int_equal(fs_chunks_want(ctx.chunks, &fi.extents[5], FETCH_PRIO_DEMAND, NULL, NULL), 0);
    assert_int_equal(fake_njobs, 1);
    fake_pool_complete(0, fi.blobs[5], fi.blob_lens[5]);
    /* the reader's insert lands first (it is queued): then the chunk is
     * taken off the disk, in memory only */
    cache_disk_sync(disk);
    cache_disk_clear(disk);
    assert_false(fs_chunks_on_disk(ctx.chunks, &fi.extents[5]));
    p = serve(add_job(), -1);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.uncached, 0);
    assert_int_equal(p.done, fi.img.data_bytes);
    assert_int_equal(fake_njobs, 1 + DISTINCT - 1);                /* not fetched again */
    assert_int_equal(p.fetched, (DISTINCT - 1) * (uint64_t)CHUNK); /* nor counted */
    assert_true(fs_chunks_on_disk(ctx.chunks, &fi.extents[5]));
}

static void failed_fetch(void **state)
{
    struct fs_hydrate_progress p;
    (void)state;
    start(0);
    p = serve(add_job(), 9);
    assert_int_equal(p.errors, 1);
    assert_non_null(strstr(p.error, "Bad message"));
    assert_int_equal(p.done, fi.img.data_bytes - CHUNK);
    assert_int_equal(p.fetched, (DISTINCT - 1) * (uint64_t)CHUNK);
    assert_false(fs_chunks_on_disk(ctx.chunks, &fi.extents[9]));
    assert_true(fs_chunks_on_disk(ctx.chunks, &fi.extents[10]));
}

/* A budget of a few chunks: the cache refuses the rest (nothing is old
 * enough to evict), and the job says so with the cache's reason. */
static void budget_too_small(void **state)
{
    struct fs_hydrate_progress p;
    json_object *o;
    const char *warning;
    (void)state;
    start(4 * (CHUNK + 4 * KIB));
    p = serve(add_job(), -1);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.done, fi.img.data_bytes);
    assert_true(p.uncached_chunks >= DISTINCT - 4);
    assert_true(p.uncached_chunks < DISTINCT);
    assert_int_equal(p.uncached_why, -ENOBUFS);
    o = fs_hydrate_progress_json(&p);
    assert_non_null(o);
    warning = json_object_get_string(json_object_object_get(o, "warning"));
    assert_non_null(warning);
    assert_non_null(strstr(warning, "cache budget"));
    json_object_put(o);
}

static void wait_state(uint64_t id, enum fs_hydrate_state st)
{
    struct fs_hydrate_progress p;
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(fs_hydrator_progress(hyd, id, &p), 0);
        if (p.state == st)
            return;
        sleep_ms(1);
    }
    fail_msg("job %llu never reached state %d", (unsigned long long)id, (int)st);
}

/* A job two asked for (mount --hydrate, then lazyimg hydrate): the second's
 * cancel (its Ctrl-C) leaves it running for the first. */
static void shared_job_cancel(void **state)
{
    struct fs_hydrate_progress p;
    uint64_t a = 0, b = 0;
    const char *msg = NULL;
    (void)state;
    start(0);
    a = add_job();
    wait_state(a, FS_HYDRATE_RUNNING);
    assert_int_equal(fs_hydrator_add(hyd, &fi.node, 0, &b, &msg), 0);
    assert_int_equal(b, a);
    assert_int_equal(fs_hydrator_cancel(hyd, b), 0);
    p = serve(a, -1);
    assert_false(p.cancelled);
    assert_int_equal(p.done, fi.img.data_bytes);
}

/* A cancel after the job finished stops nothing: it is not "cancelled". */
static void cancel_after_done(void **state)
{
    struct fs_hydrate_progress p;
    uint64_t id;
    (void)state;
    start(0);
    id = add_job();
    p = serve(id, -1);
    assert_false(p.cancelled);
    assert_int_equal(fs_hydrator_cancel(hyd, id), 0);
    assert_int_equal(fs_hydrator_progress(hyd, id, &p), 0);
    assert_false(p.cancelled);
    assert_int_equal(p.done, fi.img.data_bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_chunk_once, per_test_end),
        cmocka_unit_test_teardown(chunk_in_memory, per_test_end),
        cmocka_unit_test_teardown(failed_fetch, per_test_end),
        cmocka_unit_test_teardown(budget_too_small, per_test_end),
        cmocka_unit_test_teardown(shared_job_cancel, per_test_end),
        cmocka_unit_test_teardown(cancel_after_done, per_test_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
