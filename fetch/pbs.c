/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pbs.h"
#include "didx.h"
#include "chunk.h"
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "fidx.h"
#include "names.h"
#include "pbs_format.h"
#include "pbs_key.h"

/* index files: 4096 + 32 bytes per chunk; 1 GiB covers 128 TiB images at 4 MiB chunks */
#define FIDX_MAX (1024u * 1024 * 1024)

struct walk {
    struct fetch_store *store;
    struct fetch_pbs_snapshot *v;
    size_t n, cap;
    char **warn;
    size_t nwarn, capwarn;
    int fatal; /* -ENOMEM */
};

__attribute__((format(printf, 2, 3))) static void warn(struct walk *w, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    if (w->nwarn == w->capwarn) {
        size_t ncap = w->capwarn ? w->capwarn * 2 : 8;
        char **nv = realloc(w->warn, ncap * sizeof(*nv));
        if (!nv) {
            w->fatal = -ENOMEM;
            return;
        }
        w->warn = nv;
        w->capwarn = ncap;
    }
    va_start(ap, fmt);
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    va_end(ap);
    if (!line) {
        w->fatal = -ENOMEM;
        return;
    }
    w->warn[w->nwarn++] = line;
}

static char *join(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", a, a[0] ? "/" : "", b) < 0)
        return NULL;
    return s;
}

/* Whether the listing @d of @n entries has a subdirectory @name. */
static bool has_subdir(const struct fetch_dirent *d, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].is_dir && !strcmp(d[i].name, name))
            return true;
    return false;
}

/* Lists @dir/@sub only to learn whether it exists: 0, -ENOENT, -ENOTDIR, ... */
static int list_probe(struct fetch_store *s, const char *dir, const char *sub, fetch_error *err)
{
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    char *path = join(dir, sub);
    int r;

    if (!path)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = fetch_store_list(s, path, &d, &n, err);
    fetch_dirents_free(d, n);
    free(path);
    return r;
}

int fetch_pbs_probe_dir(struct fetch_store *s, const char *dir, fetch_error *err)
{
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    bool found = false;
    /* the directory itself, not .chunks: that holds 65536 directories, which
     * a remote store would have to list page by page */
    int r = fetch_store_list(s, dir, &d, &n, err);
    bool dir_listed = r == 0;
    if (r == 0)
        found = has_subdir(d, n, PBS_CHUNK_DIR);
    fetch_dirents_free(d, n);
    if (r == 0 && !found) {
        /*
         * Directory indexes may hide dot entries (nginx's does). PBS creates
         * all 65536 prefix directories with the datastore, so the first one
         * confirms it for the price of a few entries (the whole .chunks/
         * listing is 7 MB over nginx). A copy that left out empty directories
         * may lack it: then .chunks itself, which holds only the used ones.
         */
        r = list_probe(s, dir, PBS_CHUNK_DIR "/0000", err);
        if (r == -ENOENT || r == -ENOTDIR)
            r = list_probe(s, dir, PBS_CHUNK_DIR, err);
    }
    if (dir_listed && (r == -ENOENT || r == -ENOTDIR))
        return fetch_error_set(err, -EMEDIUMTYPE,
                               "not a Proxmox Backup Server datastore (no %s directory)",
                               PBS_CHUNK_DIR);
    return r;
}

int fetch_pbs_probe(struct fetch_store *s, fetch_error *err)
{
    return fetch_pbs_probe_dir(s, "", err);
}

static int read_manifest(struct fetch_store *s, const char *dir, struct fetch_manifest **ret,
                         fetch_error *err)
{
    void *raw = NULL;
    size_t len = 0;
    fetch_data data = {0};
    struct fetch_blob_expect exp = {.max_len = FETCH_PBS_SMALL_BLOB_MAX};
    char *path = join(dir, PBS_MANIFEST_NAME);
    int r;

    if (!path)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = fetch_store_get(s, path, FETCH_PBS_SMALL_BLOB_MAX + PBS_BLOB_HDR_LEN, &raw, &len, err);
    free(path);
    if (r < 0)
        return r;
    r = fetch_blob_decode(raw, len, &exp, &data, err);
    if (r < 0)
        return fetch_error_prefix(err, r, "manifest");
    r = fetch_manifest_parse((const char *)data.bytes, data.len, ret, err);
    fetch_data_release(&data);
    return r;
}

static void add_snapshot(struct walk *w, const char *ns, const char *type, const char *id,
                         const char *dir, const char *time_str)
{
    struct fetch_pbs_snapshot *snap;
    struct fetch_manifest *m = NULL;
    fetch_error err = {""};
    int64_t epoch = 0;
    int r;

    r = read_manifest(w->store, dir, &m, &err);
    if (r == -ENOENT)
        return; /* not finished yet (or being written) */
    if (r == -ENOMEM) {
        w->fatal = r;
        return;
    }
    if (r < 0) {
        warn(w, "skipping snapshot %s: %s", dir, err.msg);
        return;
    }
    (void)fetch_name_parse_time(time_str, &epoch);
    if (strcmp(m->type, type) || strcmp(m->id, id) || m->time != epoch) {
        warn(w, "skipping snapshot %s: manifest names %s/%s at %lld", dir, m->type, m->id,
             (long long)m->time);
        fetch_manifest_free(m);
        return;
    }
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        struct fetch_pbs_snapshot *nv = realloc(w->v, ncap * sizeof(*nv));
        if (!nv) {
            fetch_manifest_free(m);
            w->fatal = -ENOMEM;
            return;
        }
        w->v = nv;
        w->cap = ncap;
    }
    snap = &w->v[w->n];
    memset(snap, 0, sizeof(*snap));
    snap->ns = strdup(ns);
    snap->id = strdup(id);
    snap->path = strdup(dir);
    if (!snap->ns || !snap->id || !snap->path) {
        free(snap->ns);
        free(snap->id);
        free(snap->path);
        fetch_manifest_free(m);
        w->fatal = -ENOMEM;
        return;
    }
    snprintf(snap->type, sizeof(snap->type), "%s", type);
    snprintf(snap->time_str, sizeof(snap->time_str), "%s", time_str);
    snap->time = epoch;
    snap->manifest = m;
    w->n++;
}

static int list_or_warn(struct walk *w, const char *dir, struct fetch_dirent **d, size_t *n)
{
    fetch_error err = {""};
    int r = fetch_store_list(w->store, dir, d, n, &err);
    if (r == -ENOMEM)
        w->fatal = r;
    else if (r < 0)
        warn(w, "cannot list %s: %s", dir, err.msg);
    return r;
}

/* Where the walk is: the namespace ("" or "a/b"), its depth, and below it the
 * type and id once known. */
struct level {
    const char *ns;
    int depth;
    const char *type;
    const char *id;
};

typedef void (*visit_fn)(struct walk *w, const struct level *lv, const char *path,
                         const char *name);

/*
 * Calls @visit for each subdirectory of @dir whose name passes @valid, with
 * its store path. Other subdirectories are reported as "not a valid @what",
 * except hidden ones; plain files (owner, notes, .lock) are not ours to judge.
 */
static void each_subdir(struct walk *w, const char *dir, bool (*valid)(const char *),
                        const char *what, visit_fn visit, const struct level *lv)
{
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    if (list_or_warn(w, dir, &d, &n) < 0)
        return;
    for (size_t i = 0; i < n && !w->fatal; i++) {
        char *path;
        if (!d[i].is_dir)
            continue;
        if (!valid(d[i].name)) {
            if (d[i].name[0] != '.')
                warn(w, "ignoring %s/%s: not a valid %s", dir, d[i].name, what);
            continue;
        }
        path = join(dir, d[i].name);
        if (!path) {
            w->fatal = -ENOMEM;
            break;
        }
        visit(w, lv, path, d[i].name);
        free(path);
    }
    fetch_dirents_free(d, n);
}

static void visit_snapshot(struct walk *w, const struct level *lv, const char *path,
                           const char *name)
{
    add_snapshot(w, lv->ns, lv->type, lv->id, path, name);
}

static void visit_group(struct walk *w, const struct level *lv, const char *path, const char *name)
{
    struct level sub = *lv;
    sub.id = name;
    each_subdir(w, path, fetch_name_is_time, "snapshot name", visit_snapshot, &sub);
}

static void walk_ns(struct walk *w, const char *dir, const char *ns, int depth);

static void visit_ns(struct walk *w, const struct level *lv, const char *path, const char *name)
{
    char *ns = join(lv->ns, name);
    if (!ns) {
        w->fatal = -ENOMEM;
        return;
    }
    if (strlen(ns) > PBS_NS_MAX_LEN)
        warn(w, "ignoring %s: namespace name too long", path);
    else
        walk_ns(w, path, ns, lv->depth + 1);
    free(ns);
}

/* @dir: store path of the namespace ("" for the root); @ns: "a/b" */
static void walk_ns(struct walk *w, const char *dir, const char *ns, int depth)
{
    struct level lv = {.ns = ns, .depth = depth};
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    if (list_or_warn(w, dir, &d, &n) < 0)
        return;
    for (size_t i = 0; i < n && !w->fatal; i++) {
        char *sub;
        if (!d[i].is_dir)
            continue;
        /* anything else (.chunks, .lock, lost+found, ...) is not ours to show */
        if (!fetch_name_is_type(d[i].name) && strcmp(d[i].name, PBS_NS_DIR))
            continue;
        sub = join(dir, d[i].name);
        if (!sub) {
            w->fatal = -ENOMEM;
            break;
        }
        if (strcmp(d[i].name, PBS_NS_DIR)) {
            lv.type = d[i].name;
            each_subdir(w, sub, fetch_name_is_id, "backup id", visit_group, &lv);
        } else if (depth >= PBS_NS_MAX_DEPTH) {
            warn(w, "ignoring %s: namespaces nested deeper than %d", sub, PBS_NS_MAX_DEPTH);
        } else {
            each_subdir(w, sub, fetch_name_is_ns, "namespace name", visit_ns, &lv);
        }
        free(sub);
    }
    fetch_dirents_free(d, n);
}

static int snap_cmp(const void *a, const void *b)
{
    const struct fetch_pbs_snapshot *x = a, *y = b;
    int c = strcmp(x->ns, y->ns);
    if (!c)
        c = strcmp(x->type, y->type);
    if (!c)
        c = strcmp(x->id, y->id);
    if (!c)
        c = (x->time > y->time) - (x->time < y->time);
    return c;
}

int fetch_pbs_catalog_load(struct fetch_store *s, struct fetch_pbs_catalog **ret, fetch_error *err)
{
    struct walk w = {.store = s};
    struct fetch_pbs_catalog *c;
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    int r;

    r = fetch_store_list(s, "", &d, &n, err);
    fetch_dirents_free(d, n);
    if (r < 0)
        return r;
    walk_ns(&w, "", "", 0);
    c = calloc(1, sizeof(*c));
    if (w.fatal || !c) {
        free(c);
        c = calloc(1, sizeof(*c));
        if (c) {
            c->snaps = w.v;
            c->count = w.n;
            c->warnings = w.warn;
            c->warning_count = w.nwarn;
        }
        fetch_pbs_catalog_free(c);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    if (w.n)
        qsort(w.v, w.n, sizeof(*w.v), snap_cmp);
    c->snaps = w.v;
    c->count = w.n;
    c->warnings = w.warn;
    c->warning_count = w.nwarn;
    *ret = c;
    return 0;
}

/* Checks "[ns/NS/]...TYPE/ID/TIME" and splits out the namespace ("a/b"). */
static int parse_snapshot_path(const char *path, char *ns, size_t nslen, char *type, size_t typelen,
                               char *id, size_t idlen, char *time_str, size_t timelen)
{
    char buf[1024], *parts[3 + 2 * PBS_NS_MAX_DEPTH];
    size_t np = 0, at = 0;
    char *p;

    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -EINVAL;
    for (p = buf; np < sizeof(parts) / sizeof(parts[0]);) {
        char *slash = strchr(p, '/');
        parts[np++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    if (strchr(p, '/') || np < 3 || (np - 3) % 2)
        return -EINVAL;
    ns[0] = '\0';
    for (size_t i = 0; i + 3 < np; i += 2) {
        if (strcmp(parts[i], PBS_NS_DIR) || !fetch_name_is_ns(parts[i + 1]))
            return -EINVAL;
        at += (size_t)snprintf(ns + at, nslen - at, "%s%s", at ? "/" : "", parts[i + 1]);
        if (at >= nslen)
            return -EINVAL;
    }
    if (!fetch_name_is_type(parts[np - 3]) || !fetch_name_is_id(parts[np - 2]) ||
        !fetch_name_is_time(parts[np - 1]))
        return -EINVAL;
    snprintf(type, typelen, "%s", parts[np - 3]);
    snprintf(id, idlen, "%s", parts[np - 2]);
    snprintf(time_str, timelen, "%s", parts[np - 1]);
    return 0;
}

int fetch_pbs_catalog_load_paths(struct fetch_store *s, const char *const *paths, size_t n,
                                 struct fetch_pbs_catalog **ret, fetch_error *err)
{
    struct walk w = {.store = s};
    struct fetch_pbs_catalog *c = NULL;
    int r = 0;

    for (size_t i = 0; i < n && !r; i++) {
        char ns[PBS_NS_MAX_LEN + 1], type[8], id[256], time_str[24];
        size_t before = w.n, nwarn = w.nwarn;
        if (parse_snapshot_path(paths[i], ns, sizeof(ns), type, sizeof(type), id, sizeof(id),
                                time_str, sizeof(time_str)) < 0) {
            r = fetch_error_set(err, -EINVAL,
                                "snapshot '%s': expected [ns/NS/]TYPE/ID/YYYY-MM-DDTHH:MM:SSZ",
                                paths[i]);
            break;
        }
        add_snapshot(&w, ns, type, id, paths[i], time_str);
        if (w.fatal)
            r = fetch_error_set(err, w.fatal, "out of memory");
        else if (w.n == before)
            r = fetch_error_set(err, -ENOENT, "snapshot %s: %s", paths[i],
                                w.nwarn > nwarn ? w.warn[w.nwarn - 1]
                                                : "not found (no index.json.blob)");
    }
    if (!r && !(c = calloc(1, sizeof(*c))))
        r = fetch_error_set(err, -ENOMEM, "out of memory");
    if (!r && w.n)
        qsort(w.v, w.n, sizeof(*w.v), snap_cmp);
    if (!c)
        c = calloc(1, sizeof(*c));
    if (c) {
        c->snaps = w.v;
        c->count = w.n;
        c->warnings = w.warn;
        c->warning_count = w.nwarn;
    }
    if (r < 0 || !c) {
        fetch_pbs_catalog_free(c);
        return r < 0 ? r : -ENOMEM;
    }
    *ret = c;
    return 0;
}

void fetch_pbs_catalog_free(struct fetch_pbs_catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++) {
        free(c->snaps[i].ns);
        free(c->snaps[i].id);
        free(c->snaps[i].path);
        fetch_manifest_free(c->snaps[i].manifest);
    }
    free(c->snaps);
    for (size_t i = 0; i < c->warning_count; i++)
        free(c->warnings[i]);
    free(c->warnings);
    free(c);
}

enum fetch_pbs_archive fetch_pbs_archive_kind(const char *file, size_t *ret_stem_len)
{
    static const struct {
        const char *suffix;
        enum fetch_pbs_archive kind;
    } kinds[] = {
        {".fidx", FETCH_PBS_ARCHIVE_FIDX},
        {".didx", FETCH_PBS_ARCHIVE_DIDX},
        {".blob", FETCH_PBS_ARCHIVE_BLOB},
    };
    size_t len = strlen(file);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t sl = strlen(kinds[i].suffix);
        if (len > sl && !strcmp(file + len - sl, kinds[i].suffix)) {
            if (ret_stem_len)
                *ret_stem_len = len - sl;
            if (kinds[i].kind == FETCH_PBS_ARCHIVE_DIDX && !strcmp(file, PBS_CATALOG_NAME))
                return FETCH_PBS_ARCHIVE_CATALOG;
            return kinds[i].kind;
        }
    }
    if (ret_stem_len)
        *ret_stem_len = len;
    return FETCH_PBS_ARCHIVE_OTHER;
}

static int read_snapshot_file(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                              const struct fetch_manifest_file *file, size_t max, void **ret,
                              size_t *ret_len, fetch_error *err)
{
    char *path;
    int r;
    if (!fetch_name_is_file(file->name))
        return fetch_error_set(err, -EBADMSG, "invalid file name in manifest");
    path = join(snap->path, file->name);
    if (!path)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = fetch_store_get(s, path, max, ret, ret_len, err);
    free(path);
    return r;
}

int fetch_pbs_check_key(const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        fetch_error *err)
{
    if (file->crypt != FETCH_CRYPT_ENCRYPT)
        return 0;
    if (!key)
        return fetch_error_set(err, -ENOKEY, "%s is encrypted: give its key with --keyfile",
                               file->name);
    return fetch_manifest_check_key(snap->manifest, key, "encrypted", err);
}

/* Reads index @file of @snap (at most @max bytes), once its key is known to fit. */
static int read_index(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                      const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                      size_t max, void **buf, size_t *len, fetch_error *err)
{
    int r = fetch_pbs_check_key(snap, file, key, err);
    return r < 0 ? r : read_snapshot_file(s, snap, file, max, buf, len, err);
}

/* The id key that keys @file's chunk digests, or NULL for a plain archive. */
static const uint8_t *id_key_of(const struct fetch_manifest_file *file,
                                const struct fetch_pbs_key *key)
{
    return file->crypt == FETCH_CRYPT_ENCRYPT ? key->id_key : NULL;
}

int fetch_pbs_open_fidx(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        struct fetch_image **ret, fetch_error *err)
{
    struct fetch_fidx *idx = NULL;
    void *buf = NULL;
    size_t len = 0;
    int r;

    if ((r = read_index(s, snap, file, key, FIDX_MAX, &buf, &len, err)) < 0 ||
        (r = fetch_fidx_parse(buf, len, &idx, err)) < 0)
        return r;
    if (memcmp(idx->csum, file->csum, sizeof(idx->csum)) != 0) {
        fetch_fidx_free(idx);
        return fetch_error_set(err, -EBADMSG, "index checksum differs from the manifest's");
    }
    if (idx->size != file->size) {
        r = fetch_error_set(err, -EBADMSG, "index size %llu differs from the manifest's %llu",
                            (unsigned long long)idx->size, (unsigned long long)file->size);
        fetch_fidx_free(idx);
        return r;
    }
    r = fetch_image_from_fidx(idx, id_key_of(file, key), ret, err);
    fetch_fidx_free(idx);
    return r;
}

int fetch_pbs_open_didx(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        struct fetch_image **ret, fetch_error *err)
{
    struct fetch_didx *idx = NULL;
    void *buf = NULL;
    size_t len = 0;
    int r;

    if ((r = read_index(s, snap, file, key, FETCH_DIDX_FILE_MAX, &buf, &len, err)) < 0 ||
        (r = fetch_didx_parse(buf, len, &idx, err)) < 0)
        return r;
    if (memcmp(idx->csum, file->csum, sizeof(idx->csum)) != 0)
        r = fetch_error_set(err, -EBADMSG, "%s: index checksum differs from the manifest's",
                            file->name);
    else if (idx->size != file->size)
        r = fetch_error_set(err, -EBADMSG, "%s: stream size %llu differs from the manifest's %llu",
                            file->name, (unsigned long long)idx->size,
                            (unsigned long long)file->size);
    else
        r = fetch_image_from_didx(idx, id_key_of(file, key), ret, err);
    fetch_didx_free(idx);
    return r;
}

/*
 * Whether blob @raw (@what, for the message) is encrypted exactly when its
 * archive is (@encrypted): an encrypted archive names only encrypted blobs
 * and chunks, a plain or signed one only plain ones (pbs.md §7). 0, or
 * -EBADMSG; a blob of unknown kind is left to the decoder to refuse.
 */
static int check_crypt(const void *raw, size_t len, bool encrypted, const char *what,
                       fetch_error *err)
{
    int k = fetch_blob_kind(raw, len);
    if (k < 0 || (k == FETCH_BLOB_ENCRYPTED || k == FETCH_BLOB_ENCRYPTED_ZSTD) == encrypted)
        return 0;
    return fetch_error_set(err, -EBADMSG,
                           encrypted ? "%s of an encrypted archive is not encrypted"
                                     : "%s is encrypted, although the manifest "
                                       "says its archive is not",
                           what);
}

int fetch_pbs_read_blob(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        fetch_data *ret, fetch_error *err)
{
    struct fetch_blob_expect exp = {.max_len = FETCH_PBS_SMALL_BLOB_MAX};
    uint8_t csum[32];
    void *raw = NULL;
    size_t len = 0;
    int r;

    if ((r = fetch_pbs_check_key(snap, file, key, err)) < 0)
        return r;
    if (file->crypt == FETCH_CRYPT_ENCRYPT)
        exp.key = key;
    r = read_snapshot_file(s, snap, file, FETCH_PBS_SMALL_BLOB_MAX + PBS_BLOB_ENC_HDR_LEN, &raw,
                           &len, err);
    if (r < 0)
        return r;
    if ((r = fetch_sha256(raw, len, csum)) < 0) {
        fetch_buf_free(raw);
        return fetch_error_set(err, r, "SHA-256 failed");
    }
    if (len != file->size || memcmp(csum, file->csum, sizeof(csum)) != 0) {
        fetch_buf_free(raw);
        return fetch_error_set(err, -EBADMSG, "%s does not match the manifest's size/checksum",
                               file->name);
    }
    if (strcmp(file->name, PBS_MASTER_KEY_BLOB_NAME) &&
        (r = check_crypt(raw, len, file->crypt == FETCH_CRYPT_ENCRYPT, file->name, err)) < 0) {
        fetch_buf_free(raw);
        return r;
    }
    return fetch_blob_decode(raw, len, &exp, ret, err);
}

void fetch_pbs_chunk_path(const uint8_t digest[32], char *buf, size_t len)
{
    char hex[2 * PBS_DIGEST_LEN + 1];
    fetch_hex_encode(digest, PBS_DIGEST_LEN, hex);
    snprintf(buf, len, "%s/%.4s/%s", PBS_CHUNK_DIR, hex, hex);
}

/* a stored chunk is never much larger than its plaintext (PBS keeps the
 * compressed form only when it is smaller): reads are bounded by that */
size_t fetch_pbs_chunk_max_raw(size_t len)
{
    return len + len / 128 + 1024 + PBS_BLOB_ENC_HDR_LEN;
}

int fetch_pbs_decode_chunk(const uint8_t digest[32], size_t len, const struct fetch_pbs_key *key,
                           void *raw, size_t raw_len, const uint8_t *plain_sha256, fetch_data *ret,
                           fetch_error *err)
{
    struct fetch_blob_expect exp = {
        .len = len, .digest = digest, .key = key, .plain_sha256 = plain_sha256};
    char hex[2 * PBS_DIGEST_LEN + 1], what[40];
    int r;

    fetch_hex_encode(digest, PBS_DIGEST_LEN, hex);
    if (raw_len == 0) {
        fetch_buf_free(raw);
        return fetch_error_set(err, -ENOENT, "chunk %s is missing (empty object)", hex);
    }
    /* with a key, the chunk of an encrypted archive; without, of a plain
     * one, whose encrypted chunk is a mix-up to name as such (not a key
     * to ask for: one may have been given for the other archives) */
    snprintf(what, sizeof(what), "chunk %.16s…", hex);
    if ((r = check_crypt(raw, raw_len, key != NULL, what, err)) < 0) {
        fetch_buf_free(raw);
        return r;
    }
    r = fetch_blob_decode(raw, raw_len, &exp, ret, err);
    if (r < 0)
        return fetch_error_prefix(err, r, "chunk %.16s…", hex);
    return 0;
}

static int pbs_chunk_path(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                          unsigned name, char *buf, size_t len)
{
    char path[FETCH_PBS_CHUNK_PATH_MAX];
    int w;
    (void)name;
    fetch_pbs_chunk_path(ch->digest, path, sizeof(path));
    w = snprintf(buf, len, "%s%s", ctx && ctx->prefix ? ctx->prefix : "", path);
    return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

static size_t pbs_chunk_max_raw(const struct fetch_chunk_ref *ch, unsigned name)
{
    (void)name;
    return fetch_pbs_chunk_max_raw(ch->len);
}

/* Uncompressed blobs are used in place: plain ones after their 12-byte
 * header, encrypted ones decrypted where the ciphertext lies after 44. */
static size_t pbs_chunk_skew(const struct fetch_chunk_ref *ch, unsigned name)
{
    (void)name;
    return ch->algo == FETCH_DIGEST_SHA256_KEYED ? PBS_BLOB_ENC_HDR_LEN : PBS_BLOB_HDR_LEN;
}

/* An unencrypted chunk stored uncompressed: its digest is the SHA-256 of
 * the bytes after the header. */
static bool pbs_chunk_plain_after_skew(const struct fetch_chunk_ref *ch, unsigned name,
                                       const uint8_t *head)
{
    (void)name;
    return ch->algo == FETCH_DIGEST_SHA256 &&
           fetch_blob_kind(head, PBS_BLOB_HDR_LEN) == FETCH_BLOB_PLAIN;
}

static int pbs_chunk_decode(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                            unsigned name, void *raw, size_t raw_len, const uint8_t *plain_sha256,
                            fetch_data *ret, fetch_error *err)
{
    const struct fetch_pbs_key *key = NULL;
    (void)name;
    if (ch->algo == FETCH_DIGEST_SHA256_KEYED) {
        /* a chunk of an encrypted archive: its digest is keyed */
        if (!ctx || !ctx->key) {
            fetch_buf_free(raw);
            return fetch_error_set(err, -ENOKEY, "chunk of an encrypted archive, and no key");
        }
        key = ctx->key;
    }
    return fetch_pbs_decode_chunk(ch->digest, ch->len, key, raw, raw_len, plain_sha256, ret, err);
}

/* A PBS chunk: .chunks/<4 hex>/<64 hex>, a blob (pbs.md §5). */
const struct fetch_chunk_format fetch_pbs_chunk_format = {
    .label = "PBS chunk",
    .names = 1,
    .path = pbs_chunk_path,
    .max_raw = pbs_chunk_max_raw,
    .skew = pbs_chunk_skew,
    .plain_after_skew = pbs_chunk_plain_after_skew,
    .decode = pbs_chunk_decode,
};

int fetch_pbs_read_chunk(struct fetch_store *s, const uint8_t digest[32], size_t len,
                         fetch_data *ret, fetch_error *err)
{
    char path[FETCH_PBS_CHUNK_PATH_MAX];
    void *raw = NULL;
    size_t raw_len = 0;
    int r;

    fetch_pbs_chunk_path(digest, path, sizeof(path));
    r = fetch_store_get(s, path, fetch_pbs_chunk_max_raw(len), &raw, &raw_len, err);
    if (r < 0)
        return r == -ENOENT ? fetch_error_set(err, r, "chunk %s is missing", path) : r;
    return fetch_pbs_decode_chunk(digest, len, NULL, raw, raw_len, NULL, ret, err);
}
