/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg profile ls|show|clear`: the read profiles kept in a cache directory (fs/profile.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "json_out.h"
#include "cache/diskcache.h"
#include "cli.h"
#include "log.h"

static const char profile_usage[] =
    "Usage: lazyimg profile ls|show|clear [IMAGE] [--cache-dir DIR] [--json]\n"
    "\n"
    "Read profiles: what was read first from an image after its first open (a\n"
    "VM's boot), recorded by a mount and fetched ahead of the reader when an image\n"
    "of the same name (that snapshot or a later one) is opened again. They live in\n"
    "the cache directory DIR (default: $LAZYIMG_CACHE_DIR, else /var/cache/lazyimg\n"
    "as root, else $XDG_CACHE_HOME/lazyimg or ~/.cache/lazyimg); `lazyimg cache\n"
    "clear` keeps them. IMAGE is an image's name across snapshots, as ls shows it\n"
    "(vm/100/drive-scsi0.img).\n"
    "\n"
    "Commands:\n"
    "  ls [IMAGE]       the profiles (the newest few of each image are kept)\n"
    "  show IMAGE       the offsets of IMAGE's newest profile, in recorded order\n"
    "  clear [IMAGE]    remove the profiles of IMAGE, or all\n"
    "\n"
    "Options:\n"
    "      --cache-dir DIR  the cache directory\n"
    "      --json           ls and show: JSON\n"
    "  -h, --help           show this help\n";

/* The image part of a key ("STORE\nIMAGE"). */
static const char *image_of(const char *key)
{
    const char *nl = strchr(key, '\n');
    return nl ? nl + 1 : key;
}

struct listing {
    const char *image; /* filter, or NULL */
    json_object *json; /* array, or NULL: a table */
    bool quiet;        /* neither: only the first key matched */
    size_t shown;
    char key[512]; /* show: the newest matching key */
};

static void list_one(const struct cache_disk_profile_info *p, void *arg)
{
    struct listing *l = arg;
    char when[32], store[512], e_image[1024], e_on[1024], e_store[1024];
    time_t t = (time_t)(p->created_us / 1000000);
    struct tm tm;
    const char *image = image_of(p->key);

    if (l->image && strcmp(l->image, image))
        return;
    if (!l->key[0])
        snprintf(l->key, sizeof(l->key), "%s", p->key);
    snprintf(store, sizeof(store), "%.*s", (int)(image - p->key - (image != p->key)), p->key);
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(when, sizeof(when), "?");
    l->shown++;
    if (l->quiet)
        return;
    if (l->json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "store", json_object_new_string(store));
        json_object_object_add(o, "image", json_object_new_string(image));
        json_object_object_add(o, "recorded", json_object_new_string(when));
        json_object_object_add(o, "recorded_on", json_object_new_string(p->image));
        json_object_object_add(o, "extents", json_object_new_uint64(p->count));
        json_object_array_add(l->json, o);
        return;
    }
    if (l->shown == 1)
        printf("%-32s %-20s %8s  %s\n", "IMAGE", "RECORDED", "EXTENTS", "ON (STORE)");
    /* names as the cache holds them: no byte of theirs acts on the terminal */
    fs_escape(image, e_image, sizeof(e_image));
    fs_escape(p->image, e_on, sizeof(e_on));
    fs_escape(store, e_store, sizeof(e_store));
    printf("%-32s %-20s %8zu  %s (%s)\n", e_image, when, p->count, e_on, e_store);
}

static int cmd_show(struct cache_disk *c, const char *image, bool json)
{
    struct listing l = {.image = image, .quiet = true};
    struct cache_disk_profile_info info;
    uint64_t *offs = NULL;
    size_t n = 0;
    json_object *arr;
    int r = cache_disk_profile_list(c, NULL, list_one, &l);

    if (r < 0)
        return r;
    if (!l.key[0]) {
        fs_err("profile show: no profile of %s (see lazyimg profile ls)", image);
        return -ENOENT;
    }
    if ((r = cache_disk_profile_load(c, l.key, &offs, &n, &info)) < 0)
        return r;
    if (json) {
        arr = json_object_new_array();
        for (size_t i = 0; i < n; i++)
            json_object_array_add(arr, json_object_new_uint64(offs[i]));
        fs_json_write(stdout, arr, JSON_C_TO_STRING_PLAIN);
        json_object_put(arr);
    } else {
        char e_image[1024], e_on[1024];
        fs_escape(image, e_image, sizeof(e_image));
        fs_escape(info.image, e_on, sizeof(e_on));
        printf("# %s, recorded on %s: %zu extents, offsets in the order first read\n", e_image,
               e_on, n);
        for (size_t i = 0; i < n; i++)
            printf("%llu\n", (unsigned long long)offs[i]);
    }
    free(offs);
    return 0;
}

int fs_cmd_profile(int argc, char **argv)
{
    enum { OPT_DIR = 256, OPT_JSON };
    static const struct option opts[] = {
        {"cache-dir", required_argument, NULL, OPT_DIR},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct cache_disk_options copts = {0};
    struct cache_disk *c = NULL;
    const char *dir_opt = NULL, *cmd, *image;
    char dir[PATH_MAX];
    bool json = false;
    int opt, r = 0;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_DIR:
            dir_opt = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'h':
            fputs(profile_usage, stdout);
            return 0;
        default:
            fputs(profile_usage, stderr);
            return 2;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        fs_err("profile: expected ls, show IMAGE or clear [IMAGE] (see lazyimg profile --help)");
        return 2;
    }
    cmd = argv[optind];
    image = argc - optind == 2 ? argv[optind + 1] : NULL;
    if ((strcmp(cmd, "ls") && strcmp(cmd, "show") && strcmp(cmd, "clear")) ||
        (!strcmp(cmd, "show") && !image)) {
        fs_err("profile: expected ls, show IMAGE or clear [IMAGE] (see lazyimg profile --help)");
        return 2;
    }
    if (fs_prepare_cache_dir(dir_opt, NULL, dir, sizeof(dir)) < 0)
        return 1;
    copts.dir = dir;
    copts.budget = FS_DEFAULT_CACHE_SIZE;
    if (fs_open_cache(&copts, &c) < 0)
        return 1;
    if (!strcmp(cmd, "ls")) {
        struct listing l = {.image = image, .json = json ? json_object_new_array() : NULL};
        r = cache_disk_profile_list(c, NULL, list_one, &l);
        if (r >= 0 && json)
            fs_json_write(stdout, l.json, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        else if (r >= 0 && !l.shown)
            printf("no read profiles in %s\n", dir);
        json_object_put(l.json);
    } else if (!strcmp(cmd, "show")) {
        r = cmd_show(c, image, json);
    } else if (!image) {
        uint64_t removed = 0;
        if ((r = cache_disk_profile_clear(c, NULL, &removed)) >= 0)
            printf("removed %llu profiles\n", (unsigned long long)removed);
    } else {
        /* every store's profiles of IMAGE */
        struct listing l = {.image = image, .quiet = true};
        uint64_t removed = 0, n = 1;
        while (n > 0) {
            l.key[0] = '\0';
            if ((r = cache_disk_profile_list(c, NULL, list_one, &l)) < 0 || !l.key[0] ||
                (r = cache_disk_profile_clear(c, l.key, &n)) < 0)
                break;
            removed += n;
        }
        if (r >= 0)
            printf("removed %llu profiles of %s\n", (unsigned long long)removed, image);
    }
    if (r < 0 && r != -ENOENT)
        fs_err("profile %s: %s", cmd, strerror(-r));
    cache_disk_close(c);
    return r < 0 ? 1 : 0;
}
