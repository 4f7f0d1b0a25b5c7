/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A byte stream archive decoders read from: a pxar or catar archive behind a
 * dynamic index, read through the chunk layer (fs/), or a buffer (tests,
 * fuzzing). Decoders read small ranges at known offsets; they never assume
 * the whole stream is in memory.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct fetch_stream {
    uint64_t size;
    /* Reads exactly @len bytes at @off (the decoder keeps off + len <= size):
     * 0, or -errno (-EIO for a chunk that cannot be had) with @err set. */
    int (*read)(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err);
    void *ctx;
};

/* A stream over @len bytes at @buf (borrowed). */
void fetch_stream_of_buffer(struct fetch_stream *s, const void *buf, size_t len);
