/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tree.h"
#include "archive.h"
#include "parts.h"

#include "cache/diskcache.h"
#include "fetch/remote.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/*
 * The children of every directory by name, while the tree is built: a
 * repository may list tens of thousands of entries in one directory, in any
 * order, and a scan of the children per entry made such mounts take seconds.
 */
struct name_index {
    struct fs_node **slots; /* open addressing, NULL: free */
    size_t mask;
};

static size_t name_hash(const struct fs_node *parent, const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static int name_index_init(struct name_index *x, size_t expect)
{
    size_t n = 64;
    while (n < expect * 2)
        n *= 2;
    x->slots = calloc(n, sizeof(*x->slots));
    x->mask = n - 1;
    return x->slots ? 0 : -ENOMEM;
}

/* The slot of child @name of @parent: the node, or the free slot it would take. */
static struct fs_node **name_slot(struct name_index *x, const struct fs_node *parent,
                                  const char *name, size_t len)
{
    size_t i = name_hash(parent, name, len) & x->mask;
    for (;; i = (i + 1) & x->mask) {
        struct fs_node *n = x->slots[i];
        if (!n || (n->parent == parent && strlen(n->name) == len && !memcmp(n->name, name, len)))
            return &x->slots[i];
    }
}

/* Grows the index before it is half full; -ENOMEM. */
static int name_index_reserve(struct name_index *x, size_t nodes)
{
    struct name_index bigger;
    if (nodes * 2 < x->mask + 1)
        return 0;
    if (name_index_init(&bigger, nodes * 2) < 0)
        return -ENOMEM;
    for (size_t i = 0; i <= x->mask; i++) {
        struct fs_node *n = x->slots[i];
        if (n)
            *name_slot(&bigger, n->parent, n->name, strlen(n->name)) = n;
    }
    free(x->slots);
    *x = bigger;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    const struct fs_node *x = *(struct fs_node *const *)a, *y = *(struct fs_node *const *)b;
    return strcmp(x->name, y->name);
}

static int finish_dirs(struct fs_tree *t)
{
    for (size_t i = 0; i < t->count; i++) {
        struct fs_node *d = t->by_ino[i];
        if (d->kind != FS_NODE_DIR || !d->child_count)
            continue;
        qsort(d->children, d->child_count, sizeof(*d->children), name_cmp);
        for (size_t j = 1; j < d->child_count; j++) {
            if (!strcmp(d->children[j - 1]->name, d->children[j]->name))
                return -EEXIST; /* cannot happen: names are unique when added */
        }
    }
    return 0;
}

/* ---- image indexes in memory ---------------------------------------------- */

static uint64_t index_bytes(const struct fetch_image *img)
{
    return sizeof(*img) + (uint64_t)img->count * sizeof(*img->extents);
}

/* img_lock held */
static void idle_link(struct fs_tree *t, struct fs_node *n)
{
    n->idle_prev = NULL;
    n->idle_next = t->idle_head;
    if (t->idle_head)
        t->idle_head->idle_prev = n;
    else
        t->idle_tail = n;
    t->idle_head = n;
    n->image_idle = true;
    t->index.unused++;
    t->index.unused_bytes += n->image_bytes;
}

/* img_lock held */
static void idle_unlink(struct fs_tree *t, struct fs_node *n)
{
    if (n->idle_prev)
        n->idle_prev->idle_next = n->idle_next;
    else
        t->idle_head = n->idle_next;
    if (n->idle_next)
        n->idle_next->idle_prev = n->idle_prev;
    else
        t->idle_tail = n->idle_prev;
    n->idle_prev = n->idle_next = NULL;
    n->image_idle = false;
    t->index.unused--;
    t->index.unused_bytes -= n->image_bytes;
}

/*
 * Makes @img the index of image node @n (which has none): with one
 * reference (@held), or unused. Records what stat needs on the first load.
 * n->lock held (or the tree being built).
 */
static void publish(struct fs_tree *t, struct fs_node *n, struct fetch_image *img, bool held)
{
    if (!atomic_load_explicit(&n->loaded, memory_order_relaxed)) {
        n->size = img->size;
        n->data_bytes = img->data_bytes;
    }
    pthread_mutex_lock(&t->img_lock);
    n->image = img;
    n->image_bytes = index_bytes(img);
    t->index.loaded++;
    t->index.loaded_bytes += n->image_bytes;
    t->index.loads++;
    if (held)
        atomic_fetch_add_explicit(&n->image_refs, 1, memory_order_relaxed);
    else
        idle_link(t, n);
    pthread_mutex_unlock(&t->img_lock);
    atomic_store_explicit(&n->loaded, true, memory_order_release);
}

#define TRIM_BATCH 16

/*
 * Takes the least recently used unused indexes off their nodes while the
 * unused ones exceed the bound, up to TRIM_BATCH, into @out (freed by the
 * caller, outside the lock); how many. An index that a report peeked at
 * (referenced, still listed) stays, and so does the most recently used one
 * unless the bound is 0: an index larger than the bound (1 TiB of 64 KiB
 * casync chunks is 800 MB of it) would otherwise be fetched again at every
 * open of its image (qemu-img info, then convert). img_lock held.
 */
static size_t trim_locked(struct fs_tree *t, struct fetch_image **out)
{
    struct fs_node *n = t->idle_tail, *prev;
    size_t k = 0;
    for (; n && k < TRIM_BATCH && t->index.unused_bytes > t->index.keep_bytes; n = prev) {
        prev = n->idle_prev;
        if (n == t->idle_head && t->index.keep_bytes)
            break;
        /* references rise from 0 only under img_lock: 0 here stays 0 */
        if (atomic_load_explicit(&n->image_refs, memory_order_acquire))
            continue;
        idle_unlink(t, n);
        out[k++] = n->image;
        t->index.loaded--;
        t->index.loaded_bytes -= n->image_bytes;
        t->index.evictions++;
        n->image = NULL;
        n->image_bytes = 0;
    }
    return k;
}

/* Frees unused indexes beyond the bound, after making @n (its last
 * reference dropped; NULL: none) the most recently used unused one. */
static void trim(struct fs_tree *t, struct fs_node *n)
{
    struct fetch_image *gone[TRIM_BATCH];
    size_t k;
    do {
        pthread_mutex_lock(&t->img_lock);
        /* not when a reference was taken since, or a put that raced with
         * this one listed it already */
        if (n && n->image && !n->image_idle &&
            atomic_load_explicit(&n->image_refs, memory_order_acquire) == 0)
            idle_link(t, n);
        n = NULL;
        k = trim_locked(t, gone);
        pthread_mutex_unlock(&t->img_lock);
        for (size_t i = 0; i < k; i++)
            fetch_image_free(gone[i]);
    } while (k == TRIM_BATCH);
}

/* A reference to @n's index if it is in memory (@use: a use, which takes it
 * off the unused ones), else NULL. */
static struct fetch_image *take(struct fs_tree *t, struct fs_node *n, bool use)
{
    struct fetch_image *img;
    pthread_mutex_lock(&t->img_lock);
    if ((img = n->image)) {
        atomic_fetch_add_explicit(&n->image_refs, 1, memory_order_acquire);
        if (use && n->image_idle)
            idle_unlink(t, n);
    }
    pthread_mutex_unlock(&t->img_lock);
    return img;
}

const struct fetch_image *fs_image_peek(struct fs_tree *t, struct fs_node *n)
{
    return n->kind == FS_NODE_IMAGE ? take(t, n, false) : NULL;
}

void fs_image_ref(struct fs_node *n)
{
    atomic_fetch_add_explicit(&n->image_refs, 1, memory_order_relaxed);
}

void fs_image_put(struct fs_tree *t, struct fs_node *n)
{
    if (!n || atomic_fetch_sub_explicit(&n->image_refs, 1, memory_order_acq_rel) != 1)
        return;
    if (t)
        trim(t, n);
}

void fs_tree_set_index_keep(struct fs_tree *t, uint64_t bytes)
{
    pthread_mutex_lock(&t->img_lock);
    t->index.keep_bytes = bytes;
    pthread_mutex_unlock(&t->img_lock);
    trim(t, NULL);
}

void fs_tree_index_stats(struct fs_tree *t, struct fs_index_stats *ret)
{
    pthread_mutex_lock(&t->img_lock);
    *ret = t->index;
    pthread_mutex_unlock(&t->img_lock);
}

static const enum fs_node_kind kind_of_entry[] = {
    [FETCH_ENTRY_DIR] = FS_NODE_DIR,         [FETCH_ENTRY_IMAGE] = FS_NODE_IMAGE,
    [FETCH_ENTRY_BLOB] = FS_NODE_BLOB,       [FETCH_ENTRY_SYMLINK] = FS_NODE_SYMLINK,
    [FETCH_ENTRY_ARCHIVE] = FS_NODE_ARCHIVE,
};

/* Adds entry @e at its path, with the directories it needs. 0 (also when
 * it is left out, with a warning) or -ENOMEM. */
static int add_entry(struct fs_tree *t, struct name_index *x, struct fetch_entry *e)
{
    struct fs_node *dir = t->by_ino[0], *n, **slot;
    const char *p = e->path;
    int64_t mtime = e->mtime ? e->mtime : t->mount_time;

    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);

        if (len == 0 || name_index_reserve(x, t->count + 1) < 0)
            return len == 0 ? 0 : -ENOMEM; /* components are validated: no empty one */
        slot = name_slot(x, dir, p, len);
        if (slash) {
            if (*slot && (*slot)->kind != FS_NODE_DIR) {
                fs_warn("%s: hidden: the directory name %.*s is taken by a file", e->path, (int)len,
                        p);
                return 0;
            }
            if (!*slot && !(*slot = node_new(t, dir, FS_NODE_DIR, p, len, t->mount_time)))
                return -ENOMEM;
            dir = *slot;
            p = slash + 1;
            continue;
        }
        if (*slot && e->type == FETCH_ENTRY_DIR && (*slot)->kind == FS_NODE_DIR) {
            (*slot)->mtime = mtime; /* a directory listed after its contents */
            return 0;
        }
        if (*slot) {
            fs_warn("%s: hidden: the name %.*s is taken by another %s", e->path, (int)len, p,
                    (*slot)->kind == FS_NODE_DIR ? "directory" : "file");
            return 0;
        }
        if (!(n = *slot = node_new(t, dir, kind_of_entry[e->type], p, len, mtime)))
            return -ENOMEM;
        n->target = e->target;
        if (e->type == FETCH_ENTRY_IMAGE || e->type == FETCH_ENTRY_BLOB ||
            e->type == FETCH_ENTRY_ARCHIVE)
            n->entry = e;
        if (e->type == FETCH_ENTRY_IMAGE) {
            t->image_count++;
            if (e->image) {
                /* unused until opened: trimmed to the bound once built */
                publish(t, n, e->image, false);
                e->image = NULL;
            }
        }
        return 0;
    }
}

/* Adds <name>.parts beside each image whose name that leaves free. -ENOMEM. */
static int add_parts_dirs(struct fs_tree *t, struct name_index *x)
{
    size_t count = t->count;
    for (size_t i = 0; i < count; i++) {
        struct fs_node *img = t->by_ino[i], **slot, *n;
        char name[1024];
        int len;

        if (img->kind != FS_NODE_IMAGE || (img->entry && img->entry->refuse))
            continue; /* a refused image (encrypted, no key) has nothing to show */
        if (t->count + 1 >= (size_t)1 << (39 - FS_PARTS_INDEX_BITS)) {
            /* fs/parts.h: inode numbers of entries below this node would
             * reach those of archives */
            fs_warn("%s: too many nodes for %s directories beside the rest of the images",
                    img->name, FS_PARTS_SUFFIX);
            break;
        }
        len = snprintf(name, sizeof(name), "%s" FS_PARTS_SUFFIX, img->name);
        if (len < 0 || (size_t)len >= sizeof(name) || len > 255)
            continue;
        if (name_index_reserve(x, t->count + 1) < 0)
            return -ENOMEM;
        slot = name_slot(x, img->parent, name, (size_t)len);
        if (*slot) {
            fs_warn("%s: the store has a file of this name: the partitions of %s are not shown",
                    name, img->name);
            continue;
        }
        if (!(n = *slot = node_new(t, img->parent, FS_NODE_PARTS, name, (size_t)len, img->mtime)))
            return -ENOMEM;
        n->of = img;
    }
    return 0;
}

int fs_tree_new(struct fetch_repo *repo, bool parts, struct fs_tree **ret)
{
    struct fs_tree *t = calloc(1, sizeof(*t));
    struct name_index x = {0};
    int r = 0;

    if (!t) {
        fetch_repo_free(repo);
        return -ENOMEM;
    }
    t->repo = repo;
    t->store = repo->store;
    pthread_mutex_init(&t->img_lock, NULL);
    t->index.keep_bytes = FS_INDEX_KEEP;
    t->mount_time = (int64_t)time(NULL);
    t->uid = getuid();
    t->gid = getgid();
    if (!node_new(t, NULL, FS_NODE_DIR, "", 0, t->mount_time) ||
        name_index_init(&x, repo->count + 1) < 0)
        r = -ENOMEM;
    for (size_t i = 0; i < repo->count && r == 0; i++)
        r = add_entry(t, &x, &repo->entries[i]);
    if (r == 0 && parts)
        r = add_parts_dirs(t, &x);
    free(x.slots);
    if (r == 0)
        r = finish_dirs(t);
    if (r < 0) {
        fs_tree_free(t);
        return r;
    }
    trim(t, NULL); /* images the repository read, beyond the bound */
    *ret = t;
    return 0;
}

void fs_tree_free(struct fs_tree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        struct fs_node *n = t->by_ino[i];
        free(n->name);
        free(n->children);
        fetch_image_free(n->image);
        fetch_data_release(&n->blob);
        fs_archive_free(n->archive);
        fs_parts_free(n->parts);
        fetch_archive_src_free(&n->archive_src);
        free(n->load_msg);
        pthread_mutex_destroy(&n->lock);
        free(n);
    }
    free(t->by_ino);
    pthread_mutex_destroy(&t->img_lock);
    fs_archive_inodes_free(t->archive_inodes);
    fetch_repo_free(t->repo);
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

struct load {
    struct fs_tree *t;
    struct fs_node *n;
    fetch_error *err;
    struct fetch_image *img; /* images: the index loaded */
};

static int load_from(struct fetch_store *s, void *arg)
{
    struct load *l = arg;
    l->err->msg[0] = '\0';
    if (l->n->kind == FS_NODE_IMAGE)
        return fetch_repo_open_image(l->t->repo, s, l->n->entry, &l->img, l->err);
    if (l->n->kind == FS_NODE_ARCHIVE)
        return fetch_repo_open_archive(l->t->repo, s, l->n->entry, &l->n->archive_src, l->err);
    return fetch_repo_read_blob(l->t->repo, s, l->n->entry, &l->n->blob, l->err);
}

/* Says once, when image @n first loads, that its largest chunks are more
 * than the disk cache keeps: each read that needs one fetches it again once
 * the memory cache has let it go (casync allows chunks up to 128 MiB). */
static void note_large_chunks(const struct fs_node *n, const struct fetch_image *img)
{
    uint64_t max = 0;
    char path[512];
    for (size_t i = 0; i < img->count; i++) {
        if (!img->extents[i].zero && img->extents[i].length > max)
            max = img->extents[i].length;
    }
    if (max <= CACHE_DISK_MAX_CHUNK)
        return;
    fs_node_path(n, path, sizeof(path));
    fs_warn("%s: chunks of up to %llu MiB, more than the %u MiB the disk cache keeps: such a "
            "chunk is fetched again whenever the memory cache (--mem-cache) has let it go",
            path, (unsigned long long)(max >> 20), CACHE_DISK_MAX_CHUNK >> 20);
}

/*
 * Loads @n from the mirrors (or the store), or answers the failure of a load
 * that ended less than FS_LOAD_FAILED_MS ago. An image's index goes to
 * *@ret_img (not published yet). n->lock held.
 */
static int load_locked(struct fs_tree *t, struct fs_node *n, struct fetch_image **ret_img,
                       fetch_error *err)
{
    struct load l = {t, n, err, NULL};
    int r;
    if (n->load_err < 0 && fs_now_ms() < n->load_failed_ms + FS_LOAD_FAILED_MS) {
        /* a load failed just now (perhaps while this call waited for the
         * lock, or the kernel held this lookup until that one ended): its
         * answer, not another wait for the same store */
        r = n->load_err;
        fetch_error_set(err, r, "%s", n->load_msg ? n->load_msg : strerror(-r));
        return r;
    }
    /* the mirrors in turn while the failure is one another copy may not have */
    r = t->mirrors ? fetch_mirrors_run(t->mirrors, load_from, &l) : load_from(t->store, &l);
    n->load_err = r;
    n->load_failed_ms = fs_now_ms();
    free(n->load_msg);
    n->load_msg = r < 0 && err->msg[0] ? strdup(err->msg) : NULL;
    if (r == 0 && n->kind == FS_NODE_IMAGE) {
        if (!atomic_load_explicit(&n->loaded, memory_order_relaxed))
            note_large_chunks(n, l.img);
        *ret_img = l.img;
    }
    return r;
}

int fs_image_get(struct fs_tree *t, struct fs_node *n, const struct fetch_image **ret,
                 fetch_error *err)
{
    struct fetch_image *img;
    int r;

    if (n->kind != FS_NODE_IMAGE)
        return fetch_error_set(err, -EINVAL, "%s: not an image", n->name);
    if (!t) {
        /* a node outside any tree (the unit tests' images): never loaded */
        if (!n->image)
            return fetch_error_set(err, -ENOENT, "%s: no index", n->name);
        fs_image_ref(n);
        *ret = n->image;
        return 0;
    }
    if ((img = take(t, n, true))) {
        *ret = img;
        return 0;
    }
    pthread_mutex_lock(&n->lock);
    /* another caller may have loaded it while this one waited */
    if ((img = take(t, n, true))) {
        r = 0;
    } else if ((r = load_locked(t, n, &img, err)) == 0) {
        publish(t, n, img, true);
    }
    pthread_mutex_unlock(&n->lock);
    if (r == 0)
        *ret = img;
    return r;
}

int fs_node_load(struct fs_tree *t, struct fs_node *n, fetch_error *err)
{
    const struct fetch_image *img;
    int r = 0;
    if (n->kind != FS_NODE_IMAGE && n->kind != FS_NODE_BLOB && n->kind != FS_NODE_ARCHIVE)
        return 0;
    if (fs_node_loaded(n))
        return 0;
    if (n->kind == FS_NODE_IMAGE) {
        /* what stat needs comes with the index, which is unused afterwards */
        if ((r = fs_image_get(t, n, &img, err)) == 0)
            fs_image_put(t, n);
        return r;
    }
    pthread_mutex_lock(&n->lock);
    if (!atomic_load_explicit(&n->loaded, memory_order_relaxed) &&
        (r = load_locked(t, n, NULL, err)) == 0)
        atomic_store_explicit(&n->loaded, true, memory_order_release);
    pthread_mutex_unlock(&n->lock);
    return r;
}

void fs_tree_set_mirrors(struct fs_tree *t, struct fetch_mirrors *m)
{
    t->mirrors = m;
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
        for (size_t i = 0; i < n->child_count; i++) {
            enum fs_node_kind k = n->children[i]->kind;
            /* every subdirectory's "..": archives and .parts are ones too */
            st->st_nlink += k == FS_NODE_DIR || k == FS_NODE_ARCHIVE || k == FS_NODE_PARTS;
        }
        break;
    case FS_NODE_PARTS:
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 1; /* its subdirectories are not known before it is read */
        break;
    case FS_NODE_ARCHIVE:
        /* the archive's own root shows its metadata inside (fs/archive.c);
         * its subdirectories are not known before it is read */
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 1;
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
            st->st_size = (off_t)n->size;
            st->st_blocks = (blkcnt_t)((n->data_bytes + 511) / 512);
        } else {
            /* not loaded (refused, or not yet): the repository's size */
            st->st_size = (off_t)n->entry->size;
            st->st_blocks = (blkcnt_t)((n->entry->size + 511) / 512);
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
