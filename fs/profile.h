/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Read profiles ("boot profiles"): what a reader of an image reads first,
 * recorded once and replayed ahead of the reader the next time an image of
 * the same name is opened — the same snapshot after the cache was cleared,
 * or the next backup of the same disk.
 *
 *  - The key of a profile is the store and the image's name across
 *    snapshots (fetch_entry.group: "vm/100/drive-scsi0.img").
 *  - Recording: the first open of an image in a mount starts recording its
 *    reads (the FUSE reads only: not readahead, hydration or replay) for
 *    @window_s seconds: the start offsets of the extents they touch, in the
 *    order first touched. When the window ends (seen at a read, or at
 *    unmount) the list is saved in the cache's index
 *    (cache_disk_profile_save), the newest few kept per key.
 *  - Replay: that first open also loads the key's newest profile; the
 *    profile thread asks for the chunks of *this* image's extents at the
 *    recorded offsets (so a chunk that changed since is fetched, one that did
 *    not is a cache hit), in recorded order, at FETCH_PRIO_READAHEAD (demand
 *    reads always go first), at most FS_PROFILE_INFLIGHT chunks and
 *    FS_PROFILE_INFLIGHT_BYTES at a time. Holes, chunks in the disk cache
 *    and chunks the reader has read already are skipped.
 *  - Counters per image (status --json "profile"): extents recorded; chunks
 *    replayed (fetched by the replay), skipped (already there); hits
 *    (replayed chunks the reader then read within the window) and, when the
 *    window ends, useless ones (replayed, not read).
 *  - Profiles live in the disk cache: without one (--no-cache) nothing is
 *    recorded or replayed.
 * Thread-safe. fs_profile_read() is on every read's path: a pointer load
 * when the image is not recorded, one mutex otherwise.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "fs.h"

#define FS_PROFILE_WINDOW_S 60
/* Few bytes in flight: on a slow link the transfers share its bandwidth, so
 * many at once would delay the chunk the reader needs next; two 4 MiB chunks
 * keep a link with 50 ms round trips busy (many small casync chunks). */
#define FS_PROFILE_INFLIGHT 64
#define FS_PROFILE_INFLIGHT_BYTES (2 * FS_READAHEAD_UNIT)

struct fs_profiles;

/*
 * Profiles of the images of @ctx (borrowed; its chunks and disk cache are
 * used from the first open on), keyed under @store (the store's canonical
 * location), recorded for @window_s seconds after an image's first open.
 * Starts the profile thread. NULL on ENOMEM, or when @ctx has no disk cache.
 */
struct fs_profiles *fs_profiles_new(struct fs_ctx *ctx, const char *store, unsigned window_s);

/*
 * Stops replaying (outstanding chunks still complete: stop the pool right
 * after), saves the recordings still running (a reader that stopped before
 * its window ended) and ends the thread. Before the disk cache closes.
 * Idempotent, NULL-safe.
 */
void fs_profiles_stop(struct fs_profiles *p);
/* After fs_profiles_stop and the pool's end. NULL-safe. */
void fs_profiles_free(struct fs_profiles *p);

/* Image node @n was opened, with index @img (a reference the caller holds):
 * the first time, recording and replay start, the profile holding a
 * reference of its own to the index until its replay has ended (or no
 * profile was found to replay). */
void fs_profile_open(struct fs_profiles *p, struct fs_node *n, const struct fetch_image *img);

/* A reader read [@off, @off + @len) of image node @n, through index @img
 * (the open file's). */
void fs_profile_read(struct fs_profiles *p, struct fs_node *n, const struct fetch_image *img,
                     uint64_t off, size_t len);

/*
 * The profile state of node @n: {"state": "recording"|"recorded"|"off",
 * "replay": "none"|"replaying"|"done", "recorded", "window_s", "replayed",
 * "skipped", "hits", "useless", "replay_of"}; NULL when the node was not
 * opened (or on ENOMEM).
 */
json_object *fs_profile_json(struct fs_profiles *p, const struct fs_node *n);

/* The profile key of image node @n under @store, into @buf. */
void fs_profile_key(const char *store, const struct fs_node *n, char *buf, size_t len);
