/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A view: a file made of ranges of an image (fetch/image.h), such as a
 * partition (one range) or an LVM2 logical volume (linear and striped
 * segments, fetch/lvm.h). Offsets in the view map to offsets in the image
 * piece by piece; holes, data and reads are the image's. Immutable once
 * built.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

struct fetch_view_seg {
    uint64_t start, length; /* in the view; segments are contiguous from 0 */
    /* 0: the segment cannot be read (its reads fail with EIO, it counts as
     * data), unless @zero; 1: linear, at base[0]; more: striped in
     * stripe_size units */
    unsigned stripe_count;
    uint64_t stripe_size; /* bytes (striped) */
    uint64_t *base;       /* stripe_count offsets in the image */
    bool zero;            /* (stripe_count 0) zeros, a hole: LVM2's "zero" segments */
};

struct fetch_view {
    uint64_t size;
    size_t count;
    struct fetch_view_seg *segs;
};

/* A view of [@off, @off + @len) of an image, which must hold it. -ENOMEM. */
int fetch_view_span(uint64_t off, uint64_t len, struct fetch_view **ret);
void fetch_view_free(struct fetch_view *v); /* NULL-safe */

/*
 * Where view offset @off (< size) is: its image offset and how many bytes
 * from there on are contiguous in the image (at least 1, never past the
 * view's end). 0; 1 in a zero segment (*@run bytes of zeros, no image
 * offset); -EIO in a segment that cannot be read.
 */
int fetch_view_map(const struct fetch_view *v, uint64_t off, uint64_t *img_off, uint64_t *run);

/* Checks that every piece of @v lies inside an image of @size bytes, that
 * the segments tile the view and that striped ones are whole rows (each
 * stripe one contiguous area): 0 or -EINVAL. */
int fetch_view_check(const struct fetch_view *v, uint64_t size);

/* lseek(2) SEEK_DATA (3) / SEEK_HOLE (4) in @v over @img, as fetch_image_seek;
 * unreadable segments count as data, zero segments as holes. */
int64_t fetch_view_seek(const struct fetch_view *v, const struct fetch_image *img, uint64_t off,
                        int whence);

/* Bytes of @v that are data in @img (not holes). */
uint64_t fetch_view_data_bytes(const struct fetch_view *v, const struct fetch_image *img);
