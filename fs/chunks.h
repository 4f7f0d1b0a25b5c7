/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk access for the read path: composes the in-memory decoded-chunk set
 * (cache/memcache.h, single-flight) with the store (fetch/pbs.h). A chunk is
 * fetched, CRC-checked, decompressed and digest-verified at most once while
 * it stays in memory, however many readers want it at the same time.
 * Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cache/memcache.h"
#include "fetch/error.h"
#include "fetch/image.h"
#include "fetch/store.h"

struct fs_chunks;

struct fs_chunks_stats {
    uint64_t loads;       /* chunks read from the store and verified */
    uint64_t load_errors; /* missing or corrupt */
    uint64_t load_bytes;  /* plaintext bytes of loaded chunks */
    struct cache_mem_stats mem;
};

/* @store is borrowed. @mem_budget: bytes of decoded chunks kept in memory. */
struct fs_chunks *fs_chunks_new(struct fetch_store *store, size_t mem_budget);
void fs_chunks_free(struct fs_chunks *c);

/*
 * Gets the verified plaintext of non-zero extent @e. On success *ret holds a
 * reference (drop it with fs_chunks_put); the bytes are exactly e->length
 * long. Errors: -ENOENT (missing), -EBADMSG (corrupt), -EIO, -ENOMEM; @err
 * says which chunk and why (the thread that loaded the chunk fills it; a
 * waiter on a failed load only gets the errno).
 */
int fs_chunks_get(struct fs_chunks *c, const struct fetch_extent *e, struct cache_mem_entry **ret,
                  fetch_error *err);
void fs_chunks_put(struct fs_chunks *c, struct cache_mem_entry *entry);

void fs_chunks_get_stats(struct fs_chunks *c, struct fs_chunks_stats *ret);
