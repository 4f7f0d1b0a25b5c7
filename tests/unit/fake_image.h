/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An image for tests of fs/ over the fake pool (fake_pool.h): @n chunks of
 * @chunk bytes as a Proxmox fixed index gives them, each with its digest, its
 * object name and its stored form (a plain PBS blob) for fake_pool_complete().
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "fetch/image.h"
#include "fs/tree.h"

struct fake_image {
    size_t n;
    uint32_t chunk;
    uint8_t *source; /* the image's bytes */
    uint8_t **blobs; /* each chunk as stored */
    size_t *blob_lens;
    char (*names)[65]; /* each chunk's digest in hex: the end of its object path */
    struct fetch_extent *extents;
    struct fetch_image img;
    struct fs_node node; /* an image node with @img loaded, and referenced once */
};

/*
 * Chunk @hole (-1: none) is all zeros, a zero extent (never fetched); chunk
 * @repeat (-1: none) has the bytes of chunk @repeat_of (one digest, two
 * places); the others are random from @seed + their index.
 */
void fake_image_init(struct fake_image *fi, size_t n, uint32_t chunk, long hole, long repeat,
                     long repeat_of, uint64_t seed);
void fake_image_free(struct fake_image *fi);
