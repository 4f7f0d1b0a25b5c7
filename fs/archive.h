/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * File archives (a tree node of kind FS_NODE_ARCHIVE) shown as directory
 * trees, through their format's decoder (fetch/archive.h) reading the
 * archive's streams through the chunk layer: the same memory and disk
 * caches, the same fetcher pool. Metadata (lookups, attributes, listings,
 * symlinks, xattrs) is read on the FUSE worker, which waits for the chunks
 * it needs, as the first load of an index does; file contents go through
 * the image read path (fs/read.h) as a range of a stream, asynchronously and
 * with readahead.
 *
 * Inode numbers: the entries reached inside archives get numbers from
 * FS_ARCHIVE_INO_BASE up, one per (archive, entry): the same for every
 * hardlink, kept for the life of the mount (memory grows with the entries
 * looked up, a few hundred bytes each). A malformed archive gives EIO on the
 * entries it breaks, with a log line.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs.h"
#include "read.h"
#include "tree.h"

#define FS_ARCHIVE_INO_BASE (1ull << 40)

struct fs_archive_inodes;

static inline bool fs_archive_ino(uint64_t ino)
{
    return ino >= FS_ARCHIVE_INO_BASE;
}

void fs_archive_free(struct fs_archive *a);                   /* NULL-safe */
void fs_archive_inodes_free(struct fs_archive_inodes *table); /* NULL-safe */

/* Lookup of @name in directory @parent: the archive node itself or a
 * directory inside one. 0 and *@e, or -errno for the reply. */
int fs_archive_lookup(struct fs_ctx *ctx, uint64_t parent, const char *name,
                      struct fuse_entry_param *e);
/* Attributes of an entry inside an archive (or the archive node's root). */
int fs_archive_getattr(struct fs_ctx *ctx, uint64_t ino, struct stat *st);
/* Whether @ino is a directory inside an archive (or an archive node): 0,
 * -ENOTDIR, -ENOENT. */
int fs_archive_opendir(struct fs_ctx *ctx, uint64_t ino);
/* Replies to a readdir of directory @ino (see fs_archive_opendir). */
void fs_archive_readdir(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size, off_t off);
/* Replies to a readlink of @ino. */
void fs_archive_readlink(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino);
/* Checks that regular file @ino can be read: 0, -EISDIR, -EINVAL (not a
 * regular file), -EIO. */
int fs_archive_open(struct fs_ctx *ctx, uint64_t ino);
/* Replies to a read of regular file @ino opened as @f. */
void fs_archive_read(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f,
                     uint64_t off, size_t size);
/* Replies to getxattr (@size 0: the length) and listxattr of @ino. */
void fs_archive_getxattr(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, const char *name,
                         size_t size);
void fs_archive_listxattr(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size);
