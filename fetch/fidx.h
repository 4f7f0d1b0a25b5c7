/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PBS fixed index (.fidx) parsing and validation (pbs.md §3). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct fetch_fidx {
    uint8_t uuid[16];
    int64_t ctime;
    uint8_t csum[32]; /* SHA-256 of the digest array, verified */
    uint64_t size;
    uint64_t chunk_size;
    size_t count;
    const uint8_t *digests; /* count * 32 bytes, inside the owned buffer */
    void *buf;
};

/*
 * Parses and validates a whole .fidx file held in @buf (malloc()ed; ownership
 * passes to the index on success and is freed on failure). Checks: length,
 * magic, chunk_size a power of two in [64 KiB, 4 MiB], digest count against
 * the file length, and the index checksum. Errors: -EBADMSG, -ENOMEM.
 */
int fetch_fidx_parse(void *buf, size_t len, struct fetch_fidx **ret, fetch_error *err);
void fetch_fidx_free(struct fetch_fidx *idx);
