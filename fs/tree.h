/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The namespace shown by the mount: the entries of a repository (fetch/repo.h)
 * as directories, images, small files and symlinks, with the directories
 * their paths need. Built once and immutable afterwards (lookups need no
 * lock). Small files and archives are opened on first use, under the node's
 * own mutex, and kept for the life of the tree.
 *
 * Image indexes (struct fetch_image, 48 bytes per chunk) are counted
 * references instead: fs_image_get() loads one (under the node's mutex) or
 * takes the one in memory, and every user that keeps the pointer beyond a
 * call holds a reference until fs_image_put() (open files, reads waiting for
 * chunks, hydration jobs, read profiles, a .parts directory being read, a
 * status report). What stat needs (size, data bytes) stays on the node once
 * known, so attributes never need the index again. An index nobody uses is
 * kept among the unused ones, the least recently used freed beyond
 * fs_tree_set_index_keep()'s bound (FS_INDEX_KEEP by default); the next
 * fs_image_get() loads it again through the same path.
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
    /* images: the index while it is in memory, and the references to it
     * (fs_image_get). Set and cleared, and its references raised from 0,
     * under the tree's img_lock only; never NULL while image_refs > 0. Read
     * it through fs_image_get/fs_image_peek, not directly. */
    struct fetch_image *image;
    atomic_uint image_refs;
    /* images: in the tree's list of unused indexes (img_lock) */
    bool image_idle;
    struct fs_node *idle_prev, *idle_next;
    uint64_t image_bytes; /* what the index takes in memory (img_lock) */
    /* images: what stat shows, set once with @loaded */
    uint64_t size, data_bytes;
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
    /* set (release) once the blob or archive is complete, or the image's
     * size and data_bytes are known; test with fs_node_loaded() */
    atomic_bool loaded;
    /* the last load's failure, and when it ended (under @lock) */
    int load_err;
    char *load_msg;
    uint64_t load_failed_ms;
};

/* Image indexes in memory (status --json "indexes"). */
struct fs_index_stats {
    size_t loaded;         /* indexes in memory */
    uint64_t loaded_bytes; /* ... and their bytes */
    size_t unused;         /* of which nobody holds (kept for a later use) */
    uint64_t unused_bytes; /* ... and their bytes */
    uint64_t keep_bytes;   /* the bound of unused_bytes */
    uint64_t loads;        /* indexes loaded since the mount (reloads included) */
    uint64_t evictions;    /* unused ones freed beyond the bound */
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
    /* image indexes in memory (see above): the nodes' image, image_refs from
     * 0, image_idle and the list of unused ones, and the counters */
    pthread_mutex_t img_lock;
    struct fs_node *idle_head, *idle_tail; /* unused indexes, most recently used first */
    struct fs_index_stats index;
};

/* The default bound of unused image indexes kept in memory (bytes). */
#define FS_INDEX_KEEP (64ull << 20)

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
 * Loads the decoded bytes (small files) or streams (archives) of @n once,
 * from the tree's mirrors (or the repository's store); later calls return at
 * once. For an image: its size and data bytes (loading the index, which
 * then counts as unused: use fs_image_get to read it). Thread-safe. A failure is the answer for
 * FS_LOAD_FAILED_MS after it, without loading again: callers that waited for it (the kernel queues
 * lookups of one name) do not wait for a stalled store once each. The entry's refusal (-ENOKEY for
 * an encrypted archive), -EBADMSG for malformed ones, -ENOENT/-EIO from the store; @err says why.
 */
int fs_node_load(struct fs_tree *t, struct fs_node *n, fetch_error *err);
#define FS_LOAD_FAILED_MS 2000

/* Whether @n's blob or archive is loaded and may be read without the lock;
 * for an image, whether its size and data_bytes are known (its index may
 * have been let go since: fs_image_get). */
static inline bool fs_node_loaded(const struct fs_node *n)
{
    return atomic_load_explicit(&n->loaded, memory_order_acquire);
}

/* Attributes of @n. Images and small files must have been loaded, else the
 * size the repository gave (0 when it did not know) is shown. Never needs an
 * image's index. */
void fs_node_stat(const struct fs_tree *t, const struct fs_node *n, struct stat *st);

/* "vm/100/2025-…Z/drive-scsi0.img": the node's path below the mountpoint, for messages. */
int fs_node_path(const struct fs_node *n, char *buf, size_t len);

/*
 * A reference to image node @n's index, loaded when it is not in memory
 * (as fs_node_load: mirrors, the failure answered for FS_LOAD_FAILED_MS),
 * into *@ret: valid, and immutable, until the matching fs_image_put().
 * Sets the node's size and data_bytes (and fs_node_loaded) on the first
 * load. 0, or fs_node_load's errors (-EINVAL: not an image). Thread-safe.
 * @t NULL: a node outside any tree whose image was set by hand (tests),
 * never loaded nor let go.
 */
int fs_image_get(struct fs_tree *t, struct fs_node *n, const struct fetch_image **ret,
                 fetch_error *err);
/* A reference to @n's index when it is in memory, else NULL; never loads,
 * and leaves the order in which unused indexes go untouched (reports). */
const struct fetch_image *fs_image_peek(struct fs_tree *t, struct fs_node *n);
/* One more reference to @n's index, for a caller that holds one already
 * (a read that goes on waiting after its request returns). No lock. */
void fs_image_ref(struct fs_node *n);
/* Drops a reference of fs_image_get/peek/ref. The last one makes the index
 * unused: kept while the unused ones fit in the tree's bound, else the least
 * recently used are freed. NULL-safe (@n; @t as for fs_image_get). */
void fs_image_put(struct fs_tree *t, struct fs_node *n);
/* Keeps at most @bytes of unused indexes (0: none), freeing the least
 * recently used beyond. */
void fs_tree_set_index_keep(struct fs_tree *t, uint64_t bytes);
/* The counters of the indexes in memory. */
void fs_tree_index_stats(struct fs_tree *t, struct fs_index_stats *ret);
