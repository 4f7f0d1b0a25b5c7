/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pcat.h"
#include "posset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PCAT_MAGIC "\x91\xfd\x60\xf9\xc4\x67\x58\xd5"
#define NAME_MAX_LEN 4095u
/* a directory's block is read whole: bounded */
#define BLOCK_MAX (64u * 1024 * 1024)

struct cursor {
    const uint8_t *p, *end;
};

static int get_u64(struct cursor *c, uint64_t *ret)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 10 && c->p < c->end; i++) {
        uint8_t t = *c->p++;
        v |= (uint64_t)(t & 127) << (7 * i);
        if (t < 128) {
            *ret = v;
            return 0;
        }
    }
    return -EBADMSG;
}

/* catalog_encode_i64: 7 bits a byte as for u64; a negative value ends in 0x00 */
static int get_i64(struct cursor *c, int64_t *ret)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 11 && c->p < c->end; i++) {
        uint8_t t = *c->p++;
        if (t == 0) {
            *ret = v == 0 ? 0 : -(int64_t)(v - 1) - 1;
            return 0;
        }
        v |= (uint64_t)(t & 127) << (7 * i);
        if (t < 128) {
            *ret = (int64_t)v;
            return 0;
        }
    }
    return -EBADMSG;
}

/* Reads the block at @start (its varint length first) into a new buffer. */
static int read_block(const struct fetch_stream *s, uint64_t start, uint8_t **ret, size_t *ret_len,
                      fetch_error *err)
{
    uint8_t head[10];
    struct cursor c;
    uint64_t len;
    size_t hl = s->size - start < sizeof(head) ? (size_t)(s->size - start) : sizeof(head);
    int r;

    if (start < 8 || start >= s->size)
        return fetch_error_set(err, -EBADMSG, "catalog: a block at %llu, outside the catalog",
                               (unsigned long long)start);
    if ((r = s->read(s->ctx, start, head, hl, err)) < 0)
        return r;
    c = (struct cursor){head, head + hl};
    if (get_u64(&c, &len) < 0 || len == 0 || len > BLOCK_MAX ||
        len > s->size - start - (uint64_t)(c.p - head))
        return fetch_error_set(err, -EBADMSG, "catalog: a malformed block at %llu",
                               (unsigned long long)start);
    if (!(*ret = malloc((size_t)len)))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if ((r = s->read(s->ctx, start + (uint64_t)(c.p - head), *ret, (size_t)len, err)) < 0) {
        free(*ret);
        return r;
    }
    *ret_len = (size_t)len;
    return 0;
}

struct walk {
    const struct fetch_stream *s;
    int (*cb)(const struct fetch_pcat_entry *e, void *arg);
    void *arg;
    fetch_error *err;
    struct fetch_posset seen; /* blocks walked: each is one directory's */
    char path[4096];
};

static enum fetch_archive_kind kind_of(uint8_t t, bool *ok)
{
    *ok = true;
    switch (t) {
    case 'd':
        return FETCH_ARCHIVE_DIR;
    case 'f':
    case 'h':
        return FETCH_ARCHIVE_FILE;
    case 'l':
        return FETCH_ARCHIVE_SYMLINK;
    case 'b':
    case 'c':
        return FETCH_ARCHIVE_DEVICE;
    case 'p':
        return FETCH_ARCHIVE_FIFO;
    case 's':
        return FETCH_ARCHIVE_SOCKET;
    default:
        *ok = false;
        return FETCH_ARCHIVE_FILE;
    }
}

/*
 * Walks the block at @start. With @top, only its entry of that name (a
 * directory) is walked, and reported: -ENOENT if none. @plen: the path's
 * length so far.
 */
static int walk_block(struct walk *w, uint64_t start, const char *top, size_t plen, int depth)
{
    uint8_t *block = NULL;
    size_t len = 0;
    struct cursor c;
    uint64_t count;
    bool found = false;
    int r;

    if (depth > FETCH_PCAT_DEPTH_MAX)
        return fetch_error_set(w->err, -EBADMSG, "catalog: directories nested deeper than %d",
                               FETCH_PCAT_DEPTH_MAX);
    /* two directories naming one block would list it (and all below it)
     * twice, 2^depth times down a chain of such blocks */
    if ((r = fetch_posset_add(&w->seen, start)) <= 0)
        return r < 0 ? fetch_error_set(w->err, r, "out of memory")
                     : fetch_error_set(w->err, -EBADMSG,
                                       "catalog: the block at %llu belongs to two directories",
                                       (unsigned long long)start);
    if ((r = read_block(w->s, start, &block, &len, w->err)) < 0)
        return r;
    c = (struct cursor){block, block + len};
    if (get_u64(&c, &count) < 0) {
        r = fetch_error_set(w->err, -EBADMSG, "catalog: a malformed block at %llu",
                            (unsigned long long)start);
        goto out;
    }
    for (uint64_t i = 0; i < count && r == 0; i++) {
        struct fetch_pcat_entry e = {0};
        uint64_t nl, child = 0;
        char name[NAME_MAX_LEN + 1];
        bool ok;
        uint8_t t;

        if (c.p >= c.end || (t = *c.p++, e.kind = kind_of(t, &ok), !ok) || get_u64(&c, &nl) < 0 ||
            nl == 0 || nl > NAME_MAX_LEN || nl > (uint64_t)(c.end - c.p)) {
            r = fetch_error_set(w->err, -EBADMSG, "catalog: a malformed entry in the block at %llu",
                                (unsigned long long)start);
            break;
        }
        memcpy(name, c.p, (size_t)nl);
        name[nl] = '\0';
        c.p += nl;
        if (memchr(name, '/', (size_t)nl) || memchr(name, '\0', (size_t)nl) || !strcmp(name, ".") ||
            !strcmp(name, "..")) {
            r = fetch_error_set(w->err, -EBADMSG, "catalog: an invalid name in the block at %llu",
                                (unsigned long long)start);
            break;
        }
        e.hardlink = t == 'h';
        if (t == 'd') {
            uint64_t back;
            /* children's blocks come before their parent's */
            if (get_u64(&c, &back) < 0 || back == 0 || back > start - 8) {
                r = fetch_error_set(w->err, -EBADMSG,
                                    "catalog: a directory in the block at %llu points outside "
                                    "the catalog",
                                    (unsigned long long)start);
                break;
            }
            child = start - back;
        } else if (t == 'f' && (get_u64(&c, &e.size) < 0 || get_i64(&c, &e.mtime) < 0)) {
            r = fetch_error_set(w->err, -EBADMSG, "catalog: a malformed file entry at %llu",
                                (unsigned long long)start);
            break;
        }
        if (top) {
            if (t == 'd' && !strcmp(name, top)) {
                found = true;
                r = walk_block(w, child, NULL, 0, depth + 1);
            }
            continue;
        }
        if (plen + (plen > 0) + nl >= sizeof(w->path)) {
            r = fetch_error_set(w->err, -EBADMSG, "catalog: a path longer than %zu bytes",
                                sizeof(w->path) - 1);
            break;
        }
        if (plen)
            w->path[plen] = '/';
        memcpy(w->path + plen + (plen > 0), name, (size_t)nl + 1);
        e.name = name;
        e.path = w->path;
        if ((r = w->cb(&e, w->arg)) != 0)
            break;
        if (t == 'd')
            r = walk_block(w, child, NULL, plen + (plen > 0) + (size_t)nl, depth + 1);
        w->path[plen] = '\0';
    }
    if (r == 0 && c.p != c.end)
        r = fetch_error_set(w->err, -EBADMSG, "catalog: trailing bytes in the block at %llu",
                            (unsigned long long)start);
    if (r == 0 && top && !found)
        r = -ENOENT;
out:
    free(block);
    return r;
}

int fetch_pcat_walk(const struct fetch_stream *s, const char *top,
                    int (*cb)(const struct fetch_pcat_entry *e, void *arg), void *arg,
                    fetch_error *err)
{
    uint8_t magic[8], tail[8];
    uint64_t root = 0;
    struct walk *w;
    int r;

    if (s->size < 16)
        return fetch_error_set(err, -EBADMSG, "catalog: %llu bytes is too short",
                               (unsigned long long)s->size);
    if ((r = s->read(s->ctx, 0, magic, 8, err)) < 0 ||
        (r = s->read(s->ctx, s->size - 8, tail, 8, err)) < 0)
        return r;
    if (memcmp(magic, PCAT_MAGIC, 8))
        return fetch_error_set(err, -EBADMSG, "catalog: bad magic");
    for (int i = 7; i >= 0; i--)
        root = root << 8 | tail[i];
    if (root < 8 || root >= s->size - 8)
        return fetch_error_set(err, -EBADMSG, "catalog: the root block is outside the catalog");
    if (!(w = calloc(1, sizeof(*w))))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    *w = (struct walk){.s = s, .cb = cb, .arg = arg, .err = err};
    r = walk_block(w, root, top, 0, 0);
    fetch_posset_clear(&w->seen);
    free(w);
    return r;
}
