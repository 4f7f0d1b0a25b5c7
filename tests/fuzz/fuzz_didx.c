/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: PBS dynamic index parsing and the image of its stream. The
 * harness writes the right checksum into each input first, so that mutations
 * reach the entry checks behind it (the checksum rule has its unit test).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/didx.h"
#include "fetch/digest.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_didx *idx = NULL;
    struct fetch_image *img = NULL;
    uint8_t *buf = malloc(size ? size : 1);
    uint64_t at = 0;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (size >= FETCH_DIDX_HEAD &&
        fetch_sha256(buf + FETCH_DIDX_HEAD, size - FETCH_DIDX_HEAD, buf + 32) < 0) {
        free(buf);
        return 0;
    }
    if (fetch_didx_parse(buf, size, &idx, NULL) < 0)
        return 0;
    if (fetch_image_from_didx(idx, NULL, &img, NULL) == 0) {
        if (img->count != idx->count || img->size != idx->size)
            abort();
        for (size_t i = 0; i < img->count; i++) {
            const struct fetch_extent *e = &img->extents[i];
            if (e->offset != at || e->length == 0 || e->length > FETCH_DIDX_CHUNK_MAX ||
                e->kind != FETCH_CHUNK_PBS)
                abort();
            at += e->length;
        }
        if (at != img->size)
            abort();
        if (img->size && fetch_image_find(img, img->size - 1) != img->count - 1)
            abort();
        fetch_image_free(img);
    }
    fetch_didx_free(idx);
    return 0;
}
