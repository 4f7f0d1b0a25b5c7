/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pxar decoding (see pxar.h). Item framing: {le64 type, le64 full_size}
 * then full_size - 16 bytes of content. Type values and layouts: pbs.md §11
 * (proxmox/pxar src/format/mod.rs).
 */
#include "pxar.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define PXAR_FORMAT_VERSION 0x730f6c75df16a40dull
#define PXAR_ENTRY 0xd5956474e588acefull
#define PXAR_ENTRY_V1 0x11da850a1c1cceffull
#define PXAR_PRELUDE 0xe309d79d9f7b771bull
#define PXAR_FILENAME 0x16701121063917b3ull
#define PXAR_SYMLINK 0x27f971e7dbf5dc5full
#define PXAR_HARDLINK 0x51269c8422bd7275ull
#define PXAR_DEVICE 0x9fc9e906586d5ce9ull
#define PXAR_XATTR 0x0dab0229b57dcd03ull
#define PXAR_ACL_USER 0x2ce8540a457d55b8ull
#define PXAR_ACL_GROUP 0x136e3eceb04c03abull
#define PXAR_ACL_GROUP_OBJ 0x10868031e9582876ull
#define PXAR_ACL_DEFAULT 0xbbbb13415a6896f5ull
#define PXAR_ACL_DEFAULT_USER 0xc89357b40532cd1full
#define PXAR_ACL_DEFAULT_GROUP 0xf90a8a5816038ffeull
#define PXAR_FCAPS 0x2da9dd9db5f7fb67ull
#define PXAR_QUOTA_PROJID 0xe07540e82f7d1cbbull
#define PXAR_PAYLOAD 0x28147a1b0b7c1a25ull
#define PXAR_PAYLOAD_REF 0x419d3d6bc4ba977eull
#define PXAR_GOODBYE 0x2fec4fa642d5731dull
#define PXAR_GOODBYE_TAIL_MARKER 0xef5eed5b753e1555ull

/* SipHash-2-4 keys of the goodbye tables */
#define PXAR_HASH_K0 0x83ac3f1cfbb450dbull
#define PXAR_HASH_K1 0xaa4f1b6879369fbdull

#define HDR 16u
#define GB_ITEM 24u
/* items an entry may carry before its content (xattrs, ACLs, ...) */
#define META_ITEMS_MAX 4096u
#define ITEM_SMALL_MAX (64u * 1024) /* an ACL, fcaps or prelude item */

struct fetch_pxar {
    struct fetch_archive base; /* first: the archive interface's view */
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

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads [@off, @off + @len) of @s, which must lie inside it. */
static int rd(const struct fetch_stream *s, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    if (off > s->size || len > s->size - off)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: %zu bytes at offset %llu are past the end of the stream "
                               "(%llu bytes)",
                               len, (unsigned long long)off, (unsigned long long)s->size);
    return len ? s->read(s->ctx, off, buf, len, err) : 0;
}

/* The item header at @off, which must end by @end with its content. */
static int item_at(const struct fetch_pxar *a, uint64_t off, uint64_t end, struct item *it,
                   fetch_error *err)
{
    uint8_t h[HDR];
    int r;
    if (off > end || end - off < HDR)
        return fetch_error_set(err, -EBADMSG, "pxar: no room for an item at offset %llu",
                               (unsigned long long)off);
    if ((r = rd(a->meta, off, h, HDR, err)) < 0)
        return r;
    it->type = le64(h);
    it->size = le64(h + 8);
    if (it->size < HDR || it->size > end - off)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: the item at offset %llu has size %llu, outside its "
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

uint64_t fetch_pxar_hash(const char *name, size_t len)
{
    uint8_t key[16], out[8];
    size_t outlen = 0, size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_CTX *ctx;
    bool ok;

    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(PXAR_HASH_K0 >> (8 * i));
        key[8 + i] = (uint8_t)(PXAR_HASH_K1 >> (8 * i));
    }
    pthread_once(&siphash_once, siphash_fetch);
    if (!siphash || !(ctx = EVP_MAC_CTX_new(siphash)))
        return 0; /* no name matches: lookups fail, nothing wrong is served */
    ok = EVP_MAC_init(ctx, key, sizeof(key), params) &&
         EVP_MAC_update(ctx, (const unsigned char *)name, len) &&
         EVP_MAC_final(ctx, out, &outlen, sizeof(out)) && outlen == 8;
    EVP_MAC_CTX_free(ctx);
    return ok ? le64(out) : 0;
}

static bool is_meta_item(uint64_t type)
{
    switch (type) {
    case PXAR_XATTR:
    case PXAR_ACL_USER:
    case PXAR_ACL_GROUP:
    case PXAR_ACL_GROUP_OBJ:
    case PXAR_ACL_DEFAULT:
    case PXAR_ACL_DEFAULT_USER:
    case PXAR_ACL_DEFAULT_GROUP:
    case PXAR_FCAPS:
    case PXAR_QUOTA_PROJID:
        return true;
    default:
        return false;
    }
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

/* The ENTRY (or ENTRY_V1) item at @pos: the metadata fields of @e. */
static int read_entry_item(const struct fetch_pxar *a, uint64_t pos, uint64_t end,
                           struct fetch_archive_entry *e, fetch_error *err)
{
    uint8_t b[40];
    struct item it;
    int r;

    if ((r = item_at(a, pos, end, &it, err)) < 0)
        return r;
    if (it.type == PXAR_ENTRY && it.size == HDR + 40) {
        if ((r = rd(a->meta, pos + HDR, b, 40, err)) < 0)
            return r;
        e->mtime_sec = (int64_t)le64(b + 24);
        e->mtime_nsec = le32(b + 32);
        if (e->mtime_nsec >= 1000000000u)
            return fetch_error_set(err, -EBADMSG, "pxar: entry at %llu: nanoseconds %u",
                                   (unsigned long long)pos, e->mtime_nsec);
    } else if (it.type == PXAR_ENTRY_V1 && it.size == HDR + 32) {
        uint64_t ns;
        if ((r = rd(a->meta, pos + HDR, b, 32, err)) < 0)
            return r;
        ns = le64(b + 24);
        e->mtime_sec = (int64_t)(ns / 1000000000u);
        e->mtime_nsec = (uint32_t)(ns % 1000000000u);
    } else {
        return fetch_error_set(
            err, -EBADMSG, "pxar: expected an entry at offset %llu (type %016llx, %llu bytes)",
            (unsigned long long)pos, (unsigned long long)it.type, (unsigned long long)it.size);
    }
    e->pos = pos;
    e->mode = le64(b);
    e->flags = le64(b + 8);
    e->uid = le32(b + 16);
    e->gid = le32(b + 20);
    if ((int)(e->kind = kind_of(e->mode)) < 0)
        return fetch_error_set(err, -EBADMSG, "pxar: entry at %llu: unknown file type in mode %llo",
                               (unsigned long long)pos, (unsigned long long)e->mode);
    e->meta_off = e->meta_end = pos + it.size;
    return 0;
}

/*
 * The directory whose ENTRY is at @e->pos and whose range (the goodbye table
 * last) ends at @end: its goodbye table, from the tail item. @base is where
 * the tail's offset measures from (the ENTRY, or the stream's start for the
 * root of a v2 archive).
 */
static int read_goodbye(const struct fetch_pxar *a, struct fetch_archive_entry *e, uint64_t base,
                        uint64_t end, fetch_error *err)
{
    uint8_t t[GB_ITEM];
    uint64_t size, start;
    struct item it;
    int r;

    if (end < e->meta_end || end - e->meta_end < HDR + GB_ITEM)
        return fetch_error_set(err, -EBADMSG, "pxar: directory at %llu has no goodbye table",
                               (unsigned long long)e->pos);
    if ((r = rd(a->meta, end - GB_ITEM, t, GB_ITEM, err)) < 0)
        return r;
    size = le64(t + 16);
    if (le64(t) != PXAR_GOODBYE_TAIL_MARKER)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: its range does not end in a goodbye tail",
                               (unsigned long long)e->pos);
    if (size < HDR + GB_ITEM || size > end - e->meta_end || (size - HDR) % GB_ITEM != 0)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: goodbye table of %llu bytes",
                               (unsigned long long)e->pos, (unsigned long long)size);
    start = end - size;
    if (le64(t + 8) != start - base)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: its goodbye tail points at %llu, not at "
                               "its entry",
                               (unsigned long long)e->pos,
                               (unsigned long long)(start - le64(t + 8)));
    if ((r = item_at(a, start, end, &it, err)) < 0)
        return r;
    if (it.type != PXAR_GOODBYE || it.size != size)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: no goodbye item where its tail says",
                               (unsigned long long)e->pos);
    e->goodbye_off = start + HDR;
    e->goodbye_count = (size - HDR) / GB_ITEM - 1;
    if (e->goodbye_count > FETCH_PXAR_GOODBYE_MAX)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu has %llu entries (at most %u)",
                               (unsigned long long)e->pos, (unsigned long long)e->goodbye_count,
                               FETCH_PXAR_GOODBYE_MAX);
    return 0;
}

/*
 * Decodes the entry whose ENTRY item is at @pos and whose range ends at
 * @end: metadata items, then its content by kind. @base: see read_goodbye.
 */
static int decode_entry(const struct fetch_pxar *a, uint64_t pos, uint64_t base, uint64_t end,
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
        if (!is_meta_item(it.type))
            break;
        if (++n > META_ITEMS_MAX ||
            it.size > HDR + (it.type == PXAR_XATTR ? FETCH_PXAR_XATTR_MAX : ITEM_SMALL_MAX))
            return fetch_error_set(err, -EBADMSG,
                                   "pxar: entry at %llu: too many or too large "
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
    if (e->kind == FETCH_ARCHIVE_FILE && it.type == PXAR_PAYLOAD && !a->payload) {
        e->size = it.size - HDR;
        e->data_off = p + HDR;
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_FILE && it.type == PXAR_PAYLOAD_REF && a->payload &&
        it.size == HDR + 16) {
        if ((r = rd(a->meta, p + HDR, b, 16, err)) < 0)
            return r;
        e->data_off = le64(b) + HDR; /* the offset is that of the PAYLOAD header */
        e->size = le64(b + 8);
        e->data_in_payload = true;
        if (le64(b) > a->payload->size || e->size > a->payload->size - le64(b) ||
            a->payload->size - le64(b) - e->size < HDR)
            return fetch_error_set(err, -EBADMSG,
                                   "pxar: file at %llu: its payload (%llu bytes at %llu) is past "
                                   "the payload stream's end",
                                   (unsigned long long)pos, (unsigned long long)e->size,
                                   (unsigned long long)le64(b));
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_SYMLINK && it.type == PXAR_SYMLINK && it.size >= HDR + 2 &&
        it.size <= HDR + FETCH_PXAR_PATH_MAX + 1) {
        e->size = it.size - HDR - 1;
        e->target_off = p + HDR;
        return 0;
    }
    if (e->kind == FETCH_ARCHIVE_DEVICE && it.type == PXAR_DEVICE && it.size == HDR + 16) {
        if ((r = rd(a->meta, p + HDR, b, 16, err)) < 0)
            return r;
        e->dev_major = le64(b);
        e->dev_minor = le64(b + 8);
        return 0;
    }
    return fetch_error_set(err, -EBADMSG,
                           "pxar: entry at %llu (mode %llo): unexpected item %016llx of %llu bytes "
                           "for its content",
                           (unsigned long long)pos, (unsigned long long)e->mode,
                           (unsigned long long)it.type, (unsigned long long)it.size);
}

int fetch_pxar_open(const struct fetch_stream *meta, const struct fetch_stream *payload,
                    struct fetch_pxar **ret, fetch_error *err)
{
    struct fetch_pxar *a;
    struct fetch_archive_entry root;
    uint8_t t[GB_ITEM], v[8];
    uint64_t pos, gb_start;
    struct item it;
    int r;

    if (!(a = calloc(1, sizeof(*a))))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    a->base.format = &fetch_pxar_format;
    a->meta = meta;
    a->payload = payload;
    a->version = 1;
    /* the root's goodbye tail: the stream's last 24 bytes */
    if (meta->size < HDR + 40 + HDR + GB_ITEM) {
        r = fetch_error_set(err, -EBADMSG, "pxar: a stream of %llu bytes is too short",
                            (unsigned long long)meta->size);
        goto fail;
    }
    if ((r = rd(meta, meta->size - GB_ITEM, t, GB_ITEM, err)) < 0)
        goto fail;
    if (le64(t) != PXAR_GOODBYE_TAIL_MARKER || le64(t + 16) > meta->size ||
        le64(t + 8) > meta->size - le64(t + 16)) {
        r = fetch_error_set(err, -EBADMSG, "pxar: the stream does not end in a goodbye tail");
        goto fail;
    }
    gb_start = meta->size - le64(t + 16);
    pos = a->root_base = gb_start - le64(t + 8);
    /* v2: FORMAT_VERSION first, then perhaps a PRELUDE */
    if ((r = item_at(a, pos, gb_start, &it, err)) < 0)
        goto fail;
    if (it.type == PXAR_FORMAT_VERSION) {
        if (it.size != HDR + 8 || (r = rd(meta, pos + HDR, v, 8, err)) < 0 || le64(v) != 2) {
            r = r < 0 ? r : fetch_error_set(err, -EBADMSG, "pxar: unknown format version");
            goto fail;
        }
        a->version = 2;
        pos += it.size;
        if ((r = item_at(a, pos, gb_start, &it, err)) < 0)
            goto fail;
        if (it.type == PXAR_PRELUDE) {
            pos += it.size;
        }
    }
    if ((a->version == 2) != (payload != NULL)) {
        r = fetch_error_set(err, -EBADMSG,
                            a->version == 2 ? "pxar: a v2 metadata stream without its payload "
                                              "stream"
                                            : "pxar: a v1 archive given a payload stream");
        goto fail;
    }
    a->root_pos = pos;
    if ((r = fetch_pxar_root(a, &root, err)) < 0)
        goto fail;
    if (root.kind != FETCH_ARCHIVE_DIR) {
        r = fetch_error_set(err, -EBADMSG, "pxar: the root is not a directory");
        goto fail;
    }
    *ret = a;
    return 0;
fail:
    free(a);
    return r;
}

void fetch_pxar_free(struct fetch_pxar *a)
{
    free(a);
}

unsigned fetch_pxar_version(const struct fetch_pxar *a)
{
    return a->version;
}

int fetch_pxar_root(struct fetch_pxar *a, struct fetch_archive_entry *ret, fetch_error *err)
{
    return decode_entry(a, a->root_pos, a->root_base, a->meta->size, ret, err);
}

/* Goodbye item @i of @dir: {hash, offset back from the table's start, size}. */
static int goodbye_item(const struct fetch_pxar *a, const struct fetch_archive_entry *dir,
                        uint64_t i, uint64_t *hash, uint64_t *fname, uint64_t *end,
                        fetch_error *err)
{
    uint64_t start = dir->goodbye_off - HDR, back, size;
    uint8_t b[GB_ITEM];
    int r;
    if ((r = rd(a->meta, dir->goodbye_off + i * GB_ITEM, b, GB_ITEM, err)) < 0)
        return r;
    *hash = le64(b);
    back = le64(b + 8);
    size = le64(b + 16);
    /* the child lies between the directory's own items and its table */
    if (back > start - dir->meta_end || back == 0)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: goodbye item %llu points outside the "
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
static int decode_child(const struct fetch_pxar *a, const struct fetch_archive_entry *dir,
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
    if (it.type != PXAR_FILENAME || it.size < HDR + 2 || it.size > HDR + FETCH_PXAR_NAME_MAX + 1)
        return fetch_error_set(err, -EBADMSG, "pxar: no file name at %llu",
                               (unsigned long long)fname);
    len = (size_t)(it.size - HDR);
    if (len > cap)
        return fetch_error_set(err, -ENAMETOOLONG, "pxar: a name of %zu bytes", len - 1);
    if ((r = rd(a->meta, fname + HDR, name, len, err)) < 0)
        return r;
    if (name[len - 1] != '\0' || memchr(name, '\0', len - 1) || memchr(name, '/', len - 1) ||
        !strcmp(name, ".") || !strcmp(name, ".."))
        return fetch_error_set(err, -EBADMSG, "pxar: invalid file name at %llu",
                               (unsigned long long)fname);
    at = fname + it.size;
    if ((r = item_at(a, at, end, &link, err)) < 0)
        return r;
    if (link.type != PXAR_HARDLINK)
        return decode_entry(a, at, at, end, ret, err);
    /* a hardlink: {u64 distance back from this FILENAME to the target's, path} */
    if (link.size < HDR + 8 + 2 || (r = rd(a->meta, at + HDR, b, 8, err)) < 0)
        return r < 0 ? r
                     : fetch_error_set(err, -EBADMSG, "pxar: short hardlink at %llu",
                                       (unsigned long long)at);
    if (le64(b) == 0 || le64(b) > fname)
        return fetch_error_set(err, -EBADMSG, "pxar: hardlink at %llu points outside the archive",
                               (unsigned long long)at);
    at = fname - le64(b);
    /* the target: a FILENAME, then its ENTRY (not another hardlink: no loops) */
    if ((r = item_at(a, at, a->meta->size, &it, err)) < 0)
        return r;
    if (it.type != PXAR_FILENAME || it.size > HDR + FETCH_PXAR_NAME_MAX + 1)
        return fetch_error_set(err, -EBADMSG, "pxar: hardlink at %llu: no file name at its target",
                               (unsigned long long)(fname + it.size));
    at += it.size;
    if ((r = decode_entry(a, at, at, a->meta->size, ret, err)) < 0)
        return r;
    if (ret->kind == FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -EBADMSG, "pxar: hardlink at %llu to a directory",
                               (unsigned long long)fname);
    return 0;
}

int fetch_pxar_child(struct fetch_pxar *a, const struct fetch_archive_entry *dir, uint64_t i,
                     char *name, size_t name_cap, struct fetch_archive_entry *ret, fetch_error *err)
{
    uint64_t hash, fname, end;
    int r;
    if (dir->kind != FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -ENOTDIR, "pxar: not a directory");
    if (i >= dir->goodbye_count)
        return -ERANGE;
    if ((r = goodbye_item(a, dir, i, &hash, &fname, &end, err)) < 0 ||
        (r = decode_child(a, dir, fname, end, name, name_cap, ret, err)) < 0)
        return r;
    if (fetch_pxar_hash(name, strlen(name)) != hash)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: directory at %llu: the hash of \"%s\" is not its goodbye "
                               "item's",
                               (unsigned long long)dir->pos, name);
    return 0;
}

int fetch_pxar_lookup(struct fetch_pxar *a, const struct fetch_archive_entry *dir, const char *name,
                      size_t len, struct fetch_archive_entry *ret, fetch_error *err)
{
    char got[FETCH_PXAR_NAME_MAX + 1];
    uint64_t want, hash, fname, end, i = 0;
    int r;

    if (dir->kind != FETCH_ARCHIVE_DIR)
        return fetch_error_set(err, -ENOTDIR, "pxar: not a directory");
    if (len == 0 || len > FETCH_PXAR_NAME_MAX)
        return -ENOENT;
    want = fetch_pxar_hash(name, len);
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

int fetch_pxar_readlink(struct fetch_pxar *a, const struct fetch_archive_entry *e, char *buf,
                        size_t cap, fetch_error *err)
{
    int r;
    if (e->kind != FETCH_ARCHIVE_SYMLINK)
        return fetch_error_set(err, -EINVAL, "pxar: not a symlink");
    if (cap <= e->size)
        return fetch_error_set(err, -ENAMETOOLONG, "pxar: symlink target of %llu bytes",
                               (unsigned long long)e->size);
    if ((r = rd(a->meta, e->target_off, buf, (size_t)e->size + 1, err)) < 0)
        return r;
    if (buf[e->size] != '\0' || memchr(buf, '\0', (size_t)e->size))
        return fetch_error_set(err, -EBADMSG, "pxar: symlink at %llu: malformed target",
                               (unsigned long long)e->pos);
    return 0;
}

int fetch_pxar_check_data(struct fetch_pxar *a, const struct fetch_archive_entry *e,
                          fetch_error *err)
{
    uint8_t h[HDR];
    int r;
    if (e->kind != FETCH_ARCHIVE_FILE || !e->data_in_payload)
        return 0;
    /* the payload stream must have a PAYLOAD item of this size there */
    if ((r = rd(a->payload, e->data_off - HDR, h, HDR, err)) < 0)
        return r;
    if (le64(h) != PXAR_PAYLOAD || le64(h + 8) != e->size + HDR)
        return fetch_error_set(err, -EBADMSG,
                               "pxar: file at %llu: no payload of %llu bytes at payload offset "
                               "%llu",
                               (unsigned long long)e->pos, (unsigned long long)e->size,
                               (unsigned long long)(e->data_off - HDR));
    return 0;
}

long fetch_pxar_read(struct fetch_pxar *a, const struct fetch_archive_entry *e, uint64_t off,
                     void *buf, size_t len, fetch_error *err)
{
    const struct fetch_stream *s = e->data_in_payload ? a->payload : a->meta;
    int r;
    if (e->kind != FETCH_ARCHIVE_FILE)
        return fetch_error_set(err, -EINVAL, "pxar: not a regular file");
    if (off >= e->size)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    if (len > (size_t)LONG_MAX)
        len = (size_t)LONG_MAX;
    if ((r = fetch_pxar_check_data(a, e, err)) < 0)
        return r;
    if ((r = rd(s, e->data_off + off, buf, len, err)) < 0)
        return r;
    return (long)len;
}

int fetch_pxar_xattrs(struct fetch_pxar *a, const struct fetch_archive_entry *e,
                      int (*cb)(const char *name, const void *value, size_t vlen, void *arg),
                      void *arg, fetch_error *err)
{
    uint8_t *buf = NULL;
    struct item it;
    int r = 0;

    for (uint64_t p = e->meta_off; p < e->meta_end && r == 0; p += it.size) {
        size_t len;
        uint8_t *nul;
        if ((r = item_at(a, p, e->meta_end, &it, err)) < 0)
            break;
        if (it.type != PXAR_XATTR && it.type != PXAR_FCAPS)
            continue; /* ACLs and the quota project id are not shown (yet) */
        len = (size_t)(it.size - HDR);
        free(buf);
        if (!(buf = malloc(len + 1))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            break;
        }
        if ((r = rd(a->meta, p + HDR, buf, len, err)) < 0)
            break;
        if (it.type == PXAR_FCAPS) {
            r = cb("security.capability", buf, len, arg);
            continue;
        }
        if (!(nul = memchr(buf, '\0', len)) || nul == buf) {
            r = fetch_error_set(err, -EBADMSG, "pxar: entry at %llu: malformed xattr",
                                (unsigned long long)e->pos);
            break;
        }
        r = cb((const char *)buf, nul + 1, len - (size_t)(nul + 1 - buf), arg);
    }
    free(buf);
    return r;
}

/* ---- the archive interface (fetch/archive.h) ----------------------------- */

static struct fetch_pxar *pxar_of(struct fetch_archive *a)
{
    return (struct fetch_pxar *)a;
}

static int ar_open(const struct fetch_stream *meta, const struct fetch_stream *payload,
                   struct fetch_archive **ret, fetch_error *err)
{
    struct fetch_pxar *a = NULL;
    int r = fetch_pxar_open(meta, payload, &a, err);
    if (r == 0)
        *ret = &a->base;
    return r;
}

static void ar_free(struct fetch_archive *a)
{
    fetch_pxar_free(pxar_of(a));
}

static int ar_root(struct fetch_archive *a, struct fetch_archive_entry *ret, fetch_error *err)
{
    return fetch_pxar_root(pxar_of(a), ret, err);
}

static int ar_lookup(struct fetch_archive *a, const struct fetch_archive_entry *dir,
                     const char *name, size_t len, struct fetch_archive_entry *ret,
                     fetch_error *err)
{
    return fetch_pxar_lookup(pxar_of(a), dir, name, len, ret, err);
}

static int ar_child(struct fetch_archive *a, const struct fetch_archive_entry *dir, uint64_t i,
                    char *name, size_t cap, struct fetch_archive_entry *ret, fetch_error *err)
{
    return fetch_pxar_child(pxar_of(a), dir, i, name, cap, ret, err);
}

static int ar_readlink(struct fetch_archive *a, const struct fetch_archive_entry *e, char *buf,
                       size_t cap, fetch_error *err)
{
    return fetch_pxar_readlink(pxar_of(a), e, buf, cap, err);
}

static int ar_check_data(struct fetch_archive *a, const struct fetch_archive_entry *e,
                         fetch_error *err)
{
    return fetch_pxar_check_data(pxar_of(a), e, err);
}

static int ar_xattrs(struct fetch_archive *a, const struct fetch_archive_entry *e,
                     fetch_xattr_fn cb, void *arg, fetch_error *err)
{
    return fetch_pxar_xattrs(pxar_of(a), e, cb, arg, err);
}

const struct fetch_archive_format fetch_pxar_format = {
    .name = "pxar",
    .open = ar_open,
    .free = ar_free,
    .root = ar_root,
    .lookup = ar_lookup,
    .child = ar_child,
    .readlink = ar_readlink,
    .check_data = ar_check_data,
    .xattrs = ar_xattrs,
};
