/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: casync index parsing, the image of a blob index and SEEK_DATA/SEEK_HOLE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/caibx.h"
#include "fetch/image.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_caibx *idx = NULL;
    struct fetch_image *img = NULL;
    void *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (fetch_caibx_parse(buf, size, &idx, NULL) < 0)
        return 0;
    /* what the parser promised */
    if (idx->chunk_min < 1 || idx->chunk_min > idx->chunk_avg || idx->chunk_avg > idx->chunk_max ||
        idx->chunk_max > FETCH_CAIBX_CHUNK_LIMIT)
        abort();
    if (fetch_image_from_caibx(idx, &img, NULL) == 0) {
        uint64_t at = 0, data_bytes = 0;
        size_t zeros = 0;
        if (img->count != idx->count || img->size != idx->size || img->stride != 0)
            abort();
        for (size_t i = 0; i < img->count; i++) {
            const struct fetch_extent *e = &img->extents[i];
            if (e->offset != at || e->length == 0 || e->length > idx->chunk_max ||
                e->offset + e->length != fetch_caibx_end(idx, i) ||
                memcmp(e->digest, fetch_caibx_id(idx, i), 32) != 0 ||
                e->kind != FETCH_CHUNK_CASYNC || e->algo != idx->algo)
                abort();
            at += e->length;
            if (e->zero)
                zeros++;
            else
                data_bytes += e->length;
        }
        if (at != img->size || zeros != img->zero_count || data_bytes != img->data_bytes)
            abort();
        uint64_t probes[] = {
            0, 1, img->size / 2, img->size ? img->size - 1 : 0, img->size, img->size + 1};
        for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
            int64_t d = fetch_image_seek(img, probes[i], SEEK_DATA);
            int64_t h = fetch_image_seek(img, probes[i], SEEK_HOLE);
            if (probes[i] < img->size) {
                const struct fetch_extent *e = &img->extents[fetch_image_find(img, probes[i])];
                if (probes[i] < e->offset || probes[i] >= e->offset + e->length)
                    abort();
                if (h < (int64_t)probes[i] || h > (int64_t)img->size)
                    abort();
            }
            if (d >= 0 && (d < (int64_t)probes[i] || d >= (int64_t)img->size))
                abort();
        }
        fetch_image_free(img);
    }
    fetch_caibx_free(idx);
    return 0;
}
