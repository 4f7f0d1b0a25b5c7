/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one in-memory shape every backup format reduces to: an image is a size
 * and an ordered, gap-free list of extents. A zero extent (its digest is the
 * digest of that many zero bytes) is a hole: served as zeros, never fetched.
 * An image is immutable once built, so readers need no lock.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "fidx.h"

/* How an extent's chunk is named in its store and decoded (fetch/chunk.h). */
enum fetch_chunk_kind {
    FETCH_CHUNK_PBS = 0,    /* .chunks/<4 hex>/<64 hex>, a PBS blob */
    FETCH_CHUNK_CASYNC = 1, /* <4 hex>/<64 hex>.cacnk (or raw without suffix) */
};

struct fetch_extent {
    uint64_t offset;
    uint32_t length;
    bool zero;
    uint8_t kind; /* enum fetch_chunk_kind */
    uint8_t algo; /* enum fetch_digest_algo of digest */
    uint8_t digest[32];
};

struct fetch_image {
    uint64_t size;
    uint64_t stride; /* fixed extent length (all but the last), or 0 if variable */
    size_t count;
    struct fetch_extent *extents;
    uint64_t data_bytes; /* bytes in non-zero extents */
    size_t zero_count;
};

/*
 * Builds an image from a fixed index (PBS chunks). @id_key: NULL for a plain
 * archive; for an encrypted one the key's id key (fetch/pbs_key.h), which
 * keys the digests (FETCH_DIGEST_SHA256_KEYED) and so the zero chunk's.
 * -ENOMEM, or -EIO if hashing fails.
 */
int fetch_image_from_fidx(const struct fetch_fidx *idx, const uint8_t *id_key,
                          struct fetch_image **ret, fetch_error *err);
void fetch_image_free(struct fetch_image *img);

/*
 * Reads [@off, @off + @len) of @img (inside it) into @buf: holes as zeros,
 * each piece of a data extent through @chunk (@from: where the piece starts
 * in the chunk). 0, or the first error of @chunk.
 */
typedef int (*fetch_image_chunk_fn)(void *ctx, const struct fetch_extent *e, uint32_t from,
                                    size_t len, uint8_t *dst, fetch_error *err);
int fetch_image_read(const struct fetch_image *img, uint64_t off, void *buf, size_t len,
                     fetch_image_chunk_fn chunk, void *ctx, fetch_error *err);

/* An item of a variable-size chunk list (casync .caibx, PBS .didx): {le64
 * end offset, digest[32]}. */
#define FETCH_IMAGE_ITEM 40u

/*
 * Builds the image of @count items with strictly increasing end offsets and
 * chunks of at most 128 MiB (the caller's parser checked both): one extent
 * per item, of chunk kind @kind (enum fetch_chunk_kind) and digest algorithm
 * @algo (enum fetch_digest_algo); an item whose digest is that of its own
 * length of zero bytes is a hole. stride is 0 (variable). The zero digests
 * take one hash pass over the longest chunk. @id_key: the key of
 * FETCH_DIGEST_SHA256_KEYED digests, else NULL. -ENOMEM, -EINVAL (a keyed
 * algorithm without a key), or -EIO if hashing fails.
 */
int fetch_image_from_items(const uint8_t *items, size_t count, uint8_t kind, uint8_t algo,
                           const uint8_t *id_key, struct fetch_image **ret, fetch_error *err);

/* Index of the extent holding @offset; @offset must be < size. */
size_t fetch_image_find(const struct fetch_image *img, uint64_t offset);

/*
 * lseek(2) semantics for SEEK_DATA (whence 3) and SEEK_HOLE (whence 4): the
 * resulting offset, or -ENXIO when @offset >= size or no data follows.
 * End of file counts as a hole.
 */
int64_t fetch_image_seek(const struct fetch_image *img, uint64_t offset, int whence);
