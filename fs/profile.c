/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "profile.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/diskcache.h"
#include "log.h"

/* The profile of one opened image. */
struct fs_prof_img {
    struct fs_profiles *owner;
    struct fs_node *node;
    size_t count;             /* extents of the image (the bits below are per extent) */
    struct fs_prof_img *next; /* in owner->imgs (only ever prepended) */
    char key[1024];
    char path[512];

    pthread_mutex_t lock; /* everything below */
    /* a reference to the image's index until the replay is done (or no
     * profile was found to replay): dropped on the profile thread */
    const struct fetch_image *img;
    uint64_t start_ms;
    atomic_bool recording; /* read without the lock on the read path */
    bool save_pending, loaded;
    /* per extent: read by the reader, considered by the replay, fetched by it */
    uint8_t *read_bits, *replay_bits, *fetched_bits;
    uint64_t *order; /* recorded offsets, first touch first */
    size_t norder, cap;
    /* replay */
    uint64_t *offs;
    size_t noffs, next_off;
    char replay_of[512]; /* the image the replayed profile was recorded on */
    unsigned inflight;
    uint64_t inflight_bytes;
    bool replaying, replay_done;
    uint64_t replayed, skipped, hits, useless;
};

struct fs_profiles {
    struct fs_ctx *ctx;
    char *store;
    unsigned window_s;
    pthread_mutex_t lock; /* imgs, kick, stop */
    pthread_cond_t cond;
    struct fs_prof_img *imgs;
    bool kick, stop, stopped, running;
    pthread_t thread;
};

static bool bit(const uint8_t *bits, size_t i)
{
    return bits[i / 8] >> (i % 8) & 1;
}

static void set_bit(uint8_t *bits, size_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void kick(struct fs_profiles *p)
{
    pthread_mutex_lock(&p->lock);
    p->kick = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void fs_profile_key(const char *store, const struct fs_node *n, char *buf, size_t len)
{
    const char *group = n->entry && n->entry->group ? n->entry->group : NULL;
    char path[512];
    if (!group) {
        fs_node_path(n, path, sizeof(path));
        group = path;
    }
    snprintf(buf, len, "%s\n%s", store, group);
}

/* Ends @pi's recording (lock held): counts useless replays, asks for the save. */
static void end_recording(struct fs_prof_img *pi)
{
    if (!atomic_load(&pi->recording))
        return;
    atomic_store(&pi->recording, false);
    for (size_t i = 0; i < pi->count; i++)
        if (bit(pi->fetched_bits, i) && !bit(pi->read_bits, i))
            pi->useless++;
    pi->save_pending = pi->norder > 0;
}

void fs_profile_read(struct fs_profiles *p, struct fs_node *n, const struct fetch_image *img,
                     uint64_t off, size_t len)
{
    struct fs_prof_img *pi = p ? atomic_load_explicit(&n->profile, memory_order_acquire) : NULL;
    bool ended = false;

    if (!pi || !atomic_load_explicit(&pi->recording, memory_order_relaxed) || len == 0)
        return;
    /* (a copy loaded again is the same index; the count guards the bits) */
    if (off >= img->size || img->count != pi->count)
        return;
    pthread_mutex_lock(&pi->lock);
    if (fs_now_ms() - pi->start_ms >= (uint64_t)p->window_s * 1000) {
        end_recording(pi);
        ended = true;
    } else if (atomic_load(&pi->recording)) {
        for (size_t i = fetch_image_find(img, off);
             i < img->count && img->extents[i].offset < off + len; i++) {
            if (bit(pi->read_bits, i))
                continue;
            set_bit(pi->read_bits, i);
            if (bit(pi->fetched_bits, i))
                pi->hits++;
            if (img->extents[i].zero)
                continue;
            if (pi->norder == pi->cap) {
                size_t cap = pi->cap ? 2 * pi->cap : 64;
                uint64_t *o =
                    cap <= CACHE_PROFILE_MAX ? realloc(pi->order, cap * sizeof(*o)) : NULL;
                if (!o)
                    break; /* the profile stays as long as it is */
                pi->order = o;
                pi->cap = cap;
            }
            pi->order[pi->norder++] = img->extents[i].offset;
        }
    }
    pthread_mutex_unlock(&pi->lock);
    if (ended)
        kick(p);
}

void fs_profile_open(struct fs_profiles *p, struct fs_node *n, const struct fetch_image *img)
{
    struct fs_prof_img *pi, *none = NULL;
    size_t nbytes;

    if (!p || n->kind != FS_NODE_IMAGE || atomic_load(&n->profile))
        return;
    if (!(pi = calloc(1, sizeof(*pi))))
        return;
    nbytes = img->count / 8 + 1;
    pi->read_bits = calloc(1, nbytes);
    pi->replay_bits = calloc(1, nbytes);
    pi->fetched_bits = calloc(1, nbytes);
    if (!pi->read_bits || !pi->replay_bits || !pi->fetched_bits)
        goto fail;
    pi->owner = p;
    pi->node = n;
    pi->count = img->count;
    pi->img = img;
    fs_profile_key(p->store, n, pi->key, sizeof(pi->key));
    fs_node_path(n, pi->path, sizeof(pi->path));
    pthread_mutex_init(&pi->lock, NULL);
    pi->start_ms = fs_now_ms();
    atomic_store(&pi->recording, true);
    fs_image_ref(n); /* pi->img, from the caller's */
    if (!atomic_compare_exchange_strong(&n->profile, &none, pi)) {
        fs_image_put(p->ctx->tree, n);
        pthread_mutex_destroy(&pi->lock);
        goto fail; /* another open won */
    }
    pthread_mutex_lock(&p->lock);
    pi->next = p->imgs;
    p->imgs = pi;
    p->kick = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return;
fail:
    free(pi->read_bits);
    free(pi->replay_bits);
    free(pi->fetched_bits);
    free(pi);
}

/* One replayed chunk in flight. */
struct replay_req {
    struct fs_prof_img *pi;
    uint32_t len;
};

/* A replayed chunk arrived (or failed): room for the next. */
static void replay_done(void *arg, int r, struct cache_mem_entry *entry, const fetch_error *err)
{
    struct replay_req *q = arg;
    struct fs_prof_img *pi = q->pi;
    (void)err;
    (void)r; /* a failed chunk is the reader's to see */
    if (entry)
        fs_chunks_put(pi->owner->ctx->chunks, entry);
    pthread_mutex_lock(&pi->lock);
    pi->inflight--;
    pi->inflight_bytes -= q->len;
    pthread_mutex_unlock(&pi->lock);
    free(q);
    kick(pi->owner);
}

/* Loads the key's newest profile (on the profile thread: SQLite I/O). */
static void load(struct fs_profiles *p, struct fs_prof_img *pi)
{
    struct cache_disk_profile_info info;
    uint64_t *offs = NULL;
    size_t n = 0;
    int r = cache_disk_profile_load(p->ctx->disk, pi->key, &offs, &n, &info);

    pthread_mutex_lock(&pi->lock);
    pi->loaded = true;
    if (r == 0) {
        pi->offs = offs;
        pi->noffs = n;
        pi->replaying = true;
        snprintf(pi->replay_of, sizeof(pi->replay_of), "%s", info.image);
    } else {
        pi->replay_done = true;
    }
    pthread_mutex_unlock(&pi->lock);
    if (r == 0)
        fs_debug("%s: replaying the read profile recorded on %s (%zu extents)", pi->path,
                 info.image, n);
    else if (r != -ENOENT)
        fs_warn("%s: cannot load its read profile: %s", pi->path, strerror(-r));
}

/* Asks for the next chunks of @pi's replay, as many as may be in flight. */
static void replay_more(struct fs_profiles *p, struct fs_prof_img *pi)
{
    pthread_mutex_lock(&pi->lock);
    while (pi->replaying && pi->img && pi->inflight < FS_PROFILE_INFLIGHT &&
           pi->inflight_bytes < FS_PROFILE_INFLIGHT_BYTES && pi->next_off < pi->noffs) {
        uint64_t off = pi->offs[pi->next_off++];
        const struct fetch_extent *e;
        struct replay_req *q;
        size_t i;
        int r;

        if (off >= pi->img->size)
            continue;
        i = fetch_image_find(pi->img, off);
        e = &pi->img->extents[i];
        if (e->zero || bit(pi->read_bits, i) || bit(pi->replay_bits, i))
            continue;
        set_bit(pi->replay_bits, i);
        if (fs_chunks_on_disk(p->ctx->chunks, e)) {
            pi->skipped++;
            continue;
        }
        if (!(q = malloc(sizeof(*q))))
            break; /* tried again at the next kick */
        *q = (struct replay_req){pi, e->length};
        set_bit(pi->fetched_bits, i);
        pi->inflight++;
        pi->inflight_bytes += e->length;
        pi->replayed++;
        pthread_mutex_unlock(&pi->lock);
        r = fs_chunks_want(p->ctx->chunks, e, FETCH_PRIO_READAHEAD, replay_done, q);
        pthread_mutex_lock(&pi->lock);
        if (r < 0) {
            free(q);
            pi->inflight--;
            pi->inflight_bytes -= e->length;
            if (r == -ECANCELED)
                pi->replaying = false;
        }
    }
    if (pi->replaying && pi->next_off == pi->noffs && pi->inflight == 0) {
        pi->replaying = false;
        pi->replay_done = true;
    }
    pthread_mutex_unlock(&pi->lock);
}

/* Saves @pi's recording if it ended (on the profile thread, or at stop). */
static void save(struct fs_profiles *p, struct fs_prof_img *pi)
{
    int r;
    pthread_mutex_lock(&pi->lock);
    if (!pi->save_pending) {
        pthread_mutex_unlock(&pi->lock);
        return;
    }
    pi->save_pending = false;
    pthread_mutex_unlock(&pi->lock);
    /* the recording ended: pi->order no longer changes */
    r = cache_disk_profile_save(p->ctx->disk, pi->key, pi->path, pi->order, pi->norder);
    if (r < 0) {
        fs_warn("%s: cannot save its read profile: %s", pi->path, strerror(-r));
        return;
    }
    pthread_mutex_lock(&pi->lock);
    if (pi->noffs)
        fs_info("%s: read profile of %zu extents saved; the replay of %s fetched %llu chunks "
                "(%llu read in the window, %llu not), %llu were cached already",
                pi->path, pi->norder, pi->replay_of, (unsigned long long)pi->replayed,
                (unsigned long long)pi->hits, (unsigned long long)pi->useless,
                (unsigned long long)pi->skipped);
    else
        fs_info("%s: read profile of %zu extents saved", pi->path, pi->norder);
    pthread_mutex_unlock(&pi->lock);
}

/* Drops @pi's reference to the index once the replay does not need it: no
 * profile to replay, or its replay done (on the profile thread, or at stop).
 * The recording needs none: the reader's reads come with theirs. */
static void let_go(struct fs_profiles *p, struct fs_prof_img *pi, bool stopping)
{
    bool drop;
    pthread_mutex_lock(&pi->lock);
    drop = pi->img && (stopping || (pi->loaded && !pi->replaying));
    if (drop)
        pi->img = NULL;
    pthread_mutex_unlock(&pi->lock);
    if (drop)
        fs_image_put(p->ctx->tree, pi->node);
}

static void *profile_main(void *arg)
{
    struct fs_profiles *p = arg;
    for (;;) {
        struct fs_prof_img *head;
        struct timespec ts;
        bool stop;

        pthread_mutex_lock(&p->lock);
        if (!p->kick && !p->stop) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* windows end even when nobody reads */
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        }
        p->kick = false;
        stop = p->stop;
        head = p->imgs;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        for (struct fs_prof_img *pi = head; pi; pi = pi->next) {
            bool loaded;
            pthread_mutex_lock(&pi->lock);
            loaded = pi->loaded;
            if (atomic_load(&pi->recording) &&
                fs_now_ms() - pi->start_ms >= (uint64_t)p->window_s * 1000)
                end_recording(pi);
            pthread_mutex_unlock(&pi->lock);
            if (!loaded)
                load(p, pi);
            replay_more(p, pi);
            save(p, pi);
            let_go(p, pi, false);
        }
    }
    return NULL;
}

struct fs_profiles *fs_profiles_new(struct fs_ctx *ctx, const char *store, unsigned window_s)
{
    struct fs_profiles *p;
    if (!ctx->disk || !ctx->chunks)
        return NULL;
    if (!(p = calloc(1, sizeof(*p))) || !(p->store = strdup(store ? store : ""))) {
        free(p);
        return NULL;
    }
    p->ctx = ctx;
    p->window_s = window_s ? window_s : FS_PROFILE_WINDOW_S;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, profile_main, p) != 0) {
        fs_profiles_free(p);
        return NULL;
    }
    p->running = true;
    return p;
}

void fs_profiles_stop(struct fs_profiles *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = true;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->running)
        pthread_join(p->thread, NULL);
    p->running = false;
    /* recordings whose reader stopped early: what they saw is the profile */
    for (struct fs_prof_img *pi = p->imgs; pi; pi = pi->next) {
        pthread_mutex_lock(&pi->lock);
        pi->replaying = false;
        end_recording(pi);
        pthread_mutex_unlock(&pi->lock);
        save(p, pi);
        let_go(p, pi, true);
    }
}

void fs_profiles_free(struct fs_profiles *p)
{
    struct fs_prof_img *pi, *next;
    if (!p)
        return;
    fs_profiles_stop(p);
    for (pi = p->imgs; pi; pi = next) {
        next = pi->next;
        atomic_store(&pi->node->profile, NULL);
        pthread_mutex_destroy(&pi->lock);
        free(pi->read_bits);
        free(pi->replay_bits);
        free(pi->fetched_bits);
        free(pi->order);
        free(pi->offs);
        free(pi);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->store);
    free(p);
}

json_object *fs_profile_json(struct fs_profiles *p, const struct fs_node *n)
{
    struct fs_prof_img *pi = p ? atomic_load(&((struct fs_node *)n)->profile) : NULL;
    json_object *o;
    if (!pi || !(o = json_object_new_object()))
        return NULL;
    pthread_mutex_lock(&pi->lock);
    json_object_object_add(
        o, "state", json_object_new_string(atomic_load(&pi->recording) ? "recording" : "recorded"));
    json_object_object_add(o, "replay",
                           json_object_new_string(pi->replaying   ? "replaying"
                                                  : pi->noffs > 0 ? "done"
                                                                  : "none"));
    json_object_object_add(o, "recorded", json_object_new_uint64(pi->norder));
    json_object_object_add(o, "window_s", json_object_new_uint64(p->window_s));
    json_object_object_add(o, "replayed", json_object_new_uint64(pi->replayed));
    json_object_object_add(o, "skipped", json_object_new_uint64(pi->skipped));
    json_object_object_add(o, "hits", json_object_new_uint64(pi->hits));
    json_object_object_add(o, "useless", json_object_new_uint64(pi->useless));
    if (pi->noffs)
        json_object_object_add(o, "replay_of", json_object_new_string(pi->replay_of));
    pthread_mutex_unlock(&pi->lock);
    return o;
}
