/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "disklabel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* MBR layout (also the layout of an EBR) */
#define MBR_DISK_ID 440
#define MBR_TABLE 446
#define MBR_ENTRY_LEN 16
#define MBR_SIG 510

#define MBR_TYPE_GPT 0xEE

/* GPT header and entry layout (UEFI 2.x, section 5.3) */
#define GPT_SIGNATURE "EFI PART"
#define GPT_HDR_MIN 92
#define GPT_ENTRY_MIN 128
#define GPT_NAME_UNITS 36

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* Reads @count sectors from @lba; the caller has checked they lie inside the device. */
static int read_sectors(const struct fetch_dev *dev, uint64_t lba, size_t count, void *buf,
                        fetch_error *err)
{
    uint64_t nsect = dev->size / FETCH_SECTOR;
    if (lba > nsect || count > nsect - lba)
        return fetch_error_set(err, -EBADMSG, "sectors %llu..+%zu are past the device's end",
                               (unsigned long long)lba, count);
    int r = dev->read(dev->ctx, lba * FETCH_SECTOR, buf, count * FETCH_SECTOR, err);
    return r < 0 ? r : 0;
}

/* The growing partition list of a label */
static int add_partition(struct fetch_label *l, size_t *cap, struct fetch_partition **ret,
                         fetch_error *err)
{
    if (l->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct fetch_partition *v = realloc(l->parts, ncap * sizeof(*v));
        if (!v)
            return fetch_error_set(err, -ENOMEM, "out of memory");
        l->parts = v;
        *cap = ncap;
    }
    *ret = &l->parts[l->count++];
    memset(*ret, 0, sizeof(**ret));
    return 0;
}

/* A partition as a sector range [first, end), for the overlap check */
struct span {
    uint64_t first, end;
    unsigned number;
    bool container; /* an MBR extended partition */
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* -EBADMSG naming two partitions of @s that share a sector (sorts @s). */
static int check_overlaps(const char *label, struct span *s, size_t n, fetch_error *err)
{
    size_t widest = 0;
    if (n < 2)
        return 0;
    qsort(s, n, sizeof(*s), span_cmp);
    for (size_t i = 1; i < n; i++) {
        if (s[i].first < s[widest].end)
            return fetch_error_set(
                err, -EBADMSG,
                "%s: %spartition %u (sectors %llu..%llu) overlaps %spartition %u "
                "(sectors %llu..%llu)",
                label, s[i].container ? "extended " : "", s[i].number,
                (unsigned long long)s[i].first, (unsigned long long)(s[i].end - 1),
                s[widest].container ? "extended " : "", s[widest].number,
                (unsigned long long)s[widest].first, (unsigned long long)(s[widest].end - 1));
        if (s[i].end > s[widest].end)
            widest = i;
    }
    return 0;
}

/* ---- MBR ---- */

struct mbr_entry {
    uint8_t status, type;
    uint64_t lba, count; /* sectors (32-bit on disk) */
};

static void mbr_entry(const uint8_t *sector, unsigned slot, struct mbr_entry *e)
{
    const uint8_t *p = sector + MBR_TABLE + slot * MBR_ENTRY_LEN;
    e->status = p[0];
    e->type = p[4];
    e->lba = le32(p + 8);
    e->count = le32(p + 12);
}

static bool mbr_is_extended(uint8_t type)
{
    return type == 0x05 || type == 0x0F || type == 0x85;
}

static bool has_signature(const uint8_t *sector)
{
    return sector[MBR_SIG] == 0x55 && sector[MBR_SIG + 1] == 0xAA;
}

struct mbr_walk {
    struct fetch_label *l;
    size_t cap;
    uint64_t ebrs[FETCH_LABEL_MAX_LOGICAL]; /* absolute sectors of every EBR read */
    size_t nebrs;
    struct span logical[FETCH_LABEL_MAX_LOGICAL];
    size_t nlogical;
};

/* Follows the EBR chain of the extended partition in @slot (1-4), adding its logical partitions. */
static int mbr_chain(const struct fetch_dev *dev, struct mbr_walk *w, unsigned slot,
                     const struct mbr_entry *ext, fetch_error *err)
{
    uint64_t rel = 0, ext_end = ext->lba + ext->count, cur_count = ext->count;
    uint8_t sector[FETCH_SECTOR];
    bool have_link;
    int r;

    for (;;) {
        uint64_t ebr = ext->lba + rel;
        struct mbr_entry part, link = {0};

        if (rel >= ext->count)
            return fetch_error_set(err, -EBADMSG,
                                   "MBR: EBR at sector %llu is outside the extended partition %u "
                                   "(sectors %llu..%llu)",
                                   (unsigned long long)ebr, slot, (unsigned long long)ext->lba,
                                   (unsigned long long)(ext_end - 1));
        for (size_t i = 0; i < w->nebrs; i++)
            if (w->ebrs[i] == ebr)
                return fetch_error_set(
                    err, -EBADMSG,
                    "MBR: the EBR chain of extended partition %u loops back to sector %llu", slot,
                    (unsigned long long)ebr);
        if (w->nebrs == FETCH_LABEL_MAX_LOGICAL)
            return fetch_error_set(err, -EBADMSG, "MBR: more than %u EBRs in the extended chains",
                                   FETCH_LABEL_MAX_LOGICAL);
        w->ebrs[w->nebrs++] = ebr;

        r = read_sectors(dev, ebr, 1, sector, err);
        if (r < 0)
            return r;
        if (!has_signature(sector)) {
            if (rel == 0)
                return 0; /* an extended partition without logical partitions */
            return fetch_error_set(err, -EBADMSG,
                                   "MBR: EBR at sector %llu (in the chain of extended partition "
                                   "%u) has no 0x55AA signature",
                                   (unsigned long long)ebr, slot);
        }
        /* as the kernel reads an EBR (block/partitions/msdos.c): a logical
         * partition in every entry with a size that is not an extended
         * type, whatever its type byte, numbered in order; then the link,
         * the first entry of an extended type */
        have_link = false;
        for (unsigned i = 0; i < 4; i++) {
            unsigned number = 5 + (unsigned)w->nlogical;
            uint64_t start, end;
            struct fetch_partition *p;

            mbr_entry(sector, i, &part);
            if (part.count == 0)
                continue;
            if (mbr_is_extended(part.type)) {
                if (!have_link) {
                    link = part;
                    have_link = true;
                }
                continue;
            }
            start = ebr + part.lba;
            end = start + part.count;
            /* the 3rd and 4th entries often hold garbage: the kernel skips
             * those that do not fit */
            if (i >= 2 && (part.lba + part.count > cur_count || end > ext_end))
                continue;
            if (part.lba == 0)
                return fetch_error_set(err, -EBADMSG,
                                       "MBR: logical partition %u starts on its own EBR "
                                       "(sector %llu)",
                                       number, (unsigned long long)ebr);
            if (end > ext_end)
                return fetch_error_set(
                    err, -EBADMSG,
                    "MBR: logical partition %u (sectors %llu..%llu) is outside "
                    "its extended partition %u (sectors %llu..%llu)",
                    number, (unsigned long long)start, (unsigned long long)(end - 1), slot,
                    (unsigned long long)ext->lba, (unsigned long long)(ext_end - 1));
            if (w->nlogical == FETCH_LABEL_MAX_LOGICAL)
                return fetch_error_set(err, -EBADMSG, "MBR: more than %u logical partitions",
                                       FETCH_LABEL_MAX_LOGICAL);
            r = add_partition(w->l, &w->cap, &p, err);
            if (r < 0)
                return r;
            p->number = number;
            p->start = start * FETCH_SECTOR;
            p->size = part.count * FETCH_SECTOR;
            p->mbr_type = part.type;
            p->bootable = part.status == 0x80;
            w->logical[w->nlogical++] = (struct span){start, end, number, false};
        }
        if (!have_link)
            return 0;
        rel = link.lba;
        cur_count = link.count;
    }
}

static int mbr_read(const struct fetch_dev *dev, const uint8_t *mbr, struct fetch_label *l,
                    fetch_error *err)
{
    uint64_t nsect = dev->size / FETCH_SECTOR;
    struct mbr_walk *w;
    struct span primary[4];
    struct mbr_entry e[4];
    size_t nprimary = 0;
    int r;

    w = calloc(1, sizeof(*w));
    if (!w)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    w->l = l;
    l->kind = FETCH_LABEL_MBR;
    l->disk_id = le32(mbr + MBR_DISK_ID);

    for (unsigned slot = 0; slot < 4; slot++)
        mbr_entry(mbr, slot, &e[slot]);
    for (unsigned slot = 0; slot < 4; slot++) {
        uint64_t end;
        /* as the kernel: only a size of 0 makes an entry empty, whatever
         * its type byte */
        if (e[slot].count == 0)
            continue;
        end = e[slot].lba + e[slot].count;
        /* but an entry of type 0 is often a stale one: one that does not
         * fit (past the end, over another) is left out, not the table */
        if (e[slot].type == 0) {
            bool stale = end > nsect;
            for (unsigned o = 0; o < 4 && !stale; o++)
                stale = o != slot && e[o].count && e[slot].lba < e[o].lba + e[o].count &&
                        e[o].lba < end;
            if (stale)
                continue;
        }
        if (end > nsect) {
            r = fetch_error_set(err, -EBADMSG,
                                "MBR: partition %u (sectors %llu..%llu) ends past the device's "
                                "last sector %llu",
                                slot + 1, (unsigned long long)e[slot].lba,
                                (unsigned long long)(end - 1), (unsigned long long)(nsect - 1));
            goto out;
        }
        primary[nprimary++] =
            (struct span){e[slot].lba, end, slot + 1, mbr_is_extended(e[slot].type)};
        if (!mbr_is_extended(e[slot].type)) {
            struct fetch_partition *p;
            r = add_partition(l, &w->cap, &p, err);
            if (r < 0)
                goto out;
            p->number = slot + 1;
            p->start = e[slot].lba * FETCH_SECTOR;
            p->size = e[slot].count * FETCH_SECTOR;
            p->mbr_type = e[slot].type;
            p->bootable = e[slot].status == 0x80;
        }
    }
    r = check_overlaps("MBR", primary, nprimary, err);
    if (r < 0)
        goto out;
    for (unsigned slot = 0; slot < 4; slot++) {
        if (e[slot].count == 0 || !mbr_is_extended(e[slot].type))
            continue;
        r = mbr_chain(dev, w, slot + 1, &e[slot], err);
        if (r < 0)
            goto out;
    }
    r = check_overlaps("MBR", w->logical, w->nlogical, err);
out:
    free(w);
    return r;
}

/* ---- GPT ---- */

struct gpt_header {
    uint64_t my_lba, first_usable, last_usable, array_lba;
    uint32_t count, entry_size;
    uint8_t disk_guid[16];
    uint8_t *array; /* count * entry_size bytes, CRC verified (malloc()ed) */
};

/*
 * Reads and checks the GPT header at @lba and its entry array. -EBADMSG with
 * the problem in @err (without a "GPT:" prefix), or the read's -errno.
 */
static int gpt_header_read(const struct fetch_dev *dev, uint64_t lba, struct gpt_header *h,
                           fetch_error *err)
{
    uint64_t nsect = dev->size / FETCH_SECTOR, array_len, array_sectors, array_end;
    uint8_t sector[FETCH_SECTOR];
    uint32_t revision, hdr_size, crc, array_crc;
    uint8_t *array;
    int r;

    r = read_sectors(dev, lba, 1, sector, err);
    if (r < 0)
        return r;
    if (memcmp(sector, GPT_SIGNATURE, 8) != 0)
        return fetch_error_set(err, -EBADMSG, "no \"EFI PART\" signature at sector %llu",
                               (unsigned long long)lba);
    revision = le32(sector + 8);
    if (revision >> 16 != 1)
        return fetch_error_set(err, -EBADMSG, "unsupported header revision 0x%08x", revision);
    hdr_size = le32(sector + 12);
    if (hdr_size < GPT_HDR_MIN || hdr_size > FETCH_SECTOR)
        return fetch_error_set(err, -EBADMSG, "header size %u outside %u..%u", hdr_size,
                               GPT_HDR_MIN, FETCH_SECTOR);
    crc = le32(sector + 16);
    memset(sector + 16, 0, 4);
    if ((uint32_t)crc32(0, sector, hdr_size) != crc)
        return fetch_error_set(err, -EBADMSG, "header CRC mismatch");
    h->my_lba = le64(sector + 24);
    if (h->my_lba != lba)
        return fetch_error_set(err, -EBADMSG, "header at sector %llu says it is at sector %llu",
                               (unsigned long long)lba, (unsigned long long)h->my_lba);
    h->first_usable = le64(sector + 40);
    h->last_usable = le64(sector + 48);
    if (h->first_usable > h->last_usable)
        return fetch_error_set(
            err, -EBADMSG, "first usable sector %llu is after the last usable sector %llu",
            (unsigned long long)h->first_usable, (unsigned long long)h->last_usable);
    if (h->first_usable == 0 || h->last_usable >= nsect ||
        (h->first_usable <= lba && lba <= h->last_usable))
        return fetch_error_set(err, -EBADMSG,
                               "usable sectors %llu..%llu are not inside the device (%llu "
                               "sectors) beside the header",
                               (unsigned long long)h->first_usable,
                               (unsigned long long)h->last_usable, (unsigned long long)nsect);
    memcpy(h->disk_guid, sector + 56, 16);
    h->array_lba = le64(sector + 72);
    h->count = le32(sector + 80);
    h->entry_size = le32(sector + 84);
    array_crc = le32(sector + 88);
    if (h->entry_size < GPT_ENTRY_MIN || h->entry_size % 8 != 0 ||
        h->entry_size > FETCH_LABEL_GPT_MAX_ENTRY_SIZE)
        return fetch_error_set(err, -EBADMSG, "entry size %u is not a multiple of 8 in %u..%u",
                               h->entry_size, GPT_ENTRY_MIN, FETCH_LABEL_GPT_MAX_ENTRY_SIZE);
    if (h->count > FETCH_LABEL_GPT_MAX_ENTRIES)
        return fetch_error_set(err, -EBADMSG, "%u entries, more than %u", h->count,
                               FETCH_LABEL_GPT_MAX_ENTRIES);
    array_len = (uint64_t)h->count * h->entry_size;
    if (array_len > FETCH_LABEL_GPT_MAX_ARRAY)
        return fetch_error_set(err, -EBADMSG, "entry array of %llu bytes, more than %u",
                               (unsigned long long)array_len, FETCH_LABEL_GPT_MAX_ARRAY);
    array_sectors = (array_len + FETCH_SECTOR - 1) / FETCH_SECTOR;
    array_end = h->array_lba + array_sectors; /* no wrap: checked against nsect first */
    if (h->array_lba == 0 || h->array_lba > nsect || array_sectors > nsect - h->array_lba ||
        (array_sectors && h->array_lba <= lba && lba < array_end) ||
        (array_sectors && h->array_lba <= h->last_usable && h->first_usable < array_end))
        return fetch_error_set(err, -EBADMSG,
                               "entry array at sectors %llu..+%llu is not inside the device "
                               "outside the header and the usable sectors",
                               (unsigned long long)h->array_lba, (unsigned long long)array_sectors);
    array = malloc(array_sectors ? array_sectors * FETCH_SECTOR : 1);
    if (!array)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if (array_sectors) {
        r = read_sectors(dev, h->array_lba, (size_t)array_sectors, array, err);
        if (r < 0) {
            free(array);
            return r;
        }
    }
    if ((uint32_t)crc32(0, array, (uInt)array_len) != array_crc) {
        free(array);
        return fetch_error_set(err, -EBADMSG, "entry array CRC mismatch");
    }
    h->array = array;
    return 0;
}

/* UTF-16LE (up to @units code units, NUL-terminated or not) to UTF-8; "" if invalid. */
static void utf16le_to_utf8(const uint8_t *in, size_t units, char *out, size_t out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < units; i++) {
        uint32_t c = le16(in + 2 * i);
        if (c == 0)
            break;
        if (c >= 0xD800 && c <= 0xDBFF) {
            uint32_t lo = i + 1 < units ? le16(in + 2 * (i + 1)) : 0;
            if (lo < 0xDC00 || lo > 0xDFFF)
                goto invalid;
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            i++;
        } else if (c >= 0xDC00 && c <= 0xDFFF) {
            goto invalid;
        }
        if (out_len - o < 5)
            goto invalid; /* cannot happen for 36 units in 160 bytes */
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xC0 | c >> 6);
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | c >> 12);
            out[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | c >> 18);
            out[o++] = (char)(0x80 | (c >> 12 & 0x3F));
            out[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    return;
invalid:
    out[0] = '\0';
}

static int gpt_entries(const struct gpt_header *h, struct fetch_label *l, fetch_error *err)
{
    static const uint8_t unused[16];
    struct span *spans;
    size_t cap = 0;
    int r = 0;

    spans = calloc(h->count ? h->count : 1, sizeof(*spans));
    if (!spans)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < h->count; i++) {
        const uint8_t *e = h->array + (size_t)i * h->entry_size;
        uint64_t first = le64(e + 32), last = le64(e + 40);
        struct fetch_partition *p;
        unsigned number = i + 1;

        if (memcmp(e, unused, 16) == 0)
            continue;
        if (first > last) {
            r = fetch_error_set(err, -EBADMSG,
                                "GPT: partition %u starts at sector %llu, after its last sector "
                                "%llu",
                                number, (unsigned long long)first, (unsigned long long)last);
            break;
        }
        if (first < h->first_usable) {
            r = fetch_error_set(err, -EBADMSG,
                                "GPT: partition %u starts at sector %llu, before the first "
                                "usable sector %llu",
                                number, (unsigned long long)first,
                                (unsigned long long)h->first_usable);
            break;
        }
        if (last > h->last_usable) {
            r = fetch_error_set(err, -EBADMSG,
                                "GPT: partition %u ends at sector %llu, past the device's last "
                                "usable sector %llu",
                                number, (unsigned long long)last,
                                (unsigned long long)h->last_usable);
            break;
        }
        r = add_partition(l, &cap, &p, err);
        if (r < 0)
            break;
        /* last_usable < device sectors: the byte offsets cannot overflow */
        p->number = number;
        p->start = first * FETCH_SECTOR;
        p->size = (last - first + 1) * FETCH_SECTOR;
        memcpy(p->type_guid, e, 16);
        memcpy(p->uuid, e + 16, 16);
        p->attributes = le64(e + 48);
        utf16le_to_utf8(e + 56, GPT_NAME_UNITS, p->name, sizeof(p->name));
        spans[l->count - 1] = (struct span){first, last + 1, number, false};
    }
    if (r == 0)
        r = check_overlaps("GPT", spans, l->count, err);
    free(spans);
    return r;
}

static int gpt_read(const struct fetch_dev *dev, struct fetch_label *l, fetch_error *err)
{
    uint64_t nsect = dev->size / FETCH_SECTOR;
    struct gpt_header h = {0};
    fetch_error primary_err = {""}, backup_err = {""};
    int r;

    l->kind = FETCH_LABEL_GPT;
    if (nsect < 2)
        return fetch_error_set(err, -EBADMSG,
                               "GPT: protective MBR on a device of %llu bytes, too small for a "
                               "GPT header",
                               (unsigned long long)dev->size);
    r = gpt_header_read(dev, 1, &h, &primary_err);
    if (r == -EBADMSG && nsect - 1 > 1) {
        r = gpt_header_read(dev, nsect - 1, &h, &backup_err);
        if (r == -EBADMSG)
            return fetch_error_set(err, r, "GPT: %s; backup header at sector %llu: %s",
                                   primary_err.msg, (unsigned long long)(nsect - 1),
                                   backup_err.msg);
        if (r < 0)
            return fetch_error_set(err, r, "%s", backup_err.msg);
        l->used_backup = true;
    } else if (r == -EBADMSG) {
        return fetch_error_set(err, r, "GPT: %s", primary_err.msg);
    } else if (r < 0) {
        return fetch_error_set(err, r, "%s", primary_err.msg);
    }
    memcpy(l->disk_guid, h.disk_guid, 16);
    r = gpt_entries(&h, l, err);
    free(h.array);
    return r;
}

/* ---- both ---- */

int fetch_label_read(const struct fetch_dev *dev, struct fetch_label **ret, fetch_error *err)
{
    uint8_t mbr[FETCH_SECTOR];
    struct fetch_label *l;
    bool gpt = false;
    int r;

    l = calloc(1, sizeof(*l));
    if (!l)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if (dev->size < FETCH_SECTOR)
        goto done;
    r = read_sectors(dev, 0, 1, mbr, err);
    if (r < 0)
        goto fail;
    if (!has_signature(mbr) || all_zero(mbr + MBR_TABLE, 4 * MBR_ENTRY_LEN))
        goto done;
    for (unsigned slot = 0; slot < 4; slot++) {
        struct mbr_entry e;
        mbr_entry(mbr, slot, &e);
        if (e.status != 0x00 && e.status != 0x80)
            goto done; /* a boot sector's code or BPB, not a partition table */
        if (e.type == MBR_TYPE_GPT)
            gpt = true;
    }
    r = gpt ? gpt_read(dev, l, err) : mbr_read(dev, mbr, l, err);
    if (r < 0)
        goto fail;
done:
    *ret = l;
    return 0;
fail:
    fetch_label_free(l);
    return r;
}

void fetch_label_free(struct fetch_label *l)
{
    if (!l)
        return;
    free(l->parts);
    free(l);
}
