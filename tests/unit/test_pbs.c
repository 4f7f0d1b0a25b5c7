/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/pbs.h and fetch/store.h over a local datastore built in
 * a temporary directory (pbs.md §3-§7): probe, catalog walk, archives, chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc_track.h"
#include "fetch/pbs.h"
#include "fetch/repo.h"
#include "fetch/store.h"
#include "fixtures.h"

#define T1 "2025-07-10T12:00:00Z"
#define T0 "2025-07-09T08:00:00Z"
#define CS (64 * 1024u)

struct ds {
    char *root;
    char *outside; /* a second directory, for symlinks pointing out of the datastore */
};

static int ds_setup(void **state)
{
    struct ds *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return -1;
    ds->root = fx_tmpdir();
    ds->outside = fx_tmpdir();
    fx_mkdirs(ds->root, ".chunks");
    fx_write(ds->root, ".lock", "", 0);
    *state = ds;
    return 0;
}

static int ds_teardown(void **state)
{
    struct ds *ds = *state;
    fx_rmtree(ds->root);
    fx_rmtree(ds->outside);
    free(ds->root);
    free(ds->outside);
    free(ds);
    return 0;
}

static struct fetch_store *open_store(const char *root)
{
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    if (fetch_store_open_local(root, &s, &err) != 0)
        fail_msg("fetch_store_open_local(%s): %s", root, err.msg);
    return s;
}

static char *join(const char *a, const char *b)
{
    char *s = NULL;
    assert_true(asprintf(&s, "%s/%s", a, b) > 0);
    return s;
}

/* An image archive written into @dir: chunks under .chunks/, the .fidx, and its manifest entry. */
struct image_fx {
    uint64_t size;
    size_t n;
    uint8_t *digests;
    uint8_t **data; /* per chunk; NULL for zero chunks */
    size_t *len;
};

static void image_fx_free(struct image_fx *im)
{
    for (size_t i = 0; i < im->n; i++)
        free(im->data[i]);
    free(im->data);
    free(im->len);
    free(im->digests);
}

/* @pattern: one letter per chunk, 'D' data or 'Z' zeros; the last chunk is @last bytes. */
static void put_image(const char *root, const char *dir, const char *name, const char *pattern,
                      size_t last, struct image_fx *im, struct fx_file *entry)
{
    size_t n = strlen(pattern), flen;
    uint8_t *file;
    char *rel;

    memset(im, 0, sizeof(*im));
    im->n = n;
    im->size = n ? (uint64_t)(n - 1) * CS + last : 0;
    im->digests = fx_malloc(32 * (n ? n : 1));
    im->data = calloc(n ? n : 1, sizeof(*im->data));
    im->len = calloc(n ? n : 1, sizeof(*im->len));
    assert_non_null(im->data);
    assert_non_null(im->len);
    for (size_t i = 0; i < n; i++) {
        size_t l = i + 1 == n ? last : CS;
        uint8_t *buf = calloc(1, l);
        assert_non_null(buf);
        im->len[i] = l;
        if (pattern[i] == 'D') {
            fx_fill_random(buf, l / 2, i + 7 * n + l);
            fx_fill_text(buf + l / 2, l - l / 2, i);
            im->data[i] = buf;
        }
        /* zero chunks are stored too, like PBS does */
        fx_put_chunk(root, buf, l, i % 2 == 0, im->digests + 32 * i);
        if (pattern[i] != 'D')
            free(buf);
    }
    file = fx_fidx(im->size, CS, im->digests, n, &flen);
    rel = join(dir, name);
    fx_write(root, rel, file, flen);
    free(rel);
    entry->name = name;
    entry->crypt = "none";
    entry->size = im->size;
    fx_sha256(im->digests, 32 * n, entry->csum);
    free(file);
}

/* A .blob written into @dir, and its manifest entry (size and SHA-256 of the raw file). */
static void put_blob(const char *root, const char *dir, const char *name, const char *text,
                     bool compress, struct fx_file *entry)
{
    size_t len;
    uint8_t *raw = compress ? fx_blob_zstd(text, strlen(text), false, &len)
                            : fx_blob_plain(text, strlen(text), &len);
    char *rel = join(dir, name);
    fx_write(root, rel, raw, len);
    entry->name = name;
    entry->crypt = "none";
    entry->size = len;
    fx_sha256(raw, len, entry->csum);
    free(rel);
    free(raw);
}

/* index.json.blob of a snapshot (zstd, without frame content size, as PBS 3.x writes it) */
static void put_manifest(const char *root, const char *dir, const char *type, const char *id,
                         const char *time_str, const struct fx_file *files, size_t n)
{
    char *json = fx_manifest_json(type, id, fx_epoch(time_str), files, n);
    size_t len;
    uint8_t *raw = fx_blob_zstd(json, strlen(json), false, &len);
    char *rel = join(dir, "index.json.blob");
    fx_mkdirs(root, dir);
    fx_write(root, rel, raw, len);
    free(rel);
    free(raw);
    free(json);
}

/* A finished snapshot with one small config blob. */
static void put_snapshot(const char *root, const char *ns_prefix, const char *type, const char *id,
                         const char *time_str)
{
    char *dir = NULL;
    struct fx_file f;
    assert_true(asprintf(&dir, "%s%s/%s/%s", ns_prefix, type, id, time_str) > 0);
    fx_mkdirs(root, dir);
    put_blob(root, dir, "qemu-server.conf.blob", "memory: 2048\ncores: 2\n", true, &f);
    put_manifest(root, dir, type, id, time_str, &f, 1);
    free(dir);
}

static struct fetch_pbs_catalog *load(struct fetch_store *s)
{
    struct fetch_pbs_catalog *c = NULL;
    fetch_error err = {""};
    if (fetch_pbs_catalog_load(s, &c, &err) != 0)
        fail_msg("fetch_pbs_catalog_load: %s", err.msg);
    assert_non_null(c);
    return c;
}

static const struct fetch_pbs_snapshot *find_snap(const struct fetch_pbs_catalog *c,
                                                  const char *path)
{
    for (size_t i = 0; i < c->count; i++) {
        if (!strcmp(c->snaps[i].path, path))
            return &c->snaps[i];
    }
    fail_msg("snapshot %s not in the catalog", path);
    return NULL;
}

static bool warned_about(const struct fetch_pbs_catalog *c, const char *needle)
{
    for (size_t i = 0; i < c->warning_count; i++) {
        if (strstr(c->warnings[i], needle))
            return true;
    }
    return false;
}

static void print_catalog(const struct fetch_pbs_catalog *c)
{
    for (size_t i = 0; i < c->count; i++)
        print_message("  snapshot %s\n", c->snaps[i].path);
    for (size_t i = 0; i < c->warning_count; i++)
        print_message("  warning: %s\n", c->warnings[i]);
}

static void store_open_errors(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    char *missing = join(ds->root, "nonexistent"), *file = join(ds->root, ".lock");
    assert_int_equal(fetch_store_open_local(missing, &s, &err), -ENOENT);
    assert_null(s);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(fetch_store_open_local(file, &s, &err), -ENOTDIR);
    assert_null(s);
    fetch_store_free(NULL);
    free(missing);
    free(file);
}

static void store_list_and_get(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    struct fetch_dirent *d = NULL;
    size_t n = 0, len = 0;
    void *buf = NULL;
    bool saw_chunks = false, saw_lock = false;

    fx_write(ds->root, "hello", "12345", 5);
    assert_int_equal(fetch_store_list(s, "", &d, &n, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(strcmp(d[i].name, ".") && strcmp(d[i].name, ".."));
        if (!strcmp(d[i].name, ".chunks"))
            saw_chunks = d[i].is_dir;
        if (!strcmp(d[i].name, ".lock"))
            saw_lock = !d[i].is_dir;
    }
    assert_true(saw_chunks);
    assert_true(saw_lock);
    fetch_dirents_free(d, n);
    assert_int_equal(fetch_store_list(s, "nope", &d, &n, NULL), -ENOENT);
    assert_int_equal(fetch_store_list(s, "hello", &d, &n, NULL), -ENOTDIR);

    assert_int_equal(fetch_store_get(s, "hello", 5, &buf, &len, NULL), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "12345", 5);
    free(buf);
    assert_int_equal(fetch_store_get(s, "hello", 4, &buf, &len, NULL), -EFBIG);
    assert_int_equal(fetch_store_get(s, "nope", 10, &buf, &len, NULL), -ENOENT);
    assert_int_equal(fetch_store_get(s, ".lock", 10, &buf, &len, NULL), 0);
    assert_int_equal(len, 0);
    free(buf);
    fetch_store_free(s);
}

static void probe(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    fetch_error err = {""};
    assert_int_equal(fetch_pbs_probe(s, &err), 0);
    fetch_store_free(s);

    /* not a datastore: no .chunks */
    s = open_store(ds->outside);
    assert_int_equal(fetch_pbs_probe(s, &err), -EMEDIUMTYPE);
    assert_true(err.msg[0] != '\0');
    fetch_store_free(s);

    /* .chunks is a file */
    fx_write(ds->outside, ".chunks", "x", 1);
    s = open_store(ds->outside);
    assert_int_equal(fetch_pbs_probe(s, NULL), -EMEDIUMTYPE);
    fetch_store_free(s);
}

/*
 * A store over a local one whose listings hide dot entries, as nginx's
 * autoindex does, and which records the directories it was asked to list.
 */
struct hiding_store {
    struct fetch_store base;
    struct fetch_store *inner;
    char listed[8][64];
    size_t nlisted;
};

static int hiding_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret,
                       size_t *ret_n, fetch_error *err)
{
    struct hiding_store *h = (struct hiding_store *)s;
    struct fetch_dirent *d = NULL;
    size_t n = 0, k = 0;
    int r;
    if (h->nlisted < 8)
        snprintf(h->listed[h->nlisted++], sizeof(h->listed[0]), "%s", dir);
    r = fetch_store_list(h->inner, dir, &d, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (d[i].name[0] == '.')
            free(d[i].name);
        else
            d[k++] = d[i];
    }
    *ret = d;
    *ret_n = k;
    return 0;
}

static int hiding_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                      size_t *ret_len, fetch_error *err)
{
    return fetch_store_get(((struct hiding_store *)s)->inner, path, max, ret, ret_len, err);
}

static void hiding_free(struct fetch_store *s)
{
    (void)s;
}

static const struct fetch_store_ops hiding_ops = {
    .kind = "http",
    .list = hiding_list,
    .get = hiding_get,
    .free = hiding_free,
};

static bool was_listed(const struct hiding_store *h, const char *dir)
{
    for (size_t i = 0; i < h->nlisted; i++)
        if (!strcmp(h->listed[i], dir))
            return true;
    return false;
}

/* Behind an index that hides .chunks, the probe lists .chunks/0000 (a few
 * entries), never .chunks itself (65536) when that exists. */
static void probe_hidden_chunks(void **state)
{
    struct ds *ds = *state;
    struct hiding_store h = {.base = {.ops = &hiding_ops}};
    fetch_error err = {""};
    char *chunks;

    h.inner = open_store(ds->root);
    fx_mkdirs(ds->root, ".chunks/0000");
    fx_mkdirs(ds->root, ".chunks/ffff");
    assert_int_equal(fetch_pbs_probe(&h.base, &err), 0);
    assert_true(was_listed(&h, ".chunks/0000"));
    assert_false(was_listed(&h, ".chunks"));

    /* a copy without empty prefix directories: .chunks itself, as before */
    chunks = join(ds->root, ".chunks");
    fx_rmtree(chunks);
    free(chunks);
    fx_mkdirs(ds->root, ".chunks/ffff");
    h.nlisted = 0;
    assert_int_equal(fetch_pbs_probe(&h.base, &err), 0);
    assert_true(was_listed(&h, ".chunks"));

    /* a datastore below the root */
    fx_mkdirs(ds->root, "sub/ds/.chunks/0000");
    h.nlisted = 0;
    assert_int_equal(fetch_pbs_probe_dir(&h.base, "sub/ds", &err), 0);
    assert_true(was_listed(&h, "sub/ds/.chunks/0000"));
    assert_int_equal(fetch_pbs_probe_dir(&h.base, "sub", &err), -EMEDIUMTYPE);
    assert_non_null(strstr(err.msg, "no .chunks directory"));
    assert_int_equal(fetch_pbs_probe_dir(&h.base, "nowhere", &err), -ENOENT);
    fetch_store_free(h.inner);
}

static void probe_symlinked_chunks(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s;
    char *target = join(ds->root, ".chunks"), *link_path = join(ds->outside, ".chunks");
    /* .chunks pointing elsewhere is not followed */
    assert_int_equal(symlink(target, link_path), 0);
    s = open_store(ds->outside);
    assert_int_not_equal(fetch_pbs_probe(s, NULL), 0);
    fetch_store_free(s);
    free(target);
    free(link_path);
}

static void catalog_empty(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    struct fetch_pbs_catalog *c = load(s);
    assert_int_equal(c->count, 0);
    assert_int_equal(c->warning_count, 0);
    fetch_pbs_catalog_free(c);
    fetch_pbs_catalog_free(NULL);
    fetch_store_free(s);
}

static void catalog_sorted_and_filtered(void **state)
{
    struct ds *ds = *state;
    const char *root = ds->root;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    static const struct {
        const char *ns, *type, *id, *time, *path;
    } want[] = {
        {"", "ct", "200", "2025-01-01T00:00:00Z", "ct/200/2025-01-01T00:00:00Z"},
        {"", "host", "alpha", "2025-03-01T10:00:00Z", "host/alpha/2025-03-01T10:00:00Z"},
        {"", "vm", "100", "2025-07-08T00:00:00Z", "vm/100/2025-07-08T00:00:00Z"},
        {"", "vm", "100", T0, "vm/100/" T0},
        {"", "vm", "100", "2025-07-10T06:00:00Z", "vm/100/2025-07-10T06:00:00Z"},
        {"", "vm", "100", T1, "vm/100/" T1},
        {"", "vm", "102", T0, "vm/102/" T0},
        {"a", "vm", "100", T1, "ns/a/vm/100/" T1},
        {"a/b", "vm", "100", T1, "ns/a/ns/b/vm/100/" T1},
    };

    /* listed (created out of order) */
    put_snapshot(root, "", "vm", "100", T1);
    put_snapshot(root, "", "vm", "100", "2025-07-08T00:00:00Z");
    put_snapshot(root, "ns/a/ns/b/", "vm", "100", T1);
    put_snapshot(root, "", "vm", "102", T0);
    put_snapshot(root, "", "host", "alpha", "2025-03-01T10:00:00Z");
    put_snapshot(root, "", "vm", "100", "2025-07-10T06:00:00Z");
    put_snapshot(root, "ns/a/", "vm", "100", T1);
    put_snapshot(root, "", "vm", "100", T0);
    put_snapshot(root, "", "ct", "200", "2025-01-01T00:00:00Z");
    fx_write(root, "vm/100/owner", "root@pam\n", 9);
    fx_write(root, "vm/100/notes", "", 0);
    /* a writer's temporary index next to the finished ones */
    fx_write(root, "vm/100/" T1 "/drive-scsi0.img.tmp_fidx", "partial", 7);

    /* unfinished: no manifest yet, only a temporary index */
    fx_mkdirs(root, "vm/100/2025-07-11T00:00:00Z");
    fx_write(root, "vm/100/2025-07-11T00:00:00Z/drive-scsi0.img.tmp_fidx", "partial", 7);

    /* corrupt manifest: CRC mismatch */
    put_snapshot(root, "", "vm", "101", T1);
    {
        size_t len;
        uint8_t *raw = fx_read(root, "vm/101/" T1 "/index.json.blob", &len);
        raw[len - 1] ^= 0x55;
        fx_write(root, "vm/101/" T1 "/index.json.blob", raw, len);
        free(raw);
    }

    /* hostile or invalid names, each holding an otherwise valid snapshot */
    put_manifest(root, "vm/..x/" T1, "vm", "..x", T1, NULL, 0);
    put_manifest(root, "vm/a b/" T1, "vm", "a b", T1, NULL, 0);
    put_manifest(root, "vm/-x/" T1, "vm", "-x", T1, NULL, 0);
    put_manifest(root, "vm/100/not-a-time", "vm", "100", T1, NULL, 0);
    put_manifest(root, "vm/100/2025-02-30T00:00:00Z", "vm", "100", "2025-03-02T00:00:00Z", NULL, 0);
    put_manifest(root, "vm/100/" T1 ".bak", "vm", "100", T1, NULL, 0);
    put_manifest(root, "qemu/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, "VM/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, "ns/..evil/vm/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, "ns/a b/vm/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, "ns/.hidden/vm/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, "lost+found/vm/100/" T1, "vm", "100", T1, NULL, 0);
    put_manifest(root, ".chunks/vm/100/" T1, "vm", "100", T1, NULL, 0);
    /* a regular file where a snapshot directory would be */
    fx_write(root, "vm/100/2025-07-12T00:00:00Z", "x", 1);

    s = open_store(root);
    c = load(s);
    if (c->count != sizeof(want) / sizeof(want[0])) {
        print_catalog(c);
        fail_msg("catalog lists %zu snapshots, expected %zu", c->count,
                 sizeof(want) / sizeof(want[0]));
    }
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *p = &c->snaps[i];
        if (strcmp(p->path, want[i].path)) {
            print_catalog(c);
            fail_msg("snapshot %zu is %s, expected %s", i, p->path, want[i].path);
        }
        assert_string_equal(p->ns, want[i].ns);
        assert_string_equal(p->type, want[i].type);
        assert_string_equal(p->id, want[i].id);
        assert_string_equal(p->time_str, want[i].time);
        assert_int_equal(p->time, fx_epoch(want[i].time));
        assert_non_null(p->manifest);
        assert_string_equal(p->manifest->type, want[i].type);
        assert_string_equal(p->manifest->id, want[i].id);
        assert_int_equal(p->manifest->time, p->time);
        /* only what the manifest lists: not the .tmp_fidx */
        assert_int_equal(p->manifest->count, 1);
        assert_string_equal(p->manifest->files[0].name, "qemu-server.conf.blob");
    }
    /* the corrupt manifest is reported, the unfinished snapshot is not */
    if (!warned_about(c, "vm/101/" T1)) {
        print_catalog(c);
        fail_msg("no warning about the corrupt manifest of vm/101/" T1);
    }
    assert_false(warned_about(c, "2025-07-11T00:00:00Z"));
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
}

static void catalog_skips_inconsistent(void **state)
{
    struct ds *ds = *state;
    const char *root = ds->root;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;

    put_snapshot(root, "", "vm", "100", T1);
    /* manifest names another id, type or time than its directory */
    put_manifest(root, "vm/101/" T1, "vm", "999", T1, NULL, 0);
    put_manifest(root, "vm/102/" T1, "ct", "102", T1, NULL, 0);
    put_manifest(root, "vm/103/" T1, "vm", "103", T0, NULL, 0);
    /* empty manifest file */
    fx_mkdirs(root, "vm/104/" T1);
    fx_write(root, "vm/104/" T1 "/index.json.blob", "", 0);
    /* manifest blob holding something that is not JSON */
    {
        size_t len;
        uint8_t *raw = fx_blob_plain("not json", 8, &len);
        fx_mkdirs(root, "vm/105/" T1);
        fx_write(root, "vm/105/" T1 "/index.json.blob", raw, len);
        free(raw);
    }
    /* manifest that is a directory */
    fx_mkdirs(root, "vm/106/" T1 "/index.json.blob");
    /* encrypted-blob magic in the manifest */
    {
        uint8_t payload[64] = {0};
        size_t len;
        uint8_t *raw = fx_blob(fx_magic_encrypted, payload, sizeof(payload), &len);
        fx_mkdirs(root, "vm/107/" T1);
        fx_write(root, "vm/107/" T1 "/index.json.blob", raw, len);
        free(raw);
    }

    s = open_store(root);
    c = load(s);
    if (c->count != 1) {
        print_catalog(c);
        fail_msg("catalog lists %zu snapshots, expected 1", c->count);
    }
    assert_string_equal(c->snaps[0].path, "vm/100/" T1);
    for (int id = 101; id <= 107; id++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "vm/%d/" T1, id);
        if (!warned_about(c, needle)) {
            print_catalog(c);
            fail_msg("no warning about %s", needle);
        }
    }
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
}

/* Two directory names for one instant would list one snapshot twice. */
static void catalog_noncanonical_time(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    const char *alias = "2025-07-10T12:00:60Z";
    char *dir = NULL;

    put_snapshot(ds->root, "", "vm", "100", "2025-07-10T12:01:00Z");
    assert_true(asprintf(&dir, "vm/100/%s", alias) > 0);
    /* fx_epoch cannot parse second 60; the manifest carries 12:01:00 */
    {
        struct fx_file f;
        char *json;
        size_t len;
        uint8_t *raw;
        char *rel = join(dir, "index.json.blob");
        fx_mkdirs(ds->root, dir);
        put_blob(ds->root, dir, "qemu-server.conf.blob", "memory: 2048\n", true, &f);
        json = fx_manifest_json("vm", "100", fx_epoch("2025-07-10T12:01:00Z"), &f, 1);
        raw = fx_blob_zstd(json, strlen(json), true, &len);
        fx_write(ds->root, rel, raw, len);
        free(raw);
        free(json);
        free(rel);
    }
    s = open_store(ds->root);
    c = load(s);
    if (c->count != 1) {
        print_catalog(c);
        fail_msg("catalog lists %zu snapshots for one backup-time", c->count);
    }
    assert_string_equal(c->snaps[0].time_str, "2025-07-10T12:01:00Z");
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
    free(dir);
}

static void catalog_ignores_symlinks(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    char *target, *link_path;

    put_snapshot(ds->root, "", "vm", "100", T1);
    /* a complete snapshot group outside the datastore */
    put_snapshot(ds->outside, "", "vm", "666", T1);
    put_snapshot(ds->outside, "", "vm", "104", T1);

    /* group directory symlinked out */
    target = join(ds->outside, "vm/666");
    link_path = join(ds->root, "vm/666");
    assert_int_equal(symlink(target, link_path), 0);
    free(target);
    free(link_path);
    /* namespace directory symlinked out */
    fx_mkdirs(ds->root, "ns");
    link_path = join(ds->root, "ns/evil");
    assert_int_equal(symlink(ds->outside, link_path), 0);
    free(link_path);
    /* manifest symlinked out */
    fx_mkdirs(ds->root, "vm/104/" T1);
    target = join(ds->outside, "vm/104/" T1 "/index.json.blob");
    link_path = join(ds->root, "vm/104/" T1 "/index.json.blob");
    assert_int_equal(symlink(target, link_path), 0);
    free(target);
    free(link_path);

    s = open_store(ds->root);
    c = load(s);
    if (c->count != 1) {
        print_catalog(c);
        fail_msg("catalog followed a symlink: %zu snapshots", c->count);
    }
    assert_string_equal(c->snaps[0].path, "vm/100/" T1);
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
}

static char *chunk_rel(const uint8_t digest[32])
{
    char hex[65], *rel = NULL;
    fx_hex(digest, 32, hex);
    assert_true(asprintf(&rel, ".chunks/%.4s/%s", hex, hex) > 0);
    return rel;
}

static void catalog_namespace_depth(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    char prefix[256] = "", ns[256] = "";

    /* depth 7 is the deepest PBS allows; depth 8 is not walked */
    for (int depth = 1; depth <= 8; depth++) {
        char part[16];
        snprintf(part, sizeof(part), "ns/n%d/", depth);
        strncat(prefix, part, sizeof(prefix) - strlen(prefix) - 1);
        if (depth == 7) {
            put_snapshot(ds->root, prefix, "vm", "100", T1);
            memcpy(ns, "n1/n2/n3/n4/n5/n6/n7", sizeof("n1/n2/n3/n4/n5/n6/n7"));
        }
    }
    put_snapshot(ds->root, prefix, "vm", "100", T1); /* depth 8 */
    s = open_store(ds->root);
    c = load(s);
    if (c->count != 1) {
        print_catalog(c);
        fail_msg("catalog lists %zu snapshots, expected only the one at depth 7", c->count);
    }
    assert_string_equal(c->snaps[0].ns, ns);
    assert_string_equal(c->snaps[0].path, "ns/n1/ns/n2/ns/n3/ns/n4/ns/n5/ns/n6/ns/n7/vm/100/" T1);
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
}

/*
 * Runs @fn in a child process and fails when it does not exit 0 within
 * @secs seconds. For operations that could block forever (a FIFO in the
 * datastore); the child must not use cmocka assertions.
 */
static void run_bounded(int (*fn)(const char *root), const char *root, int secs, const char *what)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(root));
    for (int i = 0; i < secs * 20; i++) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fail_msg("%s: wrong result (child status %#x)", what, st);
            return;
        }
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("%s: still blocked after %d s", what, secs);
}

static int catalog_child(const char *root)
{
    struct fetch_store *s = NULL;
    struct fetch_pbs_catalog *c = NULL;
    int ok;
    if (fetch_store_open_local(root, &s, NULL) < 0 || fetch_pbs_catalog_load(s, &c, NULL) < 0)
        return 2;
    ok = c->count == 1 && !strcmp(c->snaps[0].path, "vm/100/" T1);
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
    return ok ? 0 : 1;
}

static uint8_t fifo_digest[32];

static int chunk_child(const char *root)
{
    struct fetch_store *s = NULL;
    fetch_data d = {0};
    int r;
    if (fetch_store_open_local(root, &s, NULL) < 0)
        return 2;
    r = fetch_pbs_read_chunk(s, fifo_digest, 100, &d, NULL);
    fetch_data_release(&d);
    fetch_store_free(s);
    return r < 0 ? 0 : 1;
}

/* A FIFO where a file should be must not block the reader. */
static void fifo_manifest_does_not_block(void **state)
{
    struct ds *ds = *state;
    char *p;

    put_snapshot(ds->root, "", "vm", "100", T1);
    fx_mkdirs(ds->root, "vm/101/" T1);
    p = fx_path(ds->root, "vm/101/" T1 "/index.json.blob");
    assert_int_equal(mkfifo(p, 0644), 0);
    free(p);
    run_bounded(catalog_child, ds->root, 5, "catalog with a FIFO as manifest");
}

static void fifo_chunk_does_not_block(void **state)
{
    struct ds *ds = *state;
    char *p, *rel, *dir;

    fx_sha256("fifo", 4, fifo_digest);
    rel = chunk_rel(fifo_digest);
    dir = strdup(rel);
    assert_non_null(dir);
    *strrchr(dir, '/') = '\0';
    fx_mkdirs(ds->root, dir);
    p = fx_path(ds->root, rel);
    assert_int_equal(mkfifo(p, 0644), 0);
    run_bounded(chunk_child, ds->root, 5, "chunk that is a FIFO");
    free(p);
    free(dir);
    free(rel);
}

/* A sparse file of @size bytes starting with a blob header. */
static void put_big_file(const char *root, const char *rel, off_t size)
{
    char *p = fx_path(root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, fx_magic_plain, 8), 8);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
    free(p);
}

/* Manifests and config blobs above FETCH_PBS_SMALL_BLOB_MAX are not read into memory. */
static void oversized_blobs_not_loaded(void **state)
{
    struct ds *ds = *state;
    const off_t big = 20 * 1024 * 1024;
    const size_t bound = FETCH_PBS_SMALL_BLOB_MAX + 64 * 1024;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    struct fx_file f = {"big.conf.blob", "none", (uint64_t)big, {0}};
    size_t largest;
    fetch_data d = {0};

    fx_mkdirs(ds->root, "vm/100/" T1);
    put_big_file(ds->root, "vm/100/" T1 "/big.conf.blob", big);
    put_manifest(ds->root, "vm/100/" T1, "vm", "100", T1, &f, 1);
    fx_mkdirs(ds->root, "vm/101/" T1);
    put_big_file(ds->root, "vm/101/" T1 "/index.json.blob", big);

    s = open_store(ds->root);
    fx_alloc_track_start();
    c = load(s);
    largest = fx_alloc_track_stop();
    if (c->count != 1 || !warned_about(c, "vm/101/" T1)) {
        print_catalog(c);
        fail_msg("the oversized manifest was not skipped with a warning");
    }
    if (largest > bound)
        fail_msg("catalog load allocated %zu bytes at once for a %lld-byte manifest", largest,
                 (long long)big);

    fx_alloc_track_start();
    assert_true(
        fetch_pbs_read_blob(s, &c->snaps[0], &c->snaps[0].manifest->files[0], NULL, &d, NULL) < 0);
    largest = fx_alloc_track_stop();
    if (largest > bound)
        fail_msg("read_blob allocated %zu bytes at once for a %lld-byte blob", largest,
                 (long long)big);
    fetch_pbs_catalog_free(c);
    fetch_store_free(s);
}

/* A snapshot with an image, a config blob and an encrypted image, loaded through the catalog. */
struct snap_fx {
    struct image_fx im;
    struct fetch_store *s;
    struct fetch_pbs_catalog *c;
    const struct fetch_pbs_snapshot *snap;
};

#define IMG_PATTERN "DZZDZ"
#define IMG_LAST 1000u
#define CONF_TEXT "boot: order=scsi0\nmemory: 4096\nscsi0: local:vm-100-disk-0,size=32G\n"

/* @tamper may alter the manifest entries before the manifest is written */
static void snap_fx_init(struct snap_fx *f, const char *root,
                         void (*tamper)(struct fx_file *files, size_t n))
{
    const char *dir = "vm/100/" T1;
    struct fx_file files[4];
    struct image_fx enc;

    fx_mkdirs(root, dir);
    put_image(root, dir, "drive-scsi0.img.fidx", IMG_PATTERN, IMG_LAST, &f->im, &files[0]);
    put_blob(root, dir, "qemu-server.conf.blob", CONF_TEXT, true, &files[1]);
    put_blob(root, dir, "fw.conf.blob", "[OPTIONS]\nenable: 1\n", false, &files[2]);
    put_image(root, dir, "drive-efidisk0.img.fidx", "D", 5000, &enc, &files[3]);
    files[3].crypt = "encrypt";
    image_fx_free(&enc);
    if (tamper)
        tamper(files, 4);
    put_manifest(root, dir, "vm", "100", T1, files, 4);
    f->s = open_store(root);
    f->c = load(f->s);
    f->snap = find_snap(f->c, dir);
    assert_int_equal(f->snap->manifest->count, 4);
}

static void snap_fx_release(struct snap_fx *f)
{
    fetch_pbs_catalog_free(f->c);
    fetch_store_free(f->s);
    image_fx_free(&f->im);
}

static const struct fetch_manifest_file *entry(const struct snap_fx *f, const char *name)
{
    const struct fetch_manifest_file *e = fetch_manifest_find(f->snap->manifest, name);
    if (!e)
        fail_msg("manifest lacks %s", name);
    return e;
}

static void open_fidx_and_read_chunks(void **state)
{
    struct ds *ds = *state;
    struct snap_fx f;
    struct fetch_image *img = NULL;
    fetch_error err = {""};

    snap_fx_init(&f, ds->root, NULL);
    if (fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, &err) != 0)
        fail_msg("fetch_pbs_open_fidx: %s", err.msg);
    assert_int_equal(img->size, f.im.size);
    assert_int_equal(img->count, strlen(IMG_PATTERN));
    assert_int_equal(img->zero_count, 3);
    assert_int_equal(img->data_bytes, 2 * CS);
    for (size_t i = 0; i < img->count; i++) {
        const struct fetch_extent *e = &img->extents[i];
        fetch_data d = {0};
        assert_int_equal(e->offset, (uint64_t)i * CS);
        assert_int_equal(e->length, f.im.len[i]);
        assert_int_equal(e->zero, IMG_PATTERN[i] == 'Z');
        assert_memory_equal(e->digest, f.im.digests + 32 * i, 32);
        /* every chunk, zero ones included, reads back to its bytes */
        if (fetch_pbs_read_chunk(f.s, e->digest, e->length, &d, &err) != 0)
            fail_msg("chunk %zu: %s", i, err.msg);
        assert_int_equal(d.len, e->length);
        if (f.im.data[i]) {
            assert_memory_equal(d.bytes, f.im.data[i], d.len);
        } else {
            for (size_t j = 0; j < d.len; j++)
                assert_int_equal(d.bytes[j], 0);
        }
        fetch_data_release(&d);
    }
    fetch_image_free(img);
    snap_fx_release(&f);
}

static void open_fidx_encrypted(void **state)
{
    struct ds *ds = *state;
    struct snap_fx f;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    snap_fx_init(&f, ds->root, NULL);
    assert_int_equal(entry(&f, "drive-efidisk0.img.fidx")->crypt, FETCH_CRYPT_ENCRYPT);
    assert_int_equal(
        fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-efidisk0.img.fidx"), NULL, &img, &err),
        -ENOKEY);
    assert_null(img);
    assert_true(err.msg[0] != '\0');
    snap_fx_release(&f);
}

static void tamper_csum(struct fx_file *files, size_t n)
{
    (void)n;
    files[0].csum[5] ^= 1;
}

static void tamper_size(struct fx_file *files, size_t n)
{
    (void)n;
    files[0].size += 1;
}

static void expect_open_fails(const char *root, void (*tamper)(struct fx_file *, size_t), int want,
                              const char *what)
{
    struct snap_fx f;
    struct fetch_image *img = NULL;
    fetch_error err = {""};
    int r;
    snap_fx_init(&f, root, tamper);
    r = fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, &err);
    if (r != want)
        fail_msg("%s: got %d, expected %d (%s)", what, r, want, err.msg);
    assert_null(img);
    snap_fx_release(&f);
}

static void open_fidx_csum_mismatch(void **state)
{
    struct ds *ds = *state;
    expect_open_fails(ds->root, tamper_csum, -EBADMSG, "manifest csum differs");
}

static void open_fidx_size_mismatch(void **state)
{
    struct ds *ds = *state;
    expect_open_fails(ds->root, tamper_size, -EBADMSG, "manifest size differs");
}

static void open_fidx_bad_file(void **state)
{
    struct ds *ds = *state;
    const char *rel = "vm/100/" T1 "/drive-scsi0.img.fidx";
    struct snap_fx f;
    struct fetch_image *img = NULL;
    size_t len;
    uint8_t *raw;

    snap_fx_init(&f, ds->root, NULL);
    /* a digest altered on disk: the index checksum catches it */
    raw = fx_read(ds->root, rel, &len);
    raw[4096 + 40] ^= 1;
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(
        fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, NULL),
        -EBADMSG);
    /* altered consistently (checksum recomputed): differs from the manifest */
    fx_sha256(raw + 4096, len - 4096, raw + 32);
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(
        fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, NULL),
        -EBADMSG);
    /* truncated */
    fx_write(ds->root, rel, raw, len - 32);
    assert_int_equal(
        fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, NULL),
        -EBADMSG);
    /* missing */
    {
        char *p = fx_path(ds->root, rel);
        assert_int_equal(unlink(p), 0);
        free(p);
    }
    assert_true(
        fetch_pbs_open_fidx(f.s, f.snap, entry(&f, "drive-scsi0.img.fidx"), NULL, &img, NULL) < 0);
    assert_null(img);
    free(raw);
    snap_fx_release(&f);
}

static void read_blob(void **state)
{
    struct ds *ds = *state;
    struct snap_fx f;
    fetch_data d = {0};
    fetch_error err = {""};

    snap_fx_init(&f, ds->root, NULL);
    if (fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, &err) != 0)
        fail_msg("read_blob (zstd): %s", err.msg);
    assert_int_equal(d.len, strlen(CONF_TEXT));
    assert_memory_equal(d.bytes, CONF_TEXT, d.len);
    fetch_data_release(&d);
    if (fetch_pbs_read_blob(f.s, f.snap, entry(&f, "fw.conf.blob"), NULL, &d, &err) != 0)
        fail_msg("read_blob (plain): %s", err.msg);
    assert_int_equal(d.len, strlen("[OPTIONS]\nenable: 1\n"));
    assert_memory_equal(d.bytes, "[OPTIONS]\nenable: 1\n", d.len);
    fetch_data_release(&d);
    snap_fx_release(&f);
}

static void read_blob_mismatch(void **state)
{
    struct ds *ds = *state;
    const char *rel = "vm/100/" T1 "/qemu-server.conf.blob";
    struct snap_fx f;
    fetch_data d = {0};
    size_t len, olen;
    uint8_t *raw, *other, *payload;

    snap_fx_init(&f, ds->root, NULL);
    raw = fx_read(ds->root, rel, &len);
    /* same length, a valid blob, other contents: only the manifest csum tells */
    payload = calloc(1, len - 12);
    assert_non_null(payload);
    payload[0] = 'x';
    other = fx_blob_plain(payload, len - 12, &olen);
    assert_int_equal(olen, len);
    fx_write(ds->root, rel, other, olen);
    assert_int_equal(
        fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, NULL),
        -EBADMSG);
    assert_null(d.base);
    /* the original, one byte short */
    fx_write(ds->root, rel, raw, len - 1);
    assert_int_equal(
        fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, NULL),
        -EBADMSG);
    /* the original, one byte flipped */
    raw[len - 1] ^= 1;
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(
        fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, NULL),
        -EBADMSG);
    /* the original again */
    raw[len - 1] ^= 1;
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(
        fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, NULL), 0);
    assert_int_equal(d.len, strlen(CONF_TEXT));
    fetch_data_release(&d);
    free(payload);
    free(other);
    free(raw);
    snap_fx_release(&f);
}

static void tamper_encrypt_blob(struct fx_file *files, size_t n)
{
    (void)n;
    files[1].crypt = "encrypt";
}

static void read_blob_encrypted(void **state)
{
    struct ds *ds = *state;
    struct snap_fx f;
    fetch_data d = {0};
    snap_fx_init(&f, ds->root, tamper_encrypt_blob);
    assert_int_equal(
        fetch_pbs_read_blob(f.s, f.snap, entry(&f, "qemu-server.conf.blob"), NULL, &d, NULL),
        -ENOKEY);
    snap_fx_release(&f);
}

/* A manifest entry with a hostile name never becomes a path. */
static void hostile_entry_not_opened(void **state)
{
    struct ds *ds = *state;
    struct snap_fx f;
    struct fetch_manifest_file evil;
    struct fetch_image *img = NULL;
    fetch_data d = {0};
    char name[] = "../../../etc/passwd";
    snap_fx_init(&f, ds->root, NULL);
    evil = *entry(&f, "qemu-server.conf.blob");
    evil.name = name;
    assert_true(fetch_pbs_read_blob(f.s, f.snap, &evil, NULL, &d, NULL) < 0);
    assert_null(d.base);
    evil = *entry(&f, "drive-scsi0.img.fidx");
    evil.name = name;
    assert_true(fetch_pbs_open_fidx(f.s, f.snap, &evil, NULL, &img, NULL) < 0);
    assert_null(img);
    snap_fx_release(&f);
}

static void read_chunk(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    uint8_t *data = fx_malloc(CS), dplain[32], dzstd[32];
    fetch_data d = {0};
    fetch_error err = {""};

    fx_fill_random(data, CS, 99);
    fx_put_chunk(ds->root, data, CS, false, dplain);
    data[0] ^= 1;
    fx_put_chunk(ds->root, data, CS, true, dzstd);
    if (fetch_pbs_read_chunk(s, dzstd, CS, &d, &err) != 0)
        fail_msg("zstd chunk: %s", err.msg);
    assert_int_equal(d.len, CS);
    assert_memory_equal(d.bytes, data, CS);
    fetch_data_release(&d);
    data[0] ^= 1;
    if (fetch_pbs_read_chunk(s, dplain, CS, &d, &err) != 0)
        fail_msg("plain chunk: %s", err.msg);
    assert_int_equal(d.len, CS);
    assert_memory_equal(d.bytes, data, CS);
    fetch_data_release(&d);
    /* wrong expected length */
    assert_int_equal(fetch_pbs_read_chunk(s, dplain, CS - 1, &d, NULL), -EBADMSG);
    assert_int_equal(fetch_pbs_read_chunk(s, dzstd, CS + 1, &d, NULL), -EBADMSG);
    assert_null(d.base);
    free(data);
    fetch_store_free(s);
}

static void read_chunk_missing(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    uint8_t digest[32], empty_digest[32];
    fetch_data d = {0};
    fetch_error err = {""};
    char *rel;

    /* no prefix directory at all */
    fx_sha256("absent", 6, digest);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, 6, &d, &err), -ENOENT);
    assert_true(err.msg[0] != '\0');
    assert_null(d.base);
    /* prefix directory present, file absent */
    rel = chunk_rel(digest);
    *strrchr(rel, '/') = '\0';
    fx_mkdirs(ds->root, rel);
    free(rel);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, 6, &d, NULL), -ENOENT);
    /* 0-byte file (evicted S3 cache entry) counts as missing */
    fx_sha256("evicted", 7, empty_digest);
    rel = chunk_rel(empty_digest);
    {
        char *dir = strdup(rel);
        *strrchr(dir, '/') = '\0';
        fx_mkdirs(ds->root, dir);
        free(dir);
    }
    fx_write(ds->root, rel, "", 0);
    free(rel);
    assert_int_equal(fetch_pbs_read_chunk(s, empty_digest, 7, &d, &err), -ENOENT);
    assert_null(d.base);
    fetch_store_free(s);
}

static void read_chunk_corrupt(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s = open_store(ds->root);
    uint8_t *data = fx_malloc(CS), digest[32], other[32], *raw;
    fetch_data d = {0};
    fetch_error err = {""};
    char *rel, *orel;
    size_t len;

    fx_fill_text(data, CS, 5);
    fx_put_chunk(ds->root, data, CS, true, digest);
    rel = chunk_rel(digest);
    raw = fx_read(ds->root, rel, &len);

    /* a flipped payload byte */
    raw[len / 2] ^= 0x20;
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, NULL), -EBADMSG);
    /* the same, CRC fixed up: the zstd frame or the digest must catch it */
    fx_blob_fix_crc(raw, len);
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, NULL), -EBADMSG);
    /* truncated */
    raw[len / 2] ^= 0x20;
    fx_blob_fix_crc(raw, len);
    fx_write(ds->root, rel, raw, len - 3);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, NULL), -EBADMSG);
    /* just a header */
    fx_write(ds->root, rel, raw, 12);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, NULL), -EBADMSG);
    /* a valid chunk of other data stored under this name */
    data[100] ^= 1;
    fx_put_chunk(ds->root, data, CS, false, other);
    orel = chunk_rel(other);
    free(raw);
    raw = fx_read(ds->root, orel, &len);
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, NULL), -EBADMSG);
    assert_null(d.base);
    /* an encrypted chunk where a plain one belongs: a mix-up, not a key to ask for */
    free(raw);
    raw = fx_blob(fx_magic_encrypted, data, 200, &len);
    fx_write(ds->root, rel, raw, len);
    assert_int_equal(fetch_pbs_read_chunk(s, digest, CS, &d, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "is encrypted, although the manifest says its archive is not"));

    free(raw);
    free(rel);
    free(orel);
    free(data);
    fetch_store_free(s);
}

static void read_chunk_symlink_not_followed(void **state)
{
    struct ds *ds = *state;
    struct fetch_store *s;
    uint8_t data[100] = {1, 2, 3}, digest[32];
    fetch_data d = {0};
    char *rel, *target, *link_path;

    /* a valid chunk outside, linked in */
    fx_put_chunk(ds->outside, data, sizeof(data), false, digest);
    rel = chunk_rel(digest);
    target = fx_path(ds->outside, rel);
    link_path = fx_path(ds->root, rel);
    *strrchr(rel, '/') = '\0';
    fx_mkdirs(ds->root, rel);
    assert_int_equal(symlink(target, link_path), 0);
    s = open_store(ds->root);
    assert_true(fetch_pbs_read_chunk(s, digest, sizeof(data), &d, NULL) < 0);
    assert_null(d.base);
    fetch_store_free(s);
    free(rel);
    free(target);
    free(link_path);
}

static void archive_kind(void **state)
{
    size_t stem = 0;
    (void)state;
    assert_int_equal(fetch_pbs_archive_kind("drive-scsi0.img.fidx", &stem), FETCH_PBS_ARCHIVE_FIDX);
    assert_int_equal(stem, strlen("drive-scsi0.img"));
    assert_int_equal(fetch_pbs_archive_kind("root.pxar.didx", &stem), FETCH_PBS_ARCHIVE_DIDX);
    assert_int_equal(stem, strlen("root.pxar"));
    assert_int_equal(fetch_pbs_archive_kind("root.mpxar.didx", NULL), FETCH_PBS_ARCHIVE_DIDX);
    assert_int_equal(fetch_pbs_archive_kind("catalog.pcat1.didx", &stem),
                     FETCH_PBS_ARCHIVE_CATALOG);
    assert_int_equal(stem, strlen("catalog.pcat1"));
    assert_int_equal(fetch_pbs_archive_kind("mycatalog.pcat1.didx", NULL), FETCH_PBS_ARCHIVE_DIDX);
    assert_int_equal(fetch_pbs_archive_kind("qemu-server.conf.blob", &stem),
                     FETCH_PBS_ARCHIVE_BLOB);
    assert_int_equal(stem, strlen("qemu-server.conf"));
    assert_int_equal(fetch_pbs_archive_kind("x.fidx", NULL), FETCH_PBS_ARCHIVE_FIDX);
    assert_int_equal(fetch_pbs_archive_kind("drive-scsi0.img.tmp_fidx", &stem),
                     FETCH_PBS_ARCHIVE_OTHER);
    assert_int_equal(fetch_pbs_archive_kind(".fidx", NULL), FETCH_PBS_ARCHIVE_OTHER);
    assert_int_equal(fetch_pbs_archive_kind("fidx", NULL), FETCH_PBS_ARCHIVE_OTHER);
    assert_int_equal(fetch_pbs_archive_kind("a.fidx.bak", NULL), FETCH_PBS_ARCHIVE_OTHER);
    assert_int_equal(fetch_pbs_archive_kind("", &stem), FETCH_PBS_ARCHIVE_OTHER);
}

static const struct fetch_entry *entry_at(const struct fetch_repo *r, const char *path)
{
    for (size_t i = 0; i < r->count; i++) {
        if (!strcmp(r->entries[i].path, path))
            return &r->entries[i];
    }
    return NULL;
}

static bool noted(const struct fetch_repo *r, const char *needle)
{
    for (size_t i = 0; i < r->note_count; i++) {
        if (strstr(r->notes[i].text, needle))
            return true;
    }
    return false;
}

/* The datastore as a repository (fetch/repo.h): what the mount shows. */
static void repo_entries(void **state)
{
    struct ds *ds = *state;
    const char *root = ds->root;
    const char *dir = "vm/100/" T1;
    const struct fetch_repo_format *f = NULL;
    struct fetch_repo *r = NULL;
    const struct fetch_entry *e;
    struct fetch_image *img = NULL;
    struct image_fx im;
    struct fx_file files[6];
    fetch_error err = {""};
    struct fetch_store *s;
    struct fetch_archive_src src = {0};
    char path[256];

    put_snapshot(root, "", "vm", "100", T0);
    put_snapshot(root, "ns/a/", "ct", "7", T0);
    fx_mkdirs(root, dir);
    put_image(root, dir, "drive-scsi0.img.fidx", "DZD", 1000, &im, &files[0]);
    put_blob(root, dir, "qemu-server.conf.blob", "cores: 1\n", false, &files[1]);
    /* shows as "qemu-server.conf" too: hidden, with a note */
    put_blob(root, dir, "qemu-server.conf.fidx", "x", false, &files[2]);
    files[3] = (struct fx_file){.name = "drive-efi.img.fidx", .crypt = "encrypt", .size = 4096};
    files[4] = (struct fx_file){.name = "root.pxar.didx", .crypt = "none", .size = 99};
    files[5] = (struct fx_file){.name = "other.didx", .crypt = "none", .size = 99};
    put_manifest(root, dir, "vm", "100", T1, files, 6);

    s = open_store(root);
    assert_int_equal(fetch_repo_probe(s, &f, &err), 0);
    assert_string_equal(f->name, "pbs");
    assert_ptr_equal(fetch_repo_format_for_path("vm/100/" T1), f);
    assert_null(f->chunk_dir);

    /* for ls: the catalog, no entries */
    assert_int_equal(fetch_repo_load(f, s, NULL, NULL, 0, false, &r, &err), 0);
    assert_int_equal(r->items, 3);
    assert_int_equal(r->count, 0);
    fetch_repo_free(r);

    assert_int_equal(fetch_repo_load(f, s, NULL, NULL, 0, true, &r, &err), 0);
    assert_int_equal(r->items, 3);
    e = entry_at(r, dir);
    assert_non_null(e);
    assert_int_equal(e->type, FETCH_ENTRY_DIR);
    assert_int_equal(e->mtime, fx_epoch(T1));
    assert_non_null(entry_at(r, "ns/a/ct/7/" T0));
    e = entry_at(r, "vm/100/latest");
    assert_non_null(e);
    assert_int_equal(e->type, FETCH_ENTRY_SYMLINK);
    assert_string_equal(e->target, T1); /* the newest */
    assert_non_null(entry_at(r, "ns/a/ct/7/latest"));
    /* the link follows its group's snapshots */
    assert_true(entry_at(r, "vm/100/latest") > entry_at(r, dir));

    snprintf(path, sizeof(path), "%s/drive-scsi0.img", dir);
    e = entry_at(r, path);
    assert_non_null(e);
    assert_int_equal(e->type, FETCH_ENTRY_IMAGE);
    assert_int_equal(e->size, im.size);
    assert_int_equal(e->refuse, 0);
    assert_int_equal(fetch_repo_open_image(r, s, e, &img, &err), 0);
    assert_int_equal(img->size, im.size);
    assert_int_equal(img->count, 3);
    fetch_image_free(img);

    snprintf(path, sizeof(path), "%s/qemu-server.conf", dir);
    e = entry_at(r, path);
    assert_non_null(e);
    assert_int_equal(e->type, FETCH_ENTRY_BLOB);
    fetch_data d = {0};
    assert_int_equal(fetch_repo_read_blob(r, s, e, &d, &err), 0);
    assert_int_equal(d.len, strlen("cores: 1\n"));
    fetch_data_release(&d);
    assert_true(noted(r, "qemu-server.conf.fidx hidden"));

    snprintf(path, sizeof(path), "%s/drive-efi.img", dir);
    e = entry_at(r, path);
    assert_non_null(e);
    assert_int_equal(e->refuse, -ENOKEY);
    assert_int_equal(e->size, 4096);
    img = NULL;
    assert_int_equal(fetch_repo_open_image(r, s, e, &img, &err), -ENOKEY);
    assert_null(img);

    /* a pxar archive is a directory tree; its index is missing here */
    snprintf(path, sizeof(path), "%s/root.pxar", dir);
    e = entry_at(r, path);
    assert_non_null(e);
    assert_int_equal(e->type, FETCH_ENTRY_ARCHIVE);
    assert_true(fetch_repo_open_archive(r, s, e, &src, &err) < 0);
    assert_null(src.meta);
    /* other dynamic indexes are not shown: one note says so */
    assert_true(noted(r, "1 dynamic-index archive is not shown"));
    fetch_repo_free(r);

    /* --snapshot: just that one */
    const char *one[] = {"vm/100/" T0};
    assert_int_equal(fetch_repo_load(f, s, NULL, one, 1, true, &r, &err), 0);
    assert_int_equal(r->items, 1);
    assert_non_null(entry_at(r, "vm/100/" T0 "/qemu-server.conf"));
    assert_null(entry_at(r, path));
    fetch_repo_free(r);
    image_fx_free(&im);
    fetch_store_free(s);
}

#define DS_TEST(f) cmocka_unit_test_setup_teardown(f, ds_setup, ds_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        DS_TEST(store_open_errors),
        DS_TEST(store_list_and_get),
        DS_TEST(probe),
        DS_TEST(probe_symlinked_chunks),
        DS_TEST(probe_hidden_chunks),
        DS_TEST(catalog_empty),
        DS_TEST(catalog_sorted_and_filtered),
        DS_TEST(catalog_skips_inconsistent),
        DS_TEST(catalog_noncanonical_time),
        DS_TEST(catalog_ignores_symlinks),
        DS_TEST(catalog_namespace_depth),
        DS_TEST(fifo_manifest_does_not_block),
        DS_TEST(fifo_chunk_does_not_block),
        DS_TEST(oversized_blobs_not_loaded),
        DS_TEST(open_fidx_and_read_chunks),
        DS_TEST(open_fidx_encrypted),
        DS_TEST(open_fidx_csum_mismatch),
        DS_TEST(open_fidx_size_mismatch),
        DS_TEST(open_fidx_bad_file),
        DS_TEST(read_blob),
        DS_TEST(read_blob_mismatch),
        DS_TEST(read_blob_encrypted),
        DS_TEST(hostile_entry_not_opened),
        DS_TEST(read_chunk),
        DS_TEST(read_chunk_missing),
        DS_TEST(read_chunk_corrupt),
        DS_TEST(read_chunk_symlink_not_followed),
        DS_TEST(repo_entries),
        cmocka_unit_test(archive_kind),
    };
    return cmocka_run_group_tests_name("pbs", tests, NULL, NULL);
}
