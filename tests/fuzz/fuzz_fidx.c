/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: fixed index parsing, extent map and SEEK_DATA/SEEK_HOLE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/fidx.h"
#include "fetch/image.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_fidx *idx = NULL;
    struct fetch_image *img = NULL;
    void *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (fetch_fidx_parse(buf, size, &idx, NULL) < 0)
        return 0;
    if (fetch_image_from_fidx(idx, &img, NULL) == 0) {
        uint64_t probes[] = {0, 1, img->size / 2, img->size ? img->size - 1 : 0, img->size,
                             img->size + 1};
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
    fetch_fidx_free(idx);
    return 0;
}
