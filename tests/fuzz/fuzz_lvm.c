/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: LVM2 scan (labels, metadata areas, metadata text, LV maps).
 * The input is the first bytes of up to four devices, separated by the
 * marker "#NEXTDEV" (each capped at 1 MiB, zeros beyond, 32 MiB devices).
 * Every map returned is checked: segments contiguous from 0, stripes inside
 * their device. In the libFuzzer build a custom mutator repairs the label,
 * metadata header and text checksums after mutating, so mutated text reaches
 * the parser.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/lvm.h"
#include "fuzz.h"

#define MARKER "#NEXTDEV"
#define MARKER_LEN 8
#define DEVS_MAX 4
#define HEAD_MAX ((size_t)1 << 20)
#define DEV_SIZE ((uint64_t)32 << 20)

struct part {
    const uint8_t *p;
    size_t len;
};

static size_t split(const uint8_t *data, size_t size, struct part *parts)
{
    size_t n = 0, at = 0;
    while (n < DEVS_MAX) {
        const uint8_t *m =
            n + 1 < DEVS_MAX ? memmem(data + at, size - at, MARKER, MARKER_LEN) : NULL;
        size_t end = m ? (size_t)(m - data) : size;
        parts[n].p = data + at;
        parts[n].len = end - at > HEAD_MAX ? HEAD_MAX : end - at;
        n++;
        if (!m)
            break;
        at = end + MARKER_LEN;
    }
    return n;
}

static int part_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    const struct part *pt = ctx;
    (void)err;
    if (off > DEV_SIZE || len > DEV_SIZE - off)
        abort(); /* the scanner read past the device */
    memset(buf, 0, len);
    if (off < pt->len)
        memcpy(buf, pt->p + off, pt->len - (size_t)off < len ? pt->len - (size_t)off : len);
    return 0;
}

static void check(const struct fetch_lvm *l, size_t n)
{
    if (l->pv_count > n)
        abort();
    for (size_t v = 0; v < l->vg_count; v++) {
        const struct fetch_lvm_vg *vg = &l->vgs[v];
        if (vg->error[0] && (vg->lv_count || vg->lvs))
            abort();
        for (size_t i = 0; i < vg->lv_count; i++) {
            const struct fetch_lvm_lv *lv = &vg->lvs[i];
            uint64_t at = 0;
            for (size_t k = 0; k < lv->seg_count; k++) {
                const struct fetch_lvm_seg *s = &lv->segs[k];
                if (s->start != at || s->length == 0 || s->length % vg->extent_size)
                    abort();
                at += s->length;
                if (s->type == FETCH_LVM_UNSUPPORTED) {
                    if (s->stripe_count || s->stripes)
                        abort();
                    continue;
                }
                if (s->stripe_count == 0 || s->length % s->stripe_count ||
                    (s->type == FETCH_LVM_LINEAR) != (s->stripe_count == 1))
                    abort();
                for (unsigned t = 0; t < s->stripe_count; t++) {
                    const struct fetch_lvm_stripe *st = &s->stripes[t];
                    if (st->dev == SIZE_MAX)
                        continue;
                    if (st->dev >= n || st->offset > DEV_SIZE ||
                        s->length / s->stripe_count > DEV_SIZE - st->offset)
                        abort();
                }
            }
            if (at != lv->size)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct part parts[DEVS_MAX];
    struct fetch_dev devs[DEVS_MAX];
    struct fetch_lvm *l = NULL;
    size_t n = split(data, size, parts);

    for (size_t i = 0; i < n; i++)
        devs[i] = (struct fetch_dev){.size = DEV_SIZE, .read = part_read, .ctx = &parts[i]};
    if (fetch_lvm_scan(devs, n, &l, NULL) < 0)
        abort(); /* reads never fail here, and the input cannot exhaust memory */
    check(l, n);
    fetch_lvm_free(l);
    return 0;
}

#ifdef FUZZ_LIBFUZZER
static uint32_t crc_lvm(const uint8_t *p, size_t len)
{
    uint32_t c = 0xf597a6cf;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Fixes the checksums of one device's label, first metadata header and text, where present. */
static void repair(uint8_t *d, size_t len, bool text_too)
{
    for (size_t s = 0; s < 4 && (s + 1) * 512 <= len; s++) {
        uint8_t *l = d + 512 * s;
        uint64_t content, pos, mda, msize, roff, rsize;
        if (memcmp(l, "LABELONE", 8) != 0)
            continue;
        content = (uint32_t)le64((uint8_t[8]){l[20], l[21], l[22], l[23]});
        pos = content + 40;
        /* skip the data areas to the first metadata area */
        while (pos + 16 <= 512 && (le64(l + pos) || le64(l + pos + 8)))
            pos += 16;
        pos += 16;
        if (content < 512 && pos + 16 <= 512) {
            mda = le64(l + pos);
            if (mda && mda < len && len - mda >= 512) {
                uint8_t *h = d + mda;
                msize = le64(h + 32);
                roff = le64(h + 40);
                rsize = le64(h + 48);
                if (text_too && msize <= len - mda && roff >= 512 && roff < msize &&
                    rsize <= msize - 512) {
                    uint64_t first = roff + rsize > msize ? msize - roff : rsize;
                    uint8_t *t = malloc(rsize ? rsize : 1);
                    if (t) {
                        memcpy(t, h + roff, first);
                        memcpy(t + first, h + 512, rsize - first);
                        put_le32(h + 56, crc_lvm(t, rsize));
                        free(t);
                    }
                }
                put_le32(h, crc_lvm(h + 4, 508));
            }
        }
        put_le32(l + 16, crc_lvm(l + 20, 492));
        return;
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    struct part parts[DEVS_MAX];
    size_t n;

    size = LLVMFuzzerMutate(data, size, max_size);
    /* leave 1 in 8 unrepaired: the checksum checks stay covered */
    if (seed % 8 == 0)
        return size;
    n = split(data, size, parts);
    for (size_t i = 0; i < n; i++)
        repair((uint8_t *)parts[i].p, parts[i].len, (seed >> 3) % 8 != 0);
    return size;
}
#endif
