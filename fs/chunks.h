/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk access for the read path. Composes, in this order:
 *  1. the in-memory set of decoded chunks (cache/memcache.h, single-flight);
 *  2. the persistent disk cache (cache/diskcache.h), whose hits are read
 *     straight from its data file, only the bytes asked for, CRC-checked;
 *  3. the store (fetch/pbs.h): fetched, CRC-checked, decompressed and
 *     digest-verified once however many readers want the chunk at the same
 *     time, then queued for the disk cache off the reply path.
 * A disk-cache entry that fails its check is dropped and the chunk is fetched
 * from the store instead: never served. Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cache/diskcache.h"
#include "cache/memcache.h"
#include "fetch/error.h"
#include "fetch/image.h"
#include "fetch/store.h"

struct fs_chunks;

struct fs_chunks_stats {
    uint64_t loads;       /* chunks read from the store and verified */
    uint64_t load_errors; /* missing or corrupt */
    uint64_t load_bytes;  /* plaintext bytes of loaded chunks */
    uint64_t disk_hits;   /* reads answered from the disk cache */
    uint64_t disk_bad;    /* disk cache entries that failed their check */
    struct cache_mem_stats mem;
};

/*
 * @store and @disk are borrowed; @disk may be NULL (no disk cache).
 * @mem_budget: bytes of decoded chunks kept in memory.
 */
struct fs_chunks *fs_chunks_new(struct fetch_store *store, size_t mem_budget,
                                struct cache_disk *disk);
void fs_chunks_free(struct fs_chunks *c);

/*
 * Reads [@off, @off + @len) of non-zero extent @e (@off + @len <= e->length).
 * On success *ret_bytes points at the bytes: either inside a decoded chunk
 * held in memory (*ret_ref is set: drop it with fs_chunks_put once the bytes
 * are no longer needed) or in @scratch (at least @len bytes; *ret_ref NULL).
 * Errors: -ENOENT (missing), -EBADMSG (corrupt), -EIO, -ENOMEM; @err says
 * which chunk and why.
 */
int fs_chunks_read(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                   uint8_t *scratch, const uint8_t **ret_bytes, struct cache_mem_entry **ret_ref,
                   fetch_error *err);
void fs_chunks_put(struct fs_chunks *c, struct cache_mem_entry *entry);

void fs_chunks_get_stats(struct fs_chunks *c, struct fs_chunks_stats *ret);
