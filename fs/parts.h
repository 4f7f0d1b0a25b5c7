/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Partitions and LVM2 logical volumes of an image as files: next to each
 * image node, a directory node `<image>.parts` (kind FS_NODE_PARTS) holding
 *
 *   p1, p2, ...          one file per partition (MBR primaries and logicals,
 *                        GPT entries), numbered as the table numbers them
 *   by-name/<name>       symlinks to them, for GPT names that are valid names
 *   lvm/<vg>/<lv>        the visible logical volumes of the LVM2 volume groups
 *                        whose physical volumes are the image or its partitions
 *
 * Each file is a view of the image (fetch/view.h): its reads, holes
 * (SEEK_DATA/SEEK_HOLE, st_blocks) and readahead are the image's, through
 * the same read path. The table and the volume metadata are read on the
 * first lookup or listing of the directory (on that FUSE worker, through the
 * chunk layer: fs_read_sync, holding the image's index meanwhile) and kept
 * for the life of the mount (no pointer into the index: an open file holds
 * its own reference). A missing or
 * malformed table, or refused LVM metadata, gives fewer entries and a log
 * line, never an error for the image; a read error of the store gives EIO
 * and is tried again on the next request. Segments that cannot be read
 * (thin, raid, snapshot, a physical volume outside the image) are listed and
 * give EIO with a log line.
 *
 * Inode numbers: FS_PARTS_INO_BASE + (ino of the .parts node << 12) + the
 * entry's index (1..4095); the .parts node itself is a tree node.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "archive.h"
#include "fs.h"
#include "read.h"
#include "tree.h"

#define FS_PARTS_INO_BASE (1ull << 39)
#define FS_PARTS_INDEX_BITS 12
/* the suffix of the directory beside each image */
#define FS_PARTS_SUFFIX ".parts"

static inline bool fs_parts_ino(uint64_t ino)
{
    return ino >= FS_PARTS_INO_BASE && ino < FS_ARCHIVE_INO_BASE;
}

/* Whether requests for @ino go here: an entry inside, or a .parts node. */
bool fs_parts_owns(struct fs_ctx *ctx, uint64_t ino);

void fs_parts_free(struct fs_parts *p); /* NULL-safe */

/* The operations on what fs_parts_owns() claims; -errno for the reply. */
int fs_parts_lookup(struct fs_ctx *ctx, uint64_t parent, const char *name,
                    struct fuse_entry_param *e);
int fs_parts_getattr(struct fs_ctx *ctx, uint64_t ino, struct stat *st);
int fs_parts_opendir(struct fs_ctx *ctx, uint64_t ino);
void fs_parts_readdir(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size, off_t off);
void fs_parts_readlink(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino);
/* A regular file, opened as @f: 0 with a reference to its image's index in
 * @f (f->image_node, f->image; the release drops it), or -EISDIR, -EINVAL
 * (a symlink), -EIO, -ENOMEM. */
int fs_parts_open(struct fs_ctx *ctx, uint64_t ino, struct fs_file *f);
/* Reads and seeks through the index @f (fs_parts_open) holds. */
void fs_parts_read(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f,
                   uint64_t off, size_t size);
void fs_parts_lseek(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f, off_t off,
                    int whence);
