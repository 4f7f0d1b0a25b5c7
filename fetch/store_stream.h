/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A byte stream (fetch/stream.h) over an image whose chunks are read from a
 * store directly, synchronously, each decoded and verified, the last few
 * kept: for commands that read an archive's metadata without a mount
 * (`lazyimg find`). Counts what it fetched. Not thread-safe.
 */
#pragma once

#include <stdint.h>

#include "blob.h"
#include "chunk.h"
#include "image.h"
#include "store.h"
#include "stream.h"

#define FETCH_STORE_STREAM_SLOTS 8

struct fetch_store_stream {
    struct fetch_stream s; /* what decoders read */
    struct fetch_store *store;
    const struct fetch_image *img;
    struct fetch_chunk_ctx cctx;
    struct {
        size_t extent; /* SIZE_MAX: empty */
        fetch_data data;
        uint64_t used;
    } slots[FETCH_STORE_STREAM_SLOTS];
    uint64_t clock;
    uint64_t chunks, bytes; /* fetched from the store: chunks, stored bytes */
};

/* @store, @img and what @cctx points at borrowed: where chunks live below
 * the store's root and the key of encrypted ones (fetch/chunk.h). */
void fetch_store_stream_init(struct fetch_store_stream *ss, struct fetch_store *store,
                             const struct fetch_chunk_ctx *cctx, const struct fetch_image *img);
void fetch_store_stream_release(struct fetch_store_stream *ss);
