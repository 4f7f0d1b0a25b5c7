/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* FUSE lowlevel operations of the read-only snapshot tree (thread model: fs/fs.h). */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fetch/names.h"
#include "archive.h"
#include "parts.h"
#include "log.h"
#include "profile.h"
#include "read.h"

static struct fs_ctx *ctx_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* 1 MiB requests: libfuse derives max_pages from max_write */
    conn->max_write = FS_MAX_READ;
    conn->max_read = FS_MAX_READ;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* files of archives carry POSIX ACLs (fs/archive.c gives them as
     * system.posix_acl_* xattrs); the kernel checks them with the modes
     * (the mount has default_permissions) */
    if (conn->capable & FUSE_CAP_POSIX_ACL)
        conn->want |= FUSE_CAP_POSIX_ACL;
    /* the tree never changes, so the kernel may cache everything */
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
    conn->max_background = 64;
}

static void log_load_error(const struct fs_node *n, int r, const fetch_error *err)
{
    char path[512];
    fs_node_path(n, path, sizeof(path));
    if (r == -ENOKEY)
        fs_warn("%s: %s", path, err->msg);
    else
        fs_err("%s: %s", path, err->msg[0] ? err->msg : strerror(-r));
}

/* Loads what stat needs: images their size and data bytes (from their
 * index, the first time only), blobs their size. */
static int prepare(struct fs_ctx *ctx, struct fs_node *n)
{
    fetch_error err = {""};
    int r;
    if (n->kind != FS_NODE_IMAGE && n->kind != FS_NODE_BLOB)
        return 0;
    if (n->entry && n->entry->refuse)
        return 0; /* listed with the repository's size; open() refuses it */
    r = fs_node_load(ctx->tree, n, &err);
    if (r < 0) {
        log_load_error(n, r, &err);
        return r == -ENOMEM ? -ENOMEM : -EIO;
    }
    return 0;
}

/*
 * The attributes of tree node @n. An archive's shows those of the archive's
 * own root directory: its mode and owner guard what is inside (the mount
 * uses default_permissions), so this opens the archive. One that does not
 * open keeps the tree's (nothing inside can be read then).
 */
static void node_stat(struct fs_ctx *ctx, struct fs_node *n, struct stat *st)
{
    if (n->kind == FS_NODE_ARCHIVE && fs_archive_getattr(ctx, n->ino, st) == 0)
        return;
    fs_node_stat(ctx->tree, n, st);
}

/* Whether @ino has an archive's entries, or is an archive (its root entry). */
static bool archive_ino(struct fs_ctx *ctx, fuse_ino_t ino)
{
    struct fs_node *n;
    return fs_archive_ino(ino) || ((n = fs_tree_get(ctx->tree, ino)) && n->kind == FS_NODE_ARCHIVE);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *dir = fs_tree_get(ctx->tree, parent), *n;
    struct fuse_entry_param e;
    int r;

    if (fs_parts_owns(ctx, parent)) {
        if ((r = fs_parts_lookup(ctx, parent, name, &e)) < 0)
            fuse_reply_err(req, -r);
        else
            fuse_reply_entry(req, &e);
        return;
    }
    if (fs_archive_ino(parent) || (dir && dir->kind == FS_NODE_ARCHIVE)) {
        if ((r = fs_archive_lookup(ctx, parent, name, &e)) < 0)
            fuse_reply_err(req, -r);
        else
            fuse_reply_entry(req, &e);
        return;
    }
    if (!dir || dir->kind != FS_NODE_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    n = fs_tree_lookup(dir, name);
    if (!n) {
        /* negative entries may be cached too: the tree is fixed for this mount */
        memset(&e, 0, sizeof(e));
        e.entry_timeout = FS_TIMEOUT;
        fuse_reply_entry(req, &e);
        return;
    }
    if ((r = prepare(ctx, n)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = n->ino;
    e.generation = 1;
    e.attr_timeout = FS_TIMEOUT;
    e.entry_timeout = FS_TIMEOUT;
    node_stat(ctx, n, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *n = fs_tree_get(ctx->tree, ino);
    struct stat st;
    int r;
    (void)fi;
    if (fs_parts_ino(ino) || fs_archive_ino(ino)) {
        r = fs_parts_ino(ino) ? fs_parts_getattr(ctx, ino, &st) : fs_archive_getattr(ctx, ino, &st);
        if (r < 0)
            fuse_reply_err(req, -r);
        else
            fuse_reply_attr(req, &st, FS_TIMEOUT);
        return;
    }
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if ((r = prepare(ctx, n)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    node_stat(ctx, n, &st);
    fuse_reply_attr(req, &st, FS_TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct fs_node *n = fs_tree_get(ctx_of(req)->tree, ino);
    if (fs_parts_ino(ino))
        fs_parts_readlink(ctx_of(req), req, ino);
    else if (fs_archive_ino(ino))
        fs_archive_readlink(ctx_of(req), req, ino);
    else if (!n || n->kind != FS_NODE_SYMLINK)
        fuse_reply_err(req, EINVAL);
    else
        fuse_reply_readlink(req, n->target);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_node *n = fs_tree_get(ctx_of(req)->tree, ino);
    int r;
    if (fs_parts_owns(ctx_of(req), ino))
        r = fs_parts_opendir(ctx_of(req), ino);
    else if (fs_archive_ino(ino) || (n && n->kind == FS_NODE_ARCHIVE))
        r = fs_archive_opendir(ctx_of(req), ino);
    else
        r = !n ? -ENOENT : n->kind != FS_NODE_DIR ? -ENOTDIR : 0;
    if (r < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *n = fs_tree_get(ctx->tree, ino);
    size_t used = 0, total;
    char *buf;
    (void)fi;

    if (fs_parts_owns(ctx, ino)) {
        fs_parts_readdir(ctx, req, ino, size, off);
        return;
    }
    if (fs_archive_ino(ino) || (n && n->kind == FS_NODE_ARCHIVE)) {
        fs_archive_readdir(ctx, req, ino, size, off);
        return;
    }
    if (!n || n->kind != FS_NODE_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    total = n->child_count + 2;
    for (size_t i = off < 0 ? 0 : (size_t)off; i < total; i++) {
        struct stat st = {0};
        const char *name;
        size_t need;
        if (i == 0) {
            name = ".";
            st.st_ino = n->ino;
            st.st_mode = S_IFDIR;
        } else if (i == 1) {
            name = "..";
            st.st_ino = n->parent ? n->parent->ino : n->ino;
            st.st_mode = S_IFDIR;
        } else {
            const struct fs_node *c = n->children[i - 2];
            name = c->name;
            st.st_ino = c->ino;
            st.st_mode =
                c->kind == FS_NODE_DIR || c->kind == FS_NODE_ARCHIVE || c->kind == FS_NODE_PARTS
                    ? S_IFDIR
                : c->kind == FS_NODE_SYMLINK ? S_IFLNK
                                             : S_IFREG;
        }
        need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void file_link(struct fs_ctx *ctx, struct fs_file *f)
{
    pthread_mutex_lock(&ctx->files_lock);
    f->next = ctx->files;
    if (f->next)
        f->next->prev = f;
    ctx->files = f;
    pthread_mutex_unlock(&ctx->files_lock);
}

static void file_free(struct fs_ctx *ctx, struct fs_file *f)
{
    fs_image_put(ctx->tree, f->image_node);
    pthread_mutex_lock(&ctx->files_lock);
    if (f->prev)
        f->prev->next = f->next;
    else
        ctx->files = f->next;
    if (f->next)
        f->next->prev = f->prev;
    pthread_mutex_unlock(&ctx->files_lock);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void fs_files_free_all(struct fs_ctx *ctx)
{
    while (ctx->files)
        file_free(ctx, ctx->files);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *n = fs_tree_get(ctx->tree, ino);
    int r;

    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, fs_archive_ino(ino) || fs_parts_ino(ino) || n ? EROFS : ENOENT);
        return;
    }
    if (fs_archive_ino(ino) || fs_parts_ino(ino)) {
        struct fs_file *f = calloc(1, sizeof(*f));
        if (!f) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        /* a partition or volume holds its image's index until the release */
        r = fs_parts_ino(ino) ? fs_parts_open(ctx, ino, f) : fs_archive_open(ctx, ino);
        if (r < 0) {
            free(f);
            fuse_reply_err(req, -r);
            return;
        }
        pthread_mutex_init(&f->lock, NULL);
        file_link(ctx, f);
        fi->fh = (uintptr_t)f;
        fi->keep_cache = 1;
        /* partitions and volumes read as their image does (see below) */
        if (fs_parts_ino(ino) && ctx->direct_io)
            fi->direct_io = 1;
        if (fuse_reply_open(req, fi) == -ENOENT)
            file_free(ctx, f);
        return;
    }
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (n->kind == FS_NODE_DIR || n->kind == FS_NODE_ARCHIVE || n->kind == FS_NODE_PARTS) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (n->entry && n->entry->refuse) {
        char path[512];
        fs_node_path(n, path, sizeof(path));
        fs_warn("%s: %s", path,
                n->entry->refuse_msg ? n->entry->refuse_msg : strerror(-n->entry->refuse));
        fuse_reply_err(req, -n->entry->refuse);
        return;
    }
    if (n->kind == FS_NODE_IMAGE) {
        /* the file holds the index from here to its release */
        const struct fetch_image *img;
        fetch_error err = {""};
        struct fs_file *f;
        if ((r = fs_image_get(ctx->tree, n, &img, &err)) < 0) {
            log_load_error(n, r, &err);
            fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
            return;
        }
        if (!(f = calloc(1, sizeof(*f)))) {
            fs_image_put(ctx->tree, n);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        f->image_node = n;
        f->image = img;
        fs_profile_open(ctx->profiles, n, img);
        pthread_mutex_init(&f->lock, NULL);
        file_link(ctx, f);
        fi->fh = (uintptr_t)f;
    } else if ((r = prepare(ctx, n)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    fi->keep_cache = 1; /* snapshots are immutable */
    /* Streaming an image through the kernel's page cache costs a fresh page
     * per 4 KiB read (on a VM that hands freed memory back to its host, a
     * fault there too) and lets kernel readahead reorder the requests; the
     * daemon keeps the chunks in memory and on disk anyway. */
    if (n->kind == FS_NODE_IMAGE && ctx->direct_io)
        fi->direct_io = 1;
    if (fuse_reply_open(req, fi) == -ENOENT && fi->fh) {
        /* the open was interrupted: no release will follow */
        file_free(ctx, (struct fs_file *)(uintptr_t)fi->fh);
    }
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
    (void)ino;
    if (f)
        file_free(ctx_of(req), f);
    fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *n = fs_tree_get(ctx->tree, ino);

    if (fs_parts_ino(ino) && off >= 0) {
        fs_parts_read(ctx, req, ino, (struct fs_file *)(uintptr_t)fi->fh, (uint64_t)off, size);
        return;
    }
    if (fs_archive_ino(ino) && off >= 0) {
        fs_archive_read(ctx, req, ino, (struct fs_file *)(uintptr_t)fi->fh, (uint64_t)off, size);
        return;
    }
    if (n && n->kind == FS_NODE_IMAGE && off >= 0) {
        /* the index the open took */
        struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
        if (!f || !f->image) {
            fuse_reply_err(req, EIO);
            return;
        }
        fs_profile_read(ctx->profiles, n, f->image, (uint64_t)off, size);
        fs_read_image(ctx, n, f->image, f, req, (uint64_t)off, size);
        return;
    }
    if (!n || !fs_node_loaded(n) || off < 0) {
        fuse_reply_err(req, n ? EIO : ENOENT);
        return;
    }
    if ((uint64_t)off >= n->blob.len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > n->blob.len - (size_t)off)
        size = n->blob.len - (size_t)off;
    fuse_reply_buf(req, (const char *)n->blob.bytes + off, size);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct fs_node *n = fs_tree_get(ctx->tree, ino);
    struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
    int64_t pos;

    if (fs_parts_ino(ino)) {
        fs_parts_lseek(ctx, req, ino, (struct fs_file *)(uintptr_t)fi->fh, off, whence);
        return;
    }
    if (fs_archive_ino(ino)) {
        /* files in archives are dense */
        struct stat st;
        int r = fs_archive_getattr(ctx, ino, &st);
        if (r < 0)
            fuse_reply_err(req, -r);
        else if (off < 0 || off >= st.st_size)
            fuse_reply_err(req, ENXIO);
        else
            fuse_reply_lseek(req, whence == SEEK_HOLE ? st.st_size : off);
        return;
    }
    if (!n || !fs_node_loaded(n)) {
        fuse_reply_err(req, EIO);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    if (n->kind == FS_NODE_BLOB) {
        /* blobs are small and dense */
        if ((uint64_t)off >= n->blob.len)
            fuse_reply_err(req, ENXIO);
        else
            fuse_reply_lseek(req, whence == SEEK_HOLE ? (off_t)n->blob.len : off);
        return;
    }
    if (!f || !f->image) {
        fuse_reply_err(req, EIO);
        return;
    }
    pos = fetch_image_seek(f->image, (uint64_t)off, whence);
    if (pos < 0)
        fuse_reply_err(req, (int)-pos);
    else
        fuse_reply_lseek(req, (off_t)pos);
}

/* Extended attributes: entries of archives (their roots too) have theirs;
 * nothing else has any. */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    if (archive_ino(ctx_of(req), ino))
        fs_archive_getxattr(ctx_of(req), req, ino, name, size);
    else
        fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    if (archive_ino(ctx_of(req), ino))
        fs_archive_listxattr(ctx_of(req), req, ino, size);
    else if (size == 0)
        fuse_reply_xattr(req, 0);
    else
        fuse_reply_buf(req, NULL, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct fs_ctx *ctx = ctx_of(req);
    struct statvfs sv;
    (void)ino;
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_files = ctx->tree->count;
    sv.f_namemax = 255;
    sv.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .lseek = op_lseek,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .statfs = op_statfs,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
    return &ops;
}
