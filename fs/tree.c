/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tree.h"

#include "fetch/remote.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* st_blksize: the size cp and friends use for their buffers; matches max_read */
#define FS_BLKSIZE (1024 * 1024)

static struct fs_node *node_new(struct fs_tree *t, struct fs_node *parent, enum fs_node_kind kind,
                                const char *name, size_t name_len, int64_t mtime)
{
    struct fs_node *n;
    if (t->count == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        struct fs_node **nv = realloc(t->by_ino, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        t->by_ino = nv;
        t->cap = ncap;
    }
    n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strndup(name, name_len))) {
        free(n);
        return NULL;
    }
    if (parent) {
        if (parent->child_count == parent->child_cap) {
            size_t ncap = parent->child_cap ? parent->child_cap * 2 : 8;
            struct fs_node **nv = realloc(parent->children, ncap * sizeof(*nv));
            if (!nv) {
                free(n->name);
                free(n);
                return NULL;
            }
            parent->children = nv;
            parent->child_cap = ncap;
        }
        parent->children[parent->child_count++] = n;
    }
    n->kind = kind;
    n->parent = parent;
    n->mtime = mtime;
    pthread_mutex_init(&n->lock, NULL);
    t->by_ino[t->count++] = n;
    n->ino = t->count;
    return n;
}

/* Finds or creates directory @name below @dir; the last child is checked
 * first because the catalog arrives sorted. */
static struct fs_node *dir_get(struct fs_tree *t, struct fs_node *dir, const char *name,
                               int64_t mtime)
{
    if (dir->child_count && !strcmp(dir->children[dir->child_count - 1]->name, name))
        return dir->children[dir->child_count - 1];
    for (size_t i = 0; i < dir->child_count; i++) {
        if (!strcmp(dir->children[i]->name, name))
            return dir->children[i];
    }
    return node_new(t, dir, FS_NODE_DIR, name, strlen(name), mtime);
}

static bool has_child(const struct fs_node *dir, const char *name, size_t len)
{
    for (size_t i = 0; i < dir->child_count; i++) {
        if (strlen(dir->children[i]->name) == len && !strncmp(dir->children[i]->name, name, len))
            return true;
    }
    return false;
}

static int add_snapshot(struct fs_tree *t, const struct fetch_pbs_snapshot *snap,
                        struct fs_node **ret_group)
{
    struct fs_node *dir = t->by_ino[0];
    const char *ns = snap->ns;
    struct fs_node *sdir;

    while (*ns) {
        const char *slash = strchr(ns, '/');
        size_t len = slash ? (size_t)(slash - ns) : strlen(ns);
        char comp[64];
        if (len >= sizeof(comp))
            return -EINVAL;
        memcpy(comp, ns, len);
        comp[len] = '\0';
        if (!(dir = dir_get(t, dir, "ns", t->mount_time)) ||
            !(dir = dir_get(t, dir, comp, t->mount_time)))
            return -ENOMEM;
        ns += len + (slash != NULL);
    }
    if (!(dir = dir_get(t, dir, snap->type, t->mount_time)) ||
        !(dir = dir_get(t, dir, snap->id, t->mount_time)))
        return -ENOMEM;
    *ret_group = dir;
    sdir = node_new(t, dir, FS_NODE_DIR, snap->time_str, strlen(snap->time_str), snap->time);
    if (!sdir)
        return -ENOMEM;
    for (size_t i = 0; i < snap->manifest->count; i++) {
        const struct fetch_manifest_file *f = &snap->manifest->files[i];
        size_t stem = 0;
        enum fetch_pbs_archive kind = fetch_pbs_archive_kind(f->name, &stem);
        struct fs_node *n;
        if ((kind == FETCH_PBS_ARCHIVE_FIDX || kind == FETCH_PBS_ARCHIVE_BLOB) &&
            has_child(sdir, f->name, stem)) {
            /* "x.fidx" and "x.blob" would both show as "x": keep the first */
            fs_warn("%s: %s hidden: another archive has the name %.*s", snap->path, f->name,
                    (int)stem, f->name);
            continue;
        }
        if (kind == FETCH_PBS_ARCHIVE_FIDX) {
            n = node_new(t, sdir, FS_NODE_IMAGE, f->name, stem, snap->time);
            t->image_count += n != NULL;
        }
        else if (kind == FETCH_PBS_ARCHIVE_BLOB && f->crypt != FETCH_CRYPT_ENCRYPT &&
                 f->size <= FETCH_PBS_SMALL_BLOB_MAX)
            n = node_new(t, sdir, FS_NODE_BLOB, f->name, stem, snap->time);
        else
            continue; /* .didx (pxar) archives come later; encrypted blobs stay hidden */
        if (!n)
            return -ENOMEM;
        n->snap = snap;
        n->file = f;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    const struct fs_node *x = *(struct fs_node *const *)a, *y = *(struct fs_node *const *)b;
    return strcmp(x->name, y->name);
}

static int finish_dirs(struct fs_tree *t)
{
    size_t n = t->count; /* symlinks added below need no visit */
    for (size_t i = 0; i < n; i++) {
        struct fs_node *d = t->by_ino[i];
        if (d->kind != FS_NODE_DIR || !d->child_count)
            continue;
        qsort(d->children, d->child_count, sizeof(*d->children), name_cmp);
        for (size_t j = 1; j < d->child_count; j++) {
            if (!strcmp(d->children[j - 1]->name, d->children[j]->name))
                return -EEXIST; /* the manifest names two files with one visible name */
        }
    }
    return 0;
}

static struct fs_tree *tree_alloc(struct fetch_store *store)
{
    struct fs_tree *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->store = store;
    t->mount_time = (int64_t)time(NULL);
    t->uid = getuid();
    t->gid = getgid();
    if (!node_new(t, NULL, FS_NODE_DIR, "", 0, t->mount_time)) {
        free(t);
        return NULL;
    }
    return t;
}

/* Adds index @x at its path; the image moves into the node. */
static int add_casync_index(struct fs_tree *t, struct fetch_casync_index *x)
{
    struct fs_node *dir = t->by_ino[0], *n;
    const char *p = x->path;

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p) - 6; /* without ".caibx" */
        struct fs_node *child = NULL;
        char comp[256];

        if (len == 0 || len >= sizeof(comp))
            return 0; /* validated by the catalog: cannot happen */
        memcpy(comp, p, len);
        comp[len] = '\0';
        /*
         * Only the newest child can have this name: indexes come sorted by
         * path, so all the paths below one directory are consecutive, and an
         * index whose name a directory would take is shadowed (skipped)
         * before it gets here. Were this ever wrong, finish_dirs() refuses
         * the duplicate name (-EEXIST): the mount fails, it never serves a
         * wrong file. (A scan of every child made a mount of 60000 indexes in
         * one directory take 21 s.)
         */
        if (dir->child_count && !strcmp(dir->children[dir->child_count - 1]->name, comp))
            child = dir->children[dir->child_count - 1];
        if (!slash) {
            if (child) {
                fs_warn("%s: hidden: the name %s is taken by another index or directory",
                        x->path, comp);
                return 0;
            }
            if (!(n = node_new(t, dir, FS_NODE_IMAGE, comp, len, t->mount_time)))
                return -ENOMEM;
            n->index = x;
            if (x->image) {
                n->image = x->image;
                x->image = NULL;
                atomic_store_explicit(&n->loaded, true, memory_order_release);
            }
            t->image_count++;
            return 0;
        }
        if (child && child->kind != FS_NODE_DIR) {
            fs_warn("%s: hidden: the directory name %s is taken by an index", x->path, comp);
            return 0;
        }
        if (!child && !(child = node_new(t, dir, FS_NODE_DIR, comp, len, t->mount_time)))
            return -ENOMEM;
        dir = child;
        p = slash + 1;
    }
}

int fs_tree_new_casync(struct fetch_store *store, struct fetch_casync_catalog *catalog,
                       struct fs_tree **ret)
{
    struct fs_tree *t = tree_alloc(store);
    int r = 0;

    if (!t) {
        fetch_casync_catalog_free(catalog);
        return -ENOMEM;
    }
    t->casync = catalog;
    for (size_t i = 0; i < catalog->count && r == 0; i++) {
        struct fetch_casync_index *x = &catalog->indexes[i];
        if (x->archive)
            fs_info("%s: a directory archive index (.caidx): not mounted (not supported yet)",
                    x->path);
        else if (x->shadowed_by)
            fs_warn("%s: hidden: its directory's name is taken by the index %s", x->path,
                    x->shadowed_by);
        else if (x->error)
            fs_warn("skipping %s", x->error_msg ? x->error_msg : strerror(-x->error));
        else
            r = add_casync_index(t, x);
    }
    if (r == 0)
        r = finish_dirs(t);
    if (r < 0) {
        fs_tree_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

int fs_tree_new(struct fetch_store *store, struct fetch_pbs_catalog *catalog,
                struct fs_tree **ret)
{
    struct fs_tree *t = tree_alloc(store);
    struct fs_node *group = NULL, *prev_group = NULL;
    const struct fetch_pbs_snapshot *newest = NULL;
    int r = 0;

    if (!t) {
        fetch_pbs_catalog_free(catalog);
        return -ENOMEM;
    }
    t->catalog = catalog;
    /* snapshots are sorted by (ns, type, id, time): a group's last one is its newest */
    for (size_t i = 0; i <= catalog->count; i++) {
        if (i < catalog->count && (r = add_snapshot(t, &catalog->snaps[i], &group)) < 0)
            goto fail;
        if (prev_group && (i == catalog->count || group != prev_group)) {
            struct fs_node *l = node_new(t, prev_group, FS_NODE_SYMLINK, "latest", 6,
                                         newest->time);
            if (!l || !(l->target = strdup(newest->time_str))) {
                r = -ENOMEM;
                goto fail;
            }
        }
        if (i < catalog->count) {
            prev_group = group;
            newest = &catalog->snaps[i];
        }
    }
    if ((r = finish_dirs(t)) < 0)
        goto fail;
    *ret = t;
    return 0;
fail:
    fs_tree_free(t);
    return r;
}

void fs_tree_free(struct fs_tree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        struct fs_node *n = t->by_ino[i];
        free(n->name);
        free(n->children);
        free(n->target);
        fetch_image_free(n->image);
        fetch_data_release(&n->blob);
        pthread_mutex_destroy(&n->lock);
        free(n);
    }
    free(t->by_ino);
    fetch_pbs_catalog_free(t->catalog);
    fetch_casync_catalog_free(t->casync);
    free(t);
}

struct fs_node *fs_tree_get(struct fs_tree *t, uint64_t ino)
{
    if (ino < 1 || ino > t->count)
        return NULL;
    return t->by_ino[ino - 1];
}

struct fs_node *fs_tree_lookup(struct fs_node *dir, const char *name)
{
    size_t lo = 0, hi = dir->child_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, dir->children[mid]->name);
        if (c == 0)
            return dir->children[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int fs_node_load(struct fs_tree *t, struct fs_node *n, fetch_error *err)
{
    int r = 0;
    if (n->kind != FS_NODE_IMAGE && n->kind != FS_NODE_BLOB)
        return 0;
    if (fs_node_loaded(n))
        return 0;
    pthread_mutex_lock(&n->lock);
    if (!atomic_load_explicit(&n->loaded, memory_order_relaxed)) {
        /* the store the catalog came from, then the mirrors, while the
         * failure is one that another copy may not have */
        for (size_t i = 0; i <= t->nmirrors; i++) {
            struct fetch_store *s = i ? t->mirrors[i - 1] : t->store;
            if (i && s == t->store)
                continue;
            err->msg[0] = '\0';
            if (n->kind == FS_NODE_IMAGE && n->index) {
                struct fetch_casync_index x = {0};
                r = fetch_casync_open_index(s, n->index->path, &x, err);
                n->image = x.image;
            } else if (n->kind == FS_NODE_IMAGE) {
                r = fetch_pbs_open_fidx(s, n->snap, n->file, &n->image, err);
            } else {
                r = fetch_pbs_read_blob(s, n->snap, n->file, &n->blob, err);
            }
            if (r == 0 || !fetch_remote_retryable(r))
                break;
        }
        if (r == 0)
            atomic_store_explicit(&n->loaded, true, memory_order_release);
    }
    pthread_mutex_unlock(&n->lock);
    return r;
}

void fs_tree_set_mirrors(struct fs_tree *t, struct fetch_store *const *stores, size_t n)
{
    t->mirrors = stores;
    t->nmirrors = n;
}

void fs_node_stat(const struct fs_tree *t, const struct fs_node *n, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = n->ino;
    st->st_uid = t->uid;
    st->st_gid = t->gid;
    st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = n->mtime;
    st->st_blksize = FS_BLKSIZE;
    switch (n->kind) {
    case FS_NODE_DIR:
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        for (size_t i = 0; i < n->child_count; i++)
            st->st_nlink += n->children[i]->kind == FS_NODE_DIR;
        break;
    case FS_NODE_SYMLINK:
        st->st_mode = S_IFLNK | 0777;
        st->st_nlink = 1;
        st->st_size = (off_t)strlen(n->target);
        break;
    case FS_NODE_IMAGE:
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        if (fs_node_loaded(n)) {
            st->st_size = (off_t)n->image->size;
            st->st_blocks = (blkcnt_t)((n->image->data_bytes + 511) / 512);
        } else if (!n->file) {
            st->st_size = 0; /* a casync index not read yet: stat reads it */
        } else {
            st->st_size = (off_t)n->file->size;
            st->st_blocks = (blkcnt_t)((n->file->size + 511) / 512);
        }
        break;
    case FS_NODE_BLOB:
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = (off_t)(fs_node_loaded(n) ? n->blob.len : 0);
        st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
        break;
    }
}

int fs_node_path(const struct fs_node *n, char *buf, size_t len)
{
    const struct fs_node *chain[64];
    size_t depth = 0, off = 0;
    for (; n && n->parent && depth < 64; n = n->parent)
        chain[depth++] = n;
    if (len)
        buf[0] = '\0';
    while (depth--) {
        int w = snprintf(buf + off, len - off, "%s%s", off ? "/" : "", chain[depth]->name);
        if (w < 0 || (size_t)w >= len - off)
            return -ENAMETOOLONG;
        off += (size_t)w;
    }
    return 0;
}
