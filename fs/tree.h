/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The namespace shown by the mount. For a PBS datastore:
 *   [ns/<n>/…]<type>/<id>/<time>/<archive>   and   <type>/<id>/latest -> <time>
 * For a casync repository, each blob index at its store path without the
 * ".caibx" suffix: releases/os.img.caibx -> releases/os.img.
 * Built once from a catalog and immutable afterwards (lookups need no lock).
 * Image indexes and blobs are loaded on first use, under the node's own
 * mutex, and kept for the life of the tree.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fetch/blob.h"
#include "fetch/casync.h"
#include "fetch/error.h"
#include "fetch/image.h"
#include "fetch/pbs.h"
#include "fetch/store.h"

#define FS_ROOT_INO 1

enum fs_node_kind {
    FS_NODE_DIR,
    FS_NODE_SYMLINK,
    FS_NODE_IMAGE, /* a .fidx or .caibx, shown without the suffix */
    FS_NODE_BLOB,  /* a small non-encrypted .blob, shown decoded without the suffix */
};

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
    char *target;

    /* images and blobs of a datastore */
    const struct fetch_pbs_snapshot *snap;
    const struct fetch_manifest_file *file;
    /* casync images: the index (in the tree's catalog), loaded like the above */
    const struct fetch_casync_index *index;
    pthread_mutex_t lock;  /* serialises loading of the two fields below */
    struct fetch_image *image;
    fetch_data blob;
    /* set (release) once image/blob are complete; test with fs_node_loaded() */
    atomic_bool loaded;
};

struct fs_tree {
    struct fetch_store *store;              /* the one the catalog came from */
    struct fetch_store *const *mirrors;     /* all stores, tried when @store fails */
    size_t nmirrors;
    struct fetch_pbs_catalog *catalog;      /* PBS, or NULL */
    struct fetch_casync_catalog *casync;    /* casync, or NULL */
    size_t image_count;                     /* images shown */
    struct fs_node **by_ino; /* by_ino[ino - 1] */
    size_t count, cap;
    int64_t mount_time;
    uid_t uid;
    gid_t gid;
};

/* Builds the tree; takes ownership of @catalog (not of @store). */
int fs_tree_new(struct fetch_store *store, struct fetch_pbs_catalog *catalog,
                struct fs_tree **ret);
/*
 * Builds the tree of a casync repository; takes ownership of @catalog (not
 * of @store). Indexes the catalog loaded already (--snapshot) move into their
 * nodes; the others are read on first use. Indexes that failed to load and
 * directory archives are left out with a message; so is an index whose
 * visible name is taken.
 */
int fs_tree_new_casync(struct fetch_store *store, struct fetch_casync_catalog *catalog,
                       struct fs_tree **ret);
void fs_tree_free(struct fs_tree *t);
/* Stores (borrowed) that index and blob loads fall back to, in order. */
void fs_tree_set_mirrors(struct fs_tree *t, struct fetch_store *const *stores, size_t n);

/* Node by inode number, or NULL. */
struct fs_node *fs_tree_get(struct fs_tree *t, uint64_t ino);
/* Child of a directory by name, or NULL. */
struct fs_node *fs_tree_lookup(struct fs_node *dir, const char *name);

/*
 * Loads the index (images) or decoded bytes (blobs) of @n once; later calls
 * return at once. Thread-safe. -ENOKEY for encrypted archives, -EBADMSG for
 * malformed ones, -ENOENT/-EIO from the store; @err says why.
 */
int fs_node_load(struct fs_tree *t, struct fs_node *n, fetch_error *err);

/* Whether @n's image or blob is loaded and may be read without the lock. */
static inline bool fs_node_loaded(const struct fs_node *n)
{
    return atomic_load_explicit(&n->loaded, memory_order_acquire);
}

/* Attributes of @n. Images and blobs must have been loaded, else the
 * manifest's size is shown. */
void fs_node_stat(const struct fs_tree *t, const struct fs_node *n, struct stat *st);

/* "vm/100/2025-…Z/drive-scsi0.img": the node's path below the mountpoint, for messages. */
int fs_node_path(const struct fs_node *n, char *buf, size_t len);
