/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "daemon.h"
#include "read.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fetch/buf.h"
#include "control.h"
#include "hydrate.h"
#include "key_opts.h"
#include "log.h"
#include "metrics.h"
#include "offline_store.h"
#include "profile.h"

struct fs_daemon {
    struct fs_ctx ctx;
    struct fetch_store **stores; /* STORE and its mirrors */
    size_t nstores;
    struct fetch_mirrors *mirrors; /* over @stores: index and blob loads */
    /* where chunks come from: the stores behind the metadata cache's
     * wrappers, or the chunk store */
    struct fetch_store **chunk_sources;
    struct fetch_store *chunk_store;
    /* over @chunk_sources (sharing @mirrors' active store), or the chunk store */
    struct fetch_mirrors *chunk_mirrors;
    char *chunk_prefix;
    struct fetch_pbs_key *key;
    char *offline;
    struct cache_disk_options cache;
    bool has_cache;
    size_t mem_cache;
    struct fetch_pool_config pool_cfg;
    bool hydrate;
    bool profile;
    unsigned profile_window_s;
    uint64_t bandwidth;
    unsigned stop_hydrate_ms;
    /* the stuck-read watchdog (fs_read_watch), once a second */
    pthread_t watchdog;
    bool watching;
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_cond;
    bool watch_stop;
    void (*on_reload)(void *arg); /* after the stores' credentials, on SIGHUP */
    void *on_reload_arg;

    struct fs_hydrator *hyd;
    struct fs_control *control;
    struct fs_metrics *metrics;         /* --metrics-listen, or NULL */
    struct fetch_pool_stats pool_stats; /* the pool's last, taken before it is freed */
    bool started, stopped, stuck;
};

/* The store chunks are fetched from: the real one behind a remembering store. */
static struct fetch_store *chunk_source(struct fetch_store *s)
{
    return fs_is_offline_store(s) ? fs_offline_store_inner(s) : s;
}

static void free_given(const struct fs_daemon_config *cfg)
{
    fs_tree_free(cfg->tree);
    fs_key_free(cfg->key);
    for (size_t i = 0; i < cfg->nstores; i++)
        fetch_store_free(cfg->stores[i]);
    fetch_store_free(cfg->chunk_store);
}

/* What fs_daemon_new allocates for itself (not the stores, tree and threads). */
static void free_own(struct fs_daemon *d)
{
    if (!d)
        return;
    fetch_mirrors_free(d->chunk_mirrors);
    fetch_mirrors_free(d->mirrors);
    free(d->stores);
    free(d->chunk_sources);
    free(d->chunk_prefix);
    free(d->offline);
    free((char *)d->cache.dir);
    free((char *)d->cache.store);
    free(d);
}

int fs_daemon_new(const struct fs_daemon_config *cfg, struct fs_daemon **ret)
{
    struct fs_daemon *d = calloc(1, sizeof(*d));
    if (!d || !(d->stores = calloc(cfg->nstores, sizeof(*d->stores))) ||
        !(d->chunk_sources = calloc(cfg->nstores, sizeof(*d->chunk_sources))) ||
        !(d->chunk_prefix = strdup(cfg->chunk_prefix ? cfg->chunk_prefix : "")) ||
        (cfg->offline && !(d->offline = strdup(cfg->offline))) ||
        (cfg->cache && !(d->cache.dir = strdup(cfg->cache->dir))) ||
        (cfg->cache && cfg->cache->store && !(d->cache.store = strdup(cfg->cache->store))) ||
        !(d->mirrors = fetch_mirrors_new(d->stores, cfg->nstores)) ||
        !(d->chunk_mirrors = cfg->chunk_store
                                 ? fetch_mirrors_new(&d->chunk_store, 1)
                                 : fetch_mirrors_new_like(d->mirrors, d->chunk_sources))) {
        free_own(d);
        free_given(cfg);
        return -ENOMEM;
    }
    memcpy(d->stores, cfg->stores, cfg->nstores * sizeof(*d->stores));
    d->nstores = cfg->nstores;
    d->chunk_store = cfg->chunk_store;
    d->key = cfg->key;
    for (size_t i = 0; i < d->nstores; i++)
        d->chunk_sources[i] = chunk_source(d->stores[i]);
    /* the catalog came from there: the others failed, or it was asked for */
    fetch_mirrors_set_active(d->mirrors, cfg->active_store);
    if (cfg->cache) {
        const char *dir = d->cache.dir, *store = d->cache.store;
        d->cache = *cfg->cache;
        d->cache.dir = dir;
        d->cache.store = store;
        d->has_cache = true;
    }
    d->mem_cache = cfg->mem_cache;
    d->pool_cfg = cfg->pool;
    d->hydrate = cfg->hydrate;
    d->profile = cfg->profile;
    d->profile_window_s = cfg->profile_window_s;
    d->bandwidth = cfg->bandwidth;
    d->stop_hydrate_ms = cfg->stop_hydrate_ms;

    pthread_mutex_init(&d->ctx.files_lock, NULL);
    pthread_mutex_init(&d->ctx.waits_lock, NULL);
    d->ctx.stuck_after_ms = (uint64_t)cfg->stuck_after_s * 1000;
    d->on_reload = cfg->on_reload;
    d->on_reload_arg = cfg->on_reload_arg;
    pthread_mutex_init(&d->watch_lock, NULL);
    pthread_cond_init(&d->watch_cond, NULL);
    d->ctx.tree = cfg->tree;
    d->ctx.offline = d->offline;
    d->ctx.readahead_max = cfg->readahead;
    d->ctx.direct_io = cfg->direct_io;
    /* index and blob loads go to the active store, then the others */
    fs_tree_set_mirrors(d->ctx.tree, d->mirrors);
    /* chunks come from STORE and its mirrors, or from the chunk store */
    d->ctx.stores = d->chunk_store ? &d->chunk_store : d->chunk_sources;
    d->ctx.nstores = d->chunk_store ? 1 : d->nstores;
    *ret = d;
    return 0;
}

struct fs_ctx *fs_daemon_ctx(struct fs_daemon *d)
{
    return &d->ctx;
}

static atomic_bool reload_asked;

void fs_daemon_ask_reload(void)
{
    atomic_store(&reload_asked, true);
}

/* SIGHUP: the credentials files of every store, read again; chunks found
 * missing are asked for again at their next read. */
static void reload(struct fs_daemon *d)
{
    size_t n = d->nstores + (d->chunk_store != NULL);
    fs_info("SIGHUP: reading the credentials files of the stores again, forgetting the chunks "
            "found missing");
    if (d->ctx.chunks)
        fs_chunks_forget_missing(d->ctx.chunks);
    for (size_t i = 0; i < n; i++) {
        struct fetch_store *s = i < d->nstores ? d->chunk_sources[i] : d->chunk_store;
        fetch_error err = {""};
        int r = fetch_store_reload(s, &err);
        if (r < 0)
            fs_warn("%s: credentials not reloaded (the old ones stay): %s", s->location,
                    err.msg[0] ? err.msg : strerror(-r));
        else if (s->ops->reload)
            fs_info("%s: credentials reloaded", s->location);
    }
    if (d->on_reload)
        d->on_reload(d->on_reload_arg);
}

/* Chunk buffers free this long give their pages back (fetch/buf.h): long
 * enough that a reader's pauses do not make it fault them in again. */
#define FS_BUF_IDLE_MS 5000

/* How often a daemon removes from its disk cache what processes killed or
 * crashed left there (cache_disk_tidy), the first time at start: the budget
 * does not count it (measured: 150 MiB of temp files per kill -9 during a
 * cold read of 4 MiB chunks). Temp files a minute old or younger are kept:
 * a daemon restarted at once tidies again when its predecessor's are a
 * minute old (on a small cache filesystem they could keep it full: nothing
 * was cached for the 10 minutes to the next tidy). */
#define FS_CACHE_TIDY_MS (10 * 60 * 1000)

/* Tidies; returns ms until the next tidy (@first: the one at start, which
 * comes again for what a predecessor left less than a minute before). */
static uint64_t tidy_cache(struct fs_daemon *d, bool first, bool *warned)
{
    struct cache_disk_tidy_stats st = {0};
    int r = cache_disk_tidy(d->ctx.disk, &st);
    if (r < 0 && !*warned) {
        *warned = true;
        fs_warn("disk cache: cannot remove what stopped processes left: %s", strerror(-r));
    }
    if (st.files)
        fs_info("disk cache: removed %llu file(s) (%llu MiB) that processes which stopped "
                "without finishing left behind",
                (unsigned long long)st.files, (unsigned long long)(st.bytes >> 20));
    return first && st.again_sec && (uint64_t)st.again_sec * 1000 < FS_CACHE_TIDY_MS
               ? (uint64_t)st.again_sec * 1000
               : FS_CACHE_TIDY_MS;
}

/* The housekeeping thread: the stuck-read watchdog once a second, chunk
 * buffers idle for a while give their memory back, what stopped processes
 * left in the disk cache is removed now and then, and what SIGHUP asks
 * for. */
static void *watchdog_main(void *arg)
{
    struct fs_daemon *d = arg;
    uint64_t next_tidy = fs_now_ms();
    bool tidy_warned = false, tidied = false;
    pthread_mutex_lock(&d->watch_lock);
    while (!d->watch_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&d->watch_cond, &d->watch_lock, &until);
        if (d->watch_stop)
            break;
        pthread_mutex_unlock(&d->watch_lock);
        fs_read_watch(&d->ctx, fs_now_ms());
        fetch_buf_trim(FS_BUF_IDLE_MS);
        if (d->ctx.disk && fs_now_ms() >= next_tidy) {
            next_tidy = fs_now_ms() + tidy_cache(d, !tidied, &tidy_warned);
            tidied = true;
        }
        if (atomic_exchange(&reload_asked, false))
            reload(d);
        pthread_mutex_lock(&d->watch_lock);
    }
    pthread_mutex_unlock(&d->watch_lock);
    return NULL;
}

int fs_daemon_start(struct fs_daemon *d, const char *mountpoint)
{
    struct fs_ctx *ctx = &d->ctx;
    int r;

    d->started = true;
    /* the key's page was locked before the fork that detached this process:
     * a lock is not inherited */
    fs_key_lock(d->key);
    if (d->has_cache && fs_open_cache(&d->cache, &ctx->disk) < 0)
        fs_warn("continuing without the disk cache");
    ctx->has_disk_cache = ctx->disk != NULL;
    ctx->pool = fetch_pool_new(d->chunk_mirrors, &d->pool_cfg);
    ctx->chunks = ctx->pool
                      ? fs_chunks_new(ctx->pool, d->mem_cache, ctx->disk, d->chunk_prefix, d->key)
                      : NULL;
    if (!ctx->chunks) {
        fs_err("cannot start the fetcher pool: out of memory");
        return -ENOMEM;
    }
    /* read profiles live in the disk cache's index */
    if (d->profile && ctx->disk &&
        !(ctx->profiles = fs_profiles_new(ctx, d->cache.store, d->profile_window_s)))
        fs_warn("no read profiles (out of memory)");
    /* hydration does not depend on the control socket: --hydrate works without it */
    if (!(d->hyd = fs_hydrator_new(ctx)))
        fs_warn("no hydration (out of memory)");
    else if (d->hydrate && (r = fs_hydrator_add_all(d->hyd, d->bandwidth)) < 0 && r != -ENOTSUP)
        fs_warn("--hydrate: %s", strerror(-r));
    if ((r = fs_control_start(ctx, d->hyd, mountpoint, &d->control)) < 0)
        fs_warn("no control socket (lazyimg status and hydrate will not work): %s", strerror(-r));
    if (!(d->watching = pthread_create(&d->watchdog, NULL, watchdog_main, d) == 0))
        fs_warn("no watchdog for stuck reads and no reload on SIGHUP (cannot start a thread)");
    if (d->metrics && (r = fs_metrics_start(d->metrics, ctx, d->hyd)) < 0)
        fs_warn("no metrics (--metrics-listen): %s", strerror(-r));
    return 0;
}

void fs_daemon_set_metrics(struct fs_daemon *d, struct fs_metrics *m)
{
    d->metrics = m;
}

int fs_daemon_stop(struct fs_daemon *d)
{
    struct fs_ctx *ctx = &d->ctx;
    if (d->stopped)
        return d->stuck ? -ETIMEDOUT : 0;
    d->stopped = true;
    /* it reads the status of everything below */
    fs_metrics_stop(d->metrics);
    if (d->watching) {
        pthread_mutex_lock(&d->watch_lock);
        d->watch_stop = true;
        pthread_cond_signal(&d->watch_cond);
        pthread_mutex_unlock(&d->watch_lock);
        pthread_join(d->watchdog, NULL);
        d->watching = false;
    }
    /* first what submits fetches: requests (one can start hydration), then
     * hydration itself */
    fs_control_stop(d->control);
    fs_hydrator_stop(d->hyd);
    /* replay stops; recordings still running are saved while the cache is open */
    fs_profiles_stop(ctx->profiles);
    /* the pool: its queued and running fetches complete at once with
     * -ECANCELED (the outstanding chunks hydration waits for); later
     * submits fail at once */
    fetch_pool_stop(ctx->pool);
    fs_chunks_stop(ctx->chunks); /* its reads of the disk cache */
    if (fs_hydrator_free(d->hyd, d->stop_hydrate_ms) < 0) {
        fs_warn("hydration did not stop within %u ms (a store request is stuck); exiting "
                "without waiting for it",
                d->stop_hydrate_ms);
        d->stuck = true;
    } else {
        d->hyd = NULL;
    }
    if (ctx->pool)
        fetch_pool_get_stats(ctx->pool, &d->pool_stats);
    if (!d->stuck) {
        /* before the session goes: completions still running answer their requests */
        fetch_pool_free(ctx->pool);
        ctx->pool = NULL;
    }
    return d->stuck ? -ETIMEDOUT : 0;
}

void fs_daemon_report(struct fs_daemon *d)
{
    struct fs_ctx *ctx = &d->ctx;
    const struct fetch_pool_stats *ps = &d->pool_stats;
    struct fs_chunks_stats st;

    if (!ctx->chunks)
        return;
    fs_chunks_get_stats(ctx->chunks, &st);
    fs_info("chunks loaded from the store %llu (%llu MiB), failed %llu; disk cache hits %llu, "
            "bad %llu, unreadable %llu; memory hits %llu, evictions %llu",
            (unsigned long long)st.loads, (unsigned long long)(st.load_bytes >> 20),
            (unsigned long long)st.load_errors, (unsigned long long)st.disk_hits,
            (unsigned long long)st.disk_bad, (unsigned long long)st.disk_read_errors,
            (unsigned long long)st.mem.hits, (unsigned long long)st.mem.evictions);
    fs_info("fetch requests %llu, retries %llu, failovers %llu, latency p50 %llu us, "
            "p99 %llu us; active store %s",
            (unsigned long long)ps->requests, (unsigned long long)ps->retries,
            (unsigned long long)ps->failovers, (unsigned long long)fetch_pool_latency_pct(ps, 50),
            (unsigned long long)fetch_pool_latency_pct(ps, 99),
            ctx->stores[ps->active_store]->location);
    if (ctx->disk) {
        struct cache_disk_stats ds;
        cache_disk_sync(ctx->disk);
        cache_disk_get_stats(ctx->disk, &ds);
        fs_info("disk cache %s: %llu inserted, %llu not inserted (%llu for lack of space on its "
                "filesystem, %llu for lack of room within --cache-size, %llu failed%s%s), %llu "
                "evicted, %llu entries, %llu SQLite write transactions",
                d->cache.dir, (unsigned long long)ds.inserts, (unsigned long long)ds.insert_skipped,
                (unsigned long long)ds.enospc, (unsigned long long)ds.over_budget,
                (unsigned long long)ds.insert_errors,
                ds.insert_errors && ds.last_insert_failure ? ": " : "",
                ds.insert_errors && ds.last_insert_failure ? strerror(-ds.last_insert_failure) : "",
                (unsigned long long)ds.evictions, (unsigned long long)ds.entries,
                (unsigned long long)ds.sqlite_writes);
    }
}

void fs_daemon_sync(struct fs_daemon *d)
{
    if (d->ctx.disk)
        cache_disk_sync(d->ctx.disk);
}

void fs_daemon_free(struct fs_daemon *d)
{
    struct fs_ctx *ctx;
    if (!d)
        return;
    ctx = &d->ctx;
    if (fs_daemon_stop(d) < 0)
        return; /* a thread may still use all of it */
    fs_control_free(d->control);
    fs_metrics_free(d->metrics);
    fs_profiles_free(ctx->profiles); /* the pool is gone: no replay completes any more */
    ctx->profiles = NULL;
    /* first: the disk cache's writer still holds decoded chunks of the chunk layer */
    fs_chunks_stop(ctx->chunks);
    cache_disk_close(ctx->disk);
    fs_chunks_free(ctx->chunks);
    fs_files_free_all(ctx);
    pthread_mutex_destroy(&ctx->files_lock);
    pthread_mutex_destroy(&ctx->waits_lock);
    pthread_mutex_destroy(&d->watch_lock);
    pthread_cond_destroy(&d->watch_cond);
    fs_tree_free(ctx->tree);
    fs_key_free(d->key);
    for (size_t i = 0; i < d->nstores; i++)
        fetch_store_free(d->stores[i]);
    fetch_store_free(d->chunk_store);
    free_own(d);
}
