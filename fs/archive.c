/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* File archives as directory trees (see archive.h). */
#include "archive.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "fetch/archive.h"
#include "log.h"

/* ---- the streams, read through the chunk layer ---------------------------- */

struct chunk_stream {
    struct fs_ctx *ctx;
    const struct fetch_image *img;
    struct fetch_stream s;
};

static int stream_read(void *arg, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    struct chunk_stream *cs = arg;
    return fs_read_sync(cs->ctx, cs->img, off, buf, len, err);
}

static void stream_init(struct chunk_stream *cs, struct fs_ctx *ctx, const struct fetch_image *img)
{
    cs->ctx = ctx;
    cs->img = img;
    cs->s = (struct fetch_stream){img->size, stream_read, cs};
}

/* ---- open archives ------------------------------------------------------- */

/* Errors logged per archive; later ones are counted, not logged. */
#define LOGGED_ERRORS 8

struct fs_archive {
    struct chunk_stream meta, payload;
    atomic_uint errors;
    struct fetch_archive *dec;
    const struct fetch_archive_format *format;
    struct fetch_archive_entry root;
};

void fs_archive_free(struct fs_archive *a)
{
    if (!a)
        return;
    if (a->dec)
        a->format->free(a->dec);
    free(a);
}

static void log_archive_error(const struct fs_node *n, const char *what, int r,
                              const fetch_error *err)
{
    char path[512];
    unsigned seen = n->archive ? atomic_fetch_add(&n->archive->errors, 1) : 0;
    if (seen > LOGGED_ERRORS)
        return;
    fs_node_path(n, path, sizeof(path));
    if (seen == LOGGED_ERRORS) {
        fs_err("%s: more errors in this archive; they are not logged", path);
        return;
    }
    fs_err("%s: %s%s%s", path, what, what[0] ? ": " : "",
           err && err->msg[0] ? err->msg : strerror(-r));
}

/* The decoder of archive node @n, opened on first use. -errno (logged). */
static int archive_of(struct fs_ctx *ctx, struct fs_node *n, struct fs_archive **ret)
{
    fetch_error err = {""};
    struct fs_archive *a;
    int r;

    if (n->entry && n->entry->refuse) {
        char path[512];
        fs_node_path(n, path, sizeof(path));
        fs_warn("%s: %s", path,
                n->entry->refuse_msg ? n->entry->refuse_msg : strerror(-n->entry->refuse));
        return n->entry->refuse;
    }
    if ((r = fs_node_load(ctx->tree, n, &err)) < 0) {
        log_archive_error(n, "", r, &err);
        return r == -ENOMEM ? -ENOMEM : -EIO;
    }
    /* open already: every request after the first (reads included) */
    if ((a = atomic_load_explicit(&n->archive, memory_order_acquire))) {
        *ret = a;
        return 0;
    }
    pthread_mutex_lock(&n->lock);
    if (n->archive_failed) {
        r = n->archive_failed; /* said once already */
        a = NULL;
    } else if (!(a = n->archive)) {
        const struct fetch_archive_src *src = &n->archive_src;
        if (!(a = calloc(1, sizeof(*a)))) {
            r = -ENOMEM;
            goto out;
        }
        a->format = src->format;
        stream_init(&a->meta, ctx, src->meta);
        if (src->payload)
            stream_init(&a->payload, ctx, src->payload);
        r = a->format->open(&a->meta.s, src->payload ? &a->payload.s : NULL, &a->dec, &err);
        if (r == 0)
            r = a->format->root(a->dec, &a->root, &err);
        if (r < 0) {
            log_archive_error(n, "cannot open the archive", r, &err);
            fs_archive_free(a);
            a = NULL;
            /* a malformed archive stays so; a stream that could not be read
             * (a chunk missing or unreachable: -EIO) is tried again */
            if (r == -EBADMSG)
                n->archive_failed = -EIO;
            r = r == -ENOMEM ? -ENOMEM : -EIO;
            goto out;
        }
        atomic_store_explicit(&n->archive, a, memory_order_release);
    }
out:
    pthread_mutex_unlock(&n->lock);
    *ret = a;
    return r;
}

/* ---- inode numbers ------------------------------------------------------ */

/* An entry inside an archive that a lookup has reached. */
struct arnode {
    uint64_t ino;
    uint64_t parent; /* the directory it was first found in */
    struct fs_node *archive;
    struct fetch_archive_entry e;
    struct arnode *next_by_pos;
};

#define POS_BUCKETS 4096u

struct fs_archive_inodes {
    pthread_mutex_t lock;
    struct arnode **by_ino; /* [ino - FS_ARCHIVE_INO_BASE] */
    size_t count, cap;
    struct arnode *by_pos[POS_BUCKETS];
};

void fs_archive_inodes_free(struct fs_archive_inodes *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        free(t->by_ino[i]);
    free(t->by_ino);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fs_archive_inodes *table_of(struct fs_tree *tree)
{
    struct fs_archive_inodes *t;
    pthread_mutex_lock(&tables_lock);
    if (!(t = tree->archive_inodes) && (t = calloc(1, sizeof(*t)))) {
        pthread_mutex_init(&t->lock, NULL);
        tree->archive_inodes = t;
    }
    pthread_mutex_unlock(&tables_lock);
    return t;
}

static unsigned pos_bucket(const struct fs_node *archive, uint64_t pos)
{
    uint64_t h = (archive->ino * 0x9e3779b97f4a7c15ull) ^ (pos * 0xff51afd7ed558ccdull);
    return (unsigned)(h >> 32) % POS_BUCKETS;
}

/* The inode of entry @e of @archive (found in directory @parent): the one it
 * has, or a new one. NULL on ENOMEM. */
static struct arnode *intern(struct fs_tree *tree, struct fs_node *archive, uint64_t parent,
                             const struct fetch_archive_entry *e)
{
    struct fs_archive_inodes *t = table_of(tree);
    unsigned b = pos_bucket(archive, e->pos);
    struct arnode *an;

    if (!t)
        return NULL;
    pthread_mutex_lock(&t->lock);
    for (an = t->by_pos[b]; an; an = an->next_by_pos)
        if (an->archive == archive && an->e.pos == e->pos)
            goto out;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        struct arnode **v = realloc(t->by_ino, cap * sizeof(*v));
        if (!v)
            goto out;
        t->by_ino = v;
        t->cap = cap;
    }
    if (!(an = calloc(1, sizeof(*an))))
        goto out;
    an->ino = FS_ARCHIVE_INO_BASE + t->count;
    an->parent = parent;
    an->archive = archive;
    an->e = *e;
    an->next_by_pos = t->by_pos[b];
    t->by_pos[b] = an;
    t->by_ino[t->count++] = an;
out:
    pthread_mutex_unlock(&t->lock);
    return an;
}

static struct arnode *arnode_get(struct fs_tree *tree, uint64_t ino)
{
    struct fs_archive_inodes *t = tree->archive_inodes;
    struct arnode *an = NULL;
    if (!t || !fs_archive_ino(ino))
        return NULL;
    pthread_mutex_lock(&t->lock);
    if (ino - FS_ARCHIVE_INO_BASE < t->count)
        an = t->by_ino[ino - FS_ARCHIVE_INO_BASE];
    pthread_mutex_unlock(&t->lock);
    return an;
}

/*
 * Resolves @ino to its archive node, open decoder and entry: an archive node
 * of the tree (its root) or an entry inside one. -ENOENT, or archive_of's
 * error.
 */
static int resolve(struct fs_ctx *ctx, uint64_t ino, struct fs_node **ret_node,
                   struct fs_archive **ret_a, const struct fetch_archive_entry **ret_e)
{
    struct fs_node *n;
    struct arnode *an = NULL;
    int r;

    if (fs_archive_ino(ino)) {
        if (!(an = arnode_get(ctx->tree, ino)))
            return -ENOENT;
        n = an->archive;
    } else if (!(n = fs_tree_get(ctx->tree, ino)) || n->kind != FS_NODE_ARCHIVE) {
        return -ENOENT;
    }
    if ((r = archive_of(ctx, n, ret_a)) < 0)
        return r;
    *ret_node = n;
    *ret_e = an ? &an->e : &(*ret_a)->root;
    return 0;
}

/* ---- attributes ------------------------------------------------------- */

static void entry_stat(const struct fetch_archive_entry *e, uint64_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = (mode_t)e->mode;
    st->st_uid = e->uid;
    st->st_gid = e->gid;
    /* a directory's subdirectories are not counted: 1 says so (find and
     * fts then do not take 2 + subdirectories for granted) */
    st->st_nlink = 1;
    st->st_size = (off_t)e->size;
    st->st_blocks = (blkcnt_t)((e->size + 511) / 512);
    st->st_blksize = FS_BLKSIZE;
    st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = e->mtime_sec;
    st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = st->st_atim.tv_nsec = e->mtime_nsec;
    if (e->kind == FETCH_ARCHIVE_DEVICE)
        st->st_rdev = makedev((unsigned)e->dev_major, (unsigned)e->dev_minor);
}

int fs_archive_getattr(struct fs_ctx *ctx, uint64_t ino, struct stat *st)
{
    struct fs_node *n;
    struct fs_archive *a;
    const struct fetch_archive_entry *e;
    int r = resolve(ctx, ino, &n, &a, &e);
    if (r < 0)
        return r;
    entry_stat(e, ino, st);
    return 0;
}

int fs_archive_lookup(struct fs_ctx *ctx, uint64_t parent, const char *name,
                      struct fuse_entry_param *ep)
{
    struct fetch_archive_entry child;
    const struct fetch_archive_entry *dir;
    fetch_error err = {""};
    struct fs_archive *a;
    struct fs_node *n;
    struct arnode *an;
    int r;

    if ((r = resolve(ctx, parent, &n, &a, &dir)) < 0)
        return r;
    if (dir->kind != FETCH_ARCHIVE_DIR)
        return -ENOTDIR;
    r = a->format->lookup(a->dec, dir, name, strlen(name), &child, &err);
    memset(ep, 0, sizeof(*ep));
    ep->attr_timeout = FS_TIMEOUT;
    ep->entry_timeout = FS_TIMEOUT;
    if (r == -ENOENT)
        return 0; /* a negative entry, cached like the tree's */
    if (r < 0) {
        log_archive_error(n, name, r, &err);
        return r == -ENOMEM ? -ENOMEM : -EIO;
    }
    if (!(an = intern(ctx->tree, n, parent, &child)))
        return -ENOMEM;
    ep->ino = an->ino;
    ep->generation = 1;
    entry_stat(&an->e, an->ino, &ep->attr);
    return 0;
}

int fs_archive_opendir(struct fs_ctx *ctx, uint64_t ino)
{
    struct fs_node *n;
    struct fs_archive *a;
    const struct fetch_archive_entry *e;
    int r = resolve(ctx, ino, &n, &a, &e);
    if (r < 0)
        return r;
    return e->kind == FETCH_ARCHIVE_DIR ? 0 : -ENOTDIR;
}

void fs_archive_readdir(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size, off_t off)
{
    char name[4096];
    const struct fetch_archive_entry *dir;
    struct fs_archive *a;
    struct fs_node *n;
    size_t used = 0;
    uint64_t parent;
    char *buf;
    int r;

    if ((r = resolve(ctx, ino, &n, &a, &dir)) < 0 ||
        (r = dir->kind == FETCH_ARCHIVE_DIR ? 0 : -ENOTDIR) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    if (!(buf = malloc(size ? size : 1))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (fs_archive_ino(ino)) {
        struct arnode *an = arnode_get(ctx->tree, ino);
        parent = an ? an->parent : ino;
    } else {
        parent = n->parent ? n->parent->ino : ino;
    }
    for (uint64_t i = off < 0 ? 0 : (uint64_t)off; i < dir->goodbye_count + 2; i++) {
        struct stat st = {0};
        const char *nm = name;
        size_t need;
        if (i < 2) {
            nm = i == 0 ? "." : "..";
            st.st_ino = i == 0 ? ino : parent;
            st.st_mode = S_IFDIR;
        } else {
            struct fetch_archive_entry c;
            fetch_error err = {""};
            struct arnode *an;
            if ((r = a->format->child(a->dec, dir, i - 2, name, sizeof(name), &c, &err)) < 0) {
                log_archive_error(n, "reading a directory", r, &err);
                if (used == 0) {
                    free(buf);
                    fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
                    return;
                }
                break; /* what was read goes out; the next call fails */
            }
            if (!(an = intern(ctx->tree, n, ino, &c))) {
                free(buf);
                fuse_reply_err(req, ENOMEM);
                return;
            }
            st.st_ino = an->ino;
            st.st_mode = (mode_t)(c.mode & S_IFMT);
        }
        need = fuse_add_direntry(req, buf + used, size - used, nm, &st, (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

void fs_archive_readlink(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino)
{
    char target[4097];
    const struct fetch_archive_entry *e;
    fetch_error err = {""};
    struct fs_archive *a;
    struct fs_node *n;
    int r;

    if ((r = resolve(ctx, ino, &n, &a, &e)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    if (e->kind != FETCH_ARCHIVE_SYMLINK) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((r = a->format->readlink(a->dec, e, target, sizeof(target), &err)) < 0) {
        log_archive_error(n, "reading a symlink", r, &err);
        fuse_reply_err(req, EIO);
        return;
    }
    fuse_reply_readlink(req, target);
}

int fs_archive_open(struct fs_ctx *ctx, uint64_t ino)
{
    const struct fetch_archive_entry *e;
    fetch_error err = {""};
    struct fs_archive *a;
    struct fs_node *n;
    int r;

    if ((r = resolve(ctx, ino, &n, &a, &e)) < 0)
        return r;
    if (e->kind == FETCH_ARCHIVE_DIR)
        return -EISDIR;
    if (e->kind != FETCH_ARCHIVE_FILE)
        return -EINVAL; /* devices, FIFOs and sockets are shown, never opened */
    if (a->format->check_data && (r = a->format->check_data(a->dec, e, &err)) < 0) {
        log_archive_error(n, "a file's contents", r, &err);
        return -EIO;
    }
    return 0;
}

void fs_archive_read(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f,
                     uint64_t off, size_t size)
{
    const struct fetch_archive_entry *e;
    struct fs_archive *a;
    struct fs_node *n;
    int r;

    if ((r = resolve(ctx, ino, &n, &a, &e)) < 0 || e->kind != FETCH_ARCHIVE_FILE) {
        fuse_reply_err(req, r < 0 ? -r : EINVAL);
        return;
    }
    fs_read_span(ctx, n, e->data_in_payload ? a->payload.img : a->meta.img, e->data_off, e->size, f,
                 req, off, size);
}

/* ---- extended attributes -------------------------------------------------- */

struct xattr_query {
    const char *name; /* getxattr: the one wanted; NULL: list them */
    char *buf;
    size_t cap, len;
    bool found, too_long;
};

static int xattr_cb(const char *name, const void *value, size_t vlen, void *arg)
{
    struct xattr_query *q = arg;
    if (q->name) {
        if (strcmp(name, q->name))
            return 0;
        q->found = true;
        q->len = vlen;
        if (q->cap && vlen <= q->cap)
            memcpy(q->buf, value, vlen);
        return 1;
    }
    size_t nl = strlen(name) + 1;
    if (q->cap && q->len + nl <= q->cap)
        memcpy(q->buf + q->len, name, nl);
    q->len += nl;
    return 0;
}

static void xattr_reply(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, const char *name,
                        size_t size)
{
    const struct fetch_archive_entry *e;
    struct xattr_query q = {.name = name, .cap = size};
    fetch_error err = {""};
    struct fs_archive *a;
    struct fs_node *n;
    int r;

    if ((r = resolve(ctx, ino, &n, &a, &e)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    if (size && !(q.buf = malloc(size))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    r = a->format->xattrs(a->dec, e, xattr_cb, &q, &err);
    if (r < 0) {
        log_archive_error(n, "extended attributes", r, &err);
        fuse_reply_err(req, EIO);
    } else if (name && !q.found) {
        fuse_reply_err(req, ENODATA);
    } else if (size == 0) {
        fuse_reply_xattr(req, q.len);
    } else if (q.len > size) {
        fuse_reply_err(req, ERANGE);
    } else {
        fuse_reply_buf(req, q.buf, q.len);
    }
    free(q.buf);
}

void fs_archive_getxattr(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, const char *name,
                         size_t size)
{
    xattr_reply(ctx, req, ino, name, size);
}

void fs_archive_listxattr(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size)
{
    xattr_reply(ctx, req, ino, NULL, size);
}
