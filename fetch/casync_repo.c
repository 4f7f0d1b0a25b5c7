/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A casync/desync repository as a repository (fetch/repo.h): each blob index
 * at its store path without the ".caibx" suffix (releases/os.img.caibx ->
 * releases/os.img), its chunks in default.castr/ or a chunk store of its own;
 * each directory archive index as the directory tree of its catar archive
 * (backup/etc.caidx -> backup/etc/).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "casync.h"
#include "catar.h"
#include "repo.h"

#define SUFFIX_LEN 6 /* ".caibx", ".caidx" */

static void casync_free_priv(void *p)
{
    fetch_casync_catalog_free(p);
}

static struct fetch_casync_catalog *cat_of(const struct fetch_repo *repo)
{
    return repo->priv;
}

/* The mount path of an index: its path without ".caibx" or ".caidx". */
static int name_len(const struct fetch_casync_index *x)
{
    return (int)(strlen(x->path) - SUFFIX_LEN);
}

/*
 * What a load that found no index means, and the warnings of the walk: a
 * datastore below the root is named ("did you mean LOCATION/ds?").
 */
static int check_catalog(struct fetch_repo *repo, const struct fetch_casync_catalog *c,
                         fetch_error *err)
{
    const char *location = repo->store->location;
    size_t len = strlen(location);
    bool ds = c->datastore != NULL;
    /* a mount of a datastore's parent would warn about, and hide, nothing but it */
    if (c->count == 0 && ds)
        return fetch_error_set(err, -EMEDIUMTYPE,
                               "not a datastore or casync repository; did you mean %s%s%s? (a "
                               "Proxmox Backup Server datastore%s)",
                               location, len && location[len - 1] == '/' ? "" : "/", c->datastore,
                               c->datastore_count > 1 ? ", the first of several below it" : "");
    for (size_t i = 0; i < c->warning_count; i++) {
        if (fetch_repo_add_note(repo, true, "%s", c->warnings[i]) < 0)
            return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    if (ds && fetch_repo_add_note(repo, true,
                                  "%s: %s%s is a Proxmox Backup Server datastore, not searched "
                                  "for casync indexes (mount it on its own)",
                                  location, c->datastore,
                                  c->datastore_count > 1 ? " (and others)" : "") < 0)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if (c->count == 0)
        return fetch_error_set(err, -EMEDIUMTYPE,
                               "neither a Proxmox Backup Server datastore (no .chunks directory) "
                               "nor a casync repository (no *.caibx or *.caidx index found)");
    return 0;
}

/* Why hidden index @x is not shown: another index takes its name, or the
 * name of one of its directories. */
static const char *hidden_why(const struct fetch_casync_index *x)
{
    static __thread char why[4200];
    size_t a = strlen(x->path), b = strlen(x->shadowed_by);
    bool same = a == b && a > 6 && !strncmp(x->path, x->shadowed_by, a - 6);
    snprintf(why, sizeof(why), "its %sname is taken by the index %s", same ? "" : "directory's ",
             x->shadowed_by);
    return why;
}

/* One entry per index that can be shown: an image per blob index, a
 * directory tree per archive index; notes for the others. */
static int add_entries(struct fetch_repo *repo, struct fetch_casync_catalog *c)
{
    size_t images = 0;
    int r = 0;
    for (size_t i = 0; i < c->count && r == 0; i++) {
        struct fetch_casync_index *x = &c->indexes[i];
        char path[FETCH_CASYNC_PATH_MAX];
        if (x->shadowed_by) {
            r = fetch_repo_add_note(repo, true, "%s: hidden: %s", x->path, hidden_why(x));
        } else if (x->archive) {
            /* read when first opened: the tree only needs the name */
            snprintf(path, sizeof(path), "%.*s", name_len(x), x->path);
            r = fetch_repo_add_entry(
                repo,
                &(struct fetch_entry){.path = path, .type = FETCH_ENTRY_ARCHIVE, .handle = x});
            images++;
        } else if (x->error) {
            r = fetch_repo_add_note(repo, true, "skipping %s",
                                    x->error_msg ? x->error_msg : strerror(-x->error));
        } else {
            snprintf(path, sizeof(path), "%.*s", name_len(x), x->path);
            /* an index read already (--snapshot) moves into the entry */
            r = fetch_repo_add_entry(
                repo, &(struct fetch_entry){
                          .path = path, .type = FETCH_ENTRY_IMAGE, .image = x->image, .handle = x});
            if (r == 0)
                x->image = NULL;
            images++;
        }
    }
    if (r == 0 && images == 0)
        r = fetch_repo_add_note(repo, true,
                                "%s: no index (*.caibx, *.caidx) could be mounted; the mount "
                                "will be empty",
                                repo->store->location);
    return r;
}

static int casync_load(struct fetch_repo *repo, const char *const *paths, size_t n, bool for_mount,
                       fetch_error *err)
{
    struct fetch_casync_catalog *c = NULL;
    int r;

    /* the paths only: each index is read when it is first opened or listed */
    r = n ? fetch_casync_catalog_load_paths(repo->store, paths, n, &c, err)
          : fetch_casync_catalog_load(repo->store, false, &c, err);
    if (r < 0)
        return r;
    repo->priv = c;
    repo->items = c->count;
    if ((r = check_catalog(repo, c, err)) < 0)
        return r;
    if (for_mount && add_entries(repo, c) < 0)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int casync_open_image(const struct fetch_repo *repo, struct fetch_store *s,
                             const struct fetch_entry *e, struct fetch_image **ret,
                             fetch_error *err)
{
    const struct fetch_casync_index *x = e->handle;
    struct fetch_casync_index loaded = {0};
    int r;
    (void)repo;
    r = fetch_casync_open_index(s, x->path, &loaded, err);
    *ret = loaded.image;
    return r;
}

static int casync_open_archive(const struct fetch_repo *repo, struct fetch_store *s,
                               const struct fetch_entry *e, struct fetch_archive_src *ret,
                               fetch_error *err)
{
    const struct fetch_casync_index *x = e->handle;
    struct fetch_casync_index loaded = {0};
    int r;
    (void)repo;
    if ((r = fetch_casync_open_index(s, x->path, &loaded, err)) < 0)
        return r;
    *ret = (struct fetch_archive_src){.format = &fetch_catar_format, .meta = loaded.image};
    return 0;
}

static bool casync_claims(const char *path)
{
    return fetch_casync_index_kind(path) != 0;
}

/* --- lazyimg ls ------------------------------------------------------------ */

static const char *digest_name(enum fetch_digest_algo a)
{
    return a == FETCH_DIGEST_SHA512_256 ? "sha512-256" : "sha256";
}

/*
 * Reads and checks blob index @x (an entry of a catalog loaded without its
 * images), keeping its error; the image is dropped again by index_unload
 * once listed, so a listing holds one image at a time, not all of them.
 * Returns -ENOMEM only.
 */
static int index_load(struct fetch_store *store, struct fetch_casync_index *x)
{
    fetch_error err = {""};
    x->error = fetch_casync_open_index(store, x->path, x, &err);
    if (x->error == -ENOMEM)
        return -ENOMEM;
    if (x->error < 0 && !(x->error_msg = strdup(err.msg)))
        return -ENOMEM;
    return 0;
}

static void index_unload(struct fetch_casync_index *x)
{
    fetch_image_free(x->image);
    x->image = NULL;
    free(x->error_msg);
    x->error_msg = NULL;
}

static const struct fetch_list_column casync_columns[] = {
    {"IMAGE", 40, false, 0},  {"SIZE", 9, true, 1}, {"DATA", 9, true, 1},
    {"CHUNKS", 8, true, 1},   {"AVG", 9, true, 1},  {"DIGEST", 10, false, 1},
    {"MOUNTED", 0, false, 1},
};

static int casync_list_rows(struct fetch_repo *repo, fetch_list_row_fn row, void *arg)
{
    struct fetch_casync_catalog *c = cat_of(repo);
    for (size_t i = 0; i < c->count; i++) {
        struct fetch_casync_index *x = &c->indexes[i];
        char size[32], data[32], count[32], avg[32], name[1024], state[1200];
        const char *cells[7] = {name, size, data, count, avg, "-", state};
        int r;
        if (index_load(repo->store, x) < 0)
            return -ENOMEM;
        snprintf(name, sizeof(name), "%.*s", name_len(x), x->path);
        if (!x->image) {
            snprintf(size, sizeof(size), "-");
            snprintf(data, sizeof(data), "-");
            snprintf(count, sizeof(count), "-");
            snprintf(avg, sizeof(avg), "-");
            snprintf(state, sizeof(state), "invalid: %s",
                     x->error_msg ? x->error_msg : strerror(-x->error));
        } else {
            fetch_format_size(x->image->size, size, sizeof(size));
            fetch_format_size(x->image->data_bytes, data, sizeof(data));
            snprintf(count, sizeof(count), "%zu", x->image->count);
            fetch_format_size(x->chunk_avg, avg, sizeof(avg));
            cells[5] = digest_name(x->algo);
            if (x->shadowed_by)
                snprintf(state, sizeof(state), "no (hidden: %s)", hidden_why(x));
            else
                snprintf(state, sizeof(state), "%s",
                         x->archive ? "yes (a directory: its catar archive)" : "yes");
        }
        r = row(arg, cells);
        index_unload(x);
        if (r < 0)
            return r;
    }
    return 0;
}

static json_object *casync_list_json(struct fetch_repo *repo)
{
    struct fetch_casync_catalog *c = cat_of(repo);
    json_object *arr = json_object_new_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < c->count; i++) {
        struct fetch_casync_index *x = &c->indexes[i];
        json_object *o;
        if (index_load(repo->store, x) < 0) {
            json_object_put(arr);
            return NULL;
        }
        o = json_object_new_object();
        json_object_object_add(o, "index", json_object_new_string(x->path));
        json_object_object_add(o, "kind", json_object_new_string(x->archive ? "archive" : "blob"));
        json_object_object_add(o, "mountable", json_object_new_boolean(x->image != NULL));
        json_object_object_add(o, "mounted",
                               json_object_new_boolean(x->image != NULL && !x->shadowed_by));
        if (x->shadowed_by)
            json_object_object_add(o, "hidden-by", json_object_new_string(x->shadowed_by));
        if (x->image) {
            json_object_object_add(o, "name", json_object_new_string_len(x->path, name_len(x)));
            json_object_object_add(o, "size", json_object_new_int64((int64_t)x->image->size));
            json_object_object_add(o, "data-bytes",
                                   json_object_new_int64((int64_t)x->image->data_bytes));
            json_object_object_add(o, "chunks", json_object_new_int64((int64_t)x->image->count));
            json_object_object_add(o, "null-chunks",
                                   json_object_new_int64((int64_t)x->image->zero_count));
            json_object_object_add(o, "chunk-size-min",
                                   json_object_new_int64((int64_t)x->chunk_min));
            json_object_object_add(o, "chunk-size-avg",
                                   json_object_new_int64((int64_t)x->chunk_avg));
            json_object_object_add(o, "chunk-size-max",
                                   json_object_new_int64((int64_t)x->chunk_max));
            json_object_object_add(o, "digest", json_object_new_string(digest_name(x->algo)));
        } else if (x->error) {
            json_object_object_add(
                o, "error",
                json_object_new_string(x->error_msg ? x->error_msg : strerror(-x->error)));
        }
        index_unload(x);
        json_object_array_add(arr, o);
    }
    return arr;
}

const struct fetch_repo_format fetch_casync_repo_format = {
    .name = "casync",
    .label = "a casync repository",
    .items = "indexes",
    .snapshot_hint = "PATH.caibx or PATH.caidx",
    .chunk_dir = FETCH_CASYNC_DEFAULT_STORE,
    .probe = NULL, /* anything: the load says whether there is an index */
    .claims = casync_claims,
    .load = casync_load,
    .free_priv = casync_free_priv,
    .open_image = casync_open_image,
    .read_blob = NULL,
    .open_archive = casync_open_archive,
    .columns = casync_columns,
    .ncolumns = sizeof(casync_columns) / sizeof(casync_columns[0]),
    .empty_list = NULL,
    .list_rows = casync_list_rows,
    .list_json = casync_list_json,
};
