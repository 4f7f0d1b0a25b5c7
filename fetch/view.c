/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Files made of ranges of an image (see view.h). */
#include "view.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int fetch_view_span(uint64_t off, uint64_t len, struct fetch_view **ret)
{
    struct fetch_view *v = calloc(1, sizeof(*v));
    struct fetch_view_seg *s = calloc(1, sizeof(*s));
    uint64_t *base = malloc(sizeof(*base));

    if (!v || !s || !base) {
        free(v);
        free(s);
        free(base);
        return -ENOMEM;
    }
    *base = off;
    *s = (struct fetch_view_seg){.start = 0, .length = len, .stripe_count = 1, .base = base};
    *v = (struct fetch_view){.size = len, .count = 1, .segs = s};
    *ret = v;
    return 0;
}

void fetch_view_free(struct fetch_view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->count; i++)
        free(v->segs[i].base);
    free(v->segs);
    free(v);
}

/* The segment holding @off (< size). */
static const struct fetch_view_seg *seg_of(const struct fetch_view *v, uint64_t off)
{
    size_t lo = 0, hi = v->count;
    while (lo + 1 < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->segs[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &v->segs[lo];
}

int fetch_view_map(const struct fetch_view *v, uint64_t off, uint64_t *img_off, uint64_t *run)
{
    const struct fetch_view_seg *s = seg_of(v, off);
    uint64_t in = off - s->start, left = s->length - in, unit, within;

    if (s->stripe_count == 0) {
        *img_off = 0;
        *run = left;
        return s->zero ? 1 : -EIO;
    }
    if (s->stripe_count == 1) {
        *img_off = s->base[0] + in;
        *run = left;
        return 0;
    }
    /* unit u of the segment is on stripe u % count, row u / count of it */
    unit = in / s->stripe_size;
    within = in % s->stripe_size;
    *img_off = s->base[unit % s->stripe_count] + unit / s->stripe_count * s->stripe_size + within;
    *run = s->stripe_size - within < left ? s->stripe_size - within : left;
    return 0;
}

int fetch_view_check(const struct fetch_view *v, uint64_t size)
{
    uint64_t at = 0;
    for (size_t i = 0; i < v->count; i++) {
        const struct fetch_view_seg *s = &v->segs[i];
        uint64_t per_stripe;

        if (s->start != at || s->length == 0 || s->length > v->size - at)
            return -EINVAL;
        at += s->length;
        if (s->stripe_count == 0)
            continue;
        if (s->stripe_count == 1) {
            per_stripe = s->length;
        } else {
            /* whole rows only (as dm-stripe): each stripe is one contiguous area */
            uint64_t row = s->stripe_size * s->stripe_count;
            if (s->stripe_size == 0 || row / s->stripe_count != s->stripe_size ||
                s->length % row != 0)
                return -EINVAL;
            per_stripe = s->length / s->stripe_count;
        }
        for (unsigned k = 0; k < s->stripe_count; k++)
            if (s->base[k] > size || per_stripe > size - s->base[k])
                return -EINVAL;
    }
    return at == v->size ? 0 : -EINVAL;
}

/*
 * SEEK_DATA/SEEK_HOLE inside striped segment @s from @in (bytes into it):
 * each stripe is one area of the image, searched once from the row @in
 * falls in; the nearest answer in view order wins. The offset into the
 * segment, or -1 when there is none before its end.
 */
static int64_t seek_striped(const struct fetch_view_seg *s, const struct fetch_image *img,
                            uint64_t in, int whence)
{
    uint64_t n = s->stripe_count, u = s->stripe_size, rows = s->length / (u * n);
    uint64_t unit = in / u, row = unit / n, k0 = unit % n, best = UINT64_MAX;

    for (uint64_t k = 0; k < n; k++) {
        uint64_t r = k < k0 ? row + 1 : row, w = k == k0 ? in % u : 0, from, limit;
        int64_t q;

        if (r >= rows)
            continue;
        from = s->base[k] + r * u + w;
        limit = s->base[k] + rows * u;
        q = fetch_image_seek(img, from, whence);
        if (q >= 0 && (uint64_t)q < limit) {
            uint64_t rel = (uint64_t)q - s->base[k];
            uint64_t pos = (rel / u * n + k) * u + rel % u;
            if (pos < best)
                best = pos;
        }
    }
    return best == UINT64_MAX ? -1 : (int64_t)best;
}

int64_t fetch_view_seek(const struct fetch_view *v, const struct fetch_image *img, uint64_t off,
                        int whence)
{
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    if (off >= v->size)
        return -ENXIO;
    for (const struct fetch_view_seg *s = seg_of(v, off); s < v->segs + v->count;
         s++, off = s < v->segs + v->count ? s->start : off) {
        uint64_t in = off - s->start;
        int64_t pos;

        if (s->stripe_count == 0) {
            if (s->zero ? whence == SEEK_HOLE : whence == SEEK_DATA)
                return (int64_t)off; /* zeros: a hole; unreadable: not one */
            continue;
        }
        if (s->stripe_count == 1) {
            pos = fetch_image_seek(img, s->base[0] + in, whence);
            pos =
                pos >= 0 && (uint64_t)pos < s->base[0] + s->length ? pos - (int64_t)s->base[0] : -1;
        } else {
            pos = seek_striped(s, img, in, whence);
        }
        if (pos >= 0)
            return (int64_t)(s->start + (uint64_t)pos);
    }
    return whence == SEEK_HOLE ? (int64_t)v->size : -ENXIO;
}

/* Bytes of [@a, @b) of @img that are data. */
static uint64_t image_data(const struct fetch_image *img, uint64_t a, uint64_t b)
{
    uint64_t data = 0;
    for (size_t i = a < img->size ? fetch_image_find(img, a) : img->count;
         i < img->count && img->extents[i].offset < b; i++) {
        const struct fetch_extent *e = &img->extents[i];
        uint64_t from = a > e->offset ? a : e->offset;
        uint64_t to = b < e->offset + e->length ? b : e->offset + e->length;
        if (!e->zero)
            data += to - from;
    }
    return data;
}

uint64_t fetch_view_data_bytes(const struct fetch_view *v, const struct fetch_image *img)
{
    uint64_t data = 0;
    for (size_t i = 0; i < v->count; i++) {
        const struct fetch_view_seg *s = &v->segs[i];
        uint64_t per_stripe = s->stripe_count ? s->length / s->stripe_count : 0;
        if (s->stripe_count == 0 && !s->zero)
            data += s->length; /* unreadable: not a hole */
        for (unsigned k = 0; k < s->stripe_count; k++)
            data += image_data(img, s->base[k], s->base[k] + per_stripe);
    }
    return data;
}
