/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * casync/desync repository reader over a fetch_store: the catalog of index
 * files (*.caibx blob indexes, *.caidx archive indexes) at any depth below
 * the store root, and the images of the blob indexes (casync.md §2-§4).
 * Chunk objects themselves are in fetch/cacnk.h. A catalog is immutable once
 * loaded.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image.h"
#include "store.h"

/* casync's default chunk store, beside the indexes */
#define FETCH_CASYNC_DEFAULT_STORE "default.castr"
/* directories below the root the catalog walk descends into, at most */
#define FETCH_CASYNC_MAX_DEPTH 16
/* an index's path below the root, its NUL included, at most (it becomes a
 * path of the mount: longer ones are skipped with a warning) */
#define FETCH_CASYNC_PATH_MAX 4096
#define FETCH_CASYNC_MAX_DIRS 4096
#define FETCH_CASYNC_MAX_INDEXES 65536

struct fetch_casync_index {
    char *path;   /* store-relative, every component validated: "releases/os.img.caibx" */
    bool archive; /* a .caidx (directory archive): its catar archive is shown as a tree */
    /* blob indexes that loaded: */
    struct fetch_image *image;
    uint64_t chunk_min, chunk_avg, chunk_max;
    enum fetch_digest_algo algo;
    /* blob indexes that did not: the negative errno and why */
    int error;
    char *error_msg;
    /*
     * The path of another index whose mount name is this one's ("x.caibx"
     * beside "x.caidx": the file x is shown) or one of this path's
     * directories ("x.caibx" or "x.caidx" beside "x/y.caibx": x takes the
     * name, so x/y is not mounted); NULL when nothing hides it. Set by path
     * alone, whether or not either index is valid, as the mount does.
     */
    const char *shadowed_by;
};

struct fetch_casync_catalog {
    size_t count;
    struct fetch_casync_index *indexes; /* sorted by path */
    size_t warning_count;
    char **warnings; /* skipped names, one line each */
    /*
     * Directories below the root that are Proxmox Backup Server datastores
     * (they hold .chunks): not searched for indexes. The first one's store
     * path (NULL if none), and how many.
     */
    char *datastore;
    size_t datastore_count;
};

/* Kind of an index file by its suffix: 1 blob (.caibx), 2 archive (.caidx), else 0. */
int fetch_casync_index_kind(const char *name);

/*
 * Walks the store for index files (directories named *.castr or with a
 * 4-hex-digit name, i.e. chunk stores, datastores, and names starting with
 * '.' are not entered; entries with unsafe names are skipped and told in one
 * warning). With @load, every blob index is read and checked too, and one
 * that fails is kept with its error (callers decide whether to show or skip
 * it); without, only paths are collected (fetch_casync_open_index() loads
 * them later). Fails only when the root cannot be listed.
 */
int fetch_casync_catalog_load(struct fetch_store *s, bool load, struct fetch_casync_catalog **ret,
                              fetch_error *err);

/*
 * A catalog of just the indexes at @paths (store-relative, ".caibx" added
 * when no index suffix is given), without listing anything. The first one
 * that is malformed, missing or unreadable fails the call with its error.
 */
int fetch_casync_catalog_load_paths(struct fetch_store *s, const char *const *paths, size_t n,
                                    struct fetch_casync_catalog **ret, fetch_error *err);
void fetch_casync_catalog_free(struct fetch_casync_catalog *c);

/*
 * Reads and validates index @path and builds its image. -EBADMSG (malformed),
 * -EFBIG (larger than FETCH_CAIBX_FILE_MAX), -ENOENT, store errors.
 */
int fetch_casync_open_index(struct fetch_store *s, const char *path, struct fetch_casync_index *ret,
                            fetch_error *err);
