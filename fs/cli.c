/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/diskcache.h"
#include "fetch/remote.h"
#include "fetch/repo.h"
#include "fetch/store.h"
#include "log.h"

int fs_parse_size(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    /* digits first: strtoull() would skip white space and take a sign */
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    default:
        return -EINVAL;
    }
    if (*end && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *ret = (uint64_t)v << shift;
    return 0;
}

struct fetch_store *fs_open_store(const char *location, const struct fetch_remote_options *ro,
                                  const struct fetch_repo_format **ret_format)
{
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    struct stat st;
    int r;

    if (!fetch_location_is_remote(location)) {
        if (stat(location, &st) < 0) {
            fs_err("%s: %s", location, strerror(errno));
            return NULL;
        }
        if (!S_ISDIR(st.st_mode)) {
            fs_err("%s: not a directory (expected a backup repository)", location);
            return NULL;
        }
    }
    r = fetch_store_open(location, ro, &s, &err);
    if (r < 0) {
        fs_err("%s", err.msg);
        return NULL;
    }
    if (fs_store_kind(s, ret_format) < 0) {
        fetch_store_free(s);
        return NULL;
    }
    return s;
}

int fs_store_kind(struct fetch_store *s, const struct fetch_repo_format **ret_format)
{
    fetch_error err = {""};
    int r = fetch_repo_probe(s, ret_format, &err);
    if (r < 0 && !strcmp(s->ops->kind, "http") && (r == -EACCES || r == -ENOENT)) {
        /* "--snapshot A (a …) or --snapshot B (a …)" */
        const struct fetch_repo_format *const *f;
        char hints[512] = "";
        size_t n, off = 0;
        f = fetch_repo_formats(&n);
        for (size_t i = 0; i < n && off < sizeof(hints); i++)
            off += (size_t)snprintf(hints + off, sizeof(hints) - off, "%s--snapshot %s (%s)",
                                    i ? " or " : "", f[i]->snapshot_hint, f[i]->label);
        /* servers without directory listings answer 403 or 404 (Caddy, CDNs),
         * and a wrong URL 404 */
        fs_err("%s: %s: %sname what to mount with %s", s->location, err.msg,
               r == -ENOENT ? "a wrong URL, or a server that gives no directory listing: then "
                            : "the server gives no directory listing; ",
               hints);
        return -1;
    }
    if (r < 0) {
        fs_err("%s: %s", s->location, err.msg);
        return -1;
    }
    return 0;
}

void fs_repo_report(const struct fetch_repo *repo)
{
    for (size_t i = 0; i < repo->note_count; i++) {
        if (repo->notes[i].warning)
            fs_warn("%s", repo->notes[i].text);
        else
            fs_info("%s", repo->notes[i].text);
    }
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdir_parents(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int fs_prepare_cache_dir(const char *opt, const char *mountpoint, char *buf, size_t len)
{
    char path[PATH_MAX], resolved[PATH_MAX];
    const char *env = getenv("LAZYIMG_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int r;

    if (opt && *opt)
        snprintf(path, sizeof(path), "%s", opt);
    else if (env && *env)
        snprintf(path, sizeof(path), "%s", env);
    else if (geteuid() == 0)
        snprintf(path, sizeof(path), "/var/cache/lazyimg");
    else if (xdg && *xdg == '/')
        snprintf(path, sizeof(path), "%s/lazyimg", xdg);
    else if (home && *home == '/')
        snprintf(path, sizeof(path), "%s/.cache/lazyimg", home);
    else {
        fs_err("no cache directory: set --cache-dir or LAZYIMG_CACHE_DIR%s",
               mountpoint ? " (or use --no-cache)" : "");
        return -1;
    }
    if (!mountpoint) {
        char index[PATH_MAX + 16];
        snprintf(index, sizeof(index), "%s/index.sqlite", path);
        if (access(index, F_OK) < 0) {
            fs_err("no cache at %s (%s)", path,
                   errno == ENOENT ? "no index.sqlite: check --cache-dir" : strerror(errno));
            return -1;
        }
    }
    if ((r = mkdir_parents(path)) < 0) {
        fs_err("cache directory %s: %s", path, strerror(-r));
        return -1;
    }
    if (!realpath(path, resolved)) {
        fs_err("cache directory %s: %s", path, strerror(errno));
        return -1;
    }
    if (strlen(resolved) >= len) {
        fs_err("cache directory %s: path too long", resolved);
        return -1;
    }
    memcpy(buf, resolved, strlen(resolved) + 1);
    if (mountpoint) {
        size_t ml = strlen(mountpoint);
        if (!strncmp(buf, mountpoint, ml) && (buf[ml] == '/' || buf[ml] == '\0')) {
            fs_err("cache directory %s is inside the mountpoint %s", buf, mountpoint);
            return -1;
        }
    }
    return 0;
}

int fs_open_cache(const struct cache_disk_options *o, struct cache_disk **ret)
{
    char msg[256] = "";
    int r = cache_disk_open(o, ret, msg, sizeof(msg));
    if (r < 0) {
        /* the cache's messages name the path they are about */
        if (msg[0])
            fs_err("%s", msg);
        else
            fs_err("cache %s: %s", o->dir, strerror(-r));
        return -1;
    }
    if (cache_disk_open_note(*ret)[0])
        fs_warn("%s", cache_disk_open_note(*ret));
    return 0;
}
