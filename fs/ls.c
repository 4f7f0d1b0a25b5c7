/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg ls`: the snapshots and archives of a datastore, or the indexes of
 * a casync repository, as a table or JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "fetch/casync.h"
#include "fetch/pbs.h"
#include "log.h"
#include "remote_opts.h"

static const char ls_usage[] =
    "Usage: lazyimg ls [options] STORE\n"
    "\n"
    "Lists the finished snapshots of a Proxmox Backup Server datastore and\n"
    "their archives, or the indexes of a casync/desync repository (*.caibx\n"
    "blob indexes, checked, and *.caidx archive indexes, which cannot be mounted\n"
    "yet), with the path each one has below a mountpoint. STORE is a directory,\n"
    "an http:// or https:// URL served by a web server with a directory index,\n"
    "or s3://BUCKET[/PREFIX].\n"
    "\n"
    "Options:\n"
    "      --json             print a JSON array instead of a table\n"
    "      --casync           STORE is a casync repository (skips the datastore check)\n"
    FS_REMOTE_OPTIONS_HELP
    "  -h, --help             show this help\n";

static bool has_suffix(const char *s, const char *suffix)
{
    size_t l = strlen(s), sl = strlen(suffix);
    return l >= sl && !strcmp(s + l - sl, suffix);
}

static const char *archive_kind(const struct fetch_manifest_file *f, size_t *stem)
{
    switch (fetch_pbs_archive_kind(f->name, stem)) {
    case FETCH_PBS_ARCHIVE_FIDX:
        return "image";
    case FETCH_PBS_ARCHIVE_DIDX:
        return has_suffix(f->name, "pxar.didx") ? "pxar" : "didx";
    case FETCH_PBS_ARCHIVE_CATALOG:
        return "catalog";
    case FETCH_PBS_ARCHIVE_BLOB:
        return "blob";
    default:
        return "other";
    }
}

/* Whether the mount shows the file (and can read it): "yes", or why not. */
static const char *mount_state(const struct fetch_manifest_file *f)
{
    enum fetch_pbs_archive k = fetch_pbs_archive_kind(f->name, NULL);
    switch (k) {
    case FETCH_PBS_ARCHIVE_DIDX:
        if (has_suffix(f->name, ".ppxar.didx"))
            return "no (payload of a pxar archive: file archives are not supported yet)";
        if (has_suffix(f->name, "pxar.didx"))
            return "no (pxar file archive: file archives are not supported yet)";
        return "no (dynamic index: not supported yet)";
    case FETCH_PBS_ARCHIVE_CATALOG:
        return "no (catalog of the pxar archives' files)";
    case FETCH_PBS_ARCHIVE_OTHER:
        return "no (unknown kind of file)";
    default:
        break;
    }
    if (f->crypt == FETCH_CRYPT_ENCRYPT)
        return k == FETCH_PBS_ARCHIVE_BLOB ? "hidden (encrypted)" : "encrypted, no key";
    if (k == FETCH_PBS_ARCHIVE_BLOB && f->size > FETCH_PBS_SMALL_BLOB_MAX)
        return "no (blob larger than 16 MiB)";
    return "yes";
}

/*
 * The size the mount shows: for a blob it shows, its decoded size (the
 * manifest has the stored one, header and compression included), read from
 * the store; else the manifest's. A blob that cannot be read gets -errno and
 * @errbuf says why.
 */
static int shown_size(struct fetch_store *store, const struct fetch_pbs_snapshot *s,
                      const struct fetch_manifest_file *f, uint64_t *ret, char *errbuf,
                      size_t errlen)
{
    fetch_data data = {0};
    fetch_error err = {""};
    int r;
    *ret = f->size;
    if (fetch_pbs_archive_kind(f->name, NULL) != FETCH_PBS_ARCHIVE_BLOB ||
        strcmp(mount_state(f), "yes"))
        return 0;
    r = fetch_pbs_read_blob(store, s, f, &data, &err);
    if (r < 0) {
        snprintf(errbuf, errlen, "%s", err.msg[0] ? err.msg : strerror(-r));
        return r;
    }
    *ret = data.len;
    fetch_data_release(&data);
    return 0;
}

static void snapshot_path(const struct fetch_pbs_snapshot *s, char *buf, size_t len)
{
    size_t off = 0;
    const char *ns = s->ns;
    buf[0] = '\0';
    while (*ns && off < len) {
        const char *slash = strchr(ns, '/');
        int n = (int)(slash ? (size_t)(slash - ns) : strlen(ns));
        off += (size_t)snprintf(buf + off, len - off, "ns/%.*s/", n, ns);
        ns += n + (slash != NULL);
    }
    if (off < len)
        snprintf(buf + off, len - off, "%s/%s/%s", s->type, s->id, s->time_str);
}

static int print_json(struct fetch_store *store, const struct fetch_pbs_catalog *c)
{
    json_object *arr = json_object_new_array();
    if (!arr)
        return -1;
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *s = &c->snaps[i];
        json_object *o = json_object_new_object(), *files = json_object_new_array();
        char path[512];
        snapshot_path(s, path, sizeof(path));
        json_object_object_add(o, "path", json_object_new_string(path));
        json_object_object_add(o, "ns", json_object_new_string(s->ns));
        json_object_object_add(o, "backup-type", json_object_new_string(s->type));
        json_object_object_add(o, "backup-id", json_object_new_string(s->id));
        json_object_object_add(o, "backup-time", json_object_new_int64(s->time));
        json_object_object_add(o, "time", json_object_new_string(s->time_str));
        for (size_t j = 0; j < s->manifest->count; j++) {
            const struct fetch_manifest_file *f = &s->manifest->files[j];
            json_object *fo = json_object_new_object();
            size_t stem = 0;
            const char *kind = archive_kind(f, &stem), *state = mount_state(f);
            char why[256];
            uint64_t size;
            int r = shown_size(store, s, f, &size, why, sizeof(why));
            json_object_object_add(fo, "filename", json_object_new_string(f->name));
            json_object_object_add(fo, "name", json_object_new_string_len(f->name, (int)stem));
            json_object_object_add(fo, "kind", json_object_new_string(kind));
            json_object_object_add(fo, "size", json_object_new_int64((int64_t)size));
            if (!strcmp(kind, "blob"))
                json_object_object_add(fo, "stored-size", json_object_new_int64((int64_t)f->size));
            json_object_object_add(fo, "crypt-mode",
                                   json_object_new_string(fetch_crypt_name(f->crypt)));
            json_object_object_add(fo, "mountable",
                                   json_object_new_boolean(!strcmp(state, "yes") && r == 0));
            if (r < 0)
                json_object_object_add(fo, "error", json_object_new_string(why));
            else if (strcmp(state, "yes"))
                json_object_object_add(fo, "reason", json_object_new_string(state));
            json_object_array_add(files, fo);
        }
        json_object_object_add(o, "files", files);
        json_object_array_add(arr, o);
    }
    puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(arr);
    return 0;
}

static const char *digest_name(enum fetch_digest_algo a)
{
    return a == FETCH_DIGEST_SHA512_256 ? "sha512-256" : "sha256";
}

/* The mount path of an index: its path without ".caibx". */
static int casync_name_len(const struct fetch_casync_index *x)
{
    return (int)(strlen(x->path) - (x->archive ? 0 : 6));
}

/*
 * Reads and checks blob index @x (an entry of a catalog loaded without its
 * images), keeping its error; the image is dropped again by index_unload
 * once printed, so a listing holds one image at a time, not all of them.
 * Returns -ENOMEM only.
 */
static int index_load(struct fetch_store *store, struct fetch_casync_index *x)
{
    fetch_error err = {""};
    if (x->archive)
        return 0;
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

static int print_casync_json(struct fetch_store *store, struct fetch_casync_catalog *c)
{
    json_object *arr = json_object_new_array();
    if (!arr)
        return -1;
    for (size_t i = 0; i < c->count; i++) {
        struct fetch_casync_index *x = &c->indexes[i];
        if (index_load(store, x) < 0) {
            json_object_put(arr);
            fs_err("out of memory");
            return -1;
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "index", json_object_new_string(x->path));
        json_object_object_add(o, "kind", json_object_new_string(x->archive ? "archive" : "blob"));
        json_object_object_add(o, "mountable", json_object_new_boolean(x->image != NULL));
        json_object_object_add(o, "mounted",
                               json_object_new_boolean(x->image != NULL && !x->shadowed_by));
        if (x->shadowed_by)
            json_object_object_add(o, "hidden-by", json_object_new_string(x->shadowed_by));
        if (x->image) {
            json_object_object_add(o, "name",
                                   json_object_new_string_len(x->path, casync_name_len(x)));
            json_object_object_add(o, "size", json_object_new_int64((int64_t)x->image->size));
            json_object_object_add(o, "data-bytes",
                                   json_object_new_int64((int64_t)x->image->data_bytes));
            json_object_object_add(o, "chunks", json_object_new_int64((int64_t)x->image->count));
            json_object_object_add(o, "null-chunks",
                                   json_object_new_int64((int64_t)x->image->zero_count));
            json_object_object_add(o, "chunk-size-min", json_object_new_int64((int64_t)x->chunk_min));
            json_object_object_add(o, "chunk-size-avg", json_object_new_int64((int64_t)x->chunk_avg));
            json_object_object_add(o, "chunk-size-max", json_object_new_int64((int64_t)x->chunk_max));
            json_object_object_add(o, "digest", json_object_new_string(digest_name(x->algo)));
        } else if (x->error) {
            json_object_object_add(o, "error", json_object_new_string(x->error_msg ? x->error_msg
                                                                                   : strerror(-x->error)));
        }
        index_unload(x);
        json_object_array_add(arr, o);
    }
    puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(arr);
    return 0;
}

static int print_casync_table(struct fetch_store *store, struct fetch_casync_catalog *c)
{
    printf("%-40s %9s %9s %8s %9s %-10s %s\n", "IMAGE", "SIZE", "DATA", "CHUNKS", "AVG", "DIGEST",
           "MOUNTED");
    for (size_t i = 0; i < c->count; i++) {
        struct fetch_casync_index *x = &c->indexes[i];
        char size[32], data[32], avg[32], raw[1024], name[1024], why[1024], by[1024];
        if (index_load(store, x) < 0) {
            fs_err("out of memory");
            return -1;
        }
        /* names and messages from the store, escaped for the terminal */
        snprintf(raw, sizeof(raw), "%.*s", casync_name_len(x), x->path);
        fs_escape(raw, name, sizeof(name));
        if (!x->image) {
            fs_escape(x->archive ? "" : x->error_msg ? x->error_msg : strerror(-x->error), why,
                      sizeof(why));
            printf("%-40s %9s %9s %8s %9s %-10s %s%s\n", name, "-", "-", "-", "-", "-",
                   x->archive ? "not mountable (directory archive index)" : "invalid: ", why);
            index_unload(x);
            continue;
        }
        fs_escape(x->shadowed_by ? x->shadowed_by : "", by, sizeof(by));
        fs_format_size(x->image->size, size, sizeof(size));
        fs_format_size(x->image->data_bytes, data, sizeof(data));
        fs_format_size(x->chunk_avg, avg, sizeof(avg));
        printf("%-40s %9s %9s %8zu %9s %-10s %s%s%s\n", name, size, data, x->image->count, avg,
               digest_name(x->algo),
               x->shadowed_by ? "no (hidden: its directory's name is taken by " : "yes", by,
               x->shadowed_by ? ")" : "");
        index_unload(x);
    }
    return 0;
}

static void print_table(struct fetch_store *store, const struct fetch_pbs_catalog *c)
{
    printf("%-44s %-28s %-7s %9s  %-9s %s\n", "SNAPSHOT", "ARCHIVE", "KIND", "SIZE", "CRYPT",
           "MOUNTED");
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *s = &c->snaps[i];
        char raw[512], path[2048], name[1024];
        snapshot_path(s, raw, sizeof(raw));
        fs_escape(raw, path, sizeof(path));
        for (size_t j = 0; j < s->manifest->count; j++) {
            const struct fetch_manifest_file *f = &s->manifest->files[j];
            size_t stem = 0;
            const char *kind = archive_kind(f, &stem);
            char size[32], why[256], raw_name[1024], why_shown[1024];
            uint64_t bytes;
            snprintf(raw_name, sizeof(raw_name), "%.*s", (int)stem, f->name);
            fs_escape(raw_name, name, sizeof(name));
            if (shown_size(store, s, f, &bytes, why, sizeof(why)) < 0) {
                fs_escape(why, why_shown, sizeof(why_shown));
                printf("%-44s %-28s %-7s %9s  %-9s unreadable: %s\n", path, name, kind, "-",
                       fetch_crypt_name(f->crypt), why_shown);
                continue;
            }
            fs_format_size(bytes, size, sizeof(size));
            printf("%-44s %-28s %-7s %9s  %-9s %s\n", path, name, kind, size,
                   fetch_crypt_name(f->crypt), mount_state(f));
        }
    }
    if (c->count == 0)
        printf("(no finished snapshots)\n");
}

int fs_cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"casync", no_argument, NULL, 'c'},
        FS_REMOTE_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct fetch_remote_options ro = {0};
    struct fetch_pbs_catalog *cat = NULL;
    struct fetch_casync_catalog *ccat = NULL;
    struct fetch_store *store = NULL;
    enum fs_repo_kind kind = FS_REPO_CASYNC;
    fetch_error err = {""};
    bool json = false, casync = false;
    int c, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled = fs_remote_opt_parse(c, optarg, &ro);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'c':
            casync = true;
            break;
        case 'h':
            fputs(ls_usage, stdout);
            return 0;
        default:
            fputs(ls_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fs_err("ls: expected one STORE argument (see lazyimg ls --help)");
        return 2;
    }
    if (casync) {
        if (fetch_store_open(argv[optind], &ro, &store, &err) < 0) {
            fs_err("%s", err.msg);
            return 1;
        }
    } else if (!(store = fs_open_store(argv[optind], &ro, &kind))) {
        return 1;
    }
    if (kind == FS_REPO_CASYNC) {
        /* the paths only: each index is read when its line is printed */
        r = fetch_casync_catalog_load(store, false, &ccat, &err);
        if (r < 0) {
            fs_err("%s: %s", store->location, err.msg);
            fetch_store_free(store);
            return 1;
        }
        if (fs_casync_catalog_report(store->location, ccat) < 0) {
            fetch_casync_catalog_free(ccat);
            fetch_store_free(store);
            return 1;
        }
        if (json)
            r = print_casync_json(store, ccat);
        else
            r = print_casync_table(store, ccat);
        fetch_casync_catalog_free(ccat);
        fetch_store_free(store);
        return r < 0 ? 1 : 0;
    }
    r = fetch_pbs_catalog_load(store, &cat, &err);
    if (r < 0) {
        fs_err("%s: %s", store->location, err.msg);
        fetch_store_free(store);
        return 1;
    }
    for (size_t i = 0; i < cat->warning_count; i++)
        fs_warn("%s", cat->warnings[i]);
    if (json)
        r = print_json(store, cat);
    else
        print_table(store, cat);
    fetch_pbs_catalog_free(cat);
    fetch_store_free(store);
    return r < 0 ? 1 : 0;
}
