/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Repository formats: what a store holds (a Proxmox Backup Server datastore,
 * a casync repository, …), reduced to what the mount and `lazyimg ls` need:
 *
 *  - probing: whether a store holds this format;
 *  - a catalog of entries, each a path below the mountpoint with a type
 *    (directory, image, small file, symlink), a time and a size, in the
 *    order the format wants them shown; what was skipped and why, as
 *    messages; what an empty result means;
 *  - opening an entry: an image (fetch/image.h, its chunks named by
 *    fetch/chunk.h) or the bytes of a small file;
 *  - a listing for `lazyimg ls`: table rows in the format's own columns, and
 *    a JSON array.
 *
 * Each format is one struct fetch_repo_format in fetch/<format>_repo.c,
 * listed in the table of fetch/repo.c; fs/ knows repositories only through
 * this header. A repository is immutable once loaded (entries may be read
 * from any thread); opening entries is thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "archive.h"
#include "blob.h"
#include "error.h"
#include "image.h"
#include "store.h"

enum fetch_entry_type {
    FETCH_ENTRY_DIR,     /* a directory with a time of its own (a snapshot) */
    FETCH_ENTRY_IMAGE,   /* a lazy image: fetch_repo_open_image() */
    FETCH_ENTRY_BLOB,    /* a small file, read whole: fetch_repo_read_blob() */
    FETCH_ENTRY_SYMLINK, /* @target */
    FETCH_ENTRY_ARCHIVE, /* a file archive shown as a directory: fetch_repo_open_archive() */
};

struct fetch_entry {
    char *path; /* below the mountpoint: '/'-separated, every component validated */
    enum fetch_entry_type type;
    int64_t mtime; /* seconds since the epoch; 0: the mount's time */
    /* the size shown while the entry is not opened; 0 when unknown (images:
     * stat opens them) */
    uint64_t size;
    char *target; /* symlinks */
    /* images: the name the same image has across snapshots (PBS:
     * "[ns/NS/]vm/100/drive-scsi0.img", the path without the time), which
     * keys its read profile (fs/profile.h); NULL: @path */
    char *group;
    /* -errno that opening gets without trying (-ENOKEY: encrypted, no key;
     * -EKEYREJECTED: encrypted with another key; -EBADMSG: its snapshot's
     * signature does not verify), with @refuse_msg for the log (static, or
     * the repository's); 0 */
    int refuse;
    const char *refuse_msg;
    /* an image the load read already (named with --snapshot): taken by
     * whoever shows the entry (set to NULL), else freed with the repo */
    struct fetch_image *image;
    const void *handle; /* the format's own: which archive this is */
};

/* A message about the catalog, for the log (or stderr): what was skipped. */
struct fetch_repo_note {
    bool warning; /* else information */
    char *text;
};

struct fetch_repo_format;

struct fetch_pbs_key;

struct fetch_repo {
    const struct fetch_repo_format *format;
    struct fetch_store *store; /* borrowed: the store the catalog came from */
    /* borrowed: the key encrypted archives are read with (--keyfile), or
     * NULL; the chunk layer needs the same key (fetch_chunk_ctx) */
    const struct fetch_pbs_key *key;
    size_t count, cap;
    struct fetch_entry *entries;
    size_t note_count;
    struct fetch_repo_note *notes;
    size_t items; /* snapshots, indexes, …: what the mount says it shows */
    void *priv;   /* the format's catalog */
};

/* A column of the `ls` table. */
struct fetch_list_column {
    const char *header;
    int width;  /* 0: the last column, unpadded */
    bool right; /* right-aligned */
    int gap;    /* spaces before it (the first column: none) */
};

/* Called by a listing for each table row: as many cells as columns. */
typedef int (*fetch_list_row_fn)(void *arg, const char *const *cells);

struct fetch_repo_format {
    const char *name;  /* "pbs", "casync": for options and messages */
    const char *label; /* "a Proxmox Backup Server datastore" */
    const char *items; /* "snapshots", "indexes" */
    /* what --snapshot takes, for help and errors: "[ns/NS/]TYPE/ID/TIME" */
    const char *snapshot_hint;
    /*
     * Where chunk objects live below the store's root when they are not at
     * it ("default.castr"), for formats whose chunks may also come from a
     * store of their own (--chunk-store); NULL when they cannot.
     */
    const char *chunk_dir;

    /* 0 if @s holds this format, -EMEDIUMTYPE (with why) if not, or -errno. */
    int (*probe)(struct fetch_store *s, fetch_error *err);
    /* Whether --snapshot @path names one of this format's items, by its
     * shape alone ("x.caibx"); NULL: the format takes the paths no other
     * format claims (one format may). */
    bool (*claims)(const char *path);
    /*
     * Loads the catalog of @s into @repo (format, store set; the rest zero):
     * of everything when @n is 0, else of just @paths, without listing. With
     * @for_mount, entries are made; else only what fetch_repo_list needs.
     * -errno with @err on failure (-EMEDIUMTYPE: nothing of this format
     * there, said in @err); partial results are freed by free_priv.
     */
    int (*load)(struct fetch_repo *repo, const char *const *paths, size_t n, bool for_mount,
                fetch_error *err);
    void (*free_priv)(void *priv);
    /* Builds the image of @e, from store @s (the repo's or a mirror). */
    int (*open_image)(const struct fetch_repo *repo, struct fetch_store *s,
                      const struct fetch_entry *e, struct fetch_image **ret, fetch_error *err);
    /* Reads and decodes the bytes of small file @e from store @s. */
    int (*read_blob)(const struct fetch_repo *repo, struct fetch_store *s,
                     const struct fetch_entry *e, fetch_data *ret, fetch_error *err);
    /* The images (and decoder) of file archive @e, from store @s; NULL when
     * the format has no archives. */
    int (*open_archive)(const struct fetch_repo *repo, struct fetch_store *s,
                        const struct fetch_entry *e, struct fetch_archive_src *ret,
                        fetch_error *err);
    /*
     * The image of a file catalog (fetch/pcat.h) that lists archive @e's
     * files without their contents, and the name of @e's directory in it
     * (into @name, @name_len bytes); -ENOENT when there is none. NULL: the
     * format has no catalogs.
     */
    int (*open_catalog)(const struct fetch_repo *repo, struct fetch_store *s,
                        const struct fetch_entry *e, struct fetch_image **ret, char *name,
                        size_t name_len, fetch_error *err);

    /* `lazyimg ls`: the table's columns, and the line shown when it is empty
     * (NULL: none) */
    const struct fetch_list_column *columns;
    size_t ncolumns;
    const char *empty_list;
    /* Calls @row for each row of the table (strings from the store are raw:
     * the caller escapes them for the terminal). <0 stops the listing. */
    int (*list_rows)(struct fetch_repo *repo, fetch_list_row_fn row, void *arg);
    /* The JSON array `lazyimg ls --json` prints; NULL when out of memory. */
    json_object *(*list_json)(struct fetch_repo *repo);
};

/* The formats, in the order they are probed. */
const struct fetch_repo_format *const *fetch_repo_formats(size_t *ret_count);
/* The format called @name, or NULL. */
const struct fetch_repo_format *fetch_repo_format_by_name(const char *name);
/* The format whose items --snapshot @path names (see claims). */
const struct fetch_repo_format *fetch_repo_format_for_path(const char *path);
/* The format whose chunks may come from a store of their own (--chunk-store). */
const struct fetch_repo_format *fetch_repo_format_with_chunk_dir(void);

/*
 * What store @s holds: the first format whose probe does not say
 * -EMEDIUMTYPE. A store no format recognises belongs to the last one (whose
 * load says what is missing). -errno with @err when a probe fails otherwise.
 */
int fetch_repo_probe(struct fetch_store *s, const struct fetch_repo_format **ret, fetch_error *err);

/* Loads the catalog of @s as format @f (see load above), reading encrypted
 * archives with @key (borrowed for the repository's life; NULL: none). */
int fetch_repo_load(const struct fetch_repo_format *f, struct fetch_store *s,
                    const struct fetch_pbs_key *key, const char *const *paths, size_t n,
                    bool for_mount, struct fetch_repo **ret, fetch_error *err);
void fetch_repo_free(struct fetch_repo *repo);

int fetch_repo_open_image(const struct fetch_repo *repo, struct fetch_store *s,
                          const struct fetch_entry *e, struct fetch_image **ret, fetch_error *err);
int fetch_repo_read_blob(const struct fetch_repo *repo, struct fetch_store *s,
                         const struct fetch_entry *e, fetch_data *ret, fetch_error *err);
int fetch_repo_open_archive(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_archive_src *ret,
                            fetch_error *err);
/* See open_catalog above: -ENOENT also for formats without catalogs. */
int fetch_repo_open_catalog(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_image **ret, char *name,
                            size_t name_len, fetch_error *err);

/* For the formats: appends an entry (@path copied) or a note. -ENOMEM. */
int fetch_repo_add_entry(struct fetch_repo *repo, const struct fetch_entry *e);
int fetch_repo_add_note(struct fetch_repo *repo, bool warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "1.5G", "512K", "17B" into @buf: sizes in listings and messages. */
void fetch_format_size(uint64_t v, char *buf, size_t len);
