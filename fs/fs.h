/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The FUSE filesystem: shared state and entry points.
 *
 * Thread model
 *  - The FUSE session runs multithreaded (fuse_session_loop_mt); every
 *    lowlevel op replies exactly once, from the thread that received it.
 *  - The tree (fs/tree.h) is immutable after mount; per-node loads of an
 *    index or a blob take that node's mutex only.
 *  - Reads of chunks not in memory are answered on the FUSE thread that
 *    asked: from the disk cache (a pread of the requested bytes and a CRC
 *    check), else by loading the chunk from the store (local store: a file
 *    read and a verification, no network). Loads of different chunks run on
 *    different threads at once; readers of one chunk being loaded wait for
 *    that single load (fs/chunks.h). No lock is held across the load of a
 *    chunk.
 *  - The disk cache's own writer thread stores loaded chunks (and batches
 *    last-use updates) off the reply path; it holds a reference to the
 *    decoded chunk until the bytes are on disk.
 *  - Holes (zero extents) are answered from a static zero buffer and never
 *    reach the store.
 *  - One helper thread, started after the session is mounted, raises the
 *    kernel readahead of the mount (mount.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "chunks.h"
#include "tree.h"

#define FS_MAX_READ (1024u * 1024)
#define FS_TIMEOUT 86400.0 /* snapshots never change: cache attributes and entries for a day */

struct fs_ctx {
    struct fs_tree *tree;
    struct fs_chunks *chunks;
    bool has_disk_cache; /* reads may need a scratch buffer for disk-cache hits */
};

/* The lowlevel ops table; the session's userdata must be a struct fs_ctx. */
const struct fuse_lowlevel_ops *fs_ops(void);

/* Answers a read of [@off, @off + @size) of image node @n; replies exactly once. */
void fs_image_read(struct fs_ctx *ctx, const struct fs_node *n, fuse_req_t req, uint64_t off,
                   size_t size);
