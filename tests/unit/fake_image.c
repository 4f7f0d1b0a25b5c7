/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fake_image.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fetch/digest.h"
#include "fixtures.h"

void fake_image_init(struct fake_image *fi, size_t n, uint32_t chunk, long hole, long repeat,
                     long repeat_of, uint64_t seed)
{
    memset(fi, 0, sizeof(*fi));
    fi->n = n;
    fi->chunk = chunk;
    fi->source = calloc(n, chunk);
    fi->blobs = calloc(n, sizeof(*fi->blobs));
    fi->blob_lens = calloc(n, sizeof(*fi->blob_lens));
    fi->names = calloc(n, sizeof(*fi->names));
    fi->extents = calloc(n, sizeof(*fi->extents));
    assert_true(fi->source && fi->blobs && fi->blob_lens && fi->names && fi->extents);
    for (size_t i = 0; i < n; i++) {
        struct fetch_extent *e = &fi->extents[i];
        uint8_t *c = fi->source + i * chunk;
        *e = (struct fetch_extent){.offset = i * (uint64_t)chunk,
                                   .length = chunk,
                                   .kind = FETCH_CHUNK_PBS,
                                   .algo = FETCH_DIGEST_SHA256,
                                   .zero = (long)i == hole};
        if ((long)i == repeat)
            memcpy(c, fi->source + (size_t)repeat_of * chunk, chunk);
        else if ((long)i != hole)
            fx_fill_random(c, chunk, seed + i);
        fx_sha256(c, chunk, e->digest);
        fx_hex(e->digest, 32, fi->names[i]);
        fi->blobs[i] = fx_blob_plain(c, chunk, &fi->blob_lens[i]);
    }
    fi->img = (struct fetch_image){.size = n * (uint64_t)chunk,
                                   .stride = chunk,
                                   .count = n,
                                   .extents = fi->extents,
                                   .data_bytes = (n - (hole >= 0)) * (uint64_t)chunk,
                                   .zero_count = hole >= 0};
    fi->node = (struct fs_node){.kind = FS_NODE_IMAGE, .name = (char *)"img", .image = &fi->img};
    pthread_mutex_init(&fi->node.lock, NULL);
    fi->node.size = fi->img.size;
    fi->node.data_bytes = fi->img.data_bytes;
    atomic_store(&fi->node.loaded, true); /* no tree: the index is "loaded" */
    /* the fixture's own reference: reads that wait add theirs, and the last
     * one never drops (there is no tree to keep unused indexes) */
    atomic_store(&fi->node.image_refs, 1);
}

void fake_image_free(struct fake_image *fi)
{
    for (size_t i = 0; i < fi->n; i++)
        free(fi->blobs[i]);
    free(fi->blobs);
    free(fi->blob_lens);
    free(fi->names);
    free(fi->extents);
    free(fi->source);
    pthread_mutex_destroy(&fi->node.lock);
}
