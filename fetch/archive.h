/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * File archives (pxar, next catar): a file tree in one byte stream, or in a
 * metadata stream and a payload stream, read lazily through a decoder of the
 * archive's format. The mount shows an archive as a directory tree through
 * this interface alone; a format adds a decoder (fetch/<format>.c) with a
 * struct fetch_archive_format, and its repository says which one an entry
 * uses (fetch/repo.h open_archive).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image.h"
#include "stream.h"

/* Bounds on what one item of an archive may hold. */
#define FETCH_ARCHIVE_NAME_MAX 4095u         /* a file name, without its NUL */
#define FETCH_ARCHIVE_PATH_MAX 4095u         /* a symlink or hardlink target */
#define FETCH_ARCHIVE_XATTR_MAX (64u * 1024) /* one xattr: name, NUL, value */
#define FETCH_ARCHIVE_GOODBYE_MAX (1u << 24) /* entries of one directory */

/* What an entry is (from its mode). */
enum fetch_archive_kind {
    FETCH_ARCHIVE_DIR,
    FETCH_ARCHIVE_FILE,
    FETCH_ARCHIVE_SYMLINK,
    FETCH_ARCHIVE_DEVICE, /* character or block: S_ISCHR/S_ISBLK(mode) */
    FETCH_ARCHIVE_FIFO,
    FETCH_ARCHIVE_SOCKET,
};

struct fetch_archive_entry {
    /* where the entry starts in the metadata stream: unique per entry, and
     * the same for every hardlink to it (an inode number) */
    uint64_t pos;
    enum fetch_archive_kind kind;
    uint64_t mode; /* with the S_IFMT bits */
    uint64_t flags;
    uint32_t uid, gid;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size; /* files: bytes; symlinks: target length; else 0 */
    /* files: where their bytes start, in the payload stream (data_in_payload)
     * or the metadata stream */
    uint64_t data_off;
    bool data_in_payload;
    uint64_t dev_major, dev_minor;
    /* the format's: where the entry's metadata items, symlink target and
     * directory table are */
    uint64_t meta_off, meta_end;
    uint64_t target_off;
    uint64_t goodbye_off;
    uint64_t goodbye_count; /* directories: children */
};

/* An open archive; the format's decoder state follows. */
struct fetch_archive {
    const struct fetch_archive_format *format;
};

typedef int (*fetch_xattr_fn)(const char *name, const void *value, size_t vlen, void *arg);

struct fetch_archive_format {
    const char *name; /* "pxar" */
    /* @meta: the archive or its metadata stream; @payload: the payload
     * stream or NULL. Both borrowed: they must outlive the archive. */
    int (*open)(const struct fetch_stream *meta, const struct fetch_stream *payload,
                struct fetch_archive **ret, fetch_error *err);
    void (*free)(struct fetch_archive *a);
    int (*root)(struct fetch_archive *a, struct fetch_archive_entry *ret, fetch_error *err);
    /* -ENOENT, -ENOTDIR, -EBADMSG, -EIO */
    int (*lookup)(struct fetch_archive *a, const struct fetch_archive_entry *dir, const char *name,
                  size_t len, struct fetch_archive_entry *ret, fetch_error *err);
    /* child @i < dir->goodbye_count, its name in @name (@cap bytes); -ERANGE past the end.
     * Child 0, where a listing starts, also checks that @dir's items name
     * distinct children (-EBADMSG). A walk must still not enter one directory
     * twice (a hostile archive can nest a child inside a sibling): see
     * fetch_archive_entry.pos. */
    int (*child)(struct fetch_archive *a, const struct fetch_archive_entry *dir, uint64_t i,
                 char *name, size_t cap, struct fetch_archive_entry *ret, fetch_error *err);
    int (*readlink)(struct fetch_archive *a, const struct fetch_archive_entry *e, char *buf,
                    size_t cap, fetch_error *err);
    /* Checks that file @e's bytes are where the entry says (a header before
     * them, for example); 0 or -EBADMSG. NULL: nothing to check. */
    int (*check_data)(struct fetch_archive *a, const struct fetch_archive_entry *e,
                      fetch_error *err);
    /* Reads up to @len bytes of file @e at @off: the count (0 at or past the
     * end) or -errno. For readers without a mount; the mount maps a file's
     * range onto its stream itself (data_off). */
    long (*read)(struct fetch_archive *a, const struct fetch_archive_entry *e, uint64_t off,
                 void *buf, size_t len, fetch_error *err);
    int (*xattrs)(struct fetch_archive *a, const struct fetch_archive_entry *e, fetch_xattr_fn cb,
                  void *arg, fetch_error *err);
};

/* What a repository entry of type FETCH_ENTRY_ARCHIVE is read from. */
struct fetch_archive_src {
    const struct fetch_archive_format *format;
    struct fetch_image *meta;    /* the archive, or its metadata stream */
    struct fetch_image *payload; /* its payload stream, or NULL */
};

void fetch_archive_src_free(struct fetch_archive_src *s); /* frees the images; NULL-safe */

/* The operations of an open archive, through its format. */
static inline void fetch_archive_free(struct fetch_archive *a)
{
    if (a)
        a->format->free(a);
}

static inline int fetch_archive_root(struct fetch_archive *a, struct fetch_archive_entry *ret,
                                     fetch_error *err)
{
    return a->format->root(a, ret, err);
}

static inline int fetch_archive_lookup(struct fetch_archive *a,
                                       const struct fetch_archive_entry *dir, const char *name,
                                       size_t len, struct fetch_archive_entry *ret,
                                       fetch_error *err)
{
    return a->format->lookup(a, dir, name, len, ret, err);
}

static inline int fetch_archive_child(struct fetch_archive *a,
                                      const struct fetch_archive_entry *dir, uint64_t i, char *name,
                                      size_t cap, struct fetch_archive_entry *ret, fetch_error *err)
{
    return a->format->child(a, dir, i, name, cap, ret, err);
}

static inline int fetch_archive_readlink(struct fetch_archive *a,
                                         const struct fetch_archive_entry *e, char *buf, size_t cap,
                                         fetch_error *err)
{
    return a->format->readlink(a, e, buf, cap, err);
}

static inline long fetch_archive_read(struct fetch_archive *a, const struct fetch_archive_entry *e,
                                      uint64_t off, void *buf, size_t len, fetch_error *err)
{
    return a->format->read(a, e, off, buf, len, err);
}

static inline int fetch_archive_xattrs(struct fetch_archive *a, const struct fetch_archive_entry *e,
                                       fetch_xattr_fn cb, void *arg, fetch_error *err)
{
    return a->format->xattrs(a, e, cb, arg, err);
}
