/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The status of a mount as one JSON object, the reply to the control
 * socket's "status" request (fs/control.h); `lazyimg status` prints it, and
 * its --help (fs/status_cmd.c) documents the fields to users:
 *   stores[]        {location, active}: where chunks come from, in order
 *   offline, offline_reason
 *   reads           reads of image files since the mount: requests, bytes
 *                   (answered), errors (requests answered with an error),
 *                   waits (requests that waited for a chunk to be fetched
 *                   from the store or loaded from the disk cache by a
 *                   loader: answered with it, or with an error; a cached
 *                   chunk read on the request's own thread is no wait),
 *                   wait_us (their waits, summed: from reaching the missing
 *                   chunk to the answer)
 *   fetch           the fetcher pool: inflight, queued{demand,readahead,
 *                   hydrate}, decoding, requests, retries, failovers, errors,
 *                   bytes, mb_per_s (since the previous status), latency_us
 *                   {p50, p99, count, sum, histogram [[upper bound, count]…]
 *                   (the buckets that are not empty; bucket i of the pool's
 *                   FETCH_LAT_BUCKETS has upper bound 2 << i)}
 *   cache           memory_hits, memory_misses, memory_evictions, disk_hits,
 *                   disk_loads, disk_hints, loads, load_bytes, load_errors,
 *                   hit_rate,
 *                   memory_entries, memory_bytes, disk (null without a disk
 *                   cache: entries, bytes, bytes_apparent, budget, hits,
 *                   misses (its lookups), inserts, insert_skipped, evictions,
 *                   bad_entries, enospc, sqlite_writes, direct_writes,
 *                   not_handed_over)
 *   memory          rss_bytes, rss_peak_bytes (the daemon's VmRSS and VmHWM),
 *                   chunk_buffers (fetch/buf.h: in_use, kept (free slots that
 *                   keep their pages for reuse), kept_bytes, slot_allocs,
 *                   heap_allocs, released)
 *   indexes         image indexes in memory (fs/tree.h): loaded,
 *                   loaded_bytes, in_use (held by open files, waiting reads,
 *                   hydration, profiles), unused, unused_bytes (kept for a
 *                   later open), unused_max_bytes (the bound:
 *                   --index-memory), loads (since the mount, reloads
 *                   included), evictions (unused ones freed beyond the bound)
 *   images[]        the images whose index is in memory now (in use, or
 *                   unused and kept: opened, stat()ed or hydrated lately;
 *                   loading the others here would fetch every index): path,
 *                   size, zero_bytes, data_bytes, cached_bytes, hydrated_pct,
 *                   hydration (fs/hydrate.h), profile
 *   report          what this caller's reports cost (the control socket's
 *                   and the metrics endpoint's are separate): calls (status
 *                   objects made), counts (images' cached_bytes counted
 *                   afresh: the first time, and after rows were removed
 *                   from the disk cache), lookups (chunks looked up in the
 *                   disk cache's index for them), rows (rows of the index
 *                   read instead: all of them where it has far fewer rows
 *                   than the image chunks, and those added since a count)
 */
#pragma once

#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "fs.h"

struct fs_hydrator;
struct fs_status_memo;

/*
 * What one caller keeps between its status objects (not thread-safe; zeroed
 * to start, prev_time set): the previous sample, for mb_per_s; each image's
 * cached_bytes, which extents it found cached, and where the disk cache's
 * index stood when it counted (cache_disk_mark): reused while the cache
 * holds the same rows, brought up to date from the rows added since when
 * rows were only added (counting looks every chunk up: about 1 µs each, 21
 * ms for a 1 GiB casync image, seconds for a large one, at every scrape
 * while an image is being cached).
 */
struct fs_status_state {
    uint64_t prev_bytes;
    struct timespec prev_time;
    struct fs_status_memo *memo; /* the images reported by the last call */
    size_t memo_count, memo_cap;
    uint64_t calls;
    uint64_t counts;  /* images counted afresh (not from their memo) */
    uint64_t lookups; /* chunks looked up to count cached bytes */
    uint64_t rows;    /* rows of the disk cache's index read to count them */
};

/* The status object (the caller puts it), or NULL when out of memory.
 * @hyd may be NULL (no hydration: no "hydration" members). */
json_object *fs_status_json(const struct fs_ctx *ctx, struct fs_hydrator *hyd,
                            struct fs_status_state *st);

/* Frees what @st holds (not @st). */
void fs_status_state_release(struct fs_status_state *st);
