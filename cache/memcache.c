/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "memcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * One shard: the budget and the LRU must be global (a 4 MiB chunk must stay
 * while it is read in 1 MiB pieces), and the lock is held for microseconds.
 * The shard structure is kept so that a bigger table can split later.
 */
#define SHARDS 1
#define BUCKETS 1024

struct cache_mem_entry {
    struct cache_mem_entry *next;                /* hash chain */
    struct cache_mem_entry *lru_prev, *lru_next; /* only while unreferenced */
    uint8_t key[CACHE_KEY_LEN];
    uint8_t algo;
    bool in_table;
    bool read;       /* readers have had all its bytes: evicted before the others */
    size_t consumed; /* bytes readers have had (counting repeats) */
    unsigned refs;
    const uint8_t *bytes;
    size_t len;
    void *owner;
    void (*release)(void *owner);
    unsigned shard;
};

struct shard {
    pthread_mutex_t lock;
    struct cache_mem_entry *table[BUCKETS];
    /* unreferenced entries, head = least recently used: those a
     * reader has had, and those nobody has read yet (readahead) */
    struct lru {
        struct cache_mem_entry *head, *tail;
    } lru_read, lru_unread;
    size_t bytes, entries;
    size_t budget;
    size_t read_bytes; /* of the entries on lru_read */
    /* of the entries read in full, held or not: those held (by the disk
     * cache's writer behind the readers) are read_all_bytes - read_bytes */
    size_t read_all_bytes;
    uint64_t hits, misses, evictions;
};

struct cache_mem {
    struct shard shards[SHARDS];
};

static unsigned key_shard(const uint8_t *key)
{
    return key[0] % SHARDS;
}

static unsigned key_bucket(const uint8_t *key)
{
    return (unsigned)(key[1] | key[2] << 8) % BUCKETS;
}

struct cache_mem *cache_mem_new(size_t budget)
{
    struct cache_mem *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    for (unsigned i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        c->shards[i].budget = budget / SHARDS;
    }
    return c;
}

static void entry_destroy(struct cache_mem_entry *e)
{
    if (e->release)
        e->release(e->owner);
    free(e);
}

void cache_mem_free(struct cache_mem *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        for (unsigned b = 0; b < BUCKETS; b++) {
            struct cache_mem_entry *e = s->table[b];
            while (e) {
                struct cache_mem_entry *next = e->next;
                entry_destroy(e);
                e = next;
            }
        }
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

/* Whether @e was on @l (and is no longer). */
static bool list_unlink(struct lru *l, struct cache_mem_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else if (l->head == e)
        l->head = e->lru_next;
    else
        return false;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        l->tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
    return true;
}

static void lru_unlink(struct shard *s, struct cache_mem_entry *e)
{
    if (list_unlink(e->read ? &s->lru_read : &s->lru_unread, e) && e->read)
        s->read_bytes -= e->len;
}

static void lru_push(struct shard *s, struct cache_mem_entry *e)
{
    struct lru *l = e->read ? &s->lru_read : &s->lru_unread;
    if (e->read)
        s->read_bytes += e->len;
    e->lru_next = NULL;
    e->lru_prev = l->tail;
    if (l->tail)
        l->tail->lru_next = e;
    else
        l->head = e;
    l->tail = e;
}

static void table_remove(struct shard *s, struct cache_mem_entry *e)
{
    struct cache_mem_entry **p = &s->table[key_bucket(e->key)];
    while (*p && *p != e)
        p = &(*p)->next;
    if (*p)
        *p = e->next;
    e->in_table = false;
    s->entries--;
    s->bytes -= e->len;
    if (e->read)
        s->read_all_bytes -= e->len;
}

static struct cache_mem_entry *table_find(struct shard *s, uint8_t algo, const uint8_t *key)
{
    for (struct cache_mem_entry *e = s->table[key_bucket(key)]; e; e = e->next) {
        if (e->algo == algo && memcmp(e->key, key, CACHE_KEY_LEN) == 0)
            return e;
    }
    return NULL;
}

/*
 * Evicts unreferenced entries until the shard fits its budget: first those
 * readers have had in full, least recently used first, then those not read
 * yet. A sequential reader's prefetched chunks are so kept until it gets to
 * them, however the chunks it has finished with were ordered. Chunks read in
 * full are kept up to a quarter of the budget only: a later read of them
 * finds them in the disk cache (or, with the kernel's page cache in front of
 * the files, there), while a prefetched chunk not read yet is a fetch saved.
 * Returns the evicted entries as a list, to be destroyed without the lock.
 */
static struct cache_mem_entry *evict_locked(struct shard *s)
{
    struct cache_mem_entry *out = NULL;
    while ((s->bytes > s->budget && (s->lru_read.head || s->lru_unread.head)) ||
           (s->read_bytes > s->budget / 4 && s->lru_read.head)) {
        struct cache_mem_entry *e = s->lru_read.head ? s->lru_read.head : s->lru_unread.head;
        lru_unlink(s, e);
        table_remove(s, e);
        s->evictions++;
        e->next = out;
        out = e;
    }
    return out;
}

static void destroy_list(struct cache_mem_entry *e)
{
    while (e) {
        struct cache_mem_entry *next = e->next;
        entry_destroy(e);
        e = next;
    }
}

int cache_mem_insert(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                     const uint8_t *bytes, size_t len, void *owner, void (*release)(void *owner),
                     struct cache_mem_entry **ret)
{
    struct shard *s = &c->shards[key_shard(key)];
    struct cache_mem_entry *e, *fresh = calloc(1, sizeof(*fresh));

    pthread_mutex_lock(&s->lock);
    if ((e = table_find(s, (uint8_t)algo, key))) {
        if (e->refs == 0)
            lru_unlink(s, e);
        e->refs++;
        pthread_mutex_unlock(&s->lock);
        free(fresh);
        *ret = e;
        return 0;
    }
    if (!(e = fresh)) {
        pthread_mutex_unlock(&s->lock);
        return -ENOMEM;
    }
    memcpy(e->key, key, CACHE_KEY_LEN);
    e->algo = (uint8_t)algo;
    e->refs = 1;
    e->shard = key_shard(key);
    e->bytes = bytes;
    e->len = len;
    e->owner = owner;
    e->release = release;
    e->in_table = true;
    e->next = s->table[key_bucket(key)];
    s->table[key_bucket(key)] = e;
    s->entries++;
    s->bytes += len;
    pthread_mutex_unlock(&s->lock);
    *ret = e;
    return 1;
}

const uint8_t *cache_mem_entry_bytes(const struct cache_mem_entry *e, size_t *ret_len)
{
    *ret_len = e->len;
    return e->bytes;
}

void cache_mem_ref(struct cache_mem *c, struct cache_mem_entry *e)
{
    struct shard *s = &c->shards[e->shard];
    pthread_mutex_lock(&s->lock);
    e->refs++;
    pthread_mutex_unlock(&s->lock);
}

void cache_mem_release(struct cache_mem *c, struct cache_mem_entry *e)
{
    struct cache_mem_entry *evicted = NULL;
    struct shard *s;
    if (!e)
        return;
    s = &c->shards[e->shard];
    pthread_mutex_lock(&s->lock);
    if (--e->refs == 0) {
        if (e->in_table) {
            lru_push(s, e);
            evicted = evict_locked(s);
        } else {
            e->next = evicted;
            evicted = e;
        }
    }
    pthread_mutex_unlock(&s->lock);
    destroy_list(evicted);
}

int cache_mem_lookup(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN],
                     struct cache_mem_entry **ret)
{
    struct shard *s = &c->shards[key_shard(key)];
    struct cache_mem_entry *e;
    pthread_mutex_lock(&s->lock);
    e = table_find(s, (uint8_t)algo, key);
    if (!e) {
        s->misses++;
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }
    if (e->refs == 0)
        lru_unlink(s, e);
    e->refs++;
    s->hits++;
    pthread_mutex_unlock(&s->lock);
    *ret = e;
    return 0;
}

void cache_mem_note_read(struct cache_mem *c, struct cache_mem_entry *e, size_t n)
{
    struct shard *s = &c->shards[e->shard];
    pthread_mutex_lock(&s->lock);
    e->consumed += n;
    if (!e->read && e->consumed >= e->len) {
        if (e->refs == 0 && e->in_table)
            lru_unlink(s, e);
        e->read = true;
        if (e->in_table)
            s->read_all_bytes += e->len;
        if (e->refs == 0 && e->in_table)
            lru_push(s, e);
    }
    pthread_mutex_unlock(&s->lock);
}

size_t cache_mem_unread_room(struct cache_mem *c)
{
    size_t room = 0;
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        size_t held;
        pthread_mutex_lock(&s->lock);
        held = s->read_all_bytes - s->read_bytes;
        if (s->budget > held)
            room += s->budget - held;
        pthread_mutex_unlock(&s->lock);
    }
    return room;
}

int cache_mem_contains(struct cache_mem *c, enum cache_algo algo, const uint8_t key[CACHE_KEY_LEN])
{
    struct shard *s = &c->shards[key_shard(key)];
    struct cache_mem_entry *e;
    int r;
    pthread_mutex_lock(&s->lock);
    e = table_find(s, (uint8_t)algo, key);
    r = e != NULL;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void cache_mem_get_stats(struct cache_mem *c, struct cache_mem_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    for (unsigned i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        ret->hits += s->hits;
        ret->misses += s->misses;
        ret->evictions += s->evictions;
        ret->entries += s->entries;
        ret->bytes += s->bytes;
        pthread_mutex_unlock(&s->lock);
    }
}
