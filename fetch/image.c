/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "pbs_format.h"

/* The @algo digests of zero runs of @n ascending lengths: see
 * fetch_digest_zeros_ladder(); keyed digests take @id_key. */
static int zeros_ladder(uint8_t algo, const uint8_t *id_key, const uint64_t *lens, size_t n,
                        uint8_t (*out)[32])
{
    if (algo == FETCH_DIGEST_SHA256_KEYED)
        return id_key ? fetch_digest_zeros_ladder_keyed(id_key, lens, n, out) : -EINVAL;
    return fetch_digest_zeros_ladder((enum fetch_digest_algo)algo, lens, n, out);
}

int fetch_image_from_fidx(const struct fetch_fidx *idx, const uint8_t *id_key,
                          struct fetch_image **ret, fetch_error *err)
{
    uint8_t zeros[2][32], algo = id_key ? FETCH_DIGEST_SHA256_KEYED : FETCH_DIGEST_SHA256;
    const uint8_t *zero_full, *zero_last;
    struct fetch_image *img;
    uint64_t last_len, lens[2];
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

    /* the zero chunk of each length a chunk here has: the full one and the last */
    last_len = idx->count ? idx->size - (uint64_t)(idx->count - 1) * idx->chunk_size : 0;
    lens[0] = last_len < idx->chunk_size ? last_len : idx->chunk_size;
    lens[1] = idx->chunk_size;
    if ((r = zeros_ladder(algo, id_key, lens, lens[0] < lens[1] ? 2 : 1, zeros)) < 0) {
        fetch_image_free(img);
        return fetch_error_set(err, r, "SHA-256 failed");
    }
    zero_full = lens[0] < lens[1] ? zeros[1] : zeros[0];
    zero_last = zeros[0];
    for (size_t i = 0; i < idx->count; i++) {
        struct fetch_extent *e = &img->extents[i];
        const uint8_t *zero = i + 1 == idx->count ? zero_last : zero_full;
        e->offset = (uint64_t)i * idx->chunk_size;
        e->length = (uint32_t)(i + 1 == idx->count ? last_len : idx->chunk_size);
        e->kind = FETCH_CHUNK_PBS;
        e->algo = algo;
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

int fetch_image_read(const struct fetch_image *img, uint64_t off, void *buf, size_t len,
                     fetch_image_chunk_fn chunk, void *ctx, fetch_error *err)
{
    uint64_t end = off + len;
    uint8_t *dst = buf;
    if (len == 0)
        return 0;
    for (size_t i = fetch_image_find(img, off); i < img->count && img->extents[i].offset < end;
         i++) {
        const struct fetch_extent *e = &img->extents[i];
        uint64_t from = off > e->offset ? off : e->offset;
        uint64_t to = end < e->offset + e->length ? end : e->offset + e->length;
        int r;
        if (e->zero)
            memset(dst + (from - off), 0, (size_t)(to - from));
        else if ((r = chunk(ctx, e, (uint32_t)(from - e->offset), (size_t)(to - from),
                            dst + (from - off), err)) < 0)
            return r;
    }
    return 0;
}

/* ---- variable-size chunk lists (casync .caibx, PBS .didx) ---------------- */

static uint64_t item_end(const uint8_t *items, size_t i)
{
    const uint8_t *p = items + i * FETCH_IMAGE_ITEM;
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/*
 * The distinct chunk lengths of @items, ascending, and the digest of that many
 * zero bytes for each: every length a zero chunk of this index could have.
 */
static int zero_digests(const uint8_t *items, size_t count, uint8_t algo, const uint8_t *id_key,
                        uint64_t **ret_lens, uint8_t (**ret_digests)[32], size_t *ret_n)
{
    uint64_t *lens, prev = 0;
    uint8_t(*digests)[32];
    size_t n = 0;
    int r;

    lens = malloc((count ? count : 1) * sizeof(*lens));
    if (!lens)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        uint64_t end = item_end(items, i);
        lens[i] = end - prev;
        prev = end;
    }
    qsort(lens, count, sizeof(*lens), cmp_u64);
    for (size_t i = 0; i < count; i++)
        if (n == 0 || lens[i] != lens[n - 1])
            lens[n++] = lens[i];
    digests = malloc((n ? n : 1) * sizeof(*digests));
    if (!digests) {
        free(lens);
        return -ENOMEM;
    }
    r = zeros_ladder(algo, id_key, lens, n, digests);
    if (r < 0) {
        free(digests);
        free(lens);
        return r;
    }
    *ret_lens = lens;
    *ret_digests = digests;
    *ret_n = n;
    return 0;
}

int fetch_image_from_items(const uint8_t *items, size_t count, uint8_t kind, uint8_t algo,
                           const uint8_t *id_key, struct fetch_image **ret, fetch_error *err)
{
    struct fetch_image *img;
    uint64_t *lens = NULL, prev = 0;
    uint8_t(*zero)[32] = NULL;
    size_t nlens = 0;
    int r;

    img = calloc(1, sizeof(*img));
    if (!img)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    img->extents = calloc(count ? count : 1, sizeof(*img->extents));
    if (!img->extents) {
        free(img);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    img->size = count ? item_end(items, count - 1) : 0;
    img->stride = 0;
    img->count = count;

    r = zero_digests(items, count, algo, id_key, &lens, &zero, &nlens);
    if (r < 0) {
        fetch_image_free(img);
        return fetch_error_set(err, r, r == -ENOMEM ? "out of memory" : "hashing failed");
    }
    for (size_t i = 0; i < count; i++) {
        struct fetch_extent *e = &img->extents[i];
        uint64_t end = item_end(items, i);
        const uint64_t *at;

        e->offset = prev;
        e->length = (uint32_t)(end - prev); /* the parsers bound chunks (<= 128 MiB) */
        e->kind = kind;
        e->algo = algo;
        memcpy(e->digest, items + i * FETCH_IMAGE_ITEM + 8, sizeof(e->digest));
        at = bsearch(&(uint64_t){end - prev}, lens, nlens, sizeof(*lens), cmp_u64);
        e->zero = at && memcmp(e->digest, zero[at - lens], sizeof(e->digest)) == 0;
        if (e->zero)
            img->zero_count++;
        else
            img->data_bytes += e->length;
        prev = end;
    }
    free(zero);
    free(lens);
    *ret = img;
    return 0;
}
