/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The FUSE filesystem: shared state and entry points.
 *
 * Thread model
 *  - The FUSE session runs multithreaded (fuse_session_loop_mt); every
 *    lowlevel op replies exactly once. The tree (fs/tree.h) is immutable
 *    after mount; per-node loads of an index or a blob take that node's mutex
 *    only (they are small synchronous transfers, with mirror fallback).
 *  - A read never waits for the network or for a chunk decode: chunks in
 *    memory or in the disk cache (a pread of the requested bytes and a CRC
 *    check) are answered on the FUSE thread; for a chunk that must be fetched
 *    the read registers a waiter on that chunk's single flight (fs/chunks.h)
 *    and returns; the pool worker that completes the last awaited chunk
 *    copies the bytes into the reply and answers it (fs/read.c).
 *  - The fetcher pool (fetch/pool.h) has one thread driving the curl multi
 *    handle (remote stores) and --threads workers that read local stores,
 *    decode and verify, then run the completions. Queues are strictly
 *    ordered: demand reads, then readahead of sequential streams, then
 *    hydration; a demand read upgrades a queued chunk.
 *  - The disk cache's own writer thread stores loaded chunks (and batches
 *    last-use updates) off the reply path; it holds a reference to the
 *    decoded chunk until the bytes are on disk. A pool worker may wait for
 *    it (bounded) after it has answered the readers.
 *  - The control socket (fs/control.h) has one thread; hydration jobs submit
 *    at the lowest priority from their own thread. With --metrics-listen the
 *    metrics server (fs/metrics.h) has one more, which only reads the status.
 *  - Holes (zero extents) are answered from a static zero buffer and never
 *    reach the store.
 *  - One helper thread, started after the session is mounted, raises the
 *    kernel readahead of the mount (mount.c).
 *  - At unmount the metrics and control threads stop first, then the pool
 *    (queued jobs complete with -ECANCELED and their readers get EIO), then
 *    the session.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "chunks.h"
#include "tree.h"

/* readahead windows are counted in these: a PBS chunk, 64 small chunks */
#define FS_READAHEAD_UNIT (4ull << 20)

struct fs_file;
struct pending; /* a read waiting for chunks (fs/read.c) */
struct fs_profiles;

#define FS_MAX_READ (1024u * 1024)
#define FS_TIMEOUT 86400.0 /* snapshots never change: cache attributes and entries for a day */

struct fs_ctx {
    struct fs_tree *tree;
    struct fs_chunks *chunks;
    struct fetch_pool *pool;
    struct cache_disk *disk;      /* NULL without a disk cache */
    struct fs_profiles *profiles; /* read profiles (fs/profile.h); NULL: none */
    /* where chunks come from: the store and its mirrors in order, or the
     * casync chunk store */
    struct fetch_store *const *stores;
    size_t nstores;
    /* NULL, or why the mount serves cached metadata (status says "offline") */
    const char *offline;
    bool has_disk_cache; /* reads may need a scratch buffer for disk-cache hits */
    /* images bypass the kernel's page cache (FOPEN_DIRECT_IO): every read
     * comes here, in the reader's order and sizes (up to FS_MAX_READ) */
    bool direct_io;
    unsigned readahead_max; /* FS_READAHEAD_UNITs a sequential stream may prefetch (0: none) */
    /* sequential streams reading lately, whose readahead windows share the
     * memory (fs/read.c): counted per epoch, this one's and the last one's */
    atomic_uint_least64_t stream_epoch;
    atomic_uint stream_now, stream_last;
    atomic_uint_least64_t last_read_ms; /* CLOCK_MONOTONIC_COARSE of the last image read */
    /* reads of image files (images, partitions, volumes, archive contents):
     * requests, bytes answered, requests answered with an error (status "reads") */
    atomic_uint_least64_t reads, read_bytes, read_errors;
    /* of those, the requests that waited for a chunk being fetched or
     * loaded by a disk loader (fs/read.c: answered by a completion), and
     * the microseconds from their arrival at a missing chunk to their
     * answer, summed: what readers waited for chunks, as against the time
     * the reads themselves took */
    atomic_uint_least64_t read_waits, read_wait_us;
    pthread_mutex_t files_lock;
    struct fs_file *files; /* open image files (fs/read.h) */
    /* reads waiting for chunks (fs/read.c), and how long before one is
     * logged as stuck (fs_read_watch; 0: never) */
    pthread_mutex_t waits_lock;
    struct pending *waits;
    uint64_t stuck_after_ms;
};

/* Milliseconds on CLOCK_MONOTONIC_COARSE (cheap enough for every read). */
uint64_t fs_now_ms(void);

/* Frees the files the kernel never released (a lazy unmount while they were open). */
void fs_files_free_all(struct fs_ctx *ctx);

/* The lowlevel ops table; the session's userdata must be a struct fs_ctx. */
const struct fuse_lowlevel_ops *fs_ops(void);
