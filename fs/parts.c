/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Partitions and logical volumes of an image as files (see parts.h). */
#include "parts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/disklabel.h"
#include "fetch/lvm.h"
#include "fetch/view.h"
#include "log.h"

#define MAX_ENTS (1u << FS_PARTS_INDEX_BITS)

struct part_ent {
    char *name;
    uint32_t parent; /* index of its directory; 0: the .parts directory */
    mode_t type;     /* S_IFDIR, S_IFREG or S_IFLNK */
    char *target;    /* symlinks */
    struct fetch_view *view;
    uint64_t data_bytes;
    char *why;  /* files with segments that cannot be read: why (for the log) */
    char *path; /* files: "<image>.parts/lvm/vg/lv", for the log */
    atomic_bool why_said;
};

struct fs_parts {
    size_t count;
    struct part_ent *ents; /* [0]: the .parts directory itself */
};

void fs_parts_free(struct fs_parts *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++) {
        free(p->ents[i].name);
        free(p->ents[i].target);
        free(p->ents[i].why);
        free(p->ents[i].path);
        fetch_view_free(p->ents[i].view);
    }
    free(p->ents);
    free(p);
}

/* ---- building the directory -------------------------------------------- */

/* The image seen as a device from @base on, for the parsers. */
struct dev_src {
    struct fs_ctx *ctx;
    const struct fetch_image *img;
    uint64_t base;
};

static int dev_read(void *arg, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    struct dev_src *d = arg;
    return fs_read_sync(d->ctx, d->img, d->base + off, buf, len, err);
}

struct builder {
    struct fs_parts *p;
    size_t cap;
    const struct fs_node *image; /* for log lines */
    const struct fetch_image *img;
};

/* Adds an entry; its index in *@idx. -ENOMEM, or -ENOSPC past MAX_ENTS. */
static int add(struct builder *b, uint32_t parent, const char *name, mode_t type, uint32_t *idx)
{
    struct part_ent *e;
    if (b->p->count >= MAX_ENTS)
        return -ENOSPC;
    if (b->p->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        struct part_ent *nv = realloc(b->p->ents, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        b->p->ents = nv;
        b->cap = ncap;
    }
    e = &b->p->ents[b->p->count];
    *e = (struct part_ent){.parent = parent, .type = type};
    if (!(e->name = strdup(name)))
        return -ENOMEM;
    *idx = (uint32_t)b->p->count++;
    return 0;
}

/* Child @name of directory @dir, or 0 (the root is never a child). */
static uint32_t child(const struct fs_parts *p, uint32_t dir, const char *name)
{
    for (size_t i = 1; i < p->count; i++)
        if (p->ents[i].parent == dir && !strcmp(p->ents[i].name, name))
            return (uint32_t)i;
    return 0;
}

/* The subdirectory @name of @dir, made if missing. */
static int subdir(struct builder *b, uint32_t dir, const char *name, uint32_t *idx)
{
    if ((*idx = child(b->p, dir, name)))
        return b->p->ents[*idx].type == S_IFDIR ? 0 : -EEXIST;
    return add(b, dir, name, S_IFDIR, idx);
}

/* A name from the table or the metadata that may become a file name. */
static bool valid_name(const char *s)
{
    size_t len = strlen(s);
    return len > 0 && len <= 255 && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

__attribute__((format(printf, 3, 4))) static void
log_image(const struct builder *b, enum fs_log_level level, const char *fmt, ...)
{
    char path[512], line[768];
    va_list ap;
    fs_node_path(b->image, path, sizeof(path));
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fs_log(level, "%s: %s", path, line);
}

/* "<image>.parts/dir/.../name" of entry @idx, into *@ret. -ENOMEM. */
static int file_path(const struct builder *b, uint32_t idx, char **ret)
{
    const char *names[8]; /* the deepest entry is lvm/<vg>/<lv> */
    size_t depth = 0;
    char *path = NULL;
    FILE *f;
    size_t len;

    for (; idx && depth < sizeof(names) / sizeof(names[0]); idx = b->p->ents[idx].parent)
        names[depth++] = b->p->ents[idx].name;
    if (!(f = open_memstream(&path, &len)))
        return -ENOMEM;
    fprintf(f, "%s" FS_PARTS_SUFFIX, b->image->name);
    while (depth)
        fprintf(f, "/%s", names[--depth]);
    if (fclose(f) != 0) {
        free(path);
        return -ENOMEM;
    }
    *ret = path;
    return 0;
}

/* Adds file @name in @dir for view @v (owned); @why: NULL or why some of it
 * cannot be read. A view that leaves the image is left out with a log line. */
static int add_file(struct builder *b, uint32_t dir, const char *name, struct fetch_view *v,
                    const char *why)
{
    struct part_ent *e;
    uint32_t idx;
    int r;

    if (fetch_view_check(v, b->img->size) < 0) {
        log_image(b, FS_LOG_WARN,
                  "%s: left out: its map leaves the image or has a partial row of stripes", name);
        fetch_view_free(v);
        return 0;
    }
    if ((r = add(b, dir, name, S_IFREG, &idx)) < 0) {
        fetch_view_free(v);
        return r;
    }
    e = &b->p->ents[idx];
    e->view = v;
    e->data_bytes = fetch_view_data_bytes(v, b->img);
    if (why && !(e->why = strdup(why)))
        return -ENOMEM;
    return file_path(b, idx, &e->path);
}

static int add_partitions(struct builder *b, const struct fetch_label *label,
                          struct fetch_dev *devs, struct dev_src *srcs, size_t *ndevs)
{
    uint32_t by_name = 0;
    int r;

    for (size_t i = 0; i < label->count; i++) {
        const struct fetch_partition *pt = &label->parts[i];
        struct fetch_view *v;
        char name[32];

        snprintf(name, sizeof(name), "p%u", pt->number);
        if ((r = fetch_view_span(pt->start, pt->size, &v)) < 0 ||
            (r = add_file(b, 0, name, v, NULL)) < 0)
            return r;
        srcs[*ndevs] = (struct dev_src){srcs[0].ctx, b->img, pt->start};
        devs[*ndevs] = (struct fetch_dev){pt->size, dev_read, &srcs[*ndevs]};
        (*ndevs)++;
    }
    /* GPT names, where they are valid names and not taken by an earlier one */
    for (size_t i = 0; i < label->count; i++) {
        const struct fetch_partition *pt = &label->parts[i];
        uint32_t link;
        char target[40];

        if (!pt->name[0])
            continue;
        if (!valid_name(pt->name)) {
            log_image(b, FS_LOG_INFO,
                      "partition name \"%s\" is not a valid file name: no by-name link", pt->name);
            continue;
        }
        if (!by_name && (r = subdir(b, 0, "by-name", &by_name)) < 0)
            return r;
        if (child(b->p, by_name, pt->name))
            continue;
        snprintf(target, sizeof(target), "../p%u", pt->number);
        if ((r = add(b, by_name, pt->name, S_IFLNK, &link)) < 0)
            return r;
        if (!(b->p->ents[link].target = strdup(target)))
            return -ENOMEM;
    }
    return 0;
}

/* The view of logical volume @lv, whose stripes are on @srcs; *@why says
 * what cannot be read (NULL: all of it can). */
static int lv_view(const struct fetch_lvm_lv *lv, const struct dev_src *srcs, size_t ndevs,
                   struct fetch_view **ret, char *why, size_t why_len)
{
    struct fetch_view *v = calloc(1, sizeof(*v));

    why[0] = '\0';
    if (!v || !(v->segs = calloc(lv->seg_count ? lv->seg_count : 1, sizeof(*v->segs)))) {
        free(v);
        return -ENOMEM;
    }
    v->size = lv->size;
    if (lv->unreadable[0]) {
        /* one segment that fails every read */
        snprintf(why, why_len, "%s", lv->unreadable);
        v->segs[0] = (struct fetch_view_seg){.start = 0, .length = lv->size};
        v->count = 1;
        *ret = v;
        return 0;
    }
    for (size_t i = 0; i < lv->seg_count; i++) {
        const struct fetch_lvm_seg *s = &lv->segs[i];
        struct fetch_view_seg *vs = &v->segs[v->count++];
        bool missing = false;

        vs->start = s->start;
        vs->length = s->length;
        if (s->type == FETCH_LVM_ZERO) {
            vs->zero = true; /* zeros, a hole */
            continue;
        }
        for (unsigned k = 0; k < s->stripe_count && s->type != FETCH_LVM_UNSUPPORTED; k++)
            missing |= s->stripes[k].dev >= ndevs;
        if (s->type == FETCH_LVM_UNSUPPORTED || missing || s->stripe_count == 0) {
            if (!why[0]) {
                if (missing)
                    snprintf(why, why_len,
                             "segment %zu is on a physical volume that is not in this image",
                             i + 1);
                else
                    snprintf(why, why_len,
                             "segment %zu is of type \"%s\", which lazyimg cannot map "
                             "(linear, striped and zero only)",
                             i + 1, s->type_name);
            }
            continue; /* stripe_count 0: EIO */
        }
        if (!(vs->base = calloc(s->stripe_count, sizeof(*vs->base)))) {
            fetch_view_free(v);
            return -ENOMEM;
        }
        vs->stripe_count = s->type == FETCH_LVM_LINEAR ? 1 : s->stripe_count;
        vs->stripe_size = s->stripe_size;
        for (unsigned k = 0; k < vs->stripe_count; k++)
            vs->base[k] = srcs[s->stripes[k].dev].base + s->stripes[k].offset;
        if (vs->stripe_count > 1 && vs->stripe_size < 512) {
            free(vs->base);
            vs->base = NULL;
            vs->stripe_count = 0;
            if (!why[0])
                snprintf(why, why_len, "segment %zu has a stripe size below 512 bytes", i + 1);
        }
    }
    *ret = v;
    return 0;
}

static int add_volumes(struct builder *b, const struct fetch_lvm *lvm, const struct dev_src *srcs,
                       size_t ndevs)
{
    uint32_t top = 0;
    int r;

    for (size_t g = 0; g < lvm->vg_count; g++) {
        const struct fetch_lvm_vg *vg = &lvm->vgs[g];
        uint32_t vgdir;

        if (vg->error[0]) {
            log_image(b, FS_LOG_WARN, "LVM volume group %s refused: %s", vg->name, vg->error);
            continue;
        }
        if (!valid_name(vg->name)) {
            log_image(b, FS_LOG_WARN, "LVM volume group name \"%s\" is not a valid file name",
                      vg->name);
            continue;
        }
        if (!top && (r = subdir(b, 0, "lvm", &top)) < 0)
            return r;
        if ((r = subdir(b, top, vg->name, &vgdir)) < 0) {
            if (r != -EEXIST)
                return r;
            log_image(b, FS_LOG_WARN, "LVM volume group %s is found twice", vg->name);
            continue;
        }
        for (size_t i = 0; i < vg->lv_count; i++) {
            const struct fetch_lvm_lv *lv = &vg->lvs[i];
            struct fetch_view *v;
            char why[256];

            if (!lv->visible || !lv->size || !valid_name(lv->name) || child(b->p, vgdir, lv->name))
                continue;
            if ((r = lv_view(lv, srcs, ndevs, &v, why, sizeof(why))) < 0 ||
                (r = add_file(b, vgdir, lv->name, v, why[0] ? why : NULL)) < 0)
                return r;
            if (why[0]) {
                char name[300];
                snprintf(name, sizeof(name), "%s/%s", vg->name, lv->name);
                log_image(b, FS_LOG_INFO, "LVM volume %s: %s: its reads there fail with EIO", name,
                          why);
            }
        }
    }
    return 0;
}

/* Reads the table and volumes of @image (index @img, held) into *@ret. -EIO (the store: logged,
 * tried again next time) or -ENOMEM; malformed contents are logged and
 * left out. */
static int build(struct fs_ctx *ctx, const struct fs_node *image, const struct fetch_image *img,
                 struct fs_parts **ret)
{
    struct builder b = {.image = image, .img = img};
    struct fetch_label *label = NULL;
    struct fetch_lvm *lvm = NULL;
    struct fetch_dev *devs = NULL;
    struct dev_src *srcs = NULL;
    size_t ndevs = 1;
    fetch_error err = {""};
    uint32_t root;
    int r;

    if (!(b.p = calloc(1, sizeof(*b.p))) || (r = add(&b, 0, "", S_IFDIR, &root)) < 0) {
        r = -ENOMEM;
        goto out;
    }
    srcs = calloc(1, sizeof(*srcs));
    devs = calloc(1, sizeof(*devs));
    if (!srcs || !devs) {
        r = -ENOMEM;
        goto out;
    }
    srcs[0] = (struct dev_src){ctx, img, 0};
    devs[0] = (struct fetch_dev){img->size, dev_read, &srcs[0]};
    r = fetch_label_read(&devs[0], &label, &err);
    if (r == -EBADMSG) {
        log_image(&b, FS_LOG_WARN, "partition table refused: %s", err.msg);
        label = NULL;
    } else if (r < 0) {
        goto read_error;
    }
    if (label && label->count) {
        struct dev_src *ns = realloc(srcs, (1 + label->count) * sizeof(*ns));
        struct fetch_dev *nd = ns ? realloc(devs, (1 + label->count) * sizeof(*nd)) : NULL;
        if (ns)
            srcs = ns;
        if (nd)
            devs = nd;
        if (!ns || !nd) {
            r = -ENOMEM;
            goto out;
        }
        devs[0].ctx = &srcs[0]; /* srcs moved */
        if ((r = add_partitions(&b, label, devs, srcs, &ndevs)) < 0)
            goto full;
    }
    err.msg[0] = '\0';
    if ((r = fetch_lvm_scan(devs, ndevs, &lvm, &err)) < 0) {
        if (r != -ENOMEM)
            goto read_error;
        goto out;
    }
    if (lvm->note[0])
        log_image(&b, FS_LOG_INFO, "LVM: %s", lvm->note);
    if ((r = add_volumes(&b, lvm, srcs, ndevs)) < 0)
        goto full;
    if (label && label->used_backup)
        log_image(&b, FS_LOG_WARN,
                  "the GPT's primary header or table is damaged: its backup is used");
    log_image(&b, FS_LOG_DEBUG, "%s partition table, %zu partitions, %zu LVM volume groups",
              !label || label->kind == FETCH_LABEL_NONE ? "no"
              : label->kind == FETCH_LABEL_GPT          ? "GPT"
                                                        : "MBR",
              label ? label->count : 0, lvm->vg_count);
    r = 0;
    goto out;
full:
    if (r == -ENOSPC) {
        log_image(&b, FS_LOG_WARN,
                  "more than %u entries in " FS_PARTS_SUFFIX ": the rest are left out",
                  MAX_ENTS - 1);
        r = 0;
    }
    goto out;
read_error:
    log_image(&b, FS_LOG_ERR, "cannot read the partition table or volumes: %s",
              err.msg[0] ? err.msg : strerror(-r));
    r = -EIO;
out:
    fetch_label_free(label);
    fetch_lvm_free(lvm);
    free(devs);
    free(srcs);
    if (r < 0) {
        fs_parts_free(b.p);
        return r;
    }
    *ret = b.p;
    return 0;
}

/* The directory of .parts node @pn, read on first use. -errno (logged). */
static int parts_of(struct fs_ctx *ctx, struct fs_node *pn, struct fs_parts **ret)
{
    struct fs_node *image = pn->of;
    const struct fetch_image *img;
    struct fs_parts *p;
    fetch_error err = {""};
    int r;

    if ((p = atomic_load_explicit(&pn->parts, memory_order_acquire))) {
        *ret = p;
        return 0;
    }
    if (image->entry && image->entry->refuse)
        return image->entry->refuse; /* open() of the image says why */
    /* the index while the table is read; the directory keeps no pointer into it */
    if ((r = fs_image_get(ctx->tree, image, &img, &err)) < 0) {
        char path[512];
        fs_node_path(image, path, sizeof(path));
        fs_err("%s: %s", path, err.msg[0] ? err.msg : strerror(-r));
        return r == -ENOMEM ? -ENOMEM : -EIO;
    }
    pthread_mutex_lock(&pn->lock);
    r = 0;
    if (!(p = pn->parts) && (r = build(ctx, image, img, &p)) == 0)
        atomic_store_explicit(&pn->parts, p, memory_order_release);
    pthread_mutex_unlock(&pn->lock);
    fs_image_put(ctx->tree, image);
    *ret = p;
    return r;
}

/* ---- inode numbers ------------------------------------------------------ */

static uint64_t ino_of(const struct fs_node *pn, uint32_t idx)
{
    return idx == 0 ? pn->ino : FS_PARTS_INO_BASE + (pn->ino << FS_PARTS_INDEX_BITS) + idx;
}

/* The .parts node and entry index of @ino; -ENOENT. */
static int resolve(struct fs_ctx *ctx, uint64_t ino, struct fs_node **pn, uint32_t *idx)
{
    struct fs_node *n;
    if (fs_parts_ino(ino)) {
        n = fs_tree_get(ctx->tree, (ino - FS_PARTS_INO_BASE) >> FS_PARTS_INDEX_BITS);
        *idx = (uint32_t)(ino & (MAX_ENTS - 1));
        if (*idx == 0)
            return -ENOENT;
    } else {
        n = fs_tree_get(ctx->tree, ino);
        *idx = 0;
    }
    if (!n || n->kind != FS_NODE_PARTS)
        return -ENOENT;
    *pn = n;
    return 0;
}

/* The entry @ino (its directory read). */
static int entry_of(struct fs_ctx *ctx, uint64_t ino, struct fs_node **pn, struct fs_parts **p,
                    uint32_t *idx)
{
    int r;
    if ((r = resolve(ctx, ino, pn, idx)) < 0 || (r = parts_of(ctx, *pn, p)) < 0)
        return r;
    return *idx < (*p)->count ? 0 : -ENOENT;
}

bool fs_parts_owns(struct fs_ctx *ctx, uint64_t ino)
{
    const struct fs_node *n;
    if (fs_parts_ino(ino))
        return true;
    n = fs_tree_get(ctx->tree, ino);
    return n && n->kind == FS_NODE_PARTS;
}

/* ---- operations --------------------------------------------------------- */

static void ent_stat(const struct fs_ctx *ctx, const struct fs_node *pn, const struct fs_parts *p,
                     uint32_t idx, struct stat *st)
{
    const struct part_ent *e = &p->ents[idx];

    memset(st, 0, sizeof(*st));
    st->st_ino = ino_of(pn, idx);
    st->st_uid = ctx->tree->uid;
    st->st_gid = ctx->tree->gid;
    st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = pn->mtime;
    st->st_blksize = FS_BLKSIZE;
    st->st_nlink = 1;
    switch (e->type) {
    case S_IFDIR:
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        for (size_t i = 1; i < p->count; i++)
            st->st_nlink += p->ents[i].parent == idx && p->ents[i].type == S_IFDIR;
        break;
    case S_IFLNK:
        st->st_mode = S_IFLNK | 0777;
        st->st_size = (off_t)strlen(e->target);
        break;
    default:
        st->st_mode = S_IFREG | 0444;
        st->st_size = (off_t)e->view->size;
        st->st_blocks = (blkcnt_t)((e->data_bytes + 511) / 512);
        break;
    }
}

int fs_parts_getattr(struct fs_ctx *ctx, uint64_t ino, struct stat *st)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0)
        return r;
    ent_stat(ctx, pn, p, idx, st);
    return 0;
}

int fs_parts_lookup(struct fs_ctx *ctx, uint64_t parent, const char *name,
                    struct fuse_entry_param *e)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t dir, idx;
    int r;

    if ((r = entry_of(ctx, parent, &pn, &p, &dir)) < 0)
        return r;
    if (p->ents[dir].type != S_IFDIR)
        return -ENOTDIR;
    memset(e, 0, sizeof(*e));
    e->entry_timeout = FS_TIMEOUT;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return -ENOENT; /* the kernel resolves these itself */
    if (!(idx = child(p, dir, name)))
        return 0; /* a negative entry, cached: the directory is fixed */
    e->ino = ino_of(pn, idx);
    e->generation = 1;
    e->attr_timeout = FS_TIMEOUT;
    ent_stat(ctx, pn, p, idx, &e->attr);
    return 0;
}

int fs_parts_opendir(struct fs_ctx *ctx, uint64_t ino)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0)
        return r;
    return p->ents[idx].type == S_IFDIR ? 0 : -ENOTDIR;
}

void fs_parts_readdir(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, size_t size, off_t off)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t dir;
    size_t used = 0, k = 0;
    char *buf;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &dir)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    if (p->ents[dir].type != S_IFDIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (!(buf = malloc(size ? size : 1))) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* positions: 0 ".", 1 "..", then the entries in index order (k counts them) */
    for (size_t i = 0; i < p->count + 1; i++) {
        struct stat st = {0};
        const char *name;
        size_t need;

        if (i == 0) {
            name = ".";
            st.st_ino = ino_of(pn, dir);
        } else if (i == 1) {
            name = "..";
            st.st_ino =
                dir ? ino_of(pn, p->ents[dir].parent) : (pn->parent ? pn->parent->ino : pn->ino);
        } else {
            const struct part_ent *e = &p->ents[i - 1];
            if (e->parent != dir)
                continue;
            name = e->name;
            st.st_ino = ino_of(pn, (uint32_t)(i - 1));
            st.st_mode = e->type;
        }
        k = i + 1;
        if (off > 0 && (size_t)off >= k)
            continue;
        if (i < 2)
            st.st_mode = S_IFDIR;
        need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)k);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

void fs_parts_readlink(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0)
        fuse_reply_err(req, -r);
    else if (p->ents[idx].type != S_IFLNK)
        fuse_reply_err(req, EINVAL);
    else
        fuse_reply_readlink(req, p->ents[idx].target);
}

int fs_parts_open(struct fs_ctx *ctx, uint64_t ino, struct fs_file *f)
{
    const struct fetch_image *img;
    fetch_error err = {""};
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0)
        return r;
    if (p->ents[idx].type == S_IFDIR)
        return -EISDIR;
    if (p->ents[idx].type != S_IFREG)
        return -EINVAL;
    if ((r = fs_image_get(ctx->tree, pn->of, &img, &err)) < 0) {
        char path[512];
        fs_node_path(pn->of, path, sizeof(path));
        fs_err("%s: %s", path, err.msg[0] ? err.msg : strerror(-r));
        return r == -ENOMEM ? -ENOMEM : -EIO;
    }
    f->image_node = pn->of;
    f->image = img;
    return 0;
}

void fs_parts_read(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f,
                   uint64_t off, size_t size)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0 || p->ents[idx].type != S_IFREG) {
        fuse_reply_err(req, r < 0 ? -r : EISDIR);
        return;
    }
    if (!f || f->image_node != pn->of) {
        fuse_reply_err(req, EIO); /* not opened by fs_parts_open */
        return;
    }
    fs_read_view(ctx, pn->of, f->image, p->ents[idx].path, p->ents[idx].why, &p->ents[idx].why_said,
                 p->ents[idx].view, f, req, off, size);
}

void fs_parts_lseek(struct fs_ctx *ctx, fuse_req_t req, uint64_t ino, struct fs_file *f, off_t off,
                    int whence)
{
    struct fs_node *pn;
    struct fs_parts *p;
    uint32_t idx;
    int64_t pos;
    int r;

    if ((r = entry_of(ctx, ino, &pn, &p, &idx)) < 0 || p->ents[idx].type != S_IFREG) {
        fuse_reply_err(req, r < 0 ? -r : EINVAL);
        return;
    }
    if (!f || f->image_node != pn->of) {
        fuse_reply_err(req, EIO);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    pos = fetch_view_seek(p->ents[idx].view, f->image, (uint64_t)off, whence);
    if (pos < 0)
        fuse_reply_err(req, (int)-pos);
    else
        fuse_reply_lseek(req, (off_t)pos);
}
