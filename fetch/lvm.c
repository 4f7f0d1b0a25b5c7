/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "lvm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* on-disk layout (LVM2 lib/label/label.h, lib/format_text/layout.h) */
#define LABEL_SCAN_SECTORS 4
#define LABEL_MAGIC "LABELONE"
#define LABEL_OFF_SECTOR 8
#define LABEL_OFF_CRC 16
#define LABEL_OFF_CRC_FROM 20 /* the CRC covers the sector from here */
#define LABEL_OFF_CONTENT 20  /* offset of the pv_header within the sector */
#define LABEL_OFF_TYPE 24
#define LABEL_TYPE "LVM2 001"
#define LABEL_HDR_LEN 32
#define PV_ID_LEN 32
#define PV_HDR_LEN (PV_ID_LEN + 8) /* uuid, device size; then the area lists */
#define DISK_LOCN_LEN 16           /* {offset, size} */

#define MDA_HEADER_SIZE 512
#define MDA_OFF_MAGIC 4
#define MDA_MAGIC " LVM2 x[5A%r0N*>"
#define MDA_MAGIC_LEN 16
#define MDA_OFF_VERSION 20
#define MDA_VERSION 1
#define MDA_OFF_START 24
#define MDA_OFF_SIZE 32
#define MDA_OFF_RLOCN 40 /* first raw_locn {offset, size, checksum, flags} */
#define RAW_LOCN_IGNORED 1u

/* LVM2 lib/misc/crc.h: CRC-32 (reflected 0xEDB88320) from this value, no final xor */
#define LVM_CRC_INITIAL 0xf597a6cfu

/* bounds against absurd input */
#define MDAS_MAX 8
#define TEXT_MAX ((size_t)16 << 20)
#define CFG_DEPTH_MAX 16
#define CFG_NODES_MAX ((size_t)1 << 20)
/* Values of every VG's kept copy in one scan: a disk can hold many VGs'
 * metadata areas, each up to CFG_NODES_MAX values (~90 MiB as parsed). */
#define SCAN_NODES_MAX CFG_NODES_MAX
#define CFG_KEY_MAX 255
#define PVS_MAX 4096
#define LVS_MAX 65536
#define SEGS_MAX 65536
#define STRIPES_MAX 128 /* LVM2's MAX_STRIPES */
#define STRIPE_SIZE_MIN 4096u
#define SECTOR_SHIFT 9

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* LVM's CRC continued over @len more bytes (zlib's crc32 adds pre- and post-inversion) */
static uint32_t lvm_crc(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uLong c = crc ^ 0xffffffffu;
    while (len) {
        uInt n = len > (1u << 30) ? 1u << 30 : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)(c ^ 0xffffffffu);
}

__attribute__((format(printf, 3, 4))) static void say(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t len = strnlen(src, size - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int dev_read(const struct fetch_dev *devs, size_t i, uint64_t off, void *buf, size_t len,
                    fetch_error *err)
{
    int r;
    if (err)
        err->msg[0] = '\0';
    r = devs[i].read(devs[i].ctx, off, buf, len, err);
    if (r < 0)
        return fetch_error_prefix(err, r, "LVM scan: device %zu: read of %zu bytes at %llu", i, len,
                                  (unsigned long long)off);
    return 0;
}

/* ---- the metadata text: LVM's config syntax ---- */

enum cfg_kind { CFG_SECTION, CFG_INT, CFG_FLOAT, CFG_STR, CFG_ARRAY };

struct cfg_node {
    enum cfg_kind kind;
    char *key;                     /* NULL for array elements */
    int64_t num;                   /* CFG_INT */
    char *str;                     /* CFG_STR */
    struct cfg_node *child, *next; /* members of a section or an array */
};

struct cfg_parser {
    const char *p, *end;
    size_t nodes;
    unsigned depth;
    bool nomem;
    char msg[128];
};

static void cfg_free(struct cfg_node *n)
{
    while (n) {
        struct cfg_node *next = n->next;
        cfg_free(n->child); /* depth bounded by CFG_DEPTH_MAX */
        free(n->key);
        free(n->str);
        free(n);
        n = next;
    }
}

__attribute__((format(printf, 2, 3))) static int cfg_fail(struct cfg_parser *ps, const char *fmt,
                                                          ...)
{
    va_list ap;
    if (!ps->msg[0]) {
        va_start(ap, fmt);
        vsnprintf(ps->msg, sizeof(ps->msg), fmt, ap);
        va_end(ap);
    }
    return -EBADMSG;
}

static int cfg_nomem(struct cfg_parser *ps)
{
    ps->nomem = true;
    return -ENOMEM;
}

static bool cfg_special(char c)
{
    return c == '{' || c == '}' || c == '[' || c == ']' || c == '=' || c == ',' || c == '"' ||
           c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           c == '\0';
}

static void cfg_skip_space(struct cfg_parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            ps->p++;
        } else {
            return;
        }
    }
}

/* a run of ordinary characters (a key or a number): its length, 0 if none */
static size_t cfg_word(const struct cfg_parser *ps)
{
    const char *q = ps->p;
    while (q < ps->end && !cfg_special(*q))
        q++;
    return (size_t)(q - ps->p);
}

static struct cfg_node *cfg_node_new(struct cfg_parser *ps, enum cfg_kind kind)
{
    struct cfg_node *n;
    if (ps->nodes >= CFG_NODES_MAX) {
        cfg_fail(ps, "more than %zu values", CFG_NODES_MAX);
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        cfg_nomem(ps);
        return NULL;
    }
    ps->nodes++;
    n->kind = kind;
    return n;
}

static int cfg_string(struct cfg_parser *ps, struct cfg_node *n)
{
    const char *q = ps->p + 1; /* past the opening quote */
    size_t len = 0;
    char *s;

    for (;;) {
        if (q >= ps->end || *q == '\0')
            return cfg_fail(ps, "unterminated string");
        if (*q == '"')
            break;
        if (*q == '\\') {
            q++;
            if (q >= ps->end || *q == '\0')
                return cfg_fail(ps, "unterminated string");
        }
        q++;
        len++;
    }
    s = malloc(len + 1);
    if (!s)
        return cfg_nomem(ps);
    len = 0;
    for (q = ps->p + 1; *q != '"'; q++) {
        if (*q == '\\')
            q++;
        s[len++] = *q;
    }
    s[len] = '\0';
    n->kind = CFG_STR;
    n->str = s;
    ps->p = q + 1;
    return 0;
}

static int cfg_number(struct cfg_parser *ps, struct cfg_node *n)
{
    size_t len = cfg_word(ps), i = 0;
    bool neg = false, fraction = false;
    uint64_t v = 0;

    if (len && ps->p[0] == '-') {
        neg = true;
        i++;
    }
    if (i == len)
        return cfg_fail(ps, "expected a value");
    for (; i < len; i++) {
        char c = ps->p[i];
        if (c == '.' && !fraction) {
            fraction = true;
        } else if (c < '0' || c > '9') {
            return cfg_fail(ps, "bad value \"%.*s\"", (int)(len > 40 ? 40 : len), ps->p);
        } else if (!fraction) {
            if (v > ((uint64_t)INT64_MAX - (uint64_t)(c - '0')) / 10)
                return cfg_fail(ps, "number out of range");
            v = v * 10 + (uint64_t)(c - '0');
        }
    }
    n->kind = fraction ? CFG_FLOAT : CFG_INT;
    n->num = neg ? -(int64_t)v : (int64_t)v;
    ps->p += len;
    return 0;
}

static int cfg_scalar(struct cfg_parser *ps, struct cfg_node *n)
{
    if (ps->p >= ps->end)
        return cfg_fail(ps, "expected a value, found the end");
    if (*ps->p == '"')
        return cfg_string(ps, n);
    return cfg_number(ps, n);
}

/* value after "key =": a scalar or a flat array of scalars */
static int cfg_value(struct cfg_parser *ps, struct cfg_node *n)
{
    struct cfg_node **tail = &n->child;
    int r;

    if (ps->p >= ps->end || *ps->p != '[')
        return cfg_scalar(ps, n);
    ps->p++;
    n->kind = CFG_ARRAY;
    cfg_skip_space(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 0;
    }
    for (;;) {
        struct cfg_node *e = cfg_node_new(ps, CFG_INT);
        if (!e)
            return ps->nomem ? -ENOMEM : -EBADMSG;
        *tail = e;
        tail = &e->next;
        r = cfg_scalar(ps, e);
        if (r < 0)
            return r;
        cfg_skip_space(ps);
        if (ps->p >= ps->end)
            return cfg_fail(ps, "unterminated array");
        if (*ps->p == ']') {
            ps->p++;
            return 0;
        }
        if (*ps->p != ',')
            return cfg_fail(ps, "expected , or ] in an array");
        ps->p++;
        cfg_skip_space(ps);
    }
}

/* members up to the closing brace (@nested) or the end of the text */
static int cfg_members(struct cfg_parser *ps, struct cfg_node **first, bool nested)
{
    struct cfg_node **tail = first;
    int r;

    for (;;) {
        struct cfg_node *n;
        size_t len;

        cfg_skip_space(ps);
        if (ps->p >= ps->end || *ps->p == '\0') {
            if (nested)
                return cfg_fail(ps, "unbalanced braces: a section is not closed");
            return 0;
        }
        if (*ps->p == '}') {
            if (!nested)
                return cfg_fail(ps, "unbalanced braces: } without a section");
            ps->p++;
            return 0;
        }
        len = cfg_word(ps);
        if (len == 0)
            return cfg_fail(ps, "expected a name, found '%c'", *ps->p);
        if (len > CFG_KEY_MAX)
            return cfg_fail(ps, "name longer than %d characters", CFG_KEY_MAX);
        n = cfg_node_new(ps, CFG_SECTION);
        if (!n)
            return ps->nomem ? -ENOMEM : -EBADMSG;
        *tail = n;
        tail = &n->next;
        n->key = strndup(ps->p, len);
        if (!n->key)
            return cfg_nomem(ps);
        ps->p += len;
        cfg_skip_space(ps);
        if (ps->p < ps->end && *ps->p == '{') {
            ps->p++;
            if (ps->depth >= CFG_DEPTH_MAX)
                return cfg_fail(ps, "sections nested deeper than %d", CFG_DEPTH_MAX);
            ps->depth++;
            r = cfg_members(ps, &n->child, true);
            ps->depth--;
            if (r < 0)
                return r;
        } else if (ps->p < ps->end && *ps->p == '=') {
            ps->p++;
            cfg_skip_space(ps);
            r = cfg_value(ps, n);
            if (r < 0)
                return r;
        } else {
            return cfg_fail(ps, "expected = or { after \"%s\"", n->key);
        }
    }
}

/* Parses @len bytes of text (up to a NUL); -EBADMSG with @msg, or -ENOMEM. */
static int cfg_parse(const char *text, size_t len, struct cfg_node **ret, size_t *ret_nodes,
                     char *msg, size_t msg_size)
{
    struct cfg_parser ps = {.p = text, .end = text + len};
    struct cfg_node *root = NULL;
    int r = cfg_members(&ps, &root, false);
    if (r < 0) {
        cfg_free(root);
        if (r == -EBADMSG)
            say(msg, msg_size, "%s at byte %zu", ps.msg, (size_t)(ps.p - text));
        return r;
    }
    *ret = root;
    *ret_nodes = ps.nodes;
    return 0;
}

/* The name of the first section of a text, even one that does not parse. */
static bool cfg_peek_name(const char *text, size_t len, char *name, size_t size)
{
    struct cfg_parser ps = {.p = text, .end = text + len};
    size_t wlen;
    const char *w;

    cfg_skip_space(&ps);
    wlen = cfg_word(&ps);
    w = ps.p;
    if (wlen == 0 || wlen >= size)
        return false;
    ps.p += wlen;
    cfg_skip_space(&ps);
    if (ps.p >= ps.end || *ps.p != '{')
        return false;
    memcpy(name, w, wlen);
    name[wlen] = '\0';
    return true;
}

static const struct cfg_node *cfg_get(const struct cfg_node *sec, const char *key)
{
    for (const struct cfg_node *n = sec ? sec->child : NULL; n; n = n->next)
        if (n->key && strcmp(n->key, key) == 0)
            return n;
    return NULL;
}

static bool cfg_uint(const struct cfg_node *sec, const char *key, uint64_t *v)
{
    const struct cfg_node *n = cfg_get(sec, key);
    if (!n || n->kind != CFG_INT || n->num < 0)
        return false;
    *v = (uint64_t)n->num;
    return true;
}

static const char *cfg_str(const struct cfg_node *sec, const char *key)
{
    const struct cfg_node *n = cfg_get(sec, key);
    return n && n->kind == CFG_STR ? n->str : NULL;
}

/* ---- one scan ---- */

struct pv_label {
    bool ok;
    char uuid[PV_ID_LEN];
};

/* one VG as found: the best good copy so far, or only why its copies failed */
struct vg_found {
    char name[128];
    char id[40];
    uint64_t seqno;
    struct cfg_node *root;     /* the whole text of the best good copy; NULL: none */
    size_t nodes;              /* its values */
    const struct cfg_node *vg; /* its VG section */
    char error[256];
};

struct scan {
    const struct fetch_dev *devs;
    size_t n;
    struct pv_label *labels;
    struct vg_found *vgs;
    size_t vg_count, vg_alloc;
    size_t nodes; /* values of the kept copies (SCAN_NODES_MAX) */
    char note[256];
};

__attribute__((format(printf, 2, 3))) static void scan_note(struct scan *sc, const char *fmt, ...)
{
    va_list ap;
    if (sc->note[0])
        return;
    va_start(ap, fmt);
    vsnprintf(sc->note, sizeof(sc->note), fmt, ap);
    va_end(ap);
}

static struct vg_found *scan_add_vg(struct scan *sc)
{
    if (sc->vg_count == sc->vg_alloc) {
        size_t na = sc->vg_alloc ? sc->vg_alloc * 2 : 4;
        struct vg_found *v = realloc(sc->vgs, na * sizeof(*v));
        if (!v)
            return NULL;
        sc->vgs = v;
        sc->vg_alloc = na;
    }
    memset(&sc->vgs[sc->vg_count], 0, sizeof(sc->vgs[0]));
    return &sc->vgs[sc->vg_count++];
}

/*
 * Reads the label of device @i into sc->labels[i] (ok: it has a valid one)
 * and its metadata area locations into @mdas (*@ret_count of them): 0, or the
 * read's -errno.
 */
static int read_label(struct scan *sc, size_t i, uint64_t mdas[][2], size_t *ret_count,
                      fetch_error *err)
{
    const struct fetch_dev *d = &sc->devs[i];
    uint8_t buf[LABEL_SCAN_SECTORS * FETCH_SECTOR];
    size_t sectors = (size_t)(d->size / FETCH_SECTOR);
    int r;

    if (sectors > LABEL_SCAN_SECTORS)
        sectors = LABEL_SCAN_SECTORS;
    if (sectors == 0)
        return 0;
    r = dev_read(sc->devs, i, 0, buf, sectors * FETCH_SECTOR, err);
    if (r < 0)
        return r;
    for (size_t s = 0; s < sectors; s++) {
        const uint8_t *sec = buf + s * FETCH_SECTOR;
        uint32_t content;
        size_t pos, count = 0;
        bool in_data = true;

        if (memcmp(sec, LABEL_MAGIC, 8) != 0)
            continue;
        if (get_le64(sec + LABEL_OFF_SECTOR) != s) {
            scan_note(sc, "device %zu: label in sector %zu says sector %llu", i, s,
                      (unsigned long long)get_le64(sec + LABEL_OFF_SECTOR));
            continue;
        }
        if (get_le32(sec + LABEL_OFF_CRC) !=
            lvm_crc(LVM_CRC_INITIAL, sec + LABEL_OFF_CRC_FROM, FETCH_SECTOR - LABEL_OFF_CRC_FROM)) {
            scan_note(sc, "device %zu: label checksum mismatch", i);
            continue;
        }
        if (memcmp(sec + LABEL_OFF_TYPE, LABEL_TYPE, 8) != 0) {
            scan_note(sc, "device %zu: label type is not " LABEL_TYPE, i);
            continue;
        }
        content = get_le32(sec + LABEL_OFF_CONTENT);
        if (content < LABEL_HDR_LEN || content > FETCH_SECTOR - PV_HDR_LEN) {
            scan_note(sc, "device %zu: pv_header offset %u out of the sector", i, content);
            continue;
        }
        /* the data area list, then the metadata area list, each ending in {0, 0} */
        for (pos = content + PV_HDR_LEN; pos + DISK_LOCN_LEN <= FETCH_SECTOR;
             pos += DISK_LOCN_LEN) {
            uint64_t off = get_le64(sec + pos), size = get_le64(sec + pos + 8);
            if (off == 0 && size == 0) {
                if (!in_data)
                    break;
                in_data = false;
            } else if (!in_data && count < MDAS_MAX) {
                mdas[count][0] = off;
                mdas[count][1] = size;
                count++;
            }
        }
        if (pos + DISK_LOCN_LEN > FETCH_SECTOR) {
            scan_note(sc, "device %zu: pv_header area lists run past the label sector", i);
            continue;
        }
        sc->labels[i].ok = true;
        memcpy(sc->labels[i].uuid, sec + content, PV_ID_LEN);
        *ret_count = count;
        return 0;
    }
    return 0;
}

static int add_bad_copy(struct scan *sc, const char *text, size_t len, size_t dev, uint64_t mda,
                        const char *why);

/* A good copy of a VG's metadata (@text, @len bytes, parsed into @root of
 * @nodes values): keeps the tree if it is the best so far. */
static int add_copy(struct scan *sc, struct cfg_node *root, size_t nodes,
                    const struct cfg_node *vgsec, const char *text, size_t len, size_t dev,
                    uint64_t mda)
{
    const char *id = cfg_str(vgsec, "id");
    uint64_t seqno;
    struct vg_found *v = NULL;
    size_t replaced;

    if (strlen(vgsec->key) >= sizeof(v->name) || !id || strlen(id) >= sizeof(v->id) ||
        !cfg_uint(vgsec, "seqno", &seqno)) {
        scan_note(sc,
                  "device %zu: metadata area at %llu: VG %.128s lacks a valid name, id or seqno",
                  dev, (unsigned long long)mda, vgsec->key);
        cfg_free(root);
        return 0;
    }
    for (size_t k = 0; k < sc->vg_count && !v; k++)
        if (sc->vgs[k].root && strcmp(sc->vgs[k].id, id) == 0)
            v = &sc->vgs[k];
    /* a VG known only from bad copies becomes this one */
    for (size_t k = 0; k < sc->vg_count && !v; k++)
        if (!sc->vgs[k].root && strcmp(sc->vgs[k].name, vgsec->key) == 0)
            v = &sc->vgs[k];
    if (v && v->root && v->seqno >= seqno) {
        cfg_free(root); /* an older copy, or the same one again */
        return 0;
    }
    /* the values of the copy this one replaces, if any */
    replaced = v && v->root ? v->nodes : 0;
    if (sc->nodes - replaced + nodes > SCAN_NODES_MAX) {
        /* so many VGs' metadata that keeping it all would take gigabytes:
         * this one is not kept (it learns why if it has no copy) */
        char why[160];
        cfg_free(root);
        say(why, sizeof(why),
            "more metadata than one scan keeps (the volume groups' values together past %zu)",
            SCAN_NODES_MAX);
        return add_bad_copy(sc, text, len, dev, mda, why);
    }
    if (!v && !(v = scan_add_vg(sc))) {
        cfg_free(root);
        return -ENOMEM;
    }
    sc->nodes = sc->nodes - replaced + nodes;
    v->nodes = nodes;
    cfg_free(v->root);
    copy_str(v->name, sizeof(v->name), vgsec->key);
    copy_str(v->id, sizeof(v->id), id);
    v->seqno = seqno;
    v->root = root;
    v->vg = vgsec;
    v->error[0] = '\0';
    return 0;
}

/* A copy that cannot be used: the VG it names (if any) learns why, unless a good copy exists. */
static int add_bad_copy(struct scan *sc, const char *text, size_t len, size_t dev, uint64_t mda,
                        const char *why)
{
    char name[128];
    struct vg_found *v;

    scan_note(sc, "device %zu: metadata area at %llu: %s", dev, (unsigned long long)mda, why);
    if (!cfg_peek_name(text, len, name, sizeof(name)))
        return 0;
    for (size_t k = 0; k < sc->vg_count; k++)
        if (strcmp(sc->vgs[k].name, name) == 0)
            return 0; /* already known: a good copy, or the first error */
    v = scan_add_vg(sc);
    if (!v)
        return -ENOMEM;
    copy_str(v->name, sizeof(v->name), name);
    say(v->error, sizeof(v->error), "%s: metadata on device %zu (area at %llu): %s", name, dev,
        (unsigned long long)mda, why);
    return 0;
}

static bool top_level_value(const char *key)
{
    return strcmp(key, "contents") == 0 || strcmp(key, "version") == 0 ||
           strcmp(key, "description") == 0 || strncmp(key, "creation_", 9) == 0;
}

/* Reads one metadata area of device @i at @off (@size bytes per the pv_header). */
static int read_mda(struct scan *sc, size_t i, uint64_t off, uint64_t size, fetch_error *err)
{
    const struct fetch_dev *d = &sc->devs[i];
    uint8_t hdr[MDA_HEADER_SIZE];
    uint64_t msize, roff, rsize, wrap;
    uint32_t rsum, rflags;
    char *text, why[200];
    struct cfg_node *root = NULL;
    size_t nodes = 0;
    const struct cfg_node *vgsec = NULL;
    int r;

    if (off > d->size || d->size - off < MDA_HEADER_SIZE || size < MDA_HEADER_SIZE ||
        size > d->size - off) {
        scan_note(sc, "device %zu: metadata area at %llu (%llu bytes) outside the device", i,
                  (unsigned long long)off, (unsigned long long)size);
        return 0;
    }
    r = dev_read(sc->devs, i, off, hdr, sizeof(hdr), err);
    if (r < 0)
        return r;
    if (get_le32(hdr) != lvm_crc(LVM_CRC_INITIAL, hdr + 4, sizeof(hdr) - 4)) {
        scan_note(sc, "device %zu: metadata area at %llu: header checksum mismatch", i,
                  (unsigned long long)off);
        return 0;
    }
    msize = get_le64(hdr + MDA_OFF_SIZE);
    if (memcmp(hdr + MDA_OFF_MAGIC, MDA_MAGIC, MDA_MAGIC_LEN) != 0 ||
        get_le32(hdr + MDA_OFF_VERSION) != MDA_VERSION || get_le64(hdr + MDA_OFF_START) != off ||
        msize <= MDA_HEADER_SIZE || msize > size) {
        scan_note(sc,
                  "device %zu: metadata area at %llu: bad header (magic, version, start or size)",
                  i, (unsigned long long)off);
        return 0;
    }
    roff = get_le64(hdr + MDA_OFF_RLOCN);
    rsize = get_le64(hdr + MDA_OFF_RLOCN + 8);
    rsum = get_le32(hdr + MDA_OFF_RLOCN + 16);
    rflags = get_le32(hdr + MDA_OFF_RLOCN + 20);
    if (rflags & RAW_LOCN_IGNORED)
        return 0; /* this copy is switched off; another area holds the metadata */
    if (roff == 0 && rsize == 0)
        return 0; /* an orphan PV: no VG */
    if (roff < MDA_HEADER_SIZE || roff >= msize || rsize == 0 || rsize > msize - MDA_HEADER_SIZE ||
        rsize > TEXT_MAX) {
        scan_note(sc, "device %zu: metadata area at %llu: text at %llu, %llu bytes, out of bounds",
                  i, (unsigned long long)off, (unsigned long long)roff, (unsigned long long)rsize);
        return 0;
    }
    wrap = roff + rsize > msize ? roff + rsize - msize : 0;
    text = malloc((size_t)rsize);
    if (!text)
        return -ENOMEM;
    r = dev_read(sc->devs, i, off + roff, text, (size_t)(rsize - wrap), err);
    if (r == 0 && wrap)
        r = dev_read(sc->devs, i, off + MDA_HEADER_SIZE, text + (rsize - wrap), (size_t)wrap, err);
    if (r < 0)
        goto out;
    if (lvm_crc(LVM_CRC_INITIAL, text, (size_t)rsize) != rsum) {
        r = add_bad_copy(sc, text, (size_t)rsize, i, off, "text checksum mismatch");
        goto out;
    }
    r = cfg_parse(text, (size_t)rsize, &root, &nodes, why, sizeof(why));
    if (r == -EBADMSG) {
        r = add_bad_copy(sc, text, (size_t)rsize, i, off, why);
        goto out;
    }
    if (r < 0)
        goto out;
    for (const struct cfg_node *n = root; n && !vgsec; n = n->next)
        if (n->kind == CFG_SECTION && !top_level_value(n->key))
            vgsec = n;
    if (!vgsec) {
        cfg_free(root);
        r = add_bad_copy(sc, text, (size_t)rsize, i, off, "no volume group section");
        goto out;
    }
    r = add_copy(sc, root, nodes, vgsec, text, (size_t)rsize, i, off);
out:
    free(text);
    return r;
}

/* ---- from the chosen copy to the result ---- */

struct pv_map {
    const char *key; /* "pv0" */
    size_t dev;
    uint64_t pe_start; /* bytes */
    uint64_t pe_count;
};

struct seg_src {
    const struct cfg_node *sec;
    uint64_t start_extent, extent_count;
};

static int cmp_seg_src(const void *a, const void *b)
{
    const struct seg_src *x = a, *y = b;
    return x->start_extent < y->start_extent ? -1 : x->start_extent > y->start_extent;
}

static void free_lvs(struct fetch_lvm_lv *lvs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; k < lvs[i].seg_count; k++)
            free(lvs[i].segs[k].stripes);
        free(lvs[i].segs);
    }
    free(lvs);
}

/* -EBADMSG (with the VG's error said), -ENOMEM, or 0 */
__attribute__((format(printf, 2, 3))) static int vg_refuse(struct fetch_lvm_vg *vg, const char *fmt,
                                                           ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    say(vg->error, sizeof(vg->error), "%s: %s", vg->name, what);
    return -EBADMSG;
}

static bool bytes_of_sectors(uint64_t sectors, uint64_t *bytes)
{
    if (sectors > UINT64_MAX >> SECTOR_SHIFT)
        return false;
    *bytes = sectors << SECTOR_SHIFT;
    return true;
}

static int build_pvs(struct scan *sc, const struct cfg_node *vgsec, struct fetch_lvm_vg *vg,
                     struct pv_map **ret, size_t *ret_count)
{
    const struct cfg_node *pvs = cfg_get(vgsec, "physical_volumes");
    struct pv_map *map;
    size_t count = 0;

    if (!pvs || pvs->kind != CFG_SECTION)
        return vg_refuse(vg, "no physical_volumes section");
    for (const struct cfg_node *n = pvs->child; n; n = n->next)
        if (n->kind == CFG_SECTION)
            count++;
    if (count > PVS_MAX)
        return vg_refuse(vg, "%zu physical volumes (at most %d)", count, PVS_MAX);
    map = calloc(count ? count : 1, sizeof(*map));
    if (!map)
        return -ENOMEM;
    count = 0;
    for (const struct cfg_node *n = pvs->child; n; n = n->next) {
        struct pv_map *m = &map[count];
        const char *id;
        char uuid[PV_ID_LEN];
        size_t ulen = 0;
        uint64_t pe_start;

        if (n->kind != CFG_SECTION)
            continue;
        id = cfg_str(n, "id");
        if (!id || !cfg_uint(n, "pe_start", &pe_start) || !cfg_uint(n, "pe_count", &m->pe_count) ||
            !bytes_of_sectors(pe_start, &m->pe_start)) {
            free(map);
            return vg_refuse(vg, "PV %.40s lacks a valid id, pe_start or pe_count", n->key);
        }
        for (const char *c = id; *c; c++) {
            if (*c == '-')
                continue;
            if (ulen == PV_ID_LEN) {
                ulen++;
                break;
            }
            uuid[ulen++] = *c;
        }
        if (ulen != PV_ID_LEN) {
            free(map);
            return vg_refuse(vg, "PV %.40s: id \"%.48s\" is not 32 characters", n->key, id);
        }
        m->key = n->key;
        m->dev = SIZE_MAX;
        for (size_t i = 0; i < sc->n; i++)
            if (sc->labels[i].ok && memcmp(sc->labels[i].uuid, uuid, PV_ID_LEN) == 0) {
                m->dev = i;
                break;
            }
        count++;
    }
    *ret = map;
    *ret_count = count;
    return 0;
}

/* Whether the status array of LV section @lvsec holds @flag. */
static bool lv_has_status(const struct cfg_node *lvsec, const char *flag)
{
    const struct cfg_node *status = cfg_get(lvsec, "status");
    if (status && status->kind == CFG_ARRAY)
        for (const struct cfg_node *s = status->child; s; s = s->next)
            if (s->kind == CFG_STR && strcmp(s->str, flag) == 0)
                return true;
    return false;
}

/*
 * A stripe on LV @name of @lvs (the VG's logical_volumes) from its extent
 * @pe on, for @n extents, rather than on a PV: what LVs being moved by a
 * pvmove sit on while it runs. A segment of the move's mirror not moved yet
 * or being moved is whole on its first leg, the source (writes go to both
 * legs); one moved already ("extents_moved" its whole length) only on the
 * second, the destination, where writes have gone since (as LVM2 activates
 * it). 1 with that leg's PV name and extent; 0 when @name is an LV of
 * another kind, or the range is not in one mirror segment (the segment
 * cannot be mapped); -1 when @name is no LV either (malformed).
 */
static int pvmove_source(const struct cfg_node *lvs, const char *name, uint64_t pe, uint64_t n,
                         const char **ret_pv, uint64_t *ret_pe)
{
    const struct cfg_node *lv = cfg_get(lvs, name);
    if (!lv || lv->kind != CFG_SECTION)
        return -1;
    if (!lv_has_status(lv, "PVMOVE"))
        return 0;
    for (const struct cfg_node *sec = lv->child; sec; sec = sec->next) {
        const struct cfg_node *legs = cfg_get(sec, "mirrors"), *pv, *at;
        const char *type = cfg_str(sec, "type");
        uint64_t start, count, moved = 0;
        if (sec->kind != CFG_SECTION || !cfg_uint(sec, "start_extent", &start) ||
            !cfg_uint(sec, "extent_count", &count) || pe < start || pe - start >= count ||
            n > count - (pe - start))
            continue;
        if (!type || strcmp(type, "mirror") || !legs || legs->kind != CFG_ARRAY ||
            !(pv = legs->child))
            return 0;
        /* moved: the second leg, the destination */
        if (cfg_uint(sec, "extents_moved", &moved) && moved >= count)
            pv = pv->next ? pv->next->next : NULL;
        if (!pv || pv->kind != CFG_STR || !(at = pv->next) || at->kind != CFG_INT || at->num < 0 ||
            (uint64_t)at->num > UINT64_MAX - (pe - start))
            return 0;
        *ret_pv = pv->str;
        *ret_pe = (uint64_t)at->num + (pe - start);
        return 1;
    }
    return 0;
}

/* Makes @seg one that cannot be mapped, named @why in its type_name. */
static void seg_unsupported(struct fetch_lvm_seg *seg, const char *why)
{
    free(seg->stripes);
    seg->stripes = NULL;
    seg->stripe_count = 0;
    seg->stripe_size = 0;
    seg->type = FETCH_LVM_UNSUPPORTED;
    snprintf(seg->type_name, sizeof(seg->type_name), "%s", why);
}

static int build_striped(struct scan *sc, struct fetch_lvm_vg *vg, const char *lvname,
                         const struct seg_src *src, const struct cfg_node *lvs,
                         const struct pv_map *pvs, size_t pv_count, struct fetch_lvm_seg *seg)
{
    const struct cfg_node *sec = src->sec, *stripes = cfg_get(sec, "stripes"), *e;
    uint64_t count, ssize = 0, per_stripe;

    if (!cfg_uint(sec, "stripe_count", &count) || count < 1 || count > STRIPES_MAX)
        return vg_refuse(vg, "%s %s: stripe_count missing or not in 1..%d", lvname, sec->key,
                         STRIPES_MAX);
    if (src->extent_count % count != 0)
        return vg_refuse(vg, "%s %s: %llu extents do not divide into %llu stripes", lvname,
                         sec->key, (unsigned long long)src->extent_count,
                         (unsigned long long)count);
    per_stripe = src->extent_count / count;
    if (count > 1) {
        uint64_t sectors;
        if (!cfg_uint(sec, "stripe_size", &sectors) || !bytes_of_sectors(sectors, &ssize) ||
            ssize < STRIPE_SIZE_MIN || (ssize & (ssize - 1)) != 0)
            return vg_refuse(vg, "%s %s: stripe_size must be a power of two of at least %u bytes",
                             lvname, sec->key, STRIPE_SIZE_MIN);
    }
    if (!stripes || stripes->kind != CFG_ARRAY)
        return vg_refuse(vg, "%s %s: no stripes array", lvname, sec->key);
    seg->type = count > 1 ? FETCH_LVM_STRIPED : FETCH_LVM_LINEAR;
    seg->stripe_size = ssize;
    seg->stripes = calloc((size_t)count, sizeof(*seg->stripes));
    if (!seg->stripes)
        return -ENOMEM;
    seg->stripe_count = (unsigned)count;
    e = stripes->child;
    for (unsigned k = 0; k < count; k++) {
        const struct cfg_node *name = e, *pe_node = e ? e->next : NULL;
        const struct pv_map *pv = NULL;
        const char *on;
        uint64_t pe, end, bytes;

        if (!name || !pe_node || name->kind != CFG_STR || pe_node->kind != CFG_INT ||
            pe_node->num < 0)
            return vg_refuse(vg, "%s %s: stripes must list %llu (\"pvN\", extent) pairs", lvname,
                             sec->key, (unsigned long long)count);
        e = pe_node->next;
        pe = (uint64_t)pe_node->num;
        on = name->str;
        for (size_t p = 0; p < pv_count && !pv; p++)
            if (strcmp(pvs[p].key, on) == 0)
                pv = &pvs[p];
        if (!pv) {
            /* on an LV: a pvmove's (its source), else not mapped */
            int m = pvmove_source(lvs, on, pe, per_stripe, &on, &pe);
            if (m < 0)
                return vg_refuse(vg, "%s %s: stripe %u is on unknown PV \"%.40s\"", lvname,
                                 sec->key, k, name->str);
            for (size_t p = 0; p < pv_count && !pv && m > 0; p++)
                if (strcmp(pvs[p].key, on) == 0)
                    pv = &pvs[p];
            if (!pv) {
                seg_unsupported(seg, m > 0 ? "pvmove" : "striped on an LV");
                return 0;
            }
        }
        if (pe > pv->pe_count || per_stripe > pv->pe_count - pe)
            return vg_refuse(vg, "%s %s: stripe %u (extents %llu+%llu) beyond %s's %llu extents",
                             lvname, sec->key, k, (unsigned long long)pe,
                             (unsigned long long)per_stripe, pv->key,
                             (unsigned long long)pv->pe_count);
        /* pe + per_stripe <= pe_count <= what the text could describe: no overflow below
         * unless extent_size is absurd, checked */
        if (pe + per_stripe > UINT64_MAX / vg->extent_size ||
            (pe + per_stripe) * vg->extent_size > UINT64_MAX - pv->pe_start)
            return vg_refuse(vg, "%s %s: stripe %u: offset overflows", lvname, sec->key, k);
        end = pv->pe_start + (pe + per_stripe) * vg->extent_size;
        if (pv->dev != SIZE_MAX && end > sc->devs[pv->dev].size)
            return vg_refuse(vg,
                             "%s %s: stripe %u ends at byte %llu, past the end of %s (device %zu, "
                             "%llu bytes)",
                             lvname, sec->key, k, (unsigned long long)end, pv->key, pv->dev,
                             (unsigned long long)sc->devs[pv->dev].size);
        bytes = pv->pe_start + pe * vg->extent_size;
        seg->stripes[k].dev = pv->dev;
        seg->stripes[k].offset = bytes;
    }
    if (e)
        return vg_refuse(vg, "%s %s: stripes lists more than %llu stripes", lvname, sec->key,
                         (unsigned long long)count);
    return 0;
}

static int build_lv(struct scan *sc, struct fetch_lvm_vg *vg, const struct cfg_node *lvs,
                    const struct cfg_node *lvsec, const struct pv_map *pvs, size_t pv_count,
                    struct fetch_lvm_lv *lv)
{
    uint64_t declared, next = 0;
    size_t count = 0;
    struct seg_src *src;
    int r = 0;

    if (strlen(lvsec->key) >= sizeof(lv->name))
        return vg_refuse(vg, "LV name longer than %zu characters", sizeof(lv->name) - 1);
    copy_str(lv->name, sizeof(lv->name), lvsec->key);
    lv->visible = lv_has_status(lvsec, "VISIBLE");
    if (!cfg_uint(lvsec, "segment_count", &declared) || declared < 1 || declared > SEGS_MAX)
        return vg_refuse(vg, "%s: segment_count missing or not in 1..%d", lv->name, SEGS_MAX);
    for (const struct cfg_node *n = lvsec->child; n; n = n->next)
        if (n->kind == CFG_SECTION)
            count++;
    if (count != declared)
        return vg_refuse(vg, "%s: %zu segments, segment_count says %llu", lv->name, count,
                         (unsigned long long)declared);
    src = calloc(count, sizeof(*src));
    lv->segs = calloc(count, sizeof(*lv->segs));
    if (!src || !lv->segs) {
        free(src);
        return -ENOMEM;
    }
    count = 0;
    for (const struct cfg_node *n = lvsec->child; n; n = n->next) {
        if (n->kind != CFG_SECTION)
            continue;
        src[count].sec = n;
        if (!cfg_uint(n, "start_extent", &src[count].start_extent) ||
            !cfg_uint(n, "extent_count", &src[count].extent_count) ||
            src[count].extent_count == 0) {
            r = vg_refuse(vg, "%s %s: start_extent or extent_count missing or invalid", lv->name,
                          n->key);
            goto out;
        }
        count++;
    }
    qsort(src, count, sizeof(*src), cmp_seg_src);
    for (size_t k = 0; k < count; k++) {
        struct fetch_lvm_seg *seg = &lv->segs[k];
        const char *type = cfg_str(src[k].sec, "type");

        if (src[k].start_extent != next) {
            r = vg_refuse(vg, "%s %s starts at extent %llu, expected %llu", lv->name,
                          src[k].sec->key, (unsigned long long)src[k].start_extent,
                          (unsigned long long)next);
            goto out;
        }
        if (src[k].extent_count > UINT64_MAX / vg->extent_size ||
            next > UINT64_MAX - src[k].extent_count ||
            next + src[k].extent_count > UINT64_MAX / vg->extent_size) {
            r = vg_refuse(vg, "%s %s: size overflows", lv->name, src[k].sec->key);
            goto out;
        }
        if (!type) {
            r = vg_refuse(vg, "%s %s: no type", lv->name, src[k].sec->key);
            goto out;
        }
        seg->start = next * vg->extent_size;
        seg->length = src[k].extent_count * vg->extent_size;
        copy_str(seg->type_name, sizeof(seg->type_name), type);
        lv->seg_count = k + 1;
        next += src[k].extent_count;
        if (strcmp(type, "striped") == 0) {
            r = build_striped(sc, vg, lv->name, &src[k], lvs, pvs, pv_count, seg);
            if (r < 0)
                goto out;
        } else if (strcmp(type, "zero") == 0) {
            seg->type = FETCH_LVM_ZERO;
        } else {
            seg->type = FETCH_LVM_UNSUPPORTED;
        }
    }
    lv->size = next * vg->extent_size;
out:
    free(src);
    return r;
}

static struct fetch_lvm_lv *find_lv(struct fetch_lvm_vg *vg, const char *name)
{
    for (size_t i = 0; i < vg->lv_count; i++)
        if (strcmp(vg->lvs[i].name, name) == 0)
            return &vg->lvs[i];
    return NULL;
}

/*
 * Snapshots as lvs shows them. LVM keeps an old-style snapshot as a hidden
 * LV holding its copy-on-write store (the name the user gave, "snap") and a
 * visible one of type "snapshot" under an internal name ("snapshot0") that
 * names its origin and that store: the visible one takes the store's name
 * (it stays unmappable). An origin with a merge pending (lvconvert --merge
 * deferred to the next activation: "merging_store") is to take the
 * snapshot's bytes, which only device-mapper would give: its own bytes
 * would be the wrong ones, so it is marked unreadable.
 */
static void snapshots(struct fetch_lvm_vg *vg, const struct cfg_node *lvs)
{
    for (const struct cfg_node *n = lvs ? lvs->child : NULL; n; n = n->next) {
        const struct cfg_node *seg;
        const char *type, *origin, *store, *merging;
        struct fetch_lvm_lv *lv, *o;

        if (n->kind != CFG_SECTION || !(seg = n->child))
            continue;
        while (seg && seg->kind != CFG_SECTION)
            seg = seg->next;
        if (!seg || !(type = cfg_str(seg, "type")) || strcmp(type, "snapshot") ||
            !(lv = find_lv(vg, n->key)))
            continue;
        origin = cfg_str(seg, "origin");
        store = cfg_str(seg, "cow_store");
        merging = cfg_str(seg, "merging_store");
        if (!store)
            store = merging;
        if (merging && origin && (o = find_lv(vg, origin)))
            snprintf(o->unreadable, sizeof(o->unreadable),
                     "a merge of snapshot %.60s into it is pending (lvconvert --merge)", merging);
        if (lv->visible && store && strlen(store) < sizeof(lv->name) && (o = find_lv(vg, store)) &&
            !o->visible)
            copy_str(lv->name, sizeof(lv->name), store);
    }
}

/* Fills @vg from a good copy; a refusal leaves vg->error said and no LVs. */
static int build_vg(struct scan *sc, const struct vg_found *f, struct fetch_lvm_vg *vg)
{
    const struct cfg_node *lvs = cfg_get(f->vg, "logical_volumes");
    struct pv_map *pvs = NULL;
    size_t pv_count = 0, count = 0;
    uint64_t es;
    int r;

    copy_str(vg->name, sizeof(vg->name), f->name);
    copy_str(vg->id, sizeof(vg->id), f->id);
    vg->seqno = f->seqno;
    if (!cfg_uint(f->vg, "extent_size", &es) || es == 0 || es > UINT32_MAX) {
        vg_refuse(vg, "extent_size missing or not in 1..%u sectors", UINT32_MAX);
        return 0;
    }
    vg->extent_size = es << SECTOR_SHIFT;
    r = build_pvs(sc, f->vg, vg, &pvs, &pv_count);
    if (r < 0)
        return r == -EBADMSG ? 0 : r;
    if (lvs && lvs->kind != CFG_SECTION) {
        r = vg_refuse(vg, "logical_volumes is not a section");
        goto out;
    }
    for (const struct cfg_node *n = lvs ? lvs->child : NULL; n; n = n->next)
        if (n->kind == CFG_SECTION)
            count++;
    if (count > LVS_MAX) {
        r = vg_refuse(vg, "%zu logical volumes (at most %d)", count, LVS_MAX);
        goto out;
    }
    if (count) {
        vg->lvs = calloc(count, sizeof(*vg->lvs));
        if (!vg->lvs) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (const struct cfg_node *n = lvs ? lvs->child : NULL; n; n = n->next) {
        if (n->kind != CFG_SECTION)
            continue;
        r = build_lv(sc, vg, lvs, n, pvs, pv_count, &vg->lvs[vg->lv_count]);
        vg->lv_count++;
        if (r < 0)
            goto out;
    }
    snapshots(vg, lvs);
out:
    free(pvs);
    if (r < 0) {
        free_lvs(vg->lvs, vg->lv_count);
        vg->lvs = NULL;
        vg->lv_count = 0;
    }
    return r == -EBADMSG ? 0 : r;
}

void fetch_lvm_free(struct fetch_lvm *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->vg_count; i++)
        free_lvs(l->vgs[i].lvs, l->vgs[i].lv_count);
    free(l->vgs);
    free(l);
}

int fetch_lvm_scan(const struct fetch_dev *devs, size_t n, struct fetch_lvm **ret, fetch_error *err)
{
    struct scan sc = {.devs = devs, .n = n};
    struct fetch_lvm *l = NULL;
    int r = 0;

    sc.labels = calloc(n ? n : 1, sizeof(*sc.labels));
    l = calloc(1, sizeof(*l));
    if (!sc.labels || !l) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && r >= 0; i++) {
        uint64_t mdas[MDAS_MAX][2];
        size_t count = 0;
        r = read_label(&sc, i, mdas, &count, err);
        if (r < 0 || !sc.labels[i].ok)
            continue;
        l->pv_count++;
        for (size_t k = 0; k < count && r >= 0; k++)
            r = read_mda(&sc, i, mdas[k][0], mdas[k][1], err);
    }
    if (r < 0)
        goto out;
    if (sc.vg_count) {
        l->vgs = calloc(sc.vg_count, sizeof(*l->vgs));
        if (!l->vgs) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (size_t k = 0; k < sc.vg_count; k++) {
        struct fetch_lvm_vg *vg = &l->vgs[k];
        l->vg_count++;
        if (!sc.vgs[k].root) {
            copy_str(vg->name, sizeof(vg->name), sc.vgs[k].name);
            copy_str(vg->error, sizeof(vg->error), sc.vgs[k].error);
            continue;
        }
        r = build_vg(&sc, &sc.vgs[k], vg);
        if (r < 0)
            goto out;
    }
    copy_str(l->note, sizeof(l->note), sc.note);
out:
    for (size_t k = 0; k < sc.vg_count; k++)
        cfg_free(sc.vgs[k].root);
    free(sc.vgs);
    free(sc.labels);
    if (r < 0) {
        if (r == -ENOMEM)
            fetch_error_set(err, r, "LVM scan: out of memory");
        fetch_lvm_free(l);
        return r;
    }
    *ret = l;
    return 0;
}
