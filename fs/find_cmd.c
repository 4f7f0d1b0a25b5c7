/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `lazyimg find`: which snapshots hold a file. Walks the file archives of a
 * repository's snapshots through their metadata alone (fetch/archive.h over
 * fetch/store_stream.h, no mount, no cache): a split (v2) pxar archive's
 * metadata stream; its payload stream is never read. Prints each match and,
 * on stderr, what it fetched.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "json_out.h"
#include "cli.h"
#include "fetch/archive.h"
#include "fetch/pcat.h"
#include "fetch/posset.h"
#include "fetch/repo.h"
#include "fetch/store_stream.h"
#include "key_opts.h"
#include "log.h"
#include "remote_opts.h"

#define MAX_SNAPSHOT_ARGS 64
#define MAX_DEPTH 256

static const char find_usage[] =
    "Usage: lazyimg find [options] STORE PATTERN\n"
    "\n"
    "Finds files by name in the file archives of every snapshot of STORE (pxar\n"
    "archives of a datastore, .caidx archives of a casync repository), or of those\n"
    "named, and prints for each: snapshot (the directory holding the archive),\n"
    "path (below it in a mount), size and modification time (UTC). PATTERN is a shell\n"
    "glob (* ? [...]) matched against file names, or against the whole path\n"
    "inside the archive when it contains a '/'. Only metadata is read, never file\n"
    "contents: the .mpxar stream of a split archive, or the snapshot's file\n"
    "catalog (catalog.pcat1.didx) for a single-stream one (.pxar.didx; without a\n"
    "catalog, the archive itself is walked, which reads the chunks its metadata\n"
    "shares with file contents, and said so). The chunks fetched are counted on\n"
    "stderr.\n"
    "\n"
    "Options:\n"
    "      --snapshot PATH    only this snapshot ([ns/NS/]TYPE/ID/TIME) or group\n"
    "                         ([ns/NS/]TYPE/ID); may be repeated\n"
    "      --json             print a JSON array of matches instead of a "
    "table\n" FS_KEY_OPTIONS_HELP FS_REMOTE_OPTIONS_HELP "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 with matches, 1 without, 2 for usage errors, 3 when an archive\n"
    "could not be read (the others are searched all the same), 4 when the store or\n"
    "the key could not be read or a --snapshot names nothing in the store (nothing,\n"
    "or not all that was asked, was searched).\n";

struct search {
    const char *pattern;
    bool by_path;
    bool json;
    json_object *matches;
    size_t found, archives, walked_v1, failed;
    uint64_t chunks, bytes;
    /* the archive being searched */
    const struct fetch_archive_format *format;
    struct fetch_archive *a;
    const char *snapshot, *archive;
    char chunk_prefix[256];      /* where chunks live below the store's root */
    struct fetch_chunk_ctx cctx; /* that prefix, and the key */
    /* the archive's directories walked: an archive that lists one
     * directory at two places is refused, not walked twice */
    struct fetch_posset seen;
};

/* A payload stream that must not be read: find reads metadata only. */
static int no_payload(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    (void)ctx;
    (void)off;
    (void)buf;
    (void)len;
    return fetch_error_set(err, -EPERM, "find reads no file contents");
}

static const char *kind_name(enum fetch_archive_kind k)
{
    static const char *const names[] = {"dir", "file", "symlink", "device", "fifo", "socket"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* A match; @known false: size and time are not known (a catalog's hardlink
 * names its target, not its attributes), shown as "-" (JSON: null). */
static void print_match(struct search *s, const char *path, enum fetch_archive_kind kind,
                        uint64_t fsize, int64_t mtime, bool known)
{
    char when[32], size[24], shown[4096], snap[1024];
    struct tm tm;
    time_t t = (time_t)mtime;

    s->found++;
    if (!known)
        snprintf(when, sizeof(when), "-");
    else if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(when, sizeof(when), "%lld", (long long)mtime);
    if (known)
        snprintf(size, sizeof(size), "%llu", (unsigned long long)fsize);
    else
        snprintf(size, sizeof(size), "-");
    if (s->json) {
        json_object *o = json_object_new_object();
        char full[4400];
        snprintf(full, sizeof(full), "%s/%s", s->archive, path);
        json_object_object_add(o, "snapshot", json_object_new_string(s->snapshot));
        json_object_object_add(o, "path", json_object_new_string(full));
        json_object_object_add(o, "type", json_object_new_string(kind_name(kind)));
        json_object_object_add(o, "size", known ? json_object_new_uint64(fsize) : NULL);
        json_object_object_add(o, "mtime", known ? json_object_new_string(when) : NULL);
        json_object_array_add(s->matches, o);
        return;
    }
    fs_escape(s->snapshot, snap, sizeof(snap));
    fs_escape(path, shown, sizeof(shown));
    printf("%s  %s/%s  %s  %s\n", snap, s->archive, shown, size, when);
}

/* Walks directory @dir (at @path inside the archive). -errno on a read error. */
static int walk(struct search *s, const struct fetch_archive_entry *dir, char *path, size_t plen,
                int depth, fetch_error *err)
{
    char name[4096];
    int r;
    if (depth > MAX_DEPTH)
        return fetch_error_set(err, -ELOOP, "directories nested deeper than %d", MAX_DEPTH);
    if ((r = fetch_posset_add(&s->seen, dir->pos)) <= 0)
        return r < 0 ? fetch_error_set(err, r, "out of memory")
                     : fetch_error_set(err, -EBADMSG,
                                       "the archive lists the directory at %llu in two places",
                                       (unsigned long long)dir->pos);
    for (uint64_t i = 0; i < dir->goodbye_count; i++) {
        struct fetch_archive_entry c;
        size_t nl;
        r = s->format->child(s->a, dir, i, name, sizeof(name), &c, err);
        if (r < 0)
            return r;
        nl = strlen(name);
        if (plen + 1 + nl >= 4096)
            return fetch_error_set(err, -ENAMETOOLONG, "a path longer than 4095 bytes");
        if (plen)
            path[plen] = '/';
        memcpy(path + plen + (plen > 0), name, nl + 1);
        if (fnmatch(s->pattern, s->by_path ? path : name, s->by_path ? FNM_PATHNAME : 0) == 0)
            print_match(s, path, c.kind, c.size, c.mtime_sec, true);
        if (c.kind == FETCH_ARCHIVE_DIR &&
            (r = walk(s, &c, path, plen + (plen > 0) + nl, depth + 1, err)) < 0)
            return r;
        path[plen] = '\0';
    }
    return 0;
}

static int catalog_entry(const struct fetch_pcat_entry *e, void *arg)
{
    struct search *s = arg;
    if (fnmatch(s->pattern, s->by_path ? e->path : e->name, s->by_path ? FNM_PATHNAME : 0) == 0)
        print_match(s, e->path, e->kind, e->size, e->mtime, !e->hardlink);
    return 0;
}

/*
 * Searches archive @e through the file catalog of its snapshot: 1 when
 * searched (or failed, said), 0 when there is no catalog for it.
 */
static int search_catalog(struct search *s, struct fetch_repo *repo, struct fetch_store *store,
                          const struct fetch_entry *e)
{
    struct fetch_image *img = NULL;
    struct fetch_store_stream cat;
    fetch_error err = {""};
    char name[512];
    int r = fetch_repo_open_catalog(repo, store, e, &img, name, sizeof(name), &err);
    if (r == -ENOENT)
        return 0;
    if (r == 0) {
        fetch_store_stream_init(&cat, store, &s->cctx, img);
        r = fetch_pcat_walk(&cat.s, name, catalog_entry, s, &err);
        s->chunks += cat.chunks;
        s->bytes += cat.bytes;
        fetch_store_stream_release(&cat);
        fetch_image_free(img);
    }
    if (r < 0) {
        fs_err("%s: the catalog: %s", e->path,
               r == -ENOENT ? "the archive is not in it"
               : err.msg[0] ? err.msg
                            : strerror(-r));
        s->failed++;
    }
    return 1;
}

/* Searches archive entry @e of @repo. */
static void search_archive(struct search *s, struct fetch_repo *repo, struct fetch_store *store,
                           const struct fetch_entry *e)
{
    struct fetch_archive_src src = {0};
    struct fetch_store_stream meta;
    struct fetch_stream payload = {0, no_payload, NULL};
    struct fetch_archive_entry root;
    fetch_error err = {""};
    char path[4096] = "", snap[1024];
    const char *slash = strrchr(e->path, '/');
    int r;

    /* the directory that holds the archive: a snapshot, or "." */
    snprintf(snap, sizeof(snap), "%.*s", slash ? (int)(slash - e->path) : 1, slash ? e->path : ".");
    s->snapshot = snap;
    s->archive = slash ? slash + 1 : e->path;
    s->archives++;
    if (search_catalog(s, repo, store, e))
        return;
    if ((r = fetch_repo_open_archive(repo, store, e, &src, &err)) < 0) {
        fs_err("%s: %s", e->path, err.msg[0] ? err.msg : strerror(-r));
        s->failed++;
        return;
    }
    fetch_store_stream_init(&meta, store, &s->cctx, src.meta);
    if (src.payload)
        payload.size = src.payload->size;
    else
        s->walked_v1++;
    s->format = src.format;
    r = src.format->open(&meta.s, src.payload ? &payload : NULL, &s->a, &err);
    if (r == 0) {
        r = src.format->root(s->a, &root, &err);
        if (r == 0)
            r = walk(s, &root, path, 0, 0, &err);
        src.format->free(s->a);
        fetch_posset_clear(&s->seen);
    }
    if (r < 0) {
        fs_err("%s: %s", e->path, err.msg[0] ? err.msg : strerror(-r));
        s->failed++;
    }
    if (!src.payload)
        fs_info("%s: a single-stream archive without a catalog: walked, %llu chunks read (file "
                "contents share them)",
                e->path, (unsigned long long)meta.chunks);
    s->chunks += meta.chunks;
    s->bytes += meta.bytes;
    fetch_store_stream_release(&meta);
    fetch_archive_src_free(&src);
}

/* Whether @path is below (or is) one of the @n snapshot or group paths. */
/* find's exit status when the store, the key or a --snapshot is not there */
#define FIND_UNREADABLE 4

static bool selected(const char *path, char *const *sel, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(sel[i]);
        while (l && sel[i][l - 1] == '/')
            l--;
        if (!strncmp(path, sel[i], l) && path[l] == '/')
            return true;
    }
    return false;
}

int fs_cmd_find(int argc, char **argv)
{
    static const struct option opts[] = {
        {"snapshot", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        FS_REMOTE_LONG_OPTIONS,
        FS_KEY_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct fetch_remote_options ro = {0};
    struct fs_key_opts ko = {0};
    struct fetch_pbs_key *key = NULL;
    const struct fetch_repo_format *format = NULL;
    struct fetch_repo *repo = NULL;
    struct fetch_store *store = NULL;
    struct search s = {0};
    char *sel[MAX_SNAPSHOT_ARGS];
    size_t nsel = 0;
    bool missing = false;
    fetch_error err = {""};
    char size[32];
    int c, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled = fs_remote_opt_parse(c, optarg, &ro);
        if (!handled)
            handled = fs_key_opt_parse(c, optarg, &ko);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        switch (c) {
        case 's':
            if (nsel == MAX_SNAPSHOT_ARGS) {
                fs_err("find: at most %d --snapshot options", MAX_SNAPSHOT_ARGS);
                return 2;
            }
            sel[nsel++] = optarg;
            break;
        case 'j':
            s.json = true;
            break;
        case 'h':
            fputs(find_usage, stdout);
            return 0;
        default:
            fputs(find_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fs_err("find: expected STORE and PATTERN (see lazyimg find --help)");
        return 2;
    }
    s.pattern = argv[optind + 1];
    s.by_path = strchr(s.pattern, '/') != NULL;
    if (fs_key_load(&ko, &key) < 0)
        return FIND_UNREADABLE;
    if (!(store = fs_open_store(argv[optind], &ro, &format))) {
        fs_key_free(key);
        return FIND_UNREADABLE;
    }
    if ((r = fetch_repo_load(format, store, key, NULL, 0, true, &repo, &err)) < 0) {
        fs_err("%s: %s", store->location, err.msg);
        fetch_store_free(store);
        fs_key_free(key);
        return FIND_UNREADABLE;
    }
    for (size_t i = 0; i < nsel; i++) {
        size_t j = 0;
        while (j < repo->count && !selected(repo->entries[j].path, &sel[i], 1))
            j++;
        if (j == repo->count) {
            fs_err("find: --snapshot %s: no snapshot or group of that name in %s", sel[i],
                   store->location);
            missing = true;
        }
    }
    /* chunks below the format's chunk directory (casync: default.castr/) */
    if (repo->format->chunk_dir)
        snprintf(s.chunk_prefix, sizeof(s.chunk_prefix), "%s/", repo->format->chunk_dir);
    s.cctx = (struct fetch_chunk_ctx){.prefix = s.chunk_prefix, .key = key};
    if (s.json && !(s.matches = json_object_new_array())) {
        fs_err("out of memory");
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < repo->count; i++) {
        const struct fetch_entry *e = &repo->entries[i];
        if (e->type == FETCH_ENTRY_ARCHIVE && selected(e->path, sel, nsel))
            search_archive(&s, repo, store, e);
    }
    if (s.json)
        fs_json_write(stdout, s.matches, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    fetch_format_size(s.bytes, size, sizeof(size));
    fprintf(stderr,
            "find: %zu match%s in %zu archive%s; fetched %llu chunk%s (%s), of file contents "
            "%s\n",
            s.found, s.found == 1 ? "" : "es", s.archives, s.archives == 1 ? "" : "s",
            (unsigned long long)s.chunks, s.chunks == 1 ? "" : "s", size,
            s.walked_v1 ? "those sharing chunks with the metadata of archives without a catalog"
                        : "none");
    r = 0;
out:
    json_object_put(s.matches);
    fetch_repo_free(repo);
    fetch_store_free(store);
    fs_key_free(key);
    if (r < 0)
        return 1;
    return missing ? FIND_UNREADABLE : s.failed ? 3 : s.found ? 0 : 1;
}
