/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "status.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/diskcache.h"
#include "fetch/buf.h"
#include "fetch/digest.h"
#include "fetch/pool.h"
#include "hydrate.h"
#include "profile.h"

static int add_u64(json_object *o, const char *key, uint64_t v)
{
    return json_object_object_add(o, key, json_object_new_uint64(v));
}

/* A double with @decimals digits after the point in the JSON text. */
static int add_double(json_object *o, const char *key, double v, int decimals)
{
    char num[64];
    snprintf(num, sizeof(num), "%.*f", decimals, v);
    return json_object_object_add(o, key, json_object_new_double_s(v, num));
}

static json_object *stores_json(const struct fs_ctx *ctx, const struct fetch_pool_stats *ps)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; arr && i < ctx->nstores; i++) {
        json_object *s = json_object_new_object();
        if (!s)
            break;
        json_object_object_add(s, "location", json_object_new_string(ctx->stores[i]->location));
        json_object_object_add(s, "active", json_object_new_boolean(i == ps->active_store));
        if (ctx->stores[i]->ops->direct_reads)
            add_u64(s, "direct_reads", ctx->stores[i]->ops->direct_reads(ctx->stores[i]));
        json_object_array_add(arr, s);
    }
    return arr;
}

static json_object *reads_json(const struct fs_ctx *ctx)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    add_u64(o, "requests", atomic_load_explicit(&ctx->reads, memory_order_relaxed));
    add_u64(o, "bytes", atomic_load_explicit(&ctx->read_bytes, memory_order_relaxed));
    add_u64(o, "errors", atomic_load_explicit(&ctx->read_errors, memory_order_relaxed));
    add_u64(o, "waits", atomic_load_explicit(&ctx->read_waits, memory_order_relaxed));
    add_u64(o, "wait_us", atomic_load_explicit(&ctx->read_wait_us, memory_order_relaxed));
    return o;
}

/* Who takes the chunks' SHA-256 digests, and the blocks hashed two at a
 * time and alone (the daemon's, from its start; fetch/digest.h). */
static json_object *sha256_json(void)
{
    json_object *o = json_object_new_object();
    uint64_t paired, alone;
    if (!o)
        return NULL;
    fetch_sha256_pair_stats(&paired, &alone);
    json_object_object_add(o, "engine",
                           json_object_new_string(fetch_sha256_pairs() ? "sha-ni" : "openssl"));
    add_u64(o, "blocks_paired", paired);
    add_u64(o, "blocks_alone", alone);
    return o;
}

static json_object *fetch_json(struct fs_status_state *rt, const struct fetch_pool_stats *ps)
{
    json_object *o = json_object_new_object(), *q = json_object_new_object();
    json_object *lat = json_object_new_object(), *hist = json_object_new_array();
    struct timespec now;
    double dt, rate = 0;

    if (!o || !q || !lat || !hist) {
        json_object_put(o);
        json_object_put(q);
        json_object_put(lat);
        json_object_put(hist);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    dt = (double)(now.tv_sec - rt->prev_time.tv_sec) +
         (double)(now.tv_nsec - rt->prev_time.tv_nsec) / 1e9;
    if (dt > 0 && ps->bytes >= rt->prev_bytes)
        rate = (double)(ps->bytes - rt->prev_bytes) / dt / 1e6;
    rt->prev_bytes = ps->bytes;
    rt->prev_time = now;

    add_u64(o, "inflight", ps->inflight);
    add_u64(q, "demand", ps->queued[FETCH_PRIO_DEMAND]);
    add_u64(q, "readahead", ps->queued[FETCH_PRIO_READAHEAD]);
    add_u64(q, "hydrate", ps->queued[FETCH_PRIO_HYDRATE]);
    json_object_object_add(o, "queued", q);
    add_u64(o, "decoding", ps->decoding);
    add_u64(o, "requests", ps->requests);
    add_u64(o, "retries", ps->retries);
    add_u64(o, "failovers", ps->failovers);
    add_u64(o, "small_ttfb_us", ps->small_ttfb_us);
    add_u64(o, "small_limit", ps->small_limit);
    add_u64(o, "errors", ps->failed);
    add_u64(o, "bytes", ps->bytes);
    add_double(o, "mb_per_s", rate, 2);
    add_u64(lat, "p50", fetch_pool_latency_pct(ps, 50));
    add_u64(lat, "p99", fetch_pool_latency_pct(ps, 99));
    {
        uint64_t count = 0;
        for (unsigned i = 0; i < FETCH_LAT_BUCKETS; i++)
            count += ps->latency_us[i];
        add_u64(lat, "count", count);
    }
    add_u64(lat, "sum", ps->latency_sum_us);
    for (unsigned i = 0; i < FETCH_LAT_BUCKETS; i++) {
        json_object *pair;
        if (!ps->latency_us[i])
            continue;
        if (!(pair = json_object_new_array()))
            break;
        json_object_array_add(pair, json_object_new_uint64(2ull << i));
        json_object_array_add(pair, json_object_new_uint64(ps->latency_us[i]));
        json_object_array_add(hist, pair);
    }
    json_object_object_add(lat, "histogram", hist);
    json_object_object_add(o, "latency_us", lat);
    json_object_object_add(o, "sha256", sha256_json());
    return o;
}

static json_object *cache_json(const struct fs_ctx *ctx)
{
    json_object *o = json_object_new_object();
    struct fs_chunks_stats st;
    uint64_t hits, lookups;

    if (!o)
        return NULL;
    fs_chunks_get_stats(ctx->chunks, &st);
    hits = st.mem.hits + st.disk_hits;
    lookups = hits + st.loads + st.load_errors;
    add_u64(o, "memory_hits", st.mem.hits);
    add_u64(o, "memory_misses", st.mem.misses);
    add_u64(o, "memory_evictions", st.mem.evictions);
    add_u64(o, "disk_hits", st.disk_hits);
    add_u64(o, "disk_loads", st.disk_loads);
    add_u64(o, "disk_hints", st.disk_hints);
    add_u64(o, "loads", st.loads);
    add_u64(o, "load_bytes", st.load_bytes);
    add_u64(o, "load_errors", st.load_errors);
    add_u64(o, "missing_known", st.missing_known);
    add_double(o, "hit_rate", lookups ? (double)hits / (double)lookups : 0, 4);
    add_u64(o, "memory_entries", st.mem.entries);
    add_u64(o, "memory_bytes", st.mem.bytes);
    if (ctx->disk) {
        json_object *d = json_object_new_object();
        struct cache_disk_stats ds;
        if (d) {
            cache_disk_get_stats(ctx->disk, &ds);
            add_u64(d, "entries", ds.entries);
            add_u64(d, "bytes", ds.bytes_allocated);
            add_u64(d, "bytes_apparent", ds.bytes_apparent);
            add_u64(d, "budget", ds.budget);
            add_u64(d, "hits", ds.hits);
            add_u64(d, "misses", ds.misses);
            add_u64(d, "inserts", ds.inserts);
            add_u64(d, "insert_skipped", ds.insert_skipped);
            add_u64(d, "insert_waits", ds.insert_waits);
            add_u64(d, "evictions", ds.evictions);
            add_u64(d, "bad_entries", ds.bad_entries);
            add_u64(d, "read_errors", st.disk_read_errors);
            add_u64(d, "enospc", ds.enospc);
            add_u64(d, "over_budget", ds.over_budget);
            add_u64(d, "insert_errors", ds.insert_errors);
            json_object_object_add(d, "last_insert_error",
                                   ds.last_insert_failure
                                       ? json_object_new_string(strerror(-ds.last_insert_failure))
                                       : NULL);
            add_u64(d, "sqlite_writes", ds.sqlite_writes);
            add_u64(d, "direct_writes", ds.direct_inserts);
            add_u64(d, "direct_reads", ds.direct_reads);
            add_u64(d, "not_handed_over", st.not_cached);
        }
        json_object_object_add(o, "disk", d);
    } else {
        json_object_object_add(o, "disk", NULL);
    }
    return o;
}

/* VmRSS and VmHWM of this process in bytes (0 where /proc does not say). */
static void rss_bytes(uint64_t *ret_now, uint64_t *ret_peak)
{
    char line[256];
    unsigned long long kb;
    FILE *f = fopen("/proc/self/status", "re");

    *ret_now = *ret_peak = 0;
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            *ret_now = (uint64_t)kb << 10;
        else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            *ret_peak = (uint64_t)kb << 10;
    }
    fclose(f);
}

static json_object *memory_json(void)
{
    json_object *o = json_object_new_object(), *b = json_object_new_object();
    struct fetch_buf_stats bs;
    uint64_t now, peak;

    if (!o || !b) {
        json_object_put(o);
        json_object_put(b);
        return NULL;
    }
    rss_bytes(&now, &peak);
    add_u64(o, "rss_bytes", now);
    add_u64(o, "rss_peak_bytes", peak);
    fetch_buf_get_stats(&bs);
    add_u64(b, "in_use", bs.slots_used);
    add_u64(b, "kept", bs.slots_warm);
    add_u64(b, "kept_bytes", bs.warm_bytes);
    add_u64(b, "slot_allocs", bs.slot_allocs);
    add_u64(b, "heap_allocs", bs.heap_allocs);
    add_u64(b, "released", bs.released);
    json_object_object_add(o, "chunk_buffers", b);
    return o;
}

/* Extents looked up in one read transaction (about 4 ms of lookups) */
#define STATUS_BATCH 4096
/* The most rows of the disk cache's index a count reads at once (48 bytes
 * each while it counts) instead of looking the image's chunks up. */
#define SCAN_ROWS_MAX ((size_t)1 << 20)
/* How far before the newest row a row may have been created and still be
 * committed after it, by another process filling the cache (each commits
 * a batch up to its flush_ms, 2 s by default, after taking its first
 * chunk; more when its disk is slow). */
#define STATUS_WINDOW_US ((int64_t)10 * 1000000)

/* An image's count of cached bytes, and where the disk cache's index stood
 * when it was counted. */
struct fs_status_memo {
    const struct fs_node *node;
    struct cache_disk_mark mark;
    /* 0, or STATUS_WINDOW_US once another process was seen filling the
     * cache at the same time (cache_disk_added_since: its rows committed
     * late), for the marks of this image's later counts */
    int64_t window;
    uint64_t cached;
    uint64_t *bits; /* one per extent: counted as cached */
    size_t nbits;
    bool valid;    /* @mark, @cached and @bits are a count's (no lookup failed) */
    uint64_t seen; /* the status call that last reported it */
};

static bool bit_get(const uint64_t *bits, size_t i)
{
    return bits[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *bits, size_t i)
{
    bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* The bytes of @img the disk cache holds, looked up chunk by chunk, each
 * extent found (or zero) marked in @bits (zeroed, one per extent; NULL:
 * none); *@failed set when a lookup failed (those chunks count as not
 * cached). */
static uint64_t count_cached(const struct fs_ctx *ctx, struct fs_status_state *st,
                             const struct fetch_image *img, uint64_t *bits, bool *failed)
{
    uint64_t cached = 0;
    int r;
    /* a peek: a status poller must not make every chunk "recently used"
     * (then nothing is evictable and new chunks are not cached); in one
     * read transaction per STATUS_BATCH extents (each lookup in its own
     * took a lock and released it: 76 ms of the daemon's CPU per status
     * of a 1 GiB casync image) */
    for (size_t from = 0; from < img->count; from += STATUS_BATCH) {
        size_t to = img->count - from > STATUS_BATCH ? from + STATUS_BATCH : img->count;
        /* short transactions (a long one holds the WAL back) */
        fs_chunks_batch_begin(ctx->chunks);
        for (size_t i = from; i < to; i++) {
            if (img->extents[i].zero) { /* nothing to count: marked, skipped later */
                if (bits)
                    bit_set(bits, i);
                continue;
            }
            st->lookups++;
            if ((r = fs_chunks_peek_disk(ctx->chunks, &img->extents[i])) > 0) {
                cached += img->extents[i].length;
                if (bits)
                    bit_set(bits, i);
            } else if (r < 0) {
                *failed = true;
            }
        }
        fs_chunks_batch_end(ctx->chunks);
    }
    return cached;
}

/* A table of rows, for the lookups of count_rows(): open addressing on
 * the key's first bytes (a digest's: evenly spread). */
struct row_table {
    const struct cache_disk_row *rows;
    uint32_t *slots; /* row index + 1; 0: empty */
    size_t mask;
};

static uint64_t row_hash(const struct cache_disk_row *r)
{
    uint64_t h;
    memcpy(&h, r->key, sizeof(h));
    return h ^ r->algo;
}

static int row_table_init(struct row_table *t, const struct cache_disk_row *rows, size_t n)
{
    size_t size = 16;
    if (n > UINT32_MAX - 1)
        return -E2BIG;
    while (size < 2 * n)
        size *= 2;
    if (!(t->slots = calloc(size, sizeof(*t->slots))))
        return -ENOMEM;
    t->rows = rows;
    t->mask = size - 1;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)row_hash(&rows[i]) & t->mask;
        while (t->slots[k])
            k = (k + 1) & t->mask;
        t->slots[k] = (uint32_t)i + 1;
    }
    return 0;
}

/* Whether the table holds @want (its algorithm, key and length). */
static bool row_table_has(const struct row_table *t, const struct cache_disk_row *want)
{
    for (size_t k = (size_t)row_hash(want) & t->mask; t->slots[k]; k = (k + 1) & t->mask) {
        const struct cache_disk_row *r = &t->rows[t->slots[k] - 1];
        if (r->algo == want->algo && r->len == want->len &&
            !memcmp(r->key, want->key, CACHE_KEY_LEN))
            return true;
    }
    return false;
}

/* The bytes of @img's extents not marked in @bits (NULL: none marked) whose
 * chunk is among @rows (rows of the disk cache's index), marking them and
 * the zero extents. -errno. */
static int64_t count_rows(const struct fs_ctx *ctx, uint64_t *bits, const struct fetch_image *img,
                          const struct cache_disk_row *rows, size_t n)
{
    struct row_table t;
    uint64_t found = 0;
    int r;

    if ((r = row_table_init(&t, rows, n)) < 0)
        return r;
    for (size_t i = 0; i < img->count; i++) {
        const struct fetch_extent *e = &img->extents[i];
        struct cache_disk_row want;
        if (bits && i % 64 == 0 && bits[i / 64] == UINT64_MAX) { /* 64 counted */
            i += 63;
            continue;
        }
        if (bits && bit_get(bits, i))
            continue;
        if (e->zero) {
            if (bits)
                bit_set(bits, i);
            continue;
        }
        if (!fs_chunks_disk_row(ctx->chunks, e, &want) || !row_table_has(&t, &want))
            continue;
        if (bits)
            bit_set(bits, i);
        found += e->length;
    }
    free(t.slots);
    return (int64_t)found;
}

/* The memo of image node @n in @st (one per image whose index is in
 * memory, in inode order), added if missing; NULL when out of memory. */
static struct fs_status_memo *memo_of(struct fs_status_state *st, const struct fs_node *n)
{
    size_t lo = 0, hi = st->memo_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->memo[mid].node->ino < n->ino)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < st->memo_count && st->memo[lo].node == n)
        return &st->memo[lo];
    if (st->memo_count == st->memo_cap) {
        size_t cap = st->memo_cap ? 2 * st->memo_cap : 8;
        struct fs_status_memo *m = realloc(st->memo, cap * sizeof(*m));
        if (!m)
            return NULL;
        st->memo = m;
        st->memo_cap = cap;
    }
    memmove(&st->memo[lo + 1], &st->memo[lo], (st->memo_count - lo) * sizeof(*st->memo));
    st->memo_count++;
    st->memo[lo] = (struct fs_status_memo){.node = n};
    return &st->memo[lo];
}

/* Forgets the images this status call did not report (their index left
 * memory; counted again if it comes back). */
static void memo_sweep(struct fs_status_state *st)
{
    size_t k = 0;
    for (size_t i = 0; i < st->memo_count; i++) {
        if (st->memo[i].seen == st->calls)
            st->memo[k++] = st->memo[i];
        else
            free(st->memo[i].bits);
    }
    st->memo_count = k;
}

/* The memo's count brought up to date from the rows added to the disk
 * cache since it was made, when those are all that changed: 1, or 0 (count
 * again). */
static int update_memo(const struct fs_ctx *ctx, struct fs_status_state *st,
                       struct fs_status_memo *m, const struct fetch_image *img)
{
    struct cache_disk_row *rows = NULL;
    struct cache_disk_mark now;
    size_t n = 0;
    int64_t added = 0;
    int r;

    if (!m->valid || !m->bits || m->nbits != img->count)
        return 0;
    r = fs_chunks_disk_added(ctx->chunks, &m->mark, img->count + m->mark.recent, &rows, &n, &now);
    if (r == CACHE_DISK_ADDED_LATE)
        m->window = STATUS_WINDOW_US;
    if (r != 1)
        return 0;
    st->rows += n;
    if (n && (added = count_rows(ctx, m->bits, img, rows, n)) < 0) {
        free(rows);
        return 0;
    }
    free(rows);
    m->cached += (uint64_t)added;
    m->mark = now;
    return 1;
}

/* Counts @img from every row of the disk cache's index, where it has at
 * most a quarter as many rows as @img has extents (up to SCAN_ROWS_MAX):
 * 1 with *@ret_cached, @bits marked; 0 when it has more (look the chunks
 * up); both with the index's *@mark. -errno (no mark either). */
static int count_by_rows(const struct fs_ctx *ctx, struct fs_status_state *st,
                         const struct fetch_image *img, uint64_t *bits, int64_t window,
                         struct cache_disk_mark *mark, uint64_t *ret_cached)
{
    size_t max = img->count / 4 < SCAN_ROWS_MAX ? img->count / 4 : SCAN_ROWS_MAX, n = 0;
    struct cache_disk_row *rows = NULL;
    int64_t found;
    int r;

    if ((r = fs_chunks_disk_rows(ctx->chunks, max, window, &rows, &n, mark)) != 1)
        return r;
    st->rows += n;
    found = count_rows(ctx, bits, img, rows, n);
    free(rows);
    if (found < 0)
        return (int)found;
    *ret_cached = (uint64_t)found;
    return 1;
}

/* The bytes of image @n (index @img) the disk cache holds: counted afresh
 * the first time (from the index's rows where it has few, else chunk by
 * chunk), then brought up to date from the rows added to the cache since
 * (none: the count as it was); counted afresh again when rows were removed
 * or the added ones cannot be told (cache_disk_added_since). A count in
 * which a lookup failed is not kept. */
static uint64_t cached_bytes(const struct fs_ctx *ctx, struct fs_status_state *st,
                             const struct fs_node *n, const struct fetch_image *img)
{
    struct fs_status_memo *m = memo_of(st, n);
    struct cache_disk_mark mark;
    size_t words = (img->count + 63) / 64;
    uint64_t *bits = NULL, cached = 0;
    bool failed = false, marked;
    int r;

    if (m) {
        m->seen = st->calls;
        if (update_memo(ctx, st, m, img))
            return m->cached;
        if (m->bits && m->nbits == img->count) {
            bits = m->bits;
            memset(bits, 0, words * sizeof(*bits));
        } else {
            free(m->bits);
            bits = calloc(words ? words : 1, sizeof(*bits));
        }
        *m = (struct fs_status_memo){
            .node = n, .window = m->window, .bits = bits, .nbits = img->count, .seen = st->calls};
    }
    st->counts++;
    /* an index with far fewer rows than the image has chunks: its rows
     * read at once (one snapshot, with its mark) cost less than the
     * lookups */
    r = count_by_rows(ctx, st, img, bits, m ? m->window : 0, &mark, &cached);
    marked = r >= 0;
    if (r != 1) {
        /* the mark before any lookup: the rows added during them are
         * looked for next time among the extents not found (the bits,
         * cleared again only where a count from rows failed midway) */
        if (bits && r < 0)
            memset(bits, 0, words * sizeof(*bits));
        if (!marked)
            marked = fs_chunks_disk_mark(ctx->chunks, m ? m->window : 0, &mark) == 0;
        cached = count_cached(ctx, st, img, bits, &failed);
    }
    if (m && bits) {
        m->mark = mark;
        m->cached = cached;
        m->valid = !failed && marked;
    }
    return cached;
}

void fs_status_state_release(struct fs_status_state *st)
{
    for (size_t i = 0; i < st->memo_count; i++)
        free(st->memo[i].bits);
    free(st->memo);
    st->memo = NULL;
    st->memo_count = st->memo_cap = 0;
}

/* Image node @n, whose index @img the caller holds. */
static json_object *image_json(const struct fs_ctx *ctx, struct fs_hydrator *hyd, struct fs_node *n,
                               const struct fetch_image *img, struct fs_status_state *st)
{
    json_object *o = json_object_new_object(), *pj;
    struct fs_hydrate_progress p;
    uint64_t cached = 0;
    char path[PATH_MAX];

    if (!o)
        return NULL;
    if (ctx->disk)
        cached = cached_bytes(ctx, st, n, img);
    fs_node_path(n, path, sizeof(path));
    json_object_object_add(o, "path", json_object_new_string(path));
    add_u64(o, "size", img->size);
    add_u64(o, "zero_bytes", img->size - img->data_bytes);
    add_u64(o, "data_bytes", img->data_bytes);
    add_u64(o, "cached_bytes", cached);
    /* rounded down: 100.0 only when every byte is cached */
    add_double(o, "hydrated_pct",
               img->data_bytes ? (double)(cached * 1000 / img->data_bytes) / 10 : 100.0, 1);
    /* (no hydrator when it could not start: the mount runs without) */
    if (hyd && fs_hydrator_node_progress(hyd, n, &p) == 0)
        json_object_object_add(o, "hydration", fs_hydrate_progress_json(&p));
    if ((pj = fs_profile_json(ctx->profiles, n)))
        json_object_object_add(o, "profile", pj);
    return o;
}

static json_object *indexes_json(struct fs_tree *t)
{
    json_object *o = json_object_new_object();
    struct fs_index_stats st;

    if (!o)
        return NULL;
    fs_tree_index_stats(t, &st);
    add_u64(o, "loaded", st.loaded);
    add_u64(o, "loaded_bytes", st.loaded_bytes);
    add_u64(o, "in_use", st.loaded - st.unused);
    add_u64(o, "unused", st.unused);
    add_u64(o, "unused_bytes", st.unused_bytes);
    add_u64(o, "unused_max_bytes", st.keep_bytes);
    add_u64(o, "loads", st.loads);
    add_u64(o, "evictions", st.evictions);
    return o;
}

/* What this caller's reports cost, this one's included: its status
 * objects, the images it counted afresh, the chunks it looked up and the
 * index rows it read to count cached bytes. */
static json_object *report_json(const struct fs_status_state *st)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    add_u64(o, "calls", st->calls);
    add_u64(o, "counts", st->counts);
    add_u64(o, "lookups", st->lookups);
    add_u64(o, "rows", st->rows);
    return o;
}

json_object *fs_status_json(const struct fs_ctx *ctx, struct fs_hydrator *hyd,
                            struct fs_status_state *st)
{
    json_object *o = json_object_new_object(), *images = json_object_new_array();
    struct fetch_pool_stats ps;
    struct fs_tree *t = ctx->tree;

    st->calls++;

    if (!o || !images) {
        json_object_put(o);
        json_object_put(images);
        return NULL;
    }
    fetch_pool_get_stats(ctx->pool, &ps);
    json_object_object_add(o, "stores", stores_json(ctx, &ps));
    /* mounted from cached metadata (--offline, or the store was unreachable) */
    json_object_object_add(o, "offline", json_object_new_boolean(ctx->offline != NULL));
    json_object_object_add(o, "offline_reason",
                           ctx->offline ? json_object_new_string(ctx->offline) : NULL);
    json_object_object_add(o, "reads", reads_json(ctx));
    json_object_object_add(o, "fetch", fetch_json(st, &ps));
    json_object_object_add(o, "cache", cache_json(ctx));
    json_object_object_add(o, "memory", memory_json());
    json_object_object_add(o, "indexes", indexes_json(t));
    for (size_t i = 0; i < t->count; i++) {
        struct fs_node *n = t->by_ino[i];
        const struct fetch_image *img;
        /* those in memory; a peek neither loads one nor keeps it from going */
        if (!n || n->kind != FS_NODE_IMAGE || !(img = fs_image_peek(t, n)))
            continue;
        json_object_array_add(images, image_json(ctx, hyd, n, img, st));
        fs_image_put(t, n);
    }
    memo_sweep(st);
    json_object_object_add(o, "images", images);
    json_object_object_add(o, "report", report_json(st));
    return o;
}
