/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "pbs_format.h"

int fetch_image_from_fidx(const struct fetch_fidx *idx, struct fetch_image **ret, fetch_error *err)
{
    uint8_t zero_full[32], zero_last[32];
    struct fetch_image *img;
    uint64_t last_len;
    int r;

    img = calloc(1, sizeof(*img));
    if (!img)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    img->extents = calloc(idx->count ? idx->count : 1, sizeof(*img->extents));
    if (!img->extents) {
        free(img);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    img->size = idx->size;
    img->stride = idx->chunk_size;
    img->count = idx->count;

    last_len = idx->count ? idx->size - (uint64_t)(idx->count - 1) * idx->chunk_size : 0;
    if ((r = fetch_sha256_zeros(idx->chunk_size, zero_full)) < 0 ||
        (r = fetch_sha256_zeros(last_len, zero_last)) < 0) {
        fetch_image_free(img);
        return fetch_error_set(err, r, "SHA-256 failed");
    }
    for (size_t i = 0; i < idx->count; i++) {
        struct fetch_extent *e = &img->extents[i];
        const uint8_t *zero = i + 1 == idx->count ? zero_last : zero_full;
        e->offset = (uint64_t)i * idx->chunk_size;
        e->length = (uint32_t)(i + 1 == idx->count ? last_len : idx->chunk_size);
        e->kind = FETCH_CHUNK_PBS;
        e->algo = FETCH_DIGEST_SHA256;
        memcpy(e->digest, idx->digests + i * PBS_DIGEST_LEN, sizeof(e->digest));
        e->zero = memcmp(e->digest, zero, sizeof(e->digest)) == 0;
        if (e->zero)
            img->zero_count++;
        else
            img->data_bytes += e->length;
    }
    *ret = img;
    return 0;
}

void fetch_image_free(struct fetch_image *img)
{
    if (!img)
        return;
    free(img->extents);
    free(img);
}

size_t fetch_image_find(const struct fetch_image *img, uint64_t offset)
{
    size_t lo = 0, hi = img->count;
    if (img->stride)
        return (size_t)(offset / img->stride);
    /* first extent whose end is beyond offset */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct fetch_extent *e = &img->extents[mid];
        if (e->offset + e->length <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int64_t fetch_image_seek(const struct fetch_image *img, uint64_t offset, int whence)
{
    bool want_zero = whence == SEEK_HOLE;
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    if (offset >= img->size)
        return -ENXIO;
    for (size_t i = fetch_image_find(img, offset); i < img->count; i++) {
        if (img->extents[i].zero == want_zero)
            return (int64_t)(offset > img->extents[i].offset ? offset : img->extents[i].offset);
    }
    return want_zero ? (int64_t)img->size : -ENXIO;
}
