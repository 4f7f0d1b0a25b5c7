/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "offline_store.h"
#include "fetch/buf.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache/metacache.h"
#include "log.h"

struct offline_store {
    struct fetch_store base;
    struct fetch_store_ops ops; /* the inner store's kind, our callbacks */
    struct fetch_store *inner;
    struct cache_meta *meta;
    enum fs_offline_mode mode;
    atomic_uint_least64_t served;
    _Atomic int64_t oldest;
};

bool fs_offline_error_is_network(int r)
{
    switch (r) {
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ENETDOWN:
    case -ETIMEDOUT:
    case -EAGAIN:
        return true;
    default:
        return false;
    }
}

/* ---- the store of --offline: every request fails at once ---- */

static int null_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret,
                     size_t *ret_n, fetch_error *err)
{
    (void)ret;
    (void)ret_n;
    return fetch_error_set(err, -ENETDOWN, "%s: %s: not contacted (--offline)", s->location,
                           dir[0] ? dir : "/");
}

static int null_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                    size_t *ret_len, fetch_error *err)
{
    (void)max;
    (void)ret;
    (void)ret_len;
    return fetch_error_set(err, -ENETDOWN,
                           "%s: %s: not in the cache, and the store is not "
                           "contacted (--offline)",
                           s->location, path);
}

static void null_free(struct fetch_store *s)
{
    free(s->location);
    free(s);
}

static const struct fetch_store_ops null_ops = {
    .kind = "offline",
    .list = null_list,
    .get = null_get,
    .free = null_free,
};

struct fetch_store *fs_offline_null_store_new(const char *location)
{
    struct fetch_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->location = strdup(location))) {
        free(s);
        return NULL;
    }
    s->ops = &null_ops;
    return s;
}

/* ---- listings as cache entries: per entry 'd' or 'f', the name, a NUL ---- */

static int encode_list(const struct fetch_dirent *d, size_t n, char **ret, size_t *ret_len)
{
    size_t len = 0, off = 0;
    char *buf;
    for (size_t i = 0; i < n; i++)
        len += strlen(d[i].name) + 2;
    buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(d[i].name);
        buf[off++] = d[i].is_dir ? 'd' : 'f';
        memcpy(buf + off, d[i].name, l + 1);
        off += l + 1;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

static int decode_list(const char *buf, size_t len, struct fetch_dirent **ret, size_t *ret_n)
{
    struct fetch_dirent *d = NULL;
    size_t n = 0, cap = 0, off = 0;
    while (off < len) {
        const char *name = buf + off + 1;
        const char *end = memchr(name, '\0', len - off - 1);
        if ((buf[off] != 'd' && buf[off] != 'f') || !end || end == name)
            goto bad;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            struct fetch_dirent *nd = realloc(d, nc * sizeof(*d));
            if (!nd)
                goto nomem;
            d = nd;
            cap = nc;
        }
        d[n].is_dir = buf[off] == 'd';
        if (!(d[n].name = strdup(name)))
            goto nomem;
        n++;
        off = (size_t)(end - buf) + 1;
    }
    *ret = d;
    *ret_n = n;
    return 0;
bad:
    fetch_dirents_free(d, n);
    return -EBADMSG;
nomem:
    fetch_dirents_free(d, n);
    return -ENOMEM;
}

/* ---- the wrapper ---- */

static char *entry_key(const char *kind, const char *path)
{
    size_t kl = strlen(kind), pl = strlen(path);
    char *k = malloc(kl + pl + 1);
    if (k) {
        memcpy(k, kind, kl);
        memcpy(k + kl, path, pl + 1);
    }
    return k;
}

static void note_served(struct offline_store *os, int64_t mtime)
{
    int64_t cur = atomic_load(&os->oldest);
    atomic_fetch_add(&os->served, 1);
    while ((cur == 0 || mtime < cur) && !atomic_compare_exchange_weak(&os->oldest, &cur, mtime))
        ;
}

/* The cached copy of @key: 0, -ENOENT (no copy), -EFBIG, -ENOMEM. */
static int cached(struct offline_store *os, const char *key, size_t max, void **ret,
                  size_t *ret_len)
{
    int64_t mtime = 0;
    int r = cache_meta_get(os->meta, key, max, ret, ret_len, &mtime);
    if (r == 0)
        note_served(os, mtime);
    else if (r != -EFBIG && r != -ENOMEM)
        r = -ENOENT;
    if (r < 0 && r != -ENOENT)
        fs_debug("metadata cache %s: %s", key, strerror(-r));
    return r;
}

/*
 * Entries: "list:<dir>" and "get:<path>" hold answers; "none:list:<dir>" and
 * "none:get:<path>" say the store answered "no such object" (-ENOENT or
 * -ENOTDIR, spelled out), which the catalog walks rely on too.
 */
struct entry {
    char *key, *none_key;
};

static int entry_init(struct entry *e, const char *kind, const char *path)
{
    e->key = entry_key(kind, path);
    e->none_key = e->key ? entry_key("none:", e->key) : NULL;
    if (!e->none_key) {
        free(e->key);
        return -ENOMEM;
    }
    return 0;
}

static void entry_release(struct entry *e)
{
    free(e->key);
    free(e->none_key);
}

/*
 * The cached answer of @e: 0 with its bytes, -ENOENT or -ENOTDIR when the
 * store said so, 1 when nothing is cached, -EFBIG or -ENOMEM.
 */
static int cached_answer(struct offline_store *os, const struct entry *e, size_t max, void **ret,
                         size_t *ret_len)
{
    void *none;
    size_t len;
    int r = cached(os, e->key, max, ret, ret_len);
    if (r != -ENOENT)
        return r;
    if (cached(os, e->none_key, 64, &none, &len) < 0)
        return 1;
    r = strcmp(none, "ENOTDIR") ? -ENOENT : -ENOTDIR;
    free(none);
    return r;
}

/* Keeps what the store answered: bytes, or that the object does not exist. */
static void remember(struct offline_store *os, const struct entry *e, int result, const void *data,
                     size_t len)
{
    int r = 0;
    if (result == 0) {
        r = cache_meta_put(os->meta, e->key, data, len);
        cache_meta_remove(os->meta, e->none_key);
    } else if (result == -ENOENT || result == -ENOTDIR) {
        const char *what = result == -ENOENT ? "ENOENT" : "ENOTDIR";
        r = cache_meta_put(os->meta, e->none_key, what, strlen(what));
        cache_meta_remove(os->meta, e->key);
    }
    if (r < 0)
        fs_debug("metadata cache: cannot store %s: %s", e->key, strerror(-r));
}

/* The error of a cached answer @c (< 0 or 1 = nothing cached). */
static int cached_error(struct offline_store *os, int c, const char *what, size_t max,
                        fetch_error *err)
{
    if (c == -ENOENT || c == -ENOTDIR)
        return fetch_error_set(err, c, "%s: %s (as the store said before; cached)", what,
                               c == -ENOENT ? "not found" : "not a directory");
    if (c == -EFBIG)
        return fetch_error_set(err, c, "%s: larger than %zu bytes", what, max);
    if (c == -ENOMEM)
        return fetch_error_set(err, c, "out of memory");
    return fetch_error_set(err, -ENETDOWN,
                           "%s: %s: not in the metadata cache, and the store is not contacted "
                           "(--offline)",
                           os->base.location, what);
}

/*
 * The answer to @e: from the store first (FS_OFFLINE_NO) or from the cache
 * first (otherwise); @call asks the store and fills *ret and *ret_len with bytes
 * to cache (for listings: the encoded listing).
 */
static int answer(struct offline_store *os, const struct entry *e, const char *what, size_t max,
                  int (*call)(struct offline_store *os, void *arg, void **ret, size_t *ret_len,
                              fetch_error *err),
                  void *arg, void **ret, size_t *ret_len, bool *ret_cached, fetch_error *err)
{
    int c, r;
    *ret_cached = false;
    if (os->mode != FS_OFFLINE_NO) {
        c = cached_answer(os, e, max, ret, ret_len);
        if (c == 0)
            *ret_cached = true;
        if (c <= 0)
            return c == 0 ? 0 : cached_error(os, c, what, max, err);
        if (os->mode == FS_OFFLINE_FORCED)
            return cached_error(os, c, what, max, err);
    }
    r = call(os, arg, ret, ret_len, err);
    remember(os, e, r, r == 0 ? *ret : NULL, r == 0 ? *ret_len : 0);
    if (r == 0 || os->mode != FS_OFFLINE_NO || !fs_offline_error_is_network(r))
        return r;
    c = cached_answer(os, e, max, ret, ret_len);
    if (c == 0) {
        *ret_cached = true;
        return 0;
    }
    if (c < 0 && c != -EFBIG && c != -ENOMEM)
        return cached_error(os, c, what, max, err);
    return r;
}

struct list_call {
    const char *dir;
    struct fetch_dirent *d;
    size_t n;
};

static int call_list(struct offline_store *os, void *arg, void **ret, size_t *ret_len,
                     fetch_error *err)
{
    struct list_call *lc = arg;
    char *buf;
    int r = fetch_store_list(os->inner, lc->dir, &lc->d, &lc->n, err);
    if (r < 0)
        return r;
    if (encode_list(lc->d, lc->n, &buf, ret_len) < 0) {
        fetch_dirents_free(lc->d, lc->n);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    *ret = buf;
    return 0;
}

static int os_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret, size_t *ret_n,
                   fetch_error *err)
{
    struct offline_store *os = (struct offline_store *)s;
    struct list_call lc = {.dir = dir};
    struct entry e;
    void *raw = NULL;
    size_t len = 0;
    bool from_cache;
    int r;

    if (entry_init(&e, "list:", dir) < 0)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = answer(os, &e, dir[0] ? dir : "/", CACHE_META_ENTRY_MAX, call_list, &lc, &raw, &len,
               &from_cache, err);
    entry_release(&e);
    if (r < 0)
        return r;
    if (!from_cache) {
        fetch_buf_free(raw);
        *ret = lc.d;
        *ret_n = lc.n;
        return 0;
    }
    fetch_dirents_free(lc.d, lc.n); /* a network error after a partial answer: none */
    r = decode_list(raw, len, ret, ret_n);
    fetch_buf_free(raw);
    if (r < 0)
        return fetch_error_set(err, r, "%s: %s: damaged listing in the metadata cache", s->location,
                               dir[0] ? dir : "/");
    return 0;
}

struct get_call {
    const char *path;
    size_t max;
};

static int call_get(struct offline_store *os, void *arg, void **ret, size_t *ret_len,
                    fetch_error *err)
{
    struct get_call *gc = arg;
    return fetch_store_get(os->inner, gc->path, gc->max, ret, ret_len, err);
}

static int os_get(struct fetch_store *s, const char *path, size_t max, void **ret, size_t *ret_len,
                  fetch_error *err)
{
    struct offline_store *os = (struct offline_store *)s;
    struct get_call gc = {.path = path, .max = max};
    struct entry e;
    bool from_cache;
    int r;

    if (entry_init(&e, "get:", path) < 0)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = answer(os, &e, path, max, call_get, &gc, ret, ret_len, &from_cache, err);
    entry_release(&e);
    return r;
}

static void os_free(struct fetch_store *s)
{
    struct offline_store *os = (struct offline_store *)s;
    fetch_store_free(os->inner);
    cache_meta_free(os->meta);
    free(s->location);
    free(os);
}

bool fs_is_offline_store(const struct fetch_store *s)
{
    return s && s->ops->free == os_free;
}

int fs_offline_store_new(const char *location, struct fetch_store *inner, struct cache_meta *meta,
                         enum fs_offline_mode mode, struct fetch_store **ret)
{
    struct offline_store *os = calloc(1, sizeof(*os));
    if (os && !inner)
        inner = fs_offline_null_store_new(location);
    if (!os || !inner || !(os->base.location = strdup(location))) {
        free(os);
        fetch_store_free(inner);
        cache_meta_free(meta);
        return -ENOMEM;
    }
    os->ops = (struct fetch_store_ops){
        .kind = inner->ops->kind,
        .list = os_list,
        .get = os_get,
        .free = os_free,
    };
    os->base.ops = &os->ops;
    os->inner = inner;
    os->meta = meta;
    os->mode = mode;
    *ret = &os->base;
    return 0;
}

struct fetch_store *fs_offline_store_inner(struct fetch_store *s)
{
    return ((struct offline_store *)s)->inner;
}

void fs_offline_store_stats(struct fetch_store *s, uint64_t *ret_served, int64_t *ret_oldest)
{
    struct offline_store *os = (struct offline_store *)s;
    *ret_served = atomic_load(&os->served);
    *ret_oldest = atomic_load(&os->oldest);
}

void fs_offline_store_sync(struct fetch_store *s)
{
    struct offline_store *os = (struct offline_store *)s;
    int r = cache_meta_sync(os->meta);
    if (r < 0)
        fs_debug("metadata cache: sync: %s", strerror(-r));
}
