/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg ls`: the snapshots and archives of a store, as a table or JSON. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "fetch/pbs.h"
#include "log.h"
#include "remote_opts.h"

static const char ls_usage[] =
    "Usage: lazyimg ls [options] STORE\n"
    "\n"
    "Lists the finished snapshots of a Proxmox Backup Server datastore and\n"
    "their archives, with the path each one has below a mountpoint. STORE is a\n"
    "directory, an http:// or https:// URL of a datastore served by a web server\n"
    "with a directory index, or s3://BUCKET[/PREFIX].\n"
    "\n"
    "Options:\n"
    "      --json             print a JSON array instead of a table\n"
    FS_REMOTE_OPTIONS_HELP
    "  -h, --help             show this help\n";

static const char *archive_kind(const struct fetch_manifest_file *f, size_t *stem)
{
    switch (fetch_pbs_archive_kind(f->name, stem)) {
    case FETCH_PBS_ARCHIVE_FIDX:
        return "image";
    case FETCH_PBS_ARCHIVE_DIDX:
        return "pxar";
    case FETCH_PBS_ARCHIVE_BLOB:
        return "blob";
    default:
        return "other";
    }
}

/* Whether the mount shows the file (and can read it). */
static const char *mount_state(const struct fetch_manifest_file *f)
{
    enum fetch_pbs_archive k = fetch_pbs_archive_kind(f->name, NULL);
    if (k == FETCH_PBS_ARCHIVE_DIDX || k == FETCH_PBS_ARCHIVE_OTHER)
        return "not yet supported";
    if (f->crypt == FETCH_CRYPT_ENCRYPT)
        return k == FETCH_PBS_ARCHIVE_BLOB ? "hidden (encrypted)" : "encrypted, no key";
    return "yes";
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

static int print_json(const struct fetch_pbs_catalog *c)
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
            const char *kind = archive_kind(f, &stem);
            json_object_object_add(fo, "filename", json_object_new_string(f->name));
            json_object_object_add(fo, "name", json_object_new_string_len(f->name, (int)stem));
            json_object_object_add(fo, "kind", json_object_new_string(kind));
            json_object_object_add(fo, "size", json_object_new_int64((int64_t)f->size));
            json_object_object_add(fo, "crypt-mode",
                                   json_object_new_string(fetch_crypt_name(f->crypt)));
            json_object_object_add(fo, "mountable",
                                   json_object_new_boolean(!strcmp(mount_state(f), "yes")));
            json_object_array_add(files, fo);
        }
        json_object_object_add(o, "files", files);
        json_object_array_add(arr, o);
    }
    puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(arr);
    return 0;
}

static void print_table(const struct fetch_pbs_catalog *c)
{
    printf("%-44s %-28s %-6s %9s  %-9s %s\n", "SNAPSHOT", "ARCHIVE", "KIND", "SIZE", "CRYPT",
           "MOUNTED");
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *s = &c->snaps[i];
        char path[512];
        snapshot_path(s, path, sizeof(path));
        for (size_t j = 0; j < s->manifest->count; j++) {
            const struct fetch_manifest_file *f = &s->manifest->files[j];
            size_t stem = 0;
            const char *kind = archive_kind(f, &stem);
            char size[32];
            fs_format_size(f->size, size, sizeof(size));
            printf("%-44s %-28.*s %-6s %9s  %-9s %s\n", path, (int)stem, f->name, kind, size,
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
        FS_REMOTE_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct fetch_remote_options ro = {0};
    struct fetch_pbs_catalog *cat = NULL;
    struct fetch_store *store;
    fetch_error err = {""};
    bool json = false;
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
    store = fs_open_store(argv[optind], &ro);
    if (!store)
        return 1;
    r = fetch_pbs_catalog_load(store, &cat, &err);
    if (r < 0) {
        fs_err("%s: %s", store->location, err.msg);
        fetch_store_free(store);
        return 1;
    }
    for (size_t i = 0; i < cat->warning_count; i++)
        fs_warn("%s", cat->warnings[i]);
    if (json)
        r = print_json(cat);
    else
        print_table(cat);
    fetch_pbs_catalog_free(cat);
    fetch_store_free(store);
    return r < 0 ? 1 : 0;
}
