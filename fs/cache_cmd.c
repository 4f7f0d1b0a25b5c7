/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg cache stats|verify|gc|clear`: the persistent chunk cache, from the command line. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "json_out.h"
#include "fetch/repo.h"
#include "cache/diskcache.h"
#include "cache/metacache.h"
#include "cli.h"
#include "log.h"

static const char cache_usage[] =
    "Usage: lazyimg cache COMMAND [--cache-dir DIR] [options]\n"
    "\n"
    "The persistent chunk cache shared by all mounts that use DIR (default:\n"
    "$LAZYIMG_CACHE_DIR, else /var/cache/lazyimg as root, else\n"
    "$XDG_CACHE_HOME/lazyimg or ~/.cache/lazyimg). Safe while mounts use it.\n"
    "\n"
    "Commands:\n"
    "  stats [--json]   entries, space, hits, misses, inserts, evictions by store\n"
    "  verify           re-read and re-hash every entry (the decrypted chunks of\n"
    "                   encrypted archives: their CRCs, their keyed digest needs\n"
    "                   the key); drop and report bad ones\n"
    "                   (exit status 1 if any was bad)\n"
    "  gc [--size SIZE] evict least recently used entries down to SIZE now\n"
    "                   (default 10G)\n"
    "  clear            remove every entry, and the metadata kept to mount stores\n"
    "                   that are down\n"
    "verify, gc and clear first read the whole index: a damaged one is moved aside\n"
    "(index.sqlite.damaged-*) and an empty one started, when no mount uses DIR.\n";

struct cache_cli {
    const char *dir;
    bool json;
    uint64_t size;
};

static void print_store(const struct cache_disk_store_stats *s, void *arg)
{
    char alloc[32];
    json_object *arr = arg;
    /* the unnamed store of maintenance commands (this one included) */
    if (!s->store[0] && !s->entries && !s->hits && !s->misses && !s->inserts && !s->evictions)
        return;
    if (arr) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "store", json_object_new_string(s->store));
        json_object_object_add(o, "entries", json_object_new_int64((int64_t)s->entries));
        json_object_object_add(o, "bytes_allocated",
                               json_object_new_int64((int64_t)s->bytes_allocated));
        json_object_object_add(o, "hits", json_object_new_int64((int64_t)s->hits));
        json_object_object_add(o, "misses", json_object_new_int64((int64_t)s->misses));
        json_object_object_add(o, "inserts", json_object_new_int64((int64_t)s->inserts));
        json_object_object_add(o, "evictions", json_object_new_int64((int64_t)s->evictions));
        json_object_array_add(arr, o);
        return;
    }
    fetch_format_size(s->bytes_allocated, alloc, sizeof(alloc));
    printf("%-40s %9llu %10s %10llu %10llu %10llu %10llu\n", s->store[0] ? s->store : "-",
           (unsigned long long)s->entries, alloc, (unsigned long long)s->hits,
           (unsigned long long)s->misses, (unsigned long long)s->inserts,
           (unsigned long long)s->evictions);
}

static int cmd_stats(struct cache_disk *c, const char *dir, bool json)
{
    struct cache_disk_stats st;
    struct cache_meta_usage mu;
    char alloc[32], apparent[32], meta[32];
    int r;

    cache_disk_get_stats(c, &st);
    if ((r = cache_meta_usage(dir, &mu)) < 0) {
        fs_warn("cache %s/meta: %s", dir, strerror(-r));
        mu = (struct cache_meta_usage){0};
    }
    if (json) {
        json_object *m = json_object_new_object();
        json_object *o = json_object_new_object(), *stores = json_object_new_array();
        json_object_object_add(o, "dir", json_object_new_string(dir));
        json_object_object_add(o, "entries", json_object_new_int64((int64_t)st.entries));
        json_object_object_add(o, "bytes_allocated",
                               json_object_new_int64((int64_t)st.bytes_allocated));
        json_object_object_add(o, "bytes_apparent",
                               json_object_new_int64((int64_t)st.bytes_apparent));
        r = cache_disk_store_stats(c, print_store, stores);
        json_object_object_add(o, "stores", stores);
        json_object_object_add(m, "stores", json_object_new_int64((int64_t)mu.stores));
        json_object_object_add(m, "entries", json_object_new_int64((int64_t)mu.entries));
        json_object_object_add(m, "bytes_allocated", json_object_new_int64((int64_t)mu.bytes));
        json_object_object_add(o, "meta", m);
        fs_json_write(stdout, o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        json_object_put(o);
        return r;
    }
    fetch_format_size(st.bytes_allocated, alloc, sizeof(alloc));
    fetch_format_size(st.bytes_apparent, apparent, sizeof(apparent));
    fetch_format_size(mu.bytes, meta, sizeof(meta));
    printf("cache %s: %llu entries, %s on disk (%s of chunk data)\n", dir,
           (unsigned long long)st.entries, alloc, apparent);
    printf("metadata (listings, manifests, indexes kept to mount a store that is down): "
           "%llu entries of %llu stores, %s on disk (outside --cache-size)\n\n",
           (unsigned long long)mu.entries, (unsigned long long)mu.stores, meta);
    printf("%-40s %9s %10s %10s %10s %10s %10s\n", "STORE", "ENTRIES", "ON DISK", "HITS", "MISSES",
           "INSERTS", "EVICTIONS");
    return cache_disk_store_stats(c, print_store, NULL);
}

static void print_bad(const char *hex, const char *why, void *arg)
{
    (void)arg;
    printf("bad entry %s: %s (dropped)\n", hex, why);
}

int fs_cmd_cache(int argc, char **argv)
{
    enum { OPT_DIR = 256, OPT_JSON, OPT_SIZE };
    static const struct option opts[] = {
        {"cache-dir", required_argument, NULL, OPT_DIR},
        {"json", no_argument, NULL, OPT_JSON},
        {"size", required_argument, NULL, OPT_SIZE},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct cache_cli o = {.size = FS_DEFAULT_CACHE_SIZE};
    struct cache_disk_options copts = {0};
    struct cache_disk *c = NULL;
    char dir[PATH_MAX];
    const char *cmd;
    int opt, r, status = 0;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_DIR:
            o.dir = optarg;
            break;
        case OPT_JSON:
            o.json = true;
            break;
        case OPT_SIZE:
            if (fs_parse_size(optarg, &o.size) < 0) {
                fs_err("--size: invalid size '%s'", optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(cache_usage, stdout);
            return 0;
        default:
            fputs(cache_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fs_err("cache: expected one of stats, verify, gc, clear (see lazyimg cache --help)");
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "stats") && strcmp(cmd, "verify") && strcmp(cmd, "gc") &&
        strcmp(cmd, "clear")) {
        fs_err("cache: unknown command '%s' (see lazyimg cache --help)", cmd);
        return 2;
    }
    if (fs_prepare_cache_dir(o.dir, NULL, dir, sizeof(dir)) < 0)
        return 1;
    copts.dir = dir;
    copts.budget = o.size;
    /* the commands that repair: a damage anywhere in the index is found and
     * the index replaced (stats stays quick) */
    copts.check_index = strcmp(cmd, "stats") != 0;
    if (fs_open_cache(&copts, &c) < 0)
        return 1;

    if (!strcmp(cmd, "stats")) {
        r = cmd_stats(c, dir, o.json);
    } else if (!strcmp(cmd, "verify")) {
        uint64_t checked = 0;
        r = cache_disk_verify(c, &checked, print_bad, NULL);
        if (r >= 0) {
            printf("checked %llu entries, %d bad\n", (unsigned long long)checked, r);
            status = r > 0 ? 1 : 0;
            r = 0;
        }
    } else if (!strcmp(cmd, "gc")) {
        uint64_t evicted = 0;
        char size[32];
        r = cache_disk_gc(c, o.size, &evicted);
        fetch_format_size(o.size, size, sizeof(size));
        if (r >= 0)
            printf("evicted %llu entries (target %s)\n", (unsigned long long)evicted, size);
    } else {
        uint64_t metas = 0;
        r = cache_disk_clear(c);
        if (r >= 0 && (r = cache_meta_clear(dir, &metas)) < 0)
            fs_err("cache clear: %s/meta: %s", dir, strerror(-r));
        if (r >= 0)
            printf("cleared %s (and %llu metadata entries)\n", dir, (unsigned long long)metas);
    }
    if (r < 0) {
        fs_err("cache %s: %s", cmd, strerror(-r));
        status = 1;
    }
    cache_disk_close(c);
    return status;
}
