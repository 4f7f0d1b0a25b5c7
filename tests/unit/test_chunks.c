/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/chunks.h (chunk flights over the memory cache and the
 * fetcher pool), with the pool replaced by the test (the linker's --wrap of
 * fetch_pool_submit and fetch_pool_upgrade): the test sees each submitted
 * job and completes it itself, in any order, as a pool worker would (decode,
 * then done). Checked: one fetch however many readers want a chunk at once
 * (single flight), a demand read upgrading a queued prefetch, every waiter
 * answered with the bytes or the error, a corrupt chunk never reaching
 * memory, a format's second object name tried after -ENOENT, prefetches of
 * chunks in memory costing nothing, and no disk-cache query for a chunk that
 * is being fetched (a real disk cache in a temporary directory).
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

#include "cache/diskcache.h"
#include "fetch/digest.h"
#include "fake_pool.h"
#include "fixtures.h"
#include "fs/chunks.h"

/* ---- readers ------------------------------------------------------------ */

struct reader {
    struct fs_chunks *c;
    int calls, r;
    uint8_t got[4096];
    size_t got_len;
    char msg[400];
};

static void reader_done(void *arg, int r, struct cache_mem_entry *entry, const fetch_error *err)
{
    struct reader *rd = arg;
    rd->calls++;
    rd->r = r;
    if (r == 0) {
        size_t len;
        const uint8_t *b = cache_mem_entry_bytes(entry, &len);
        assert_true(len <= sizeof(rd->got));
        memcpy(rd->got, b, len);
        rd->got_len = len;
        fs_chunks_put(rd->c, entry);
    } else {
        snprintf(rd->msg, sizeof(rd->msg), "%s", err ? err->msg : "");
    }
}

/* Job @job's object arrives: @data as a plain blob. */
static void complete_plain(size_t job, const uint8_t *data, size_t len)
{
    size_t blob_len;
    uint8_t *blob = fx_blob_plain(data, len, &blob_len);
    fake_pool_complete(job, blob, blob_len);
    free(blob);
}

/* @rd was answered once, with @data. */
static void expect_got(const struct reader *rd, const uint8_t *data, size_t len)
{
    assert_int_equal(rd->calls, 1);
    assert_int_equal(rd->r, 0);
    assert_int_equal(rd->got_len, len);
    assert_memory_equal(rd->got, data, len);
}

static struct fs_chunks *chunks;

static int setup(void **state)
{
    (void)state;
    fake_pool_reset();
    /* the pool is never touched: every call into it is the test's */
    chunks = fs_chunks_new(fake_pool(), 8 << 20, NULL, "pre/", NULL);
    return chunks ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fake_pool_reset(); /* every flight ended */
    fs_chunks_free(chunks);
    return 0;
}

/* A data extent of kind @kind over @data, with its digest. */
static struct fetch_extent extent_of(uint8_t kind, const uint8_t *data, size_t len)
{
    struct fetch_extent e = {.offset = 0,
                             .length = (uint32_t)len,
                             .kind = kind,
                             .algo = kind == FETCH_CHUNK_CASYNC ? FETCH_DIGEST_SHA512_256
                                                                : FETCH_DIGEST_SHA256};
    if (e.algo == FETCH_DIGEST_SHA256)
        fx_sha256(data, len, e.digest);
    else
        fx_sha512_256(data, len, e.digest);
    return e;
}

static void single_flight(void **state)
{
    (void)state;
    uint8_t data[3000];
    struct reader a = {.c = chunks}, b = {.c = chunks}, c = {.c = chunks};
    struct fetch_extent e;
    const uint8_t *bytes;
    struct cache_mem_entry *ref = NULL;
    struct fs_chunks_stats st;
    char hex[65], want[128];

    fx_fill_random(data, sizeof(data), 1);
    e = extent_of(FETCH_CHUNK_PBS, data, sizeof(data));
    assert_int_equal(fs_chunks_peek(chunks, &e, 0, 10, NULL, &bytes, &ref), 0);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &b), 0);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_READAHEAD, NULL, NULL), 0);
    assert_int_equal(fake_njobs, 1); /* one flight */
    fx_hex(e.digest, 32, hex);
    snprintf(want, sizeof(want), "pre/.chunks/%.4s/%s", hex, hex);
    assert_string_equal(fake_jobs[0].path, want);
    assert_true(fake_jobs[0].max_len >= sizeof(data));
    assert_int_equal(a.calls + b.calls, 0); /* nothing answered before the fetch */

    complete_plain(0, data, sizeof(data));
    expect_got(&a, data, sizeof(data));
    expect_got(&b, data, sizeof(data));

    /* in memory now: peek answers, want answers on this thread, no fetch */
    assert_int_equal(fs_chunks_peek(chunks, &e, 100, 50, NULL, &bytes, &ref), 1);
    assert_memory_equal(bytes, data + 100, 50);
    fs_chunks_put(chunks, ref);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.r, 0);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_READAHEAD, NULL, NULL), 0);
    assert_int_equal(fake_njobs, 1);
    fs_chunks_get_stats(chunks, &st);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.load_errors, 0);
}

static void demand_upgrades_prefetch(void **state)
{
    (void)state;
    uint8_t data[2000];
    struct reader a = {.c = chunks};
    struct fetch_extent e;

    fx_fill_text(data, sizeof(data), 2);
    e = extent_of(FETCH_CHUNK_PBS, data, sizeof(data));
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_READAHEAD, NULL, NULL), 0);
    assert_int_equal(fake_njobs, 1);
    assert_int_equal(fake_jobs[0].prio, FETCH_PRIO_READAHEAD);
    assert_int_equal(fake_upgrades, 0);
    /* a reader arrives: the queued prefetch becomes a demand fetch */
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fake_njobs, 1);
    assert_int_equal(fake_upgrades, 1);
    assert_int_equal(fake_upgraded_to, FETCH_PRIO_DEMAND);
    /* never down */
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_HYDRATE, NULL, NULL), 0);
    assert_int_equal(fake_upgrades, 1);
    complete_plain(0, data, sizeof(data));
    expect_got(&a, data, sizeof(data));
}

static void corrupt_chunk_is_an_error(void **state)
{
    (void)state;
    uint8_t data[1500];
    struct reader a = {.c = chunks}, b = {.c = chunks};
    struct fetch_extent e;
    const uint8_t *bytes;
    struct cache_mem_entry *ref;
    struct fs_chunks_stats st;
    uint8_t *blob;
    size_t blob_len;

    fx_fill_random(data, sizeof(data), 3);
    e = extent_of(FETCH_CHUNK_PBS, data, sizeof(data));
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &b), 0);
    blob = fx_blob_plain(data, sizeof(data), &blob_len);
    blob[blob_len - 1] ^= 0x40; /* a flipped bit, CRC made to match: only the digest can tell */
    fx_blob_fix_crc(blob, blob_len);
    fake_pool_complete(0, blob, blob_len);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.r, -EBADMSG);
    assert_int_equal(b.r, -EBADMSG);
    assert_true(a.msg[0] != '\0');
    assert_int_equal(fs_chunks_peek(chunks, &e, 0, 10, NULL, &bytes, &ref), 0);
    fs_chunks_get_stats(chunks, &st);
    assert_int_equal(st.load_errors, 1);
    assert_int_equal(st.loads, 0);

    /* the next reader fetches again (the store may have been repaired) */
    a.calls = 0;
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fake_njobs, 2);
    blob[blob_len - 1] ^= 0x40;
    fx_blob_fix_crc(blob, blob_len);
    fake_pool_complete(1, blob, blob_len);
    free(blob);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.r, 0);
    assert_memory_equal(a.got, data, sizeof(data));
}

static void second_name_after_enoent(void **state)
{
    (void)state;
    uint8_t data[2500];
    struct reader a = {.c = chunks}, b = {.c = chunks};
    struct fetch_extent e, e2;
    char hex[65], want[160];

    fx_fill_text(data, sizeof(data), 4);
    e = extent_of(FETCH_CHUNK_CASYNC, data, sizeof(data));
    fx_hex(e.digest, 32, hex);
    assert_int_equal(fs_chunks_want(chunks, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fake_njobs, 1);
    snprintf(want, sizeof(want), "pre/%.4s/%s.cacnk", hex, hex);
    assert_string_equal(fake_jobs[0].path, want);
    /* no compressed object: the uncompressed store's name is fetched */
    fake_pool_fail(0, -ENOENT);
    assert_int_equal(a.calls, 0);
    assert_int_equal(fake_njobs, 2);
    snprintf(want, sizeof(want), "pre/%.4s/%s", hex, hex);
    assert_string_equal(fake_jobs[1].path, want);
    assert_int_equal(fake_jobs[1].max_len, sizeof(data));
    fake_pool_complete(1, data, sizeof(data));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.r, 0);
    assert_memory_equal(a.got, data, sizeof(data));

    /* missing under both names: the reader gets -ENOENT */
    data[0] ^= 1;
    e2 = extent_of(FETCH_CHUNK_CASYNC, data, sizeof(data));
    assert_int_equal(fs_chunks_want(chunks, &e2, FETCH_PRIO_DEMAND, reader_done, &b), 0);
    fake_pool_fail(2, -ENOENT);
    fake_pool_fail(3, -ENOENT);
    assert_int_equal(fake_njobs, 4);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.r, -ENOENT);
}

static uint64_t disk_misses(struct cache_disk *d)
{
    struct cache_disk_stats st;
    cache_disk_get_stats(d, &st);
    return st.misses;
}

/*
 * With a disk cache: a chunk is looked up there once, before its fetch; while
 * it is in flight, neither a reader's peek nor another prefetch queries the
 * disk cache again (each such lookup is an SQLite query that can only miss),
 * and the reader still gets the fetched bytes.
 */
/* Chunks over the fake pool with a real disk cache in a new directory. */
struct with_disk {
    char *dir;
    struct cache_disk *disk;
    struct fs_chunks *c;
};

static void with_disk_open(struct with_disk *w)
{
    struct cache_disk_options o = {.flush_ms = 20, .store = "test"};
    char err[256] = "";
    w->dir = fx_tmpdir();
    w->disk = NULL;
    o.dir = w->dir;
    if (cache_disk_open(&o, &w->disk, err, sizeof(err)) < 0)
        fail_msg("cache_disk_open: %s", err);
    assert_non_null(w->c = fs_chunks_new(fake_pool(), 8 << 20, w->disk, "pre/", NULL));
}

/* In the daemon's order: the cache's writer holds chunks until closed. */
static void with_disk_close(struct with_disk *w)
{
    fake_pool_reset();
    fs_chunks_stop(w->c);
    cache_disk_close(w->disk);
    fs_chunks_free(w->c);
    fx_rmtree(w->dir);
    free(w->dir);
}

static void no_disk_lookup_in_flight(void **state)
{
    struct with_disk wd;
    struct cache_disk *disk;
    struct fs_chunks *c;
    struct reader a;
    uint8_t data[3000], scratch[64];
    const uint8_t *bytes;
    struct cache_mem_entry *ref = NULL;
    struct fetch_extent e;
    uint64_t before;

    (void)state;
    with_disk_open(&wd);
    disk = wd.disk;
    c = wd.c;
    a = (struct reader){.c = c};

    fx_fill_random(data, sizeof(data), 5);
    e = extent_of(FETCH_CHUNK_PBS, data, sizeof(data));
    /* not in memory, not on disk: the peek looks on disk once and misses */
    assert_int_equal(fs_chunks_peek(c, &e, 0, 10, scratch, &bytes, &ref), 0);
    assert_int_equal(disk_misses(disk), 1);
    assert_int_equal(fs_chunks_want(c, &e, FETCH_PRIO_READAHEAD, NULL, NULL), 0);
    assert_int_equal(fake_njobs, 1);
    before = disk_misses(disk);
    /* in flight: no disk lookup from a peek or a prefetch, one fetch */
    assert_int_equal(fs_chunks_peek(c, &e, 0, 10, scratch, &bytes, &ref), 0);
    assert_int_equal(fs_chunks_want(c, &e, FETCH_PRIO_READAHEAD, NULL, NULL), 0);
    assert_int_equal(disk_misses(disk), before);
    assert_int_equal(fake_njobs, 1);
    /* the reader that found it in flight waits for it, raised to demand */
    assert_int_equal(fs_chunks_want(c, &e, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fake_upgraded_to, FETCH_PRIO_DEMAND);
    complete_plain(0, data, sizeof(data));
    expect_got(&a, data, sizeof(data));
    assert_int_equal(fake_njobs, 1);
    with_disk_close(&wd);
}

struct cacher {
    int calls, fetch_r, cache_r;
};

static void cacher_cb(void *arg, int fetch_r, int cache_r, const fetch_error *err)
{
    struct cacher *k = arg;
    (void)err;
    k->calls++;
    k->fetch_r = fetch_r;
    k->cache_r = cache_r;
}

/* An index that names one digest at two lengths: a cacher of the wrong
 * extent gets -EIO whether it joins a fetch started for the right one or
 * finds the chunk in memory; a cacher of the right extent in the same fetch
 * gets it cached. */
static void cacher_checks_its_own_length(void **state)
{
    struct with_disk wd;
    struct cache_disk *disk;
    struct fs_chunks *c;
    struct reader a;
    struct cacher right = {0}, wrong = {0}, later = {0};
    uint8_t data[3000];
    struct fetch_extent e1, e2;

    (void)state;
    with_disk_open(&wd);
    disk = wd.disk;
    c = wd.c;
    a = (struct reader){.c = c};
    fx_fill_random(data, sizeof(data), 9);
    e1 = extent_of(FETCH_CHUNK_PBS, data, sizeof(data));
    e2 = e1;
    e2.length = 2000;

    assert_int_equal(fs_chunks_want(c, &e1, FETCH_PRIO_DEMAND, reader_done, &a), 0);
    assert_int_equal(fs_chunks_cache(c, &e2, cacher_cb, &wrong), 0);
    assert_int_equal(fs_chunks_cache(c, &e1, cacher_cb, &right), 0);
    assert_int_equal(fake_njobs, 1);
    complete_plain(0, data, sizeof(data));
    expect_got(&a, data, sizeof(data));
    cache_disk_sync(disk);
    assert_int_equal(wrong.calls, 1);
    assert_int_equal(wrong.fetch_r, -EIO);
    assert_int_equal(right.calls, 1);
    assert_int_equal(right.fetch_r, 1); /* fetched for it */
    assert_int_equal(right.cache_r, 1);
    /* the chunk in memory now: the same answer */
    assert_int_equal(fs_chunks_cache(c, &e2, cacher_cb, &later), 0);
    cache_disk_sync(disk);
    assert_int_equal(later.calls, 1);
    assert_int_equal(later.fetch_r, -EIO);
    with_disk_close(&wd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(single_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(demand_upgrades_prefetch, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_chunk_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(second_name_after_enoent, setup, teardown),
        cmocka_unit_test(no_disk_lookup_in_flight),
        cmocka_unit_test_setup_teardown(cacher_checks_its_own_length, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
