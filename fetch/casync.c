/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "casync.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caibx.h"
#include "names.h"
#include "pbs.h"

#define MAX_WARNINGS 64

int fetch_casync_index_kind(const char *name)
{
    size_t len = strlen(name);
    if (len > 6 && !strcmp(name + len - 6, ".caibx"))
        return 1;
    if (len > 6 && !strcmp(name + len - 6, ".caidx"))
        return 2;
    return 0;
}

/* Every '/'-separated component passes fetch_name_is_file. */
static bool path_is_safe(const char *path)
{
    char comp[256];
    const char *p = path;
    if (!*p)
        return false;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len >= sizeof(comp))
            return false;
        memcpy(comp, p, len);
        comp[len] = '\0';
        if (!fetch_name_is_file(comp))
            return false;
        p += len + (slash != NULL);
        if (slash && !*p)
            return false;
    }
    return true;
}

struct walk {
    struct fetch_store *store;
    bool load;
    struct fetch_casync_index *v;
    size_t n, cap;
    char **warnings;
    size_t nwarn;
    size_t dirs;
    char *datastore; /* the first datastore met below the root */
    size_t ndatastores;
    char *unsafe; /* the first entry skipped for its name */
    size_t nunsafe;
    int fatal;
    fetch_error *err; /* why the root could not be listed */
};

__attribute__((format(printf, 2, 3))) static void warn(struct walk *w, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    char **nv;
    if (w->nwarn >= MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s || !(nv = realloc(w->warnings, (w->nwarn + 1) * sizeof(*nv)))) {
        free(s);
        w->fatal = -ENOMEM;
        return;
    }
    w->warnings = nv;
    w->warnings[w->nwarn++] = s;
}

static void index_clear(struct fetch_casync_index *x)
{
    free(x->path);
    fetch_image_free(x->image);
    free(x->error_msg);
    memset(x, 0, sizeof(*x));
}

int fetch_casync_open_index(struct fetch_store *s, const char *path, struct fetch_casync_index *ret,
                            fetch_error *err)
{
    struct fetch_caibx *idx = NULL;
    void *raw = NULL;
    size_t len = 0;
    int r = fetch_store_get(s, path, FETCH_CAIBX_FILE_MAX, &raw, &len, err);

    if (r == -EFBIG)
        return fetch_error_set(err, r, "%s: larger than %llu bytes, the largest index read", path,
                               (unsigned long long)FETCH_CAIBX_FILE_MAX);
    if (r < 0)
        return r; /* the store's message names the path */
    if ((r = fetch_caibx_parse(raw, len, &idx, err)) < 0)
        return fetch_error_prefix(err, r, "%s", path);
    r = fetch_image_from_caibx(idx, &ret->image, err);
    if (r == 0) {
        ret->chunk_min = idx->chunk_min;
        ret->chunk_avg = idx->chunk_avg;
        ret->chunk_max = idx->chunk_max;
        ret->algo = idx->algo;
    } else {
        fetch_error_prefix(err, r, "%s", path);
    }
    fetch_caibx_free(idx);
    return r;
}

/* Appends index @path (taken over) and loads it if it is a blob index. */
static void add_index(struct walk *w, char *path, bool archive)
{
    struct fetch_casync_index *x;
    fetch_error err = {""};
    if (w->n == FETCH_CASYNC_MAX_INDEXES) {
        if (w->nwarn < MAX_WARNINGS)
            warn(w, "more than %d indexes: %s and later ones are left out",
                 FETCH_CASYNC_MAX_INDEXES, path);
        free(path);
        return;
    }
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        struct fetch_casync_index *nv = realloc(w->v, ncap * sizeof(*nv));
        if (!nv) {
            free(path);
            w->fatal = -ENOMEM;
            return;
        }
        w->v = nv;
        w->cap = ncap;
    }
    x = &w->v[w->n++];
    memset(x, 0, sizeof(*x));
    x->path = path;
    x->archive = archive;
    if (archive || !w->load)
        return;
    x->error = fetch_casync_open_index(w->store, path, x, &err);
    if (x->error == -ENOMEM)
        w->fatal = -ENOMEM;
    else if (x->error < 0 && !(x->error_msg = strdup(err.msg)))
        w->fatal = -ENOMEM;
}

/*
 * Whether directory @dir (listed in @d) is a Proxmox Backup Server datastore:
 * it has .chunks, or, when its listing may hide dot entries, it has a
 * backup-type or ns directory and the datastore probe confirms it.
 */
static bool is_datastore(struct walk *w, const char *dir, const struct fetch_dirent *d, size_t n)
{
    fetch_error err = {""};
    bool candidate = false;
    for (size_t i = 0; i < n; i++) {
        if (!d[i].is_dir)
            continue;
        if (!strcmp(d[i].name, ".chunks"))
            return true;
        if (fetch_name_is_type(d[i].name) || !strcmp(d[i].name, "ns"))
            candidate = true;
    }
    return candidate && fetch_pbs_probe_dir(w->store, dir, &err) == 0;
}

static void walk_dir(struct walk *w, const char *dir, int depth)
{
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    fetch_error err = {""};
    int r;

    if (++w->dirs > FETCH_CASYNC_MAX_DIRS) {
        if (w->dirs == FETCH_CASYNC_MAX_DIRS + 1)
            warn(w, "more than %d directories: the rest is not searched for indexes",
                 FETCH_CASYNC_MAX_DIRS);
        return;
    }
    r = fetch_store_list(w->store, dir, &d, &n, !*dir ? w->err : &err);
    if (r < 0) {
        if (r == -ENOMEM || !*dir)
            w->fatal = r;
        else
            warn(w, "cannot list %s: %s", dir, err.msg);
        return;
    }
    if (*dir && is_datastore(w, dir, d, n)) {
        /* its snapshots are not indexes (and their names not safe ones) */
        if (!w->ndatastores++ && !(w->datastore = strdup(dir)))
            w->fatal = -ENOMEM;
        fetch_dirents_free(d, n);
        return;
    }
    for (size_t i = 0; i < n && !w->fatal; i++) {
        const char *name = d[i].name;
        size_t len = strlen(name);
        int kind = d[i].is_dir ? 0 : fetch_casync_index_kind(name);
        char *path;

        if (name[0] == '.')
            continue;
        if (d[i].is_dir &&
            ((len > 6 && !strcmp(name + len - 6, ".castr")) ||
             (len == 4 && fetch_hex_value(name[0]) >= 0 && fetch_hex_value(name[1]) >= 0 &&
              fetch_hex_value(name[2]) >= 0 && fetch_hex_value(name[3]) >= 0)))
            continue; /* a chunk store or one of its 65536 directories: no indexes */
        if (!d[i].is_dir && !kind)
            continue;
        if (!fetch_name_is_file(name)) {
            /* told once, at the end, with the count */
            if (!w->nunsafe++ && asprintf(&w->unsafe, "%s%s%s", dir, *dir ? "/" : "", name) < 0) {
                w->unsafe = NULL;
                w->fatal = -ENOMEM;
            }
            continue;
        }
        if (asprintf(&path, "%s%s%s", dir, *dir ? "/" : "", name) < 0) {
            w->fatal = -ENOMEM;
            break;
        }
        if (strlen(path) >= FETCH_CASYNC_PATH_MAX) {
            /* a mount path must hold it (local stores cannot have such) */
            warn(w, "%.64s…: a path longer than %d bytes: skipped", path,
                 FETCH_CASYNC_PATH_MAX - 1);
            free(path);
        } else if (!d[i].is_dir) {
            add_index(w, path, kind == 2);
        } else if (depth >= FETCH_CASYNC_MAX_DEPTH) {
            warn(w, "%s: deeper than %d levels: not searched", path, FETCH_CASYNC_MAX_DEPTH);
            free(path);
        } else {
            walk_dir(w, path, depth + 1);
            free(path);
        }
    }
    fetch_dirents_free(d, n);
}

static int index_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fetch_casync_index *)a)->path,
                  ((const struct fetch_casync_index *)b)->path);
}

/* strcmp(NAME + @sfx, path) for the @len bytes of NAME at @name. */
static int index_name_cmp(const char *name, size_t len, const char *sfx, const char *path)
{
    int c = strncmp(name, path, len);
    return c ? c : strcmp(sfx, path + len);
}

/* The index whose mount name is the @len bytes at @name (NAME.caibx, else
 * NAME.caidx) in sorted @v, or NULL. */
static struct fetch_casync_index *find_named(struct fetch_casync_index *v, size_t n,
                                             const char *name, size_t len)
{
    static const char *const sfx[] = {".caibx", ".caidx"};
    for (size_t k = 0; k < 2; k++) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = index_name_cmp(name, len, sfx[k], v[mid].path);
            if (c == 0)
                return &v[mid];
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
    }
    return NULL;
}

/*
 * Marks the indexes the mount cannot show because another index takes
 * their name: "x.caidx" beside "x.caibx" (both would be x: the file, listed
 * first, is shown), and the indexes below a directory whose name an index
 * takes ("x.caibx" or "x.caidx" beside "x/y.caibx"). In sorted order
 * "x.caibx" comes before "x.caidx" and both before "x/..." ('.' < '/'), so
 * the index that takes a name is always decided before the ones it hides.
 */
static void mark_shadowed(struct fetch_casync_index *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = v[i].path;
        size_t len = strlen(p);
        if (v[i].archive && len > 6) {
            const struct fetch_casync_index *o = find_named(v, n, p, len - 6);
            if (o && o != &v[i] && !o->shadowed_by)
                v[i].shadowed_by = o->path;
        }
        for (const char *s = strchr(p, '/'); s && !v[i].shadowed_by; s = strchr(s + 1, '/')) {
            const struct fetch_casync_index *o = find_named(v, n, p, (size_t)(s - p));
            if (o && !o->shadowed_by)
                v[i].shadowed_by = o->path;
        }
    }
}

static int walk_finish(struct walk *w, struct fetch_casync_catalog **ret, fetch_error *err)
{
    struct fetch_casync_catalog *c;
    if (w->nunsafe && !w->fatal) {
        if (w->nunsafe == 1)
            warn(w, "skipping %s: unsafe name (names must be [A-Za-z0-9._+-])", w->unsafe);
        else
            warn(w,
                 "skipping %s and %zu more entries: unsafe names (names must be "
                 "[A-Za-z0-9._+-])",
                 w->unsafe, w->nunsafe - 1);
    }
    free(w->unsafe);
    if (!w->fatal && !(c = calloc(1, sizeof(*c))))
        w->fatal = -ENOMEM;
    if (w->fatal) {
        int r = w->fatal;
        for (size_t i = 0; i < w->n; i++)
            index_clear(&w->v[i]);
        free(w->v);
        for (size_t i = 0; i < w->nwarn; i++)
            free(w->warnings[i]);
        free(w->warnings);
        free(w->datastore);
        /* any other error was described where it happened */
        return r == -ENOMEM ? fetch_error_set(err, r, "out of memory") : r;
    }
    if (w->n)
        qsort(w->v, w->n, sizeof(*w->v), index_cmp);
    mark_shadowed(w->v, w->n);
    c->count = w->n;
    c->indexes = w->v;
    c->warning_count = w->nwarn;
    c->warnings = w->warnings;
    c->datastore = w->datastore;
    c->datastore_count = w->ndatastores;
    *ret = c;
    return 0;
}

int fetch_casync_catalog_load(struct fetch_store *s, bool load, struct fetch_casync_catalog **ret,
                              fetch_error *err)
{
    struct walk w = {.store = s, .load = load, .err = err};
    walk_dir(&w, "", 0);
    return walk_finish(&w, ret, err);
}

int fetch_casync_catalog_load_paths(struct fetch_store *s, const char *const *paths, size_t n,
                                    struct fetch_casync_catalog **ret, fetch_error *err)
{
    struct walk w = {.store = s, .load = true};
    for (size_t i = 0; i < n && !w.fatal; i++) {
        const char *p = paths[i];
        int kind = fetch_casync_index_kind(p);
        char *path;

        while (*p == '/')
            p++;
        if (asprintf(&path, "%s%s", p, kind ? "" : ".caibx") < 0) {
            w.fatal = fetch_error_set(err, -ENOMEM, "out of memory");
            break;
        }
        if (!path_is_safe(path)) {
            w.fatal = fetch_error_set(err, -EINVAL,
                                      "%s: not a safe index path (components of "
                                      "[A-Za-z0-9._+-], not starting with '.')",
                                      paths[i]);
            free(path);
            break;
        }
        add_index(&w, path, kind == 2);
        if (!w.fatal && w.v[w.n - 1].error < 0)
            w.fatal = fetch_error_set(err, w.v[w.n - 1].error, "%s", w.v[w.n - 1].error_msg);
    }
    /* any error but ENOMEM already has its message in @err */
    return walk_finish(&w, ret, w.fatal && w.fatal != -ENOMEM ? NULL : err);
}

void fetch_casync_catalog_free(struct fetch_casync_catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++)
        index_clear(&c->indexes[i]);
    free(c->indexes);
    for (size_t i = 0; i < c->warning_count; i++)
        free(c->warnings[i]);
    free(c->warnings);
    free(c->datastore);
    free(c);
}
