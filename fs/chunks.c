/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunks.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "fetch/pbs.h"
#include "log.h"

struct fs_chunks {
    struct fetch_store *store;
    struct cache_mem *mem;
    struct cache_disk *disk;
    atomic_uint_fast64_t loads, load_errors, load_bytes, disk_hits, disk_bad;
    atomic_uint_fast64_t enospc_seen, enospc_warned_at;
};

struct fs_chunks *fs_chunks_new(struct fetch_store *store, size_t mem_budget,
                                struct cache_disk *disk)
{
    struct fs_chunks *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->store = store;
    c->disk = disk;
    c->mem = cache_mem_new(mem_budget);
    if (!c->mem) {
        free(c);
        return NULL;
    }
    return c;
}

void fs_chunks_free(struct fs_chunks *c)
{
    if (!c)
        return;
    cache_mem_free(c->mem);
    free(c);
}

/* A memory entry lent to the disk cache's writer until it has the bytes on disk. */
struct lent {
    struct fs_chunks *chunks;
    struct cache_mem_entry *entry;
};

static void lent_done(void *owner)
{
    struct lent *l = owner;
    cache_mem_release(l->chunks->mem, l->entry);
    free(l);
}

/* Says, at most once a minute, that chunks are not being cached because the
 * cache filesystem is full; reads go on from the store. */
static void report_disk_trouble(struct fs_chunks *c)
{
    struct cache_disk_stats st;
    struct timespec ts;
    uint64_t before, last;

    cache_disk_get_stats(c->disk, &st);
    before = atomic_exchange(&c->enospc_seen, st.enospc);
    if (st.enospc <= before)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    last = atomic_load(&c->enospc_warned_at);
    if ((last && (uint64_t)ts.tv_sec - last < 60) ||
        !atomic_compare_exchange_strong(&c->enospc_warned_at, &last, (uint64_t)ts.tv_sec))
        return;
    fs_warn("disk cache: no space left on the cache filesystem; chunks are not being cached "
            "(reads continue from the store)");
}

static void queue_insert(struct fs_chunks *c, const struct fetch_extent *e,
                         struct cache_mem_entry *entry)
{
    struct lent *l;
    const uint8_t *bytes;
    size_t len;
    if (!c->disk || !(l = malloc(sizeof(*l))))
        return; /* not caching it costs a later fetch, never a wrong byte */
    cache_mem_ref(c->mem, entry);
    l->chunks = c;
    l->entry = entry;
    bytes = cache_mem_entry_bytes(entry, &len);
    cache_disk_insert(c->disk, CACHE_ALGO_SHA256, e->digest, bytes, len, l, lent_done);
    report_disk_trouble(c);
}

/* 1 and the bytes in @scratch when the disk cache has a good copy; 0 if not. */
static int read_disk(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                     uint8_t *scratch)
{
    struct cache_disk_handle *h = NULL;
    int r;
    if (!c->disk || cache_disk_lookup(c->disk, CACHE_ALGO_SHA256, e->digest, &h) <= 0)
        return 0;
    if (cache_disk_handle_len(h) != e->length) {
        /* the digest names other bytes than this extent's: not ours to serve */
        cache_disk_release(c->disk, h);
        return 0;
    }
    r = cache_disk_read(c->disk, h, off, len, scratch);
    cache_disk_release(c->disk, h);
    if (r == -EBADMSG)
        atomic_fetch_add(&c->disk_bad, 1);
    if (r < 0)
        return 0; /* dropped or unreadable: fetch it from the store */
    atomic_fetch_add(&c->disk_hits, 1);
    return 1;
}

int fs_chunks_read(struct fs_chunks *c, const struct fetch_extent *e, uint32_t off, size_t len,
                   uint8_t *scratch, const uint8_t **ret_bytes, struct cache_mem_entry **ret_ref,
                   fetch_error *err)
{
    struct cache_mem_entry *entry;
    fetch_data data = {0};
    size_t blen;
    int r;

    if (!cache_mem_contains(c->mem, CACHE_ALGO_SHA256, e->digest) &&
        read_disk(c, e, off, len, scratch)) {
        *ret_bytes = scratch;
        *ret_ref = NULL;
        return 0;
    }
    r = cache_mem_acquire(c->mem, CACHE_ALGO_SHA256, e->digest, &entry);
    if (r < 0)
        return fetch_error_set(err, r, r == -ENOMEM ? "out of memory"
                                                    : "chunk load failed in another reader");
    if (r == 1) {
        /* we are the loader */
        r = fetch_pbs_read_chunk(c->store, e->digest, e->length, &data, err);
        if (r < 0) {
            atomic_fetch_add(&c->load_errors, 1);
            cache_mem_fail(c->mem, entry, r);
            return r;
        }
        atomic_fetch_add(&c->loads, 1);
        atomic_fetch_add(&c->load_bytes, data.len);
        cache_mem_fill(c->mem, entry, data.bytes, data.len, data.base, free);
        queue_insert(c, e, entry);
    }
    /* a hostile index can name one digest at two lengths: the bytes loaded
     * for the other length are not this extent's */
    *ret_bytes = cache_mem_entry_bytes(entry, &blen) + off;
    if (blen != e->length) {
        cache_mem_release(c->mem, entry);
        return fetch_error_set(err, -EIO, "one chunk digest used with two lengths");
    }
    *ret_ref = entry;
    return 0;
}

void fs_chunks_put(struct fs_chunks *c, struct cache_mem_entry *entry)
{
    cache_mem_release(c->mem, entry);
}

void fs_chunks_get_stats(struct fs_chunks *c, struct fs_chunks_stats *ret)
{
    ret->loads = atomic_load(&c->loads);
    ret->load_errors = atomic_load(&c->load_errors);
    ret->load_bytes = atomic_load(&c->load_bytes);
    ret->disk_hits = atomic_load(&c->disk_hits);
    ret->disk_bad = atomic_load(&c->disk_bad);
    cache_mem_get_stats(c->mem, &ret->mem);
}
