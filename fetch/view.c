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
        return -EIO;
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
            uint64_t unit_bytes = s->stripe_size * s->stripe_count;
            if (s->stripe_size == 0 || unit_bytes / s->stripe_count != s->stripe_size)
                return -EINVAL;
            /* the rows each stripe holds, the last one possibly partial */
            per_stripe = (s->length + unit_bytes - 1) / unit_bytes * s->stripe_size;
        }
        for (unsigned k = 0; k < s->stripe_count; k++)
            if (s->base[k] > size || per_stripe > size - s->base[k])
                return -EINVAL;
    }
    return at == v->size ? 0 : -EINVAL;
}

int64_t fetch_view_seek(const struct fetch_view *v, const struct fetch_image *img, uint64_t off,
                        int whence)
{
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    if (off >= v->size)
        return -ENXIO;
    while (off < v->size) {
        uint64_t at, run;
        int64_t pos;

        if (fetch_view_map(v, off, &at, &run) < 0) {
            if (whence == SEEK_DATA)
                return (int64_t)off; /* unreadable: not a hole */
            off += run;
            continue;
        }
        pos = fetch_image_seek(img, at, whence);
        if (pos >= 0 && (uint64_t)pos < at + run)
            return (int64_t)(off + ((uint64_t)pos - at));
        off += run;
    }
    return whence == SEEK_HOLE ? (int64_t)v->size : -ENXIO;
}

uint64_t fetch_view_data_bytes(const struct fetch_view *v, const struct fetch_image *img)
{
    uint64_t off = 0, data = 0;

    while (off < v->size) {
        uint64_t at, run, end;
        if (fetch_view_map(v, off, &at, &run) < 0) {
            data += run;
            off += run;
            continue;
        }
        end = at + run;
        for (size_t i = fetch_image_find(img, at); i < img->count && img->extents[i].offset < end;
             i++) {
            const struct fetch_extent *e = &img->extents[i];
            uint64_t from = at > e->offset ? at : e->offset;
            uint64_t to = end < e->offset + e->length ? end : e->offset + e->length;
            if (!e->zero)
                data += to - from;
        }
        off += run;
    }
    return data;
}
