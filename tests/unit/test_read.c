/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/read.h (the read path of an image) with the fetcher pool
 * (fake_pool.h) and the FUSE replies replaced by the test. Checked: a read
 * over chunks that arrive in any order is answered once, with the bytes in
 * order, holes as zeros; a chunk that does not verify fails the read with
 * EIO (never bytes); sequential reads of an open file are detected and read
 * ahead (window growing by FS_READAHEAD_UNIT steps, holes skipped), random
 * reads are not, and reads past the end get nothing.
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
#include <signal.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_image.h"
#include "fake_pool.h"
#include "fetch/digest.h"
#include "fixtures.h"
#include "fs/log.h"
#include "fs/read.h"

#define MIB (1024u * 1024)
#define NCHUNKS 24
#define ZERO_CHUNK 6 /* a hole */

/* ---- the replies -------------------------------------------------------- */

static int replies;    /* replies sent */
static int reply_err;  /* 0: bytes */
static uint8_t *reply; /* the bytes of the last reply */
static size_t reply_len;

static void take(const void *bytes, size_t len)
{
    replies++;
    reply_err = 0;
    free(reply);
    reply = malloc(len ? len : 1);
    assert_non_null(reply);
    if (len)
        memcpy(reply, bytes, len);
    reply_len = len;
}

int __wrap_fuse_reply_iov(fuse_req_t req, const struct iovec *iov, int count);
int __wrap_fuse_reply_iov(fuse_req_t req, const struct iovec *iov, int count)
{
    size_t len = 0, at = 0;
    uint8_t *flat;
    (void)req;
    for (int i = 0; i < count; i++)
        len += iov[i].iov_len;
    flat = malloc(len ? len : 1);
    assert_non_null(flat);
    for (int i = 0; i < count; i++) {
        memcpy(flat + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    take(flat, len);
    free(flat);
    return 0;
}

int __wrap_fuse_reply_buf(fuse_req_t req, const char *buf, size_t size);
int __wrap_fuse_reply_buf(fuse_req_t req, const char *buf, size_t size)
{
    (void)req;
    take(buf, size);
    return 0;
}

int __wrap_fuse_reply_err(fuse_req_t req, int err);
/* Set while the fake libfuse calls a handler from inside its registration
 * (the request's lock held; the caller uses the request afterwards). */
static bool in_registration;
static unsigned replies_in_registration;

int __wrap_fuse_reply_err(fuse_req_t req, int err)
{
    (void)req;
    replies_in_registration += in_registration;
    replies++;
    reply_err = err;
    return 0;
}

/* The interrupt handler a waiting read registers (libfuse calls it when the
 * reader gets a signal); NULL once unregistered. */
static fuse_interrupt_func_t intr_func;
static void *intr_data;
static unsigned intr_registrations;
/* the kernel's INTERRUPT came before the handler: libfuse 3 then calls the
 * handler from inside fuse_req_interrupt_func() */
static bool intr_already;

void __wrap_fuse_req_interrupt_func(fuse_req_t req, fuse_interrupt_func_t func, void *data);
void __wrap_fuse_req_interrupt_func(fuse_req_t req, fuse_interrupt_func_t func, void *data)
{
    intr_func = func;
    intr_data = data;
    intr_registrations += func != NULL;
    if (intr_already && func) {
        in_registration = true;
        func(req, data);
        in_registration = false;
    }
}

/* The request's context (the reader's thread: pid): 0, "cannot tell", so
 * an interrupt ends the read, unless a test names a thread. */
static struct fuse_ctx req_ctx;

const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req);
const struct fuse_ctx *__wrap_fuse_req_ctx(fuse_req_t req)
{
    (void)req;
    return &req_ctx;
}

/* ---- an image of NCHUNKS chunks of 1 MiB, one of them a hole ------------ */

static struct fake_image fi;
static struct fs_ctx ctx;
static struct fs_file file;

static int setup(void **state)
{
    (void)state;
    fake_image_init(&fi, NCHUNKS, MIB, ZERO_CHUNK, -1, -1, 100);
    fs_read_init();
    fs_log_set_level(FS_LOG_ERR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_image_free(&fi);
    free(reply);
    return 0;
}

/* A fresh chunk layer (nothing in memory) and open file for each test. */
static int per_test(void **state)
{
    (void)state;
    fake_pool_reset();
    replies = 0;
    intr_func = NULL;
    intr_data = NULL;
    intr_registrations = 0;
    req_ctx = (struct fuse_ctx){0};
    ctx = (struct fs_ctx){.readahead_max = 8};
    pthread_mutex_init(&ctx.waits_lock, NULL);
    ctx.chunks = fs_chunks_new(fake_pool(), 64 * MIB, NULL, "", NULL);
    assert_non_null(ctx.chunks);
    memset(&file, 0, sizeof(file));
    pthread_mutex_init(&file.lock, NULL);
    return 0;
}

static int per_test_end(void **state)
{
    (void)state;
    fake_pool_reset();
    fs_chunks_free(ctx.chunks);
    pthread_mutex_destroy(&file.lock);
    return 0;
}

/* The job fetching chunk @i, or -1. */
static long job_of(size_t i)
{
    return fake_pool_find(fi.names[i]);
}

static void complete_chunk(size_t i)
{
    long j = job_of(i);
    assert_true(j >= 0);
    fake_pool_complete((size_t)j, fi.blobs[i], fi.blob_lens[i]);
}

static void read_at(uint64_t off, size_t size)
{
    fs_read_image(&ctx, &fi.node, &fi.img, &file, (fuse_req_t)&fi.node, off, size);
}

static void check_reply(uint64_t off, size_t size)
{
    assert_int_equal(reply_err, 0);
    assert_int_equal(reply_len, size);
    assert_memory_equal(reply, fi.source + off, size);
}

/* A reader interrupted while its read waits gets EINTR once, at once; the
 * chunks that arrive later answer nothing more, and the read is freed then
 * (ASan: no leak, no use after free). Reads that did not wait register no
 * handler; one that completes unregisters it. */
static void interrupted_read(void **state)
{
    (void)state;
    read_at(2 * MIB + MIB / 2, MIB);
    assert_int_equal(replies, 0);
    assert_non_null(intr_func);
    assert_true(ctx.waits != NULL); /* the watchdog sees it */
    intr_func((fuse_req_t)&fi.node, intr_data);
    assert_int_equal(replies, 1);
    assert_int_equal(reply_err, EINTR);
    assert_null(ctx.waits); /* answered: not stuck, whatever the chunks do */
    complete_chunk(2);
    complete_chunk(3);
    assert_int_equal(replies, 1); /* no second reply */
    assert_null(ctx.waits);
    /* the chunks arrived all the same: a read of them now needs no fetch */
    read_at(2 * MIB, MIB);
    assert_int_equal(replies, 2);
    check_reply(2 * MIB, MIB);
    assert_int_equal(intr_registrations, 1);

    /* a read that completes unregisters its handler before replying */
    read_at(8 * MIB, 4096);
    assert_non_null(intr_func);
    complete_chunk(8);
    assert_int_equal(replies, 3);
    check_reply(8 * MIB, 4096);
    assert_null(intr_func);
    assert_null(ctx.waits);
}

/* A reader interrupted before its read registered its handler (libfuse then
 * runs the handler inside the registration, where a reply would free the
 * request under libfuse) gets EINTR once, right after; the chunks arriving
 * later answer nothing more, and the watchdog no longer lists the read. */
static void interrupted_before_registration(void **state)
{
    (void)state;
    intr_already = true;
    read_at(4 * MIB + MIB / 2, MIB);
    intr_already = false;
    assert_int_equal(replies, 1);
    assert_int_equal(reply_err, EINTR);
    assert_int_equal(replies_in_registration, 0);
    assert_null(ctx.waits);
    complete_chunk(4);
    complete_chunk(5);
    assert_int_equal(replies, 1);
    read_at(4 * MIB, MIB);
    assert_int_equal(replies, 2);
    check_reply(4 * MIB, MIB);
}

/* An interrupt whose reader is not told to end (a timer, SIGCHLD) leaves
 * the read to finish with its bytes; once that reader is gone (killed
 * meanwhile: the kernel sends no second interrupt), the watchdog answers
 * EINTR. The reader: a child process sleeping with no signal pending. */
static void interrupt_that_does_not_end_the_reader(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* not left behind by a failed test */
        pause();
        _exit(0);
    }
    req_ctx.pid = child;
    read_at(9 * MIB, 4096);
    assert_non_null(intr_func);
    intr_func((fuse_req_t)&fi.node, intr_data);
    assert_int_equal(replies, 0); /* it goes on */
    assert_int_equal(fs_read_watch(&ctx, fs_now_ms()), 0);
    assert_int_equal(replies, 0); /* the reader lives, nothing pending */
    complete_chunk(9);
    assert_int_equal(replies, 1);
    check_reply(9 * MIB, 4096);

    /* the same, and the reader is killed before its chunk comes */
    read_at(7 * MIB, 4096);
    intr_func((fuse_req_t)&fi.node, intr_data);
    assert_int_equal(replies, 1);
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    fs_read_watch(&ctx, fs_now_ms());
    assert_int_equal(replies, 2);
    assert_int_equal(reply_err, EINTR);
    assert_null(ctx.waits);
    complete_chunk(7);
    assert_int_equal(replies, 2); /* no second reply */
}

/* The watchdog names a read that waits longer than stuck_after_ms, and
 * nothing else. */
static void watchdog_logs_stuck_reads(void **state)
{
    (void)state;
    ctx.stuck_after_ms = 1000;
    read_at(4 * MIB, 4096);
    assert_int_equal(replies, 0);
    assert_non_null(ctx.waits);
    assert_int_equal(fs_read_watch(&ctx, fs_now_ms()), 0); /* too early */
    assert_int_equal(fs_read_watch(&ctx, fs_now_ms() + 1500), 1);
    assert_int_equal(fs_read_watch(&ctx, fs_now_ms() + 1600), 0); /* said this period */
    assert_int_equal(fs_read_watch(&ctx, fs_now_ms() + 2600), 1); /* and the next */
    complete_chunk(4);
    assert_int_equal(replies, 1);
    assert_null(ctx.waits);
}

static void pieces_in_any_order(void **state)
{
    (void)state;
    /* half of chunk 2 and half of chunk 3: two fetches, answered once */
    read_at(2 * MIB + MIB / 2, MIB);
    assert_int_equal(replies, 0);
    assert_true(job_of(2) >= 0 && job_of(3) >= 0);
    assert_int_equal(fake_jobs[job_of(2)].prio, FETCH_PRIO_DEMAND);
    complete_chunk(3); /* the second piece first */
    assert_int_equal(replies, 0);
    complete_chunk(2);
    assert_int_equal(replies, 1);
    check_reply(2 * MIB + MIB / 2, MIB);

    /* the end of chunk 5 and the hole after it: zeros, nothing fetched for them */
    read_at(5 * MIB + 3 * MIB / 4, MIB / 2);
    assert_int_equal(replies, 1);
    complete_chunk(5);
    assert_int_equal(replies, 2);
    check_reply(5 * MIB + 3 * MIB / 4, MIB / 2);
    for (size_t i = 0; i < fake_njobs; i++)
        assert_null(strstr(fake_jobs[i].path, fi.names[ZERO_CHUNK]));

    /* in memory now: answered at once */
    read_at(2 * MIB + 100, 5000);
    assert_int_equal(replies, 3);
    check_reply(2 * MIB + 100, 5000);

    /* the hole alone, and past the end */
    read_at(ZERO_CHUNK * MIB, 4096);
    assert_int_equal(replies, 4);
    check_reply(ZERO_CHUNK * MIB, 4096);
    read_at(NCHUNKS * (uint64_t)MIB, 4096);
    assert_int_equal(replies, 5);
    assert_int_equal(reply_len, 0);
    /* a read over the end is cut there */
    read_at(NCHUNKS * (uint64_t)MIB - 1000, 4096);
    complete_chunk(NCHUNKS - 1);
    assert_int_equal(replies, 6);
    check_reply(NCHUNKS * (uint64_t)MIB - 1000, 1000);
}

/* A read that starts in a chunk in memory and goes on into one that must be
 * fetched: the first piece is held by its reference while the second is
 * awaited (not copied), answered right; and freed right when the reader
 * gives up (ASan: no leak, no use after free). */
static void memory_piece_then_fetch(void **state)
{
    (void)state;
    read_at(2 * MIB, 4096);
    complete_chunk(2);
    assert_int_equal(replies, 1);
    read_at(2 * MIB + MIB / 2, MIB);
    assert_int_equal(replies, 1);
    assert_true(job_of(3) >= 0);
    complete_chunk(3);
    assert_int_equal(replies, 2);
    check_reply(2 * MIB + MIB / 2, MIB);

    read_at(8 * MIB, 4096);
    complete_chunk(8);
    assert_int_equal(replies, 3);
    read_at(8 * MIB + MIB / 4, MIB);
    assert_int_equal(replies, 3);
    intr_func((fuse_req_t)&fi.node, intr_data);
    assert_int_equal(replies, 4);
    assert_int_equal(reply_err, EINTR);
    complete_chunk(9);
    assert_int_equal(replies, 4);
    assert_null(ctx.waits);
}

static void bad_chunk_fails_the_read(void **state)
{
    (void)state;
    uint8_t *bad = fx_memdup(fi.blobs[8], fi.blob_lens[8]);
    read_at(7 * MIB + MIB / 2, MIB);
    assert_int_equal(replies, 0);
    complete_chunk(7);
    bad[4000] ^= 1;
    fx_blob_fix_crc(bad, fi.blob_lens[8]);
    fake_pool_complete((size_t)job_of(8), bad, fi.blob_lens[8]);
    free(bad);
    assert_int_equal(replies, 1);
    assert_int_equal(reply_err, EIO);
}

/* The readahead chunks submitted so far, as a bit set. */
static uint32_t readahead_set(void)
{
    uint32_t set = 0;
    for (size_t i = 0; i < NCHUNKS; i++) {
        long j = job_of(i);
        if (j >= 0 && fake_jobs[j].prio == FETCH_PRIO_READAHEAD)
            set |= 1u << i;
    }
    return set;
}

static void complete_all(void)
{
    for (size_t j = 0; j < fake_njobs; j++) {
        if (fake_jobs[j].completed)
            continue;
        for (size_t i = 0; i < NCHUNKS; i++) {
            if (strstr(fake_jobs[j].path, fi.names[i])) {
                fake_pool_complete(j, fi.blobs[i], fi.blob_lens[i]);
                break;
            }
        }
    }
}

static void sequential_reads_read_ahead(void **state)
{
    (void)state;
    /* the first read of a stream prefetches nothing */
    read_at(0, MIB);
    assert_int_equal(fake_njobs, 1);
    complete_all();
    check_reply(0, MIB);
    /* it continues: a window of one unit (4 MiB) past the read, the hole skipped */
    read_at(MIB, MIB);
    assert_int_equal(readahead_set(), 0x3cu); /* chunks 2..5 */
    assert_int_equal(fake_jobs[job_of(1)].prio, FETCH_PRIO_DEMAND);
    complete_all();
    check_reply(MIB, MIB);
    /* the next chunk: the window doubles to 8 MiB of data past chunk 2
     * (chunks up to 11: 6 is a hole) */
    read_at(2 * MIB, MIB);
    check_reply(2 * MIB, MIB); /* read ahead: answered at once */
    assert_int_equal(readahead_set(), 0x3cu | 0xf80u);
    assert_int_equal(job_of(ZERO_CHUNK), -1);
    complete_all();

    /* a random read elsewhere starts a stream of its own: nothing ahead */
    size_t before = fake_njobs;
    read_at(20 * MIB + 12345, 1000);
    assert_int_equal(fake_njobs, before + 1);
    assert_int_equal(fake_jobs[job_of(20)].prio, FETCH_PRIO_DEMAND);
    complete_all();
    check_reply(20 * MIB + 12345, 1000);
    /* the first stream goes on where it was: 16 MiB ahead now (up to chunk 20) */
    read_at(3 * MIB, MIB);
    check_reply(3 * MIB, MIB);
    assert_true(job_of(19) >= 0);
    assert_int_equal(fake_jobs[job_of(19)].prio, FETCH_PRIO_READAHEAD);
    complete_all();

    /* without an open file (no streams) nothing is read ahead */
    before = fake_njobs;
    fs_read_image(&ctx, &fi.node, &fi.img, NULL, (fuse_req_t)&fi.node, 21 * MIB, MIB);
    fs_read_image(&ctx, &fi.node, &fi.img, NULL, (fuse_req_t)&fi.node, 22 * MIB, MIB);
    assert_int_equal(fake_njobs, before + 2);
    complete_all();
}

/* The bytes of chunks 12..17 while holes_begin() has made them holes. */
static uint8_t *holes_saved;

/* per_test(), with chunks 12..17 of the shared image made holes (zero
 * extents, zero bytes); holes_end() puts them back whether the test passed
 * or not, so that no later test sees them. */
static int holes_begin(void **state)
{
    int r = per_test(state);
    holes_saved = fx_memdup(fi.source + 12 * MIB, 6 * MIB);
    for (size_t i = 12; i < 18; i++)
        fi.extents[i].zero = true;
    memset(fi.source + 12 * MIB, 0, 6 * MIB);
    return r;
}

static int holes_end(void **state)
{
    for (size_t i = 12; i < 18; i++)
        fi.extents[i].zero = false;
    memcpy(fi.source + 12 * MIB, holes_saved, 6 * MIB);
    free(holes_saved);
    holes_saved = NULL;
    return per_test_end(state);
}

/* Windows count bytes of data: holes are looked past (they take no memory
 * and no fetch), and a reader that skips holes (cp with SEEK_DATA) goes on
 * with its stream instead of starting one with no window. */
static void readahead_across_holes(void **state)
{
    (void)state;
    read_at(10 * MIB, MIB / 2);
    complete_all();
    check_reply(10 * MIB, MIB / 2);
    /* the stream goes on in the same chunk: no window yet, the next chunk */
    read_at(10 * MIB + MIB / 2, MIB / 2);
    check_reply(10 * MIB + MIB / 2, MIB / 2);
    assert_int_equal(readahead_set(), 1u << 11);
    /* a jump forward over data (chunk 11) does not continue it: a stream of
     * its own, nothing ahead */
    read_at(19 * MIB, MIB);
    assert_int_equal(readahead_set(), 1u << 11);
    complete_all();
    check_reply(19 * MIB, MIB);
    /* the first stream goes on (chunk 11 came in meanwhile): one unit (4 MiB)
     * of data past chunk 11, where 12..17 are holes (19 is in memory) */
    read_at(11 * MIB, MIB);
    check_reply(11 * MIB, MIB);
    assert_int_equal(readahead_set(), 1u << 11 | 1u << 18 | 3u << 20);
    complete_all();
    /* a jump over the holes continues it (the stream that ends at 20 MiB is
     * not it): 8 MiB past chunk 18, up to the last chunk, 23 */
    read_at(18 * MIB, MIB);
    check_reply(18 * MIB, MIB); /* read ahead: answered at once */
    assert_true(job_of(22) >= 0);
    assert_int_equal(fake_jobs[job_of(22)].prio, FETCH_PRIO_READAHEAD);
    assert_true(job_of(23) >= 0);
    complete_all();
}

/* A fresh chunk layer whose memory holds @budget bytes of chunks. */
static void set_memory(size_t budget)
{
    fs_chunks_free(ctx.chunks);
    ctx.chunks = fs_chunks_new(fake_pool(), budget, NULL, "", NULL);
    assert_non_null(ctx.chunks);
}

/* Reads chunks @from..@to (1 MiB each) in order, each answered. */
static void read_chunks(size_t from, size_t to)
{
    for (size_t i = from; i <= to; i++) {
        read_at(i * MIB, MIB);
        complete_all();
        check_reply(i * MIB, MIB);
    }
}

static void readahead_bounded_by_memory(void **state)
{
    (void)state;
    /* a memory budget of 8 MiB (two units, the chunk being read and one
     * arriving): at most one unit (4 MiB) ahead, however long the stream */
    set_memory(8 * MIB);
    read_chunks(8, 15);
    /* the last read (chunk 15) had chunks up to 19 ahead, not further */
    assert_true(job_of(19) >= 0);
    assert_int_equal(job_of(20), -1);
}

/* Memory evicts chunks read in full first, so one stream's window may take
 * all of it but two units (where it reads, one arriving): with 24 MiB, four
 * units (16 MiB of data) ahead, where half of the memory gave three. */
static void readahead_takes_the_memory_not_read_yet(void **state)
{
    (void)state;
    set_memory(24 * MIB);
    read_chunks(0, 4);
    /* the window doubled to 4, then 8, then 16 MiB: from chunk 4, sixteen
     * chunks of data (chunk 6 is a hole) up to 21 */
    assert_true(job_of(21) >= 0);
    assert_int_equal(fake_jobs[job_of(21)].prio, FETCH_PRIO_READAHEAD);
    assert_int_equal(job_of(22), -1);
    /* and no further, however long the stream */
    read_chunks(5, 5);
    assert_int_equal(job_of(23), -1);
}

/*
 * Streams reading at once share that memory: two of them with 24 MiB (six
 * units, less each one's chunk and one arriving) get one unit each. A
 * stream counts once it has gone on past two chunks. The reads are made
 * again from the start (at most 5 times) when an epoch began between the
 * first count and the checks: a stream not read since is then forgotten.
 */
static void readahead_streams_share_the_memory(void **state)
{
    long j17, j18, j19a, j19b, j20;
    uint64_t e0;
    int tries = 0;

    for (;;) {
        set_memory(24 * MIB);
        read_chunks(0, 1); /* stream A: a window of one unit */
        e0 = fs_now_ms() / FS_STREAM_EPOCH_MS;
        read_chunks(2, 2);   /* two units (up to chunk 11): A counts */
        read_chunks(12, 13); /* stream B: one unit, chunks 14..17 */
        j17 = job_of(17);
        /* B goes on past a second chunk and counts: with two streams, it
         * stays at one unit where alone it would have two (up to 22) */
        read_chunks(14, 14);
        j18 = job_of(18);
        j19a = job_of(19);
        read_chunks(15, 15);
        j19b = job_of(19);
        j20 = job_of(20);
        if (fs_now_ms() / FS_STREAM_EPOCH_MS == e0 || ++tries == 5)
            break;
        per_test_end(state);
        per_test(state);
    }
    assert_true(j17 >= 0);
    assert_true(j18 >= 0);
    assert_int_equal(j19a, -1);
    assert_true(j19b >= 0);
    assert_int_equal(j20, -1);
}

/* The window of the stream whose next read starts at @next, or -1. */
static int window_of(uint64_t next)
{
    for (unsigned k = 0; k < FS_STREAMS; k++)
        if (file.streams[k].used && file.streams[k].next == next)
            return (int)file.streams[k].window;
    return -1;
}

/* A few touching reads (a random 2 MiB read in pieces) are no stream that
 * takes a share: one crossing a single chunk leaves a sequential reader
 * its whole room (four units with 24 MiB). */
static void readahead_random_reads_do_not_count(void **state)
{
    (void)state;
    set_memory(24 * MIB);
    read_at(20 * MIB, MIB / 2);
    complete_all();
    read_at(20 * MIB + MIB / 2, MIB / 2);
    complete_all();
    read_at(21 * MIB, MIB);
    complete_all();
    assert_int_equal(window_of(22 * MIB), 1);
    read_chunks(0, 3);
    assert_int_equal(window_of(4 * MIB), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pieces_in_any_order, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(memory_piece_then_fetch, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(interrupted_read, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(interrupt_that_does_not_end_the_reader, per_test,
                                        per_test_end),
        cmocka_unit_test_setup_teardown(interrupted_before_registration, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(watchdog_logs_stuck_reads, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(bad_chunk_fails_the_read, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(sequential_reads_read_ahead, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(readahead_across_holes, holes_begin, holes_end),
        /* after the holes test: sees chunks 12..17 as data again */
        cmocka_unit_test_setup_teardown(readahead_bounded_by_memory, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(readahead_takes_the_memory_not_read_yet, per_test,
                                        per_test_end),
        cmocka_unit_test_setup_teardown(readahead_streams_share_the_memory, per_test, per_test_end),
        cmocka_unit_test_setup_teardown(readahead_random_reads_do_not_count, per_test,
                                        per_test_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
