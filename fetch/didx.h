/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PBS dynamic index (.didx, pbs.md §4): parsing and validation of a whole
 * file held in memory. A .didx describes a byte stream (a pxar archive, its
 * metadata or payload half, or a catalog) as chunks of varying size; its
 * image (fetch_image_from_didx) is read through the same chunk layer as a
 * disk image.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image.h"

#define FETCH_DIDX_HEAD 4096u
#define FETCH_DIDX_ITEM 40u /* {le64 end, digest[32]} */
/* The chunker's largest chunk: 4 x its 4 MiB default average (pbs.md §4). */
#define FETCH_DIDX_CHUNK_MAX (16u * 1024 * 1024)
/* Index files larger than this are refused before being read (16M items). */
#define FETCH_DIDX_FILE_MAX (FETCH_DIDX_HEAD + 16ull * 1024 * 1024 * FETCH_DIDX_ITEM)

struct fetch_didx {
    uint8_t uuid[16];
    int64_t ctime;
    uint8_t csum[32]; /* SHA-256 of the entries, verified */
    uint64_t size;    /* the stream's length: the last end offset, 0 when empty */
    size_t count;
    const uint8_t *items; /* count * 40 bytes, inside buf */
    void *buf;
};

/*
 * Parses and validates a whole .didx held in @buf (malloc()ed; ownership
 * passes to the index on success, freed on failure): length (header, whole
 * entries, at most FETCH_DIDX_FILE_MAX), magic, the index checksum,
 * strictly increasing end offsets, every chunk at most FETCH_DIDX_CHUNK_MAX.
 * -EBADMSG with a message naming the rule (and the entry at fault), or
 * -ENOMEM. @ret is untouched on failure.
 */
int fetch_didx_parse(void *buf, size_t len, struct fetch_didx **ret, fetch_error *err);
void fetch_didx_free(struct fetch_didx *idx);

/*
 * The stream's image: one extent per entry (FETCH_CHUNK_PBS, SHA-256, keyed
 * with @id_key for an encrypted archive, else @id_key is NULL), an entry
 * whose digest is that of its length of zero bytes a hole. @idx may be
 * freed afterwards. -ENOMEM, or -EIO if hashing fails.
 */
int fetch_image_from_didx(const struct fetch_didx *idx, const uint8_t *id_key,
                          struct fetch_image **ret, fetch_error *err);
