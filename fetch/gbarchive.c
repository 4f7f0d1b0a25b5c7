/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The decoder of archives with goodbye tables (see gbarchive.h): pxar
 * (pbs.md §11) and catar (casync.md §6), one engine, two dialects. Item
 * framing: a 16-byte header (type and size, in the dialect's order), then
 * size - 16 bytes of content.
 */
#include "gbarchive.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define HDR 16u
#define GB_ITEM 24u
/* items an entry may carry before its content (xattrs, ACLs, ...) */
#define META_ITEMS_MAX 4096u
#define ITEM_SMALL_MAX (64u * 1024) /* an ACL, fcaps or prelude item */

struct gb_archive {
    struct fetch_archive base; /* first: the archive interface's view */
    const struct gb_dialect *d;
    const struct fetch_stream *meta, *payload;
    unsigned version;
    uint64_t root_base; /* where the root's goodbye tail measures from */
    uint64_t root_pos;  /* the root's ENTRY item */
};

struct item {
    uint64_t type, size; /* size: the whole item, header included */
};

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Reads [@off, @off + @len) of @s, which must lie inside it. */
static int rd(const struct fetch_stream *s, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    if (off > s->size || len > s->size - off)
        return fetch_error_set(err, -EBADMSG,
                               "%zu bytes at offset %llu are past the end of the stream "
                               "(%llu bytes)",
                               len, (unsigned long long)off, (unsigned long long)s->size);
    return len ? s->read(s->ctx, off, buf, len, err) : 0;
}

/* The item header at @off, which must end by @end with its content. */
static int item_at(const struct gb_archive *a, uint64_t off, uint64_t end, struct item *it,
                   fetch_error *err)
{
    uint8_t h[HDR];
    int r;
    if (off > end || end - off < HDR)
        return fetch_error_set(err, -EBADMSG, "no room for an item at offset %llu",
                               (unsigned long long)off);
    if ((r = rd(a->meta, off, h, HDR, err)) < 0)
        return r;
    it->type = le64(h + (a->d->size_first ? 8 : 0));
    it->size = le64(h + (a->d->size_first ? 0 : 8));
    if (it->size < HDR || it->size > end - off)
        return fetch_error_set(err, -EBADMSG,
                               "the item at offset %llu has size %llu, outside its "
                               "directory's range",
                               (unsigned long long)off, (unsigned long long)it->size);
    return 0;
}

static EVP_MAC *siphash;
static pthread_once_t siphash_once = PTHREAD_ONCE_INIT;

static void siphash_fetch(void)
{
    siphash = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
}

uint64_t gb_hash(const uint8_t key[16], const char *name, size_t len)
{
    uint8_t out[8];
    size_t outlen = 0, size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_CTX *ctx;
    bool ok;

    pthread_once(&siphash_once, siphash_fetch);
    if (!siphash || !(ctx = EVP_MAC_CTX_new(siphash)))
        return 0; /* no name matches: lookups fail, nothing wrong is served */
    ok = EVP_MAC_init(ctx, key, 16, params) &&
         EVP_MAC_update(ctx, (const unsigned char *)name, len) &&
         EVP_MAC_final(ctx, out, &outlen, sizeof(out)) && outlen == 8;
    EVP_MAC_CTX_free(ctx);
    return ok ? le64(out) : 0;
}

static uint64_t name_hash(const struct gb_archive *a, const char *name, size_t len)
{
    return gb_hash(a->d->hash_key, name, len);
}

static bool is_meta_item(const struct gb_dialect *d, uint64_t type)
{
    for (size_t i = 0; i < d->n_meta_items; i++)
        if (d->meta_items[i] == type)
            return true;
    return false;
}

static enum fetch_archive_kind kind_of(uint64_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return FETCH_ARCHIVE_DIR;
    case S_IFREG:
        return FETCH_ARCHIVE_FILE;
    case S_IFLNK:
        return FETCH_ARCHIVE_SYMLINK;
    case S_IFCHR:
    case S_IFBLK:
        return FETCH_ARCHIVE_DEVICE;
    case S_IFIFO:
        return FETCH_ARCHIVE_FIFO;
    case S_IFSOCK:
        return FETCH_ARCHIVE_SOCKET;
    default:
        return (enum fetch_archive_kind) - 1;
    }
}

/* The ENTRY item at @pos: the metadata fields of @e. */
static int read_entry_item(const struct gb_archive *a, uint64_t pos, uint64_t end,
                           struct fetch_archive_entry *e, fetch_error *err)
{
    uint8_t b[GB_ENTRY_MAX];
    struct item it;
    int r;

    if ((r = item_at(a, pos, end, &it, err)) < 0)
        return r;
    if ((it.type != a->d->entry && (!a->d->entry_v1 || it.type != a->d->entry_v1)) ||
        it.size - HDR > sizeof(b))
        return fetch_error_set(err, -EBADMSG,
                               "%s: expected an entry at offset %llu (type %016llx, %llu bytes)",
                               a->d->name, (unsigned long long)pos, (unsigned long long)it.type,
                               (unsigned long long)it.size);
    if ((r = rd(a->meta, pos + HDR, b, (size_t)(it.size - HDR), err)) < 0)
        return r;
    if (a->d->entry_fields(it.type, b, (size_t)(it.size - HDR), e) < 0)
        return fetch_error_set(err, -EBADMSG, "%s: malformed entry at offset %llu", a->d->name,
                               (unsigned long long)pos);
    e->pos = pos;
    if ((int)(e->kind = kind_of(e->mode)) < 0)
        return fetch_error_set(err, -EBADMSG, "%s: entry at %llu: unknown file type in mode %llo",
                               a->d->name, (unsigned long long)pos, (unsigned long long)e->mode);
    e->meta_off = e->meta_end = pos + it.size;
    return 0;
}

/*
 * The directory whose ENTRY is at @e->pos and whose range (the goodbye table
 * last) ends at @end: its goodbye table, from the tail item. @base is where
 * the tail's offset measures from (the ENTRY, or the stream's start for the
 * root of a v2 archive).
 */
static int read_goodbye(const struct gb_archive *a, struct fetch_archive_entry *e, uint64_t base,
                        uint64_t end, fetch_error *err)
{
    uint8_t t[GB_ITEM];
    uint64_t size, start;
    struct item it;
    int r;

    if (end < e->meta_end || end - e->meta_end < HDR + GB_ITEM)
        return fetch_error_set(err, -EBADMSG, "directory at %llu has no goodbye table",
                               (unsigned long long)e->pos);
    if ((r = rd(a->meta, end - GB_ITEM, t, GB_ITEM, err)) < 0)
        return r;
    size = le64(t + 8 * a->d->tail_size);
    if (le64(t + 8 * a->d->tail_marker) != a->d->tail_marker_value)
        return fetch_error_set(err, -EBADMSG,
                               "directory at %llu: its range does not end in a goodbye tail",
                               (unsigned long long)e->pos);
    if (size < HDR + GB_ITEM || size > end - e->meta_end || (size - HDR) % GB_ITEM != 0)
        return fetch_error_set(err, -EBADMSG, "directory at %llu: goodbye table of %llu bytes",
                               (unsigned long long)e->pos, (unsigned long long)size);
    start = end - size;
    if (le64(t + 8 * a->d->tail_off) != start - base)
        return fetch_error_set(err, -EBADMSG,
                               "directory at %llu: its goodbye tail points at %llu, not at "
                               "its entry",
                               (unsigned long long)e->pos,
                               (unsigned long long)(start - le64(t + 8 * a->d->tail_off)));
    if ((r = item_at(a, start, end, &it, err)) < 0)
        return r;
    if (it.type != a->d->goodbye || it.size != size)
        return fetch_error_set(err, -EBADMSG,
                               "directory at %llu: no goodbye item where its tail says",
                               (unsigned long long)e->pos);
    e->goodbye_off = start + HDR;
    e->goodbye_count = (size - HDR) / GB_ITEM - 1;
    if (e->goodbye_count > FETCH_ARCHIVE_GOODBYE_MAX)
        return fetch_error_set(err, -EBADMSG, "directory at %llu has %llu entries (at most %u)",
                               (unsigned long long)e->pos, (unsigned long long)e->goodbye_count,
                               FETCH_ARCHIVE_GOODBYE_MAX);
    return 0;
}

/*
 * Decodes the entry whose ENTRY item is at @pos and whose range ends at
 * @end: metadata items, then its content by kind. @base: see read_goodbye.
 */
static int decode_entry(const struct gb_archive *a, uint64_t pos, uint64_t base, uint64_t end,
                        struct fetch_archive_entry *e, fetch_error *err)
{
    struct item it;
    uint64_t p;
    uint8_t b[16];
    unsigned n = 0;
    int r;

    memset(e, 0, sizeof(*e));
    if ((r = read_entry_item(a, pos, end, e, err)) < 0)
        return r;
    for (p = e->meta_off; end - p >= HDR; p += it.size) {
        if ((r = item_at(a, p, end, &it, err)) < 0)
            return r;
        if (!is_meta_item(a->d, it.type))
            break;
        if (++n > META_ITEMS_MAX ||
            it.size > HDR + (it.type == a->d->xattr ? FETCH_ARCHIVE_XATTR_MAX : ITEM_SMALL_MAX))
            return fetch_error_set(err, -EBADMSG,
                                   "entry at %llu: too many or too large "
                                   "metadata items",
                                   (unsigned long long)pos);
    }
    e->meta_end = p;

    switch (e->kind) {
    case FETCH_ARCHIVE_DIR:
        return read_goodbye(a, e, base, end, err);
    case FETCH_ARCHIVE_FIFO:
    case FETCH_ARCHIVE_SOCKET:
        return 0;
    default:
        break;
    }
    if ((r = item_at(a, p, end, &it, err)) < 0)
        return r;
    if (e->kind == FETCH_ARCHIVE_FILE && it.type == a->d->payload && !a->payload) {
        e->size = it.size - HDR;
        e->data_off = p + HDR;
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_FILE && a->d->payload_ref && it.type == a->d->payload_ref &&
        a->payload && it.size == HDR + 16) {
        if ((r = rd(a->meta, p + HDR, b, 16, err)) < 0)
            return r;
        e->data_off = le64(b) + HDR; /* the offset is that of the PAYLOAD header */
        e->size = le64(b + 8);
        e->data_in_payload = true;
        if (le64(b) > a->payload->size || e->size > a->payload->size - le64(b) ||
            a->payload->size - le64(b) - e->size < HDR)
            return fetch_error_set(err, -EBADMSG,
                                   "file at %llu: its payload (%llu bytes at %llu) is past "
                                   "the payload stream's end",
                                   (unsigned long long)pos, (unsigned long long)e->size,
                                   (unsigned long long)le64(b));
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_SYMLINK && it.type == a->d->symlink && it.size >= HDR + 2 &&
        it.size <= HDR + FETCH_ARCHIVE_PATH_MAX + 1) {
        e->size = it.size - HDR - 1;
        e->target_off = p + HDR;
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_DEVICE && it.type == a->d->device && it.size == HDR + 16) {
        if ((r = rd(a->meta, p + HDR, b, 16, err)) < 0)
            return r;
        e->dev_major = le64(b);
        e->dev_minor = le64(b + 8);
        return 0;
    }
    return fetch_error_set(err, -EBADMSG,
                           "entry at %llu (mode %llo): unexpected item %016llx of %llu bytes "
                           "for its content",
                           (unsigned long long)pos, (unsigned long long)e->mode,
                           (unsigned long long)it.type, (unsigned long long)it.size);
}

int gb_open(const struct gb_dialect *d, const struct fetch_stream *meta,
            const struct fetch_stream *payload, struct fetch_archive **ret, fetch_error *err)
{
    struct gb_archive *a;
    struct fetch_archive_entry root;
    uint8_t t[GB_ITEM], v[8];
    uint64_t pos, gb_start, tail_size, tail_off;
    struct item it;
    int r;

    if (!(a = calloc(1, sizeof(*a))))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    a->base.format = d->format;
    a->d = d;
    a->meta = meta;
    a->payload = payload;
    a->version = 1;
    /* the root's goodbye tail: the stream's last 24 bytes */
    if (meta->size < HDR + 40 + HDR + GB_ITEM) {
        r = fetch_error_set(err, -EBADMSG, "a stream of %llu bytes is too short",
                            (unsigned long long)meta->size);
        goto fail;
    }
    if ((r = rd(meta, meta->size - GB_ITEM, t, GB_ITEM, err)) < 0)
        goto fail;
    tail_size = le64(t + 8 * d->tail_size);
    tail_off = le64(t + 8 * d->tail_off);
    if (le64(t + 8 * d->tail_marker) != d->tail_marker_value || tail_size > meta->size ||
        tail_off > meta->size - tail_size) {
        r = fetch_error_set(err, -EBADMSG, "the stream does not end in a goodbye tail");
        goto fail;
    }
    gb_start = meta->size - tail_size;
    pos = a->root_base = gb_start - tail_off;
    /* pxar v2: FORMAT_VERSION first, then perhaps a PRELUDE */
    if ((r = item_at(a, pos, gb_start, &it, err)) < 0)
        goto fail;
    if (d->format_version && it.type == d->format_version) {
        if (it.size != HDR + 8 || (r = rd(meta, pos + HDR, v, 8, err)) < 0 || le64(v) != 2) {
            r = r < 0 ? r : fetch_error_set(err, -EBADMSG, "unknown format version");
            goto fail;
        }
        a->version = 2;
        pos += it.size;
        if ((r = item_at(a, pos, gb_start, &it, err)) < 0)
            goto fail;
        if (it.type == d->prelude)
            pos += it.size;
    }
    if ((a->version == 2) != (payload != NULL)) {
        r = fetch_error_set(err, -EBADMSG,
                            a->version == 2 ? "a v2 metadata stream without its payload "
                                              "stream"
                                            : "a v1 archive given a payload stream");
        goto fail;
    }
    a->root_pos = pos;
    if ((r = gb_root(&a->base, &root, err)) < 0)
        goto fail;
    if (root.kind != FETCH_ARCHIVE_DIR) {
        r = fetch_error_set(err, -EBADMSG, "the root is not a directory");
        goto fail;
    }
    *ret = &a->base;
    return 0;
fail:
    free(a);
    return r;
}

void gb_free(struct fetch_archive *a)
{
    free(a);
}

unsigned gb_version(const struct fetch_archive *a)
{
    return ((const struct gb_archive *)a)->version;
}

int gb_root(struct fetch_archive *base, struct fetch_archive_entry *ret, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    return decode_entry(a, a->root_pos, a->root_base, a->meta->size, ret, err);
}

/* Goodbye item @i of @dir: its hash, and where its child's file name item
 * is (the item gives the distance back from the table's start) and ends. */
static int goodbye_item(const struct gb_archive *a, const struct fetch_archive_entry *dir,
                        uint64_t i, uint64_t *hash, uint64_t *fname, uint64_t *end,
                        fetch_error *err)
{
    uint64_t start = dir->goodbye_off - HDR, back, size;
    uint8_t b[GB_ITEM];
    int r;
    if ((r = rd(a->meta, dir->goodbye_off + i * GB_ITEM, b, GB_ITEM, err)) < 0)
        return r;
    *hash = le64(b + 8 * a->d->gb_hash);
    back = le64(b + 8 * a->d->gb_off);
    size = le64(b + 8 * a->d->gb_size);
    /* the child lies between the directory's own items and its table */
    if (back > start - dir->meta_end || back == 0)
        return fetch_error_set(err, -EBADMSG,
                               "directory at %llu: goodbye item %llu points outside the "
                               "directory",
                               (unsigned long long)dir->pos, (unsigned long long)i);
    *fname = start - back;
    /* a v2 file's size may count its payload too (pbs.md §11): never past
     * the table, and only a bound, never an extent */
    *end = *fname + (size < back ? size : back);
    return 0;
}

/*
 * The child whose FILENAME item is at @fname (range to @end) of @dir: its
 * name into @name (@cap bytes) and its entry, hardlinks resolved.
 */
static int decode_child(const struct gb_archive *a, const struct fetch_archive_entry *dir,
                        uint64_t fname, uint64_t end, char *name, size_t cap,
                        struct fetch_archive_entry *ret, fetch_error *err)
{
    struct item it, link;
    uint64_t at;
    uint8_t b[8];
    size_t len;
    int r;

    if ((r = item_at(a, fname, end, &it, err)) < 0)
        return r;
    if (it.type != a->d->filename || it.size < HDR + 2 || it.size > HDR + a->d->name_max + 1)
        return fetch_error_set(err, -EBADMSG, "no file name at %llu", (unsigned long long)fname);
    len = (size_t)(it.size - HDR);
    if (len > cap)
        return fetch_error_set(err, -ENAMETOOLONG, "a name of %zu bytes", len - 1);
    if ((r = rd(a->meta, fname + HDR, name, len, err)) < 0)
        return r;
    if (name[len - 1] != '\0' || memchr(name, '\0', len - 1) || memchr(name, '/', len - 1) ||
        !strcmp(name, ".") || !strcmp(name, ".."))
        return fetch_error_set(err, -EBADMSG, "invalid file name at %llu",
                               (unsigned long long)fname);
    at = fname + it.size;
    if ((r = item_at(a, at, end, &link, err)) < 0)
        return r;
    if (!a->d->hardlink || link.type != a->d->hardlink)
        return decode_entry(a, at, at, end, ret, err);
    /* a hardlink: {u64 distance back from this FILENAME to the target's, path} */
    if (link.size < HDR + 8 + 2 || (r = rd(a->meta, at + HDR, b, 8, err)) < 0)
        return r < 0 ? r
                     : fetch_error_set(err, -EBADMSG, "short hardlink at %llu",
                                       (unsigned long long)at);
    if (le64(b) == 0 || le64(b) > fname)
        return fetch_error_set(err, -EBADMSG, "hardlink at %llu points outside the archive",
                               (unsigned long long)at);
    at = fname - le64(b);
    /* the target: a FILENAME, then its ENTRY (not another hardlink: no loops) */
    if ((r = item_at(a, at, a->meta->size, &it, err)) < 0)
        return r;
    if (it.type != a->d->filename || it.size > HDR + a->d->name_max + 1)
        return fetch_error_set(err, -EBADMSG, "hardlink at %llu: no file name at its target",
                               (unsigned long long)(fname + it.size));
    at += it.size;
    if ((r = decode_entry(a, at, at, a->meta->size, ret, err)) < 0)
        return r;
    if (ret->kind == FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -EBADMSG, "hardlink at %llu to a directory",
                               (unsigned long long)fname);
    return 0;
}

struct gb_item {
    uint64_t hash, at, end;
};

static int item_at_cmp(const void *x, const void *y)
{
    const struct gb_item *a = x, *b = y;
    return a->at < b->at ? -1 : a->at > b->at;
}

static int item_hash_cmp(const void *x, const void *y)
{
    const struct gb_item *a = x, *b = y;
    return a->hash < b->hash ? -1 : a->hash > b->hash;
}

/*
 * Whether two of the @n items (sorted by hash) of @dir are children of one
 * name: the same name twice in a listing, one of them out of reach of a
 * lookup. Only items of equal hashes are decoded (rare in an honest table).
 */
static int check_names(struct gb_archive *a, const struct fetch_archive_entry *dir,
                       const struct gb_item *it, uint64_t n, fetch_error *err)
{
    char x[FETCH_ARCHIVE_NAME_MAX + 1], y[FETCH_ARCHIVE_NAME_MAX + 1];
    struct fetch_archive_entry ex, ey;
    int r;

    for (uint64_t i = 0; i + 1 < n; i++) {
        for (uint64_t j = i + 1; j < n && it[j].hash == it[i].hash; j++) {
            if ((r = decode_child(a, dir, it[i].at, it[i].end, x, sizeof(x), &ex, err)) < 0 ||
                (r = decode_child(a, dir, it[j].at, it[j].end, y, sizeof(y), &ey, err)) < 0)
                return r;
            if (!strcmp(x, y))
                return fetch_error_set(err, -EBADMSG,
                                       "directory at %llu: two children named \"%s\"",
                                       (unsigned long long)dir->pos, x);
        }
    }
    return 0;
}

/*
 * Whether the goodbye items of @dir name distinct children, of distinct
 * names. A hostile table could name one child twice at every level: a few
 * KiB of archive would then list 2^depth paths to whoever walks it (and a
 * name twice in one listing). (Only the starts: a v2 file's item size may
 * count its payload, so that extents of honest children can overlap.)
 */
static int check_children(struct gb_archive *a, const struct fetch_archive_entry *dir,
                          fetch_error *err)
{
    struct gb_item *it;
    int r = 0;

    if (dir->goodbye_count < 2)
        return 0;
    if (!(it = calloc((size_t)dir->goodbye_count, sizeof(*it))))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    for (uint64_t i = 0; i < dir->goodbye_count && r == 0; i++)
        r = goodbye_item(a, dir, i, &it[i].hash, &it[i].at, &it[i].end, err);
    if (r == 0) {
        qsort(it, (size_t)dir->goodbye_count, sizeof(*it), item_at_cmp);
        for (uint64_t i = 1; i < dir->goodbye_count; i++) {
            if (it[i].at == it[i - 1].at) {
                r = fetch_error_set(err, -EBADMSG,
                                    "directory at %llu: two goodbye items name the child at "
                                    "%llu",
                                    (unsigned long long)dir->pos, (unsigned long long)it[i].at);
                break;
            }
        }
    }
    if (r == 0) {
        qsort(it, (size_t)dir->goodbye_count, sizeof(*it), item_hash_cmp);
        r = check_names(a, dir, it, dir->goodbye_count, err);
    }
    free(it);
    return r;
}

int gb_child(struct fetch_archive *base, const struct fetch_archive_entry *dir, uint64_t i,
             char *name, size_t name_cap, struct fetch_archive_entry *ret, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    uint64_t hash, fname, end;
    int r;
    if (dir->kind != FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -ENOTDIR, "not a directory");
    if (i >= dir->goodbye_count)
        return -ERANGE;
    /* a listing starts at the first child: the whole table is checked then */
    if (i == 0 && (r = check_children(a, dir, err)) < 0)
        return r;
    if ((r = goodbye_item(a, dir, i, &hash, &fname, &end, err)) < 0 ||
        (r = decode_child(a, dir, fname, end, name, name_cap, ret, err)) < 0)
        return r;
    if (name_hash(a, name, strlen(name)) != hash)
        return fetch_error_set(err, -EBADMSG,
                               "directory at %llu: the hash of \"%s\" is not its goodbye "
                               "item's",
                               (unsigned long long)dir->pos, name);
    return 0;
}

int gb_lookup(struct fetch_archive *base, const struct fetch_archive_entry *dir, const char *name,
              size_t len, struct fetch_archive_entry *ret, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    char got[FETCH_ARCHIVE_NAME_MAX + 1];
    uint64_t want, hash, fname, end, i = 0;
    int r;

    if (dir->kind != FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -ENOTDIR, "not a directory");
    if (len == 0 || len > a->d->name_max)
        return -ENOENT;
    want = name_hash(a, name, len);
    /* the implicit binary search tree: children of i at 2i+1 and 2i+2 */
    while (i < dir->goodbye_count) {
        if ((r = goodbye_item(a, dir, i, &hash, &fname, &end, err)) < 0)
            return r;
        if (hash == want)
            break;
        i = want < hash ? 2 * i + 1 : 2 * i + 2;
    }
    if (i >= dir->goodbye_count)
        return -ENOENT;
    if ((r = decode_child(a, dir, fname, end, got, sizeof(got), ret, err)) < 0)
        return r;
    if (strlen(got) == len && !memcmp(got, name, len))
        return 0;
    /* two names with one hash: rare enough to look at every item with it */
    for (i = 0; i < dir->goodbye_count; i++) {
        if ((r = goodbye_item(a, dir, i, &hash, &fname, &end, err)) < 0)
            return r;
        if (hash != want)
            continue;
        if ((r = decode_child(a, dir, fname, end, got, sizeof(got), ret, err)) < 0)
            return r;
        if (strlen(got) == len && !memcmp(got, name, len))
            return 0;
    }
    return -ENOENT;
}

int gb_readlink(struct fetch_archive *base, const struct fetch_archive_entry *e, char *buf,
                size_t cap, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    int r;
    if (e->kind != FETCH_ARCHIVE_SYMLINK)
        return fetch_error_set(err, -EINVAL, "not a symlink");
    if (cap <= e->size)
        return fetch_error_set(err, -ENAMETOOLONG, "symlink target of %llu bytes",
                               (unsigned long long)e->size);
    if ((r = rd(a->meta, e->target_off, buf, (size_t)e->size + 1, err)) < 0)
        return r;
    if (buf[e->size] != '\0' || memchr(buf, '\0', (size_t)e->size))
        return fetch_error_set(err, -EBADMSG, "symlink at %llu: malformed target",
                               (unsigned long long)e->pos);
    return 0;
}

int gb_check_data(struct fetch_archive *base, const struct fetch_archive_entry *e, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    uint8_t h[HDR];
    int r;
    if (e->kind != FETCH_ARCHIVE_FILE || !e->data_in_payload)
        return 0;
    /* the payload stream must have a PAYLOAD item of this size there */
    if ((r = rd(a->payload, e->data_off - HDR, h, HDR, err)) < 0)
        return r;
    if (le64(h + (a->d->size_first ? 8 : 0)) != a->d->payload ||
        le64(h + (a->d->size_first ? 0 : 8)) != e->size + HDR)
        return fetch_error_set(err, -EBADMSG,
                               "file at %llu: no payload of %llu bytes at payload offset "
                               "%llu",
                               (unsigned long long)e->pos, (unsigned long long)e->size,
                               (unsigned long long)(e->data_off - HDR));
    return 0;
}

long gb_read(struct fetch_archive *base, const struct fetch_archive_entry *e, uint64_t off,
             void *buf, size_t len, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    const struct fetch_stream *s = e->data_in_payload ? a->payload : a->meta;
    int r;
    if (e->kind != FETCH_ARCHIVE_FILE)
        return fetch_error_set(err, -EINVAL, "not a regular file");
    if (off >= e->size)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    if (len > (size_t)LONG_MAX)
        len = (size_t)LONG_MAX;
    if ((r = gb_check_data(base, e, err)) < 0)
        return r;
    if ((r = rd(s, e->data_off + off, buf, len, err)) < 0)
        return r;
    return (long)len;
}

/*
 * POSIX ACLs, gathered from an entry's ACL items and given as the kernel's
 * xattr form (system.posix_acl_access, ..._default): a 4-byte version (2),
 * then {le16 tag, le16 perm, le32 id} entries sorted by tag and id. The
 * owner, group and other entries of the access ACL come from the mode,
 * unless a group-object item says the group's (then the mode's group bits
 * are the mask).
 */
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20
#define ACL_NO_ID 0xffffffffu
#define ACL_NO_MASK UINT64_MAX /* pxar: a default ACL without a mask */
#define ACL_MAX_ENTRIES 1024u

struct acl_entry {
    uint16_t tag, perm;
    uint32_t id;
};

struct acl {
    struct acl_entry v[ACL_MAX_ENTRIES];
    unsigned n;
    bool any;
};

static int acl_add(struct acl *acl, uint16_t tag, uint64_t perm, uint64_t id)
{
    if (acl->n == ACL_MAX_ENTRIES || perm > 7 || id > UINT32_MAX)
        return -EBADMSG;
    acl->v[acl->n++] = (struct acl_entry){tag, (uint16_t)perm, (uint32_t)id};
    acl->any = true;
    return 0;
}

static int acl_cmp(const void *x, const void *y)
{
    const struct acl_entry *a = x, *b = y;
    if (a->tag != b->tag)
        return a->tag < b->tag ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Sorts @acl and passes it to @cb as xattr @name. */
static int acl_emit(struct acl *acl, const char *name, fetch_xattr_fn cb, void *arg)
{
    uint8_t out[4 + 8 * ACL_MAX_ENTRIES];
    size_t len = 4;
    qsort(acl->v, acl->n, sizeof(acl->v[0]), acl_cmp);
    out[0] = 2;
    out[1] = out[2] = out[3] = 0;
    for (unsigned i = 0; i < acl->n; i++, len += 8) {
        const struct acl_entry *e = &acl->v[i];
        out[len] = (uint8_t)e->tag;
        out[len + 1] = (uint8_t)(e->tag >> 8);
        out[len + 2] = (uint8_t)e->perm;
        out[len + 3] = 0;
        for (int b = 0; b < 4; b++)
            out[len + 4 + b] = (uint8_t)(e->id >> (8 * b));
    }
    return cb(name, out, len, arg);
}

/* The ACL items of @e (the dialect's types) into @access and @dflt. */
static int acl_item(const struct gb_archive *a, uint64_t type, const uint8_t *b, size_t len,
                    struct acl *access, struct acl *dflt, struct acl *obj, bool *has_group_obj)
{
    const struct gb_dialect *d = a->d;
    if ((type == d->acl_user || type == d->acl_group || type == d->acl_default_user ||
         type == d->acl_default_group) &&
        len >= 16) {
        bool user = type == d->acl_user || type == d->acl_default_user;
        bool def = type == d->acl_default_user || type == d->acl_default_group;
        return acl_add(def ? dflt : access, user ? ACL_USER : ACL_GROUP, le64(b + 8), le64(b));
    }
    if (type == d->acl_group_obj && len >= 8) {
        *has_group_obj = true;
        return acl_add(obj, ACL_GROUP_OBJ, le64(b), ACL_NO_ID);
    }
    if (type == d->acl_default && len >= 32) {
        int r;
        if ((r = acl_add(dflt, ACL_USER_OBJ, le64(b), ACL_NO_ID)) < 0 ||
            (r = acl_add(dflt, ACL_GROUP_OBJ, le64(b + 8), ACL_NO_ID)) < 0 ||
            (r = acl_add(dflt, ACL_OTHER, le64(b + 16), ACL_NO_ID)) < 0)
            return r;
        return le64(b + 24) == ACL_NO_MASK ? 0 : acl_add(dflt, ACL_MASK, le64(b + 24), ACL_NO_ID);
    }
    return -EBADMSG;
}

static bool is_acl_item(const struct gb_dialect *d, uint64_t type)
{
    return type &&
           (type == d->acl_user || type == d->acl_group || type == d->acl_group_obj ||
            type == d->acl_default || type == d->acl_default_user || type == d->acl_default_group);
}

int gb_xattrs(struct fetch_archive *base, const struct fetch_archive_entry *e, fetch_xattr_fn cb,
              void *arg, fetch_error *err)
{
    struct gb_archive *a = (struct gb_archive *)base;
    struct acl *acls = NULL; /* access, default, group object */
    bool has_group_obj = false;
    uint8_t *buf = NULL;
    struct item it;
    int r = 0;

    for (uint64_t p = e->meta_off; p < e->meta_end && r == 0; p += it.size) {
        size_t len;
        uint8_t *nul;
        if ((r = item_at(a, p, e->meta_end, &it, err)) < 0)
            break;
        if (is_acl_item(a->d, it.type)) {
            uint8_t b[32];
            size_t n = it.size - HDR < sizeof(b) ? (size_t)(it.size - HDR) : sizeof(b);
            if (!acls && !(acls = calloc(3, sizeof(*acls)))) {
                r = fetch_error_set(err, -ENOMEM, "out of memory");
                break;
            }
            if ((r = rd(a->meta, p + HDR, b, n, err)) < 0)
                break;
            if ((r = acl_item(a, it.type, b, n, &acls[0], &acls[1], &acls[2], &has_group_obj)) <
                0) {
                r = fetch_error_set(err, -EBADMSG, "entry at %llu: malformed ACL item",
                                    (unsigned long long)e->pos);
                break;
            }
            continue;
        }
        if (it.type != a->d->xattr && it.type != a->d->fcaps)
            continue; /* the quota project id is not shown */
        len = (size_t)(it.size - HDR);
        free(buf);
        if (!(buf = malloc(len + 1))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            break;
        }
        if ((r = rd(a->meta, p + HDR, buf, len, err)) < 0)
            break;
        if (it.type == a->d->fcaps) {
            r = cb("security.capability", buf, len, arg);
            continue;
        }
        if (!(nul = memchr(buf, '\0', len)) || nul == buf) {
            r = fetch_error_set(err, -EBADMSG, "entry at %llu: malformed xattr",
                                (unsigned long long)e->pos);
            break;
        }
        r = cb((const char *)buf, nul + 1, len - (size_t)(nul + 1 - buf), arg);
    }
    if (r == 0 && acls && (acls[0].any || has_group_obj)) {
        /* the access ACL: owner and other from the mode; the group's own
         * entry or the mode's group bits; then those bits are the mask */
        struct acl *acc = &acls[0];
        if ((r = acl_add(acc, ACL_USER_OBJ, (e->mode >> 6) & 7, ACL_NO_ID)) == 0 &&
            (r = acl_add(acc, ACL_OTHER, e->mode & 7, ACL_NO_ID)) == 0)
            r = has_group_obj ? acl_add(acc, ACL_GROUP_OBJ, acls[2].v[0].perm, ACL_NO_ID)
                              : acl_add(acc, ACL_GROUP_OBJ, (e->mode >> 3) & 7, ACL_NO_ID);
        if (r == 0 && (has_group_obj || acc->n > 3))
            r = acl_add(acc, ACL_MASK, (e->mode >> 3) & 7, ACL_NO_ID);
        if (r < 0)
            r = fetch_error_set(err, -EBADMSG, "entry at %llu: malformed ACL",
                                (unsigned long long)e->pos);
        else
            r = acl_emit(acc, "system.posix_acl_access", cb, arg);
    }
    if (r == 0 && acls && acls[1].any)
        r = acl_emit(&acls[1], "system.posix_acl_default", cb, arg);
    free(acls);
    free(buf);
    return r;
}
