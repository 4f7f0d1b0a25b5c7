/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunks.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fetch/pbs.h"

struct fs_chunks {
    struct fetch_store *store;
    struct cache_mem *mem;
    atomic_uint_fast64_t loads, load_errors, load_bytes;
};

struct fs_chunks *fs_chunks_new(struct fetch_store *store, size_t mem_budget)
{
    struct fs_chunks *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->store = store;
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

int fs_chunks_get(struct fs_chunks *c, const struct fetch_extent *e, struct cache_mem_entry **ret,
                  fetch_error *err)
{
    struct cache_mem_entry *entry;
    fetch_data data = {0};
    int r;

    r = cache_mem_acquire(c->mem, CACHE_ALGO_SHA256, e->digest, &entry);
    if (r < 0)
        return fetch_error_set(err, r, r == -ENOMEM ? "out of memory"
                                                    : "chunk load failed in another reader");
    if (r == 0) {
        *ret = entry;
        return 0;
    }
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
    *ret = entry;
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
    cache_mem_get_stats(c->mem, &ret->mem);
}
