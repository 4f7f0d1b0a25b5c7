/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * casync/desync chunk store objects (casync.md §3): where a chunk lives and
 * how a fetched object becomes verified plaintext. Stateless, thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "digest.h"
#include "error.h"

/* "<prefix><4 hex>/<64 hex>.cacnk": prefix, 4 + 1 + 64 + 6 + NUL */
#define FETCH_CACNK_PATH_MAX(prefix_len) ((prefix_len) + 76)

/*
 * The store path of chunk @id below @prefix ("" or "default.castr/", ending in
 * '/' unless empty): with the ".cacnk" suffix when @compressed, else the raw
 * chunk's name without a suffix. -ENAMETOOLONG if @len is too small.
 */
int fetch_cacnk_path(const char *prefix, const uint8_t id[32], bool compressed, char *buf,
                     size_t len);

/* The largest stored object a chunk of @len plaintext bytes may be, for any codec. */
size_t fetch_cacnk_max_raw(size_t len);

/*
 * Decodes a fetched chunk object (ownership of the malloc()ed @raw passes to
 * this call) to exactly @len bytes whose @algo digest is @id. A compressed
 * object's codec is taken from its magic (zstd, xz, gzip; anything else is
 * -EBADMSG); a raw object (@compressed false) is the plaintext itself.
 * Output longer or shorter than @len, a broken stream or a digest mismatch is
 * -EBADMSG with a message; so are bytes after the end of an xz or gzip stream
 * or of the last zstd frame, and an xz stream needing more than 72 MiB of
 * decoder memory. Frame size fields are never trusted: the output buffer is
 * @len (+1) bytes whatever the stream claims. A 0-byte object is -ENOENT
 * (casync marks known missing chunks with a symlink to /dev/null); -ENOMEM.
 * On success @ret owns the plaintext (for a raw object, @raw itself; for a
 * zstd frame that stores the chunk as one raw block, as zstd does with data
 * it cannot compress, @raw too, with the bytes in place); @ret is untouched
 * on failure. Thread-safe (one zstd context per thread).
 */
int fetch_cacnk_decode(enum fetch_digest_algo algo, const uint8_t id[32], size_t len,
                       bool compressed, void *raw, size_t raw_len, fetch_data *ret,
                       fetch_error *err);
