/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon behind a mount: everything that serves the FUSE session. It
 * owns the tree, the stores, the fetcher pool, the chunk layer, the disk
 * cache, the hydrator and the control socket; fs/mount.c keeps the options,
 * the FUSE session and detaching from the terminal.
 *
 * Lifecycle, in this order (daemon.c does each step in the order given):
 *   fs_daemon_new      before the fork (no threads): takes the tree and the
 *                      stores
 *   fs_daemon_start    after the fork, with the session mounted: the disk
 *                      cache (a warning and none if it cannot be opened),
 *                      the pool, the chunk layer, the read profiles
 *                      (with a disk cache), the hydrator (queueing every
 *                      image with --hydrate), the control socket, the
 *                      stuck-read watchdog, the metrics server
 *                      (fs_daemon_set_metrics)
 *   (the FUSE loop runs; its userdata is fs_daemon_ctx)
 *   fs_daemon_stop     after the loop: the metrics server (it reads the
 *                      pool, the caches, the hydrator and the tree), the
 *                      watchdog, the control socket (no request can
 *                      start anything), hydration and profile replay asked to
 *                      stop (running recordings saved), the pool (queued and running fetches
 *                      complete with -ECANCELED, later submits fail), the
 *                      chunk layer's reads of the disk cache, hydration
 *                      (waited for, bounded), the pool freed
 *   (the session is unmounted: the mount is gone before the disk cache is
 *   flushed, which may take seconds)
 *   fs_daemon_report   the day's figures in the log; flushes the disk cache
 *   fs_daemon_free     the profiles, the disk cache closed (its writer
 *                      finishes), then the chunk layer, the files, the tree,
 *                      the key and the stores
 * When hydration did not stop (a store request is stuck), fs_daemon_stop
 * says so: the caller syncs (fs_daemon_sync) and exits without freeing,
 * since the stuck thread may still use any of it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/diskcache.h"
#include "fetch/pool.h"
#include "fs.h"

struct fs_daemon;

struct fs_daemon_config {
    struct fs_tree *tree;        /* taken */
    struct fetch_store **stores; /* taken: STORE and its mirrors, in order */
    size_t nstores;
    size_t active_store;             /* the one to try first: where the catalog was found */
    struct fetch_store *chunk_store; /* taken: chunks come from here instead, or NULL */
    const char *chunk_prefix;        /* where chunks live below the stores' roots */
    /* taken: the key of encrypted archives (the tree's repository borrows
     * it; wiped and freed after the tree), or NULL */
    struct fetch_pbs_key *key;
    /* the disk cache (the daemon opens it after the fork); NULL: none */
    const struct cache_disk_options *cache;
    const char *offline; /* why catalog metadata came from the cache, or NULL */
    size_t mem_cache;    /* bytes of decoded chunks in memory */
    unsigned readahead;  /* FS_READAHEAD_UNITs per stream */
    bool direct_io;      /* images bypass the page cache */
    struct fetch_pool_config pool;
    bool hydrate;              /* queue every image at start */
    bool profile;              /* record and replay read profiles (fs/profile.h) */
    unsigned profile_window_s; /* how long after an image's first open reads are recorded */
    uint64_t bandwidth;        /* its cap, bytes per second (0: none) */
    unsigned stop_hydrate_ms;  /* how long fs_daemon_stop waits for hydration */
    unsigned stuck_after_s;    /* reads waiting longer are logged (0: never) */
    /* called on SIGHUP (on the daemon's housekeeping thread) after the
     * stores' credentials files were read again; may be NULL */
    void (*on_reload)(void *arg);
    void *on_reload_arg;
};

/*
 * Takes what @cfg gives (freed here on failure too) and copies the rest.
 * 0 or -ENOMEM.
 */
int fs_daemon_new(const struct fs_daemon_config *cfg, struct fs_daemon **ret);

/* The FUSE session's userdata: lives as long as @d. */
struct fs_ctx *fs_daemon_ctx(struct fs_daemon *d);

/*
 * Starts serving the mount at @mountpoint (absolute, canonical). 0, or
 * -ENOMEM when the pool or the chunk layer cannot start (logged). What only
 * degrades the mount (no disk cache, no control socket, --hydrate refused)
 * is a warning.
 */
int fs_daemon_start(struct fs_daemon *d, const char *mountpoint);

/*
 * Gives the daemon the metrics server's listening sockets (fs/metrics.h),
 * bound before the fork; it serves them from fs_daemon_start on and frees
 * them with the daemon. Before fs_daemon_start.
 */
struct fs_metrics;
void fs_daemon_set_metrics(struct fs_daemon *d, struct fs_metrics *m);

/* Stops what fetches (see above). 0, or -ETIMEDOUT: hydration is stuck. */
int fs_daemon_stop(struct fs_daemon *d);

/* Logs what the mount did and flushes the disk cache (after a started daemon). */
void fs_daemon_report(struct fs_daemon *d);

/* Flushes the disk cache to disk (before exiting without fs_daemon_free). */
void fs_daemon_sync(struct fs_daemon *d);

/* Async-signal-safe (the SIGHUP handler): within a second the daemon reads
 * the credentials files of its stores again (fetch_store_reload), without
 * unmounting, and calls the config's on_reload. */
void fs_daemon_ask_reload(void);

/* Frees everything (after the FUSE session is destroyed). NULL-safe. */
void fs_daemon_free(struct fs_daemon *d);
