/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A store that remembers: a fetch_store whose list() and get() go to a real
 * store and keep what it answered in the metadata cache (cache/metacache.h),
 * and answer from that cache when the real store cannot be reached. Used for
 * catalogs, manifests, indexes and blobs (the tree's stores); chunks never go
 * through it (they have the chunk cache, and the pool uses the real store).
 * What comes from the cache goes through the same parsers, which verify it.
 *
 * Listings are cached as "list:<dir>", objects as "get:<path>".
 * Thread-safe (the counters are atomic; the real store and the cache are).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "fetch/store.h"

struct cache_meta;

enum fs_offline_mode {
    /* the store answered at mount: ask it first, the cache after a network error */
    FS_OFFLINE_NO,
    /* the store was unreachable at mount: the cache first, then the store
     * (it may be back) */
    FS_OFFLINE_DOWN,
    /* --offline: the cache only, the store is never contacted */
    FS_OFFLINE_FORCED,
};

/*
 * Whether a store error means "not reachable now" (a refused, reset or timed
 * out connection, an unreachable host or network, a busy server), for which
 * cached metadata may stand in. Never -ENOENT, -EACCES or a damaged object.
 */
bool fs_offline_error_is_network(int r);

/*
 * Wraps @inner (ownership passes, also on failure; NULL only with
 * FS_OFFLINE_FORCED) with @meta (ownership passes). @location is the store's
 * location for messages (copied). With FS_OFFLINE_FORCED the wrapper gets an
 * inner store of its own that fails every request at once (see
 * fs_offline_store_inner). -ENOMEM.
 */
int fs_offline_store_new(const char *location, struct fetch_store *inner, struct cache_meta *meta,
                         enum fs_offline_mode mode, struct fetch_store **ret);

/*
 * A store that fails every request at once with -ENETDOWN (--offline: chunks
 * not in the cache). NULL when out of memory.
 */
struct fetch_store *fs_offline_null_store_new(const char *location);

/* The real store of wrapper @s (borrowed), for chunk transfers. */
struct fetch_store *fs_offline_store_inner(struct fetch_store *s);

/*
 * How many listings/objects @s answered from the cache so far, and the write
 * time of the oldest of them (seconds since the epoch; 0 when none).
 */
void fs_offline_store_stats(struct fetch_store *s, uint64_t *ret_served, int64_t *ret_oldest);

/* Makes what @s cached so far durable (cache_meta_sync); logs a failure. */
void fs_offline_store_sync(struct fetch_store *s);

/* Whether @s is a wrapper made by fs_offline_store_new. */
bool fs_is_offline_store(const struct fetch_store *s);
