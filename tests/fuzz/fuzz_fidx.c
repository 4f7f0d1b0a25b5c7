/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: fixed index parsing, extent map and SEEK_DATA/SEEK_HOLE.
 * In the libFuzzer build a custom mutator aims mutations at the header fields
 * or the digest list (not the 4016 reserved bytes) and then repairs the image
 * size and the index checksum, so mutated digest lists reach the extent map.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/fidx.h"
#include "fetch/image.h"
#include "fetch/pbs_format.h"
#include "fuzz.h"
#include "repair.h"

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
    if (fetch_image_from_fidx(idx, NULL, &img, NULL) == 0) {
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
    fetch_fidx_free(idx);
    return 0;
}

#ifdef FUZZ_LIBFUZZER
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    enum { FIELDS = PBS_FIDX_OFF_SIZE, FIELDS_LEN = 16 };

    if (size < PBS_FIDX_HDR_LEN || max_size <= PBS_FIDX_HDR_LEN || seed % 4 == 0) {
        size = LLVMFuzzerMutate(data, size, max_size);
    } else if (seed % 4 == 1) {
        /* image size and chunk size, in place */
        uint8_t f[FIELDS_LEN];
        size_t n;
        memcpy(f, data + FIELDS, FIELDS_LEN);
        n = LLVMFuzzerMutate(f, FIELDS_LEN, FIELDS_LEN);
        memcpy(data + FIELDS, f, n);
    } else {
        /* the digest list (may grow or shrink) */
        size = PBS_FIDX_HDR_LEN + LLVMFuzzerMutate(data + PBS_FIDX_HDR_LEN, size - PBS_FIDX_HDR_LEN,
                                                   max_size - PBS_FIDX_HDR_LEN);
    }
    /* leave 1 in 16 unrepaired: the checksum and length checks stay covered */
    if ((seed >> 2) % 16 != 0)
        fuzz_fidx_repair(data, size, (seed >> 6) % 4 != 0);
    return size;
}
#endif
