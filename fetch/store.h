/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A store is where backup objects come from: a struct of callbacks with one
 * implementation per transport: a local directory (store_local.c), HTTP(S)
 * (store_http.c) and S3 (store_s3.c); fetch/remote.h opens any of them.
 * Paths are store-relative, '/'-separated, and built by the caller only from
 * validated names (fetch/names.h). Implementations are thread-safe.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct fetch_dirent {
    char *name;
    bool is_dir;
};

struct fetch_store;

struct fetch_store_ops {
    const char *kind; /* "local", "http", "s3" */
    /* Entries of directory @dir ("" = root), unsorted, without "." and "..".
     * -ENOENT if missing, -ENOTDIR if not a directory. */
    int (*list)(struct fetch_store *s, const char *dir, struct fetch_dirent **ret, size_t *ret_n,
                fetch_error *err);
    /* Whole object @path into a malloc()ed buffer. -ENOENT if missing,
     * -EFBIG if larger than @max. A 0-byte object is returned as such. */
    int (*get)(struct fetch_store *s, const char *path, size_t max, void **ret, size_t *ret_len,
               fetch_error *err);
    /* Optional: as get, into a buffer from fetch_buf_alloc_skewed(len, @skew)
     * (free it with fetch_buf_free()), or one from fetch_buf_alloc() where
     * the object was read with O_DIRECT (@skew is a wish); the fetcher
     * pool's local readers and workers use it for chunks. */
    int (*get_buf)(struct fetch_store *s, const char *path, size_t max, size_t skew, void **ret,
                   size_t *ret_len, fetch_error *err);
    void (*free)(struct fetch_store *s);
    /* Optional: how many objects get_buf read with O_DIRECT (local stores:
     * chunks not in the page cache, see store_local.c). */
    uint64_t (*direct_reads)(struct fetch_store *s);
    /*
     * Remote stores only (NULL for local ones): configures @easy, a fresh or
     * reset CURL easy handle owned by the caller, for a GET of object @path:
     * URL, authentication (SigV4, basic, bearer), TLS options, connect and
     * total deadlines. The caller sets the write callback and performs the
     * transfer (the fetcher pool does it in a curl multi); the result is
     * converted with fetch_remote_result(). May be called from any thread.
     */
    int (*setup_get)(struct fetch_store *s, void *easy, const char *path, fetch_error *err);
    /*
     * Optional: reads the credentials files the store was opened with again
     * (--http-auth-file, --s3-credentials-file), so that rotated secrets
     * apply without a remount; requests set up afterwards use them. 0 (also
     * when the store has none), or -errno with @err: the old ones stay.
     */
    int (*reload)(struct fetch_store *s, fetch_error *err);
    /*
     * Optional, remote stores: an error answer to a GET of @path (HTTP
     * @status, not 2xx) whose body, @len bytes at @body (its start when it
     * was longer), explains it (S3's XML <Error>): 1 with @err set to that
     * explanation, else 0. The caller keeps the -errno it took from the
     * status (its retries depend on it); only the message changes.
     */
    int (*explain)(struct fetch_store *s, long status, const char *body, size_t len,
                   const char *path, fetch_error *err);
};

struct fetch_store {
    const struct fetch_store_ops *ops;
    char *location; /* as given by the user, for messages */
    /* when its unavailable failures began (µs of CLOCK_MONOTONIC; 0: it
     * answers): one outage for every request to it, index and blob loads
     * (fetch/remote.c) and chunk fetches (fetch/pool.c) alike; see
     * fetch_store_note_answer() */
    _Atomic uint64_t down_since;
};

/*
 * The outage of a store: noted @unavailable for a refused or reset
 * connection, an unreachable host or a busy server (fetch_remote_unavailable(),
 * 429, 5xx), which starts it if none has begun; noted not unavailable for an
 * answer of the store (data, a 404), which ends it. A failure that says
 * nothing about the store either way (a timeout, a local error) is not noted.
 */
static inline void fetch_store_note_answer(struct fetch_store *s, bool unavailable, uint64_t now_us)
{
    uint64_t zero = 0;
    if (!unavailable) {
        /* (written only when it changes: every request notes its answer,
         * and the store's other fields are read by all of them) */
        if (atomic_load_explicit(&s->down_since, memory_order_relaxed))
            atomic_store(&s->down_since, 0);
    } else {
        atomic_compare_exchange_strong(&s->down_since, &zero, now_us);
    }
}

/* Whether the store's outage, noted unavailable at @now_us, is younger than
 * @outage_ms: requests are retried while it is (a restart is waited for),
 * and fail after their own attempts once it is not. */
static inline bool fetch_store_outage_young(const struct fetch_store *s, uint64_t now_us,
                                            uint64_t outage_ms)
{
    uint64_t since = atomic_load(&s->down_since);
    /* (begun by another thread after @now_us was read: it has just begun) */
    return since && (since >= now_us || now_us - since < outage_ms * 1000u);
}

/*
 * Opens a local directory store. Errors: -ENOENT (missing), -ENOTDIR, -EACCES.
 */
int fetch_store_open_local(const char *path, struct fetch_store **ret, fetch_error *err);

/* NULL-safe. */
void fetch_store_free(struct fetch_store *s);

/* ops->reload where the store has one, else 0. */
static inline int fetch_store_reload(struct fetch_store *s, fetch_error *err)
{
    return s->ops->reload ? s->ops->reload(s, err) : 0;
}

static inline int fetch_store_list(struct fetch_store *s, const char *dir,
                                   struct fetch_dirent **ret, size_t *ret_n, fetch_error *err)
{
    return s->ops->list(s, dir, ret, ret_n, err);
}

static inline int fetch_store_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                                  size_t *ret_len, fetch_error *err)
{
    return s->ops->get(s, path, max, ret, ret_len, err);
}

void fetch_dirents_free(struct fetch_dirent *d, size_t n);
