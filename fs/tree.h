/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The namespace shown by the mount: the entries of a repository (fetch/repo.h)
 * as directories, images, small files and symlinks, with the directories
 * their paths need. Built once and immutable afterwards (lookups need no
 * lock). Images and small files are opened on first use, under the node's
 * own mutex, and kept for the life of the tree.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fetch/blob.h"
#include "fetch/error.h"
#include "fetch/image.h"
#include "fetch/mirrors.h"
#include "fetch/repo.h"
#include "fetch/store.h"

#define FS_ROOT_INO 1
/* st_blksize: the size cp and friends use for their buffers; matches max_read */
#define FS_BLKSIZE (1024 * 1024)

enum fs_node_kind {
    FS_NODE_DIR,
    FS_NODE_SYMLINK,
    FS_NODE_IMAGE,   /* a lazy image */
    FS_NODE_BLOB,    /* a small file, read whole and shown decoded */
    FS_NODE_ARCHIVE, /* a file archive, shown as a directory (fs/archive.h) */
    FS_NODE_PARTS,   /* <image>.parts: its partitions and volumes (fs/parts.h) */
};

struct fs_archive;
struct fs_parts;

struct fs_prof_img;

struct fs_node {
    uint64_t ino;
    enum fs_node_kind kind;
    char *name;
    struct fs_node *parent;
    int64_t mtime;

    /* directories: children sorted by name */
    struct fs_node **children;
    size_t child_count, child_cap;

    /* symlinks */
    const char *target;

    /* images, small files and archives: the repository's entry (in the tree's repo) */
    const struct fetch_entry *entry;
    pthread_mutex_t lock; /* serialises loading of the fields below */
    struct fetch_image *image;
    fetch_data blob;
    struct fetch_archive_src archive_src; /* archives: their streams' images */
    /* ... and their decoder (fs/archive.c): set once, under @lock; read
     * without it by every request inside the archive */
    struct fs_archive *_Atomic archive;
    int archive_failed; /* the decoder refused it: -EIO (logged once) */
    /* .parts nodes: the image node, and its directory (set once, under @lock) */
    struct fs_node *of;
    struct fs_parts *_Atomic parts;
    /* images: its read profile (fs/profile.h), set at the first open */
    struct fs_prof_img *_Atomic profile;
    /* set (release) once image/blob are complete; test with fs_node_loaded() */
    atomic_bool loaded;
    /* the last load's failure, and when it ended (under @lock) */
    int load_err;
    char *load_msg;
    uint64_t load_failed_ms;
};

struct fs_tree {
    struct fetch_store *store;     /* the one the catalog came from */
    struct fetch_mirrors *mirrors; /* all stores (borrowed), or NULL: @store alone */
    struct fetch_repo *repo;       /* what the tree shows (owned) */
    size_t image_count;            /* images shown */
    struct fs_node **by_ino;       /* by_ino[ino - 1] */
    size_t count, cap;
    int64_t mount_time;
    uid_t uid;
    gid_t gid;
    /* the entries of the file archives that lookups have reached (fs/archive.c) */
    struct fs_archive_inodes *archive_inodes;
};

/*
 * Builds the tree of @repo's entries and takes ownership of @repo (freed on
 * failure too); its store is the one opens use first. An entry whose name,
 * or one of whose directories' names, is taken by an earlier entry is left
 * out with a warning; images the repository read already move into their
 * nodes. With @parts, each image has its <image>.parts directory beside it
 * (fs/parts.h). -ENOMEM.
 */
int fs_tree_new(struct fetch_repo *repo, bool parts, struct fs_tree **ret);
void fs_tree_free(struct fs_tree *t);
/* The stores (borrowed) index and blob loads use instead of the catalog's
 * alone: the active one first, then the others (fetch/mirrors.h). */
void fs_tree_set_mirrors(struct fs_tree *t, struct fetch_mirrors *m);

/* Node by inode number, or NULL. */
struct fs_node *fs_tree_get(struct fs_tree *t, uint64_t ino);
/* Child of a directory by name, or NULL. */
struct fs_node *fs_tree_lookup(struct fs_node *dir, const char *name);

/*
 * Loads the index (images) or decoded bytes (small files) of @n once, from
 * the tree's mirrors (or the repository's store); later calls return at once.
 * Thread-safe. A failure is the answer for FS_LOAD_FAILED_MS after it,
 * without loading again: callers that waited for it (the kernel queues
 * lookups of one name) do not wait for a stalled store once each. The entry's refusal (-ENOKEY for
 * an encrypted archive), -EBADMSG for malformed ones, -ENOENT/-EIO from the store; @err says why.
 */
int fs_node_load(struct fs_tree *t, struct fs_node *n, fetch_error *err);
#define FS_LOAD_FAILED_MS 2000

/* Whether @n's image or blob is loaded and may be read without the lock. */
static inline bool fs_node_loaded(const struct fs_node *n)
{
    return atomic_load_explicit(&n->loaded, memory_order_acquire);
}

/* Attributes of @n. Images and small files must have been loaded, else the
 * size the repository gave (0 when it did not know) is shown. */
void fs_node_stat(const struct fs_tree *t, const struct fs_node *n, struct stat *st);

/* "vm/100/2025-…Z/drive-scsi0.img": the node's path below the mountpoint, for messages. */
int fs_node_path(const struct fs_node *n, char *buf, size_t len);
