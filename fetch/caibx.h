/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * casync/desync index files (casync.md §2): parsing and validation of a whole
 * .caibx/.caidx held in memory, and the image a .caibx describes. Both kinds
 * share the format; only the file suffix tells them apart.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image.h"

#define FETCH_CAIBX_TYPE_INDEX 0x96824d9c7b129ff9ull
#define FETCH_CAIBX_TYPE_TABLE 0xe75b9e112f17417dull
#define FETCH_CAIBX_TAIL_MARKER 0x4b4f050e5549ecd1ull
#define FETCH_CAIBX_FLAG_SHA512_256 0x2000000000000000ull
#define FETCH_CAIBX_CHUNK_LIMIT (128ull * 1024 * 1024) /* largest chunk_size_max */
#define FETCH_CAIBX_HEAD 64u                           /* INDEX header (48) + TABLE header (16) */
#define FETCH_CAIBX_ITEM 40u
#define FETCH_CAIBX_TAIL 40u
/* Index files larger than this are refused before being read (16M items). */
#define FETCH_CAIBX_FILE_MAX                                                                       \
    (FETCH_CAIBX_HEAD + FETCH_CAIBX_TAIL + 16ull * 1024 * 1024 * FETCH_CAIBX_ITEM)

struct fetch_caibx {
    uint64_t flags;
    uint64_t chunk_min, chunk_avg, chunk_max;
    enum fetch_digest_algo algo; /* from FETCH_CAIBX_FLAG_SHA512_256 */
    uint64_t size;               /* blob size: the last end offset, 0 when empty */
    size_t count;
    const uint8_t *items; /* count * 40 bytes {le64 end, id[32]}, inside buf */
    void *buf;
};

/*
 * Parses and validates a whole index file held in @buf (malloc()ed; ownership
 * passes to the index on success, freed on failure): every rule of the
 * reader checklist in casync.md (sizes, type constants, known feature bits,
 * 1 <= min <= avg <= max <= 128 MiB, strictly increasing end offsets, every
 * chunk <= chunk_size_max, exact tail, no trailing bytes). A @len above
 * FETCH_CAIBX_FILE_MAX is refused before anything is read.
 * -EBADMSG with a message naming the rule (and the item index where one is
 * at fault), or -ENOMEM. @ret is untouched on failure.
 */
int fetch_caibx_parse(void *buf, size_t len, struct fetch_caibx **ret, fetch_error *err);
void fetch_caibx_free(struct fetch_caibx *idx);

/* End offset and chunk id of item @i (< count). */
uint64_t fetch_caibx_end(const struct fetch_caibx *idx, size_t i);
const uint8_t *fetch_caibx_id(const struct fetch_caibx *idx, size_t i);

/*
 * Builds the image of a blob index: one extent per item, with the index's
 * digest algorithm and FETCH_CHUNK_CASYNC; an item whose id equals the digest
 * of its own length of zero bytes is a hole (the null chunk of
 * chunk_size_max, and any shorter zero chunk). stride is 0 (variable). The
 * zero digests take one hash pass over the longest chunk length. @idx may be
 * freed afterwards; fetch_image_free() frees the image.
 * -ENOMEM, or -EIO if hashing fails.
 */
int fetch_image_from_caibx(const struct fetch_caibx *idx, struct fetch_image **ret,
                           fetch_error *err);
