/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The metadata cache: small store objects (directory listings, manifests,
 * indexes, blobs) kept per store so that a store that cannot be reached can
 * still be mounted from what an earlier mount saw.
 *
 * Layout: CACHE_DIR/meta/<store key>/<SHA-256 of the entry key, hex>, one
 * file per entry, written atomically (a temporary file, then rename; every
 * open O_NOFOLLOW | O_CLOEXEC). Each file holds a header (magic, lengths, a
 * SHA-256 over key and bytes) and the entry key, so a torn or damaged file
 * (a crash before the data reached the disk) reads as a miss, never as other
 * bytes. Entries are not fsync()ed one by one: cache_meta_sync() makes
 * everything written so far durable at once. Callers still verify the bytes they
 * get back (the formats carry their own checksums): the cache only promises
 * to return what was put.
 *
 * The store key is the SHA-256 of the store location with any "user:password@"
 * removed and trailing slashes dropped, so credentials never reach the cache
 * and a location given with or without them shares one cache; so do
 * http(s) locations whose scheme or host differ in case only, or by a port
 * that is the scheme's default (http://h:80/x and HTTP://H/x, https with
 * 443).
 *
 * Thread-safe: entries are independent files; concurrent puts of one key by
 * several threads or processes leave one complete copy. Never logs.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct cache_meta;

/* Entries larger than this are neither stored nor returned. */
#define CACHE_META_ENTRY_MAX (64u << 20)
#define CACHE_META_STORE_KEY_LEN 64 /* hex characters */

/*
 * The store key of @location (see above) into @out (65 bytes with the NUL).
 * -EINVAL for an empty location.
 */
int cache_meta_store_key(const char *location, char out[CACHE_META_STORE_KEY_LEN + 1]);

/*
 * Opens (creating with mode 0700 if needed) the metadata cache of the store
 * at @location below @cache_dir. On failure, a message goes to @msg (may be
 * NULL). Errors: -errno of mkdir/open.
 */
int cache_meta_open(const char *cache_dir, const char *location, struct cache_meta **ret, char *msg,
                    size_t msg_len);
/* NULL-safe. */
void cache_meta_free(struct cache_meta *m);

/*
 * Stores @len bytes under @key (any NUL-terminated string, e.g. "get:vm/100/x").
 * An identical entry already present is left alone (no write). -EFBIG above
 * CACHE_META_ENTRY_MAX, else -errno of the writes.
 */
int cache_meta_put(struct cache_meta *m, const char *key, const void *data, size_t len);

/*
 * The bytes stored under @key, in a malloc()ed buffer (one extra NUL byte past
 * the end, not counted in *ret_len) owned by the caller; *ret_mtime (may be
 * NULL) gets the time the entry was written (seconds since the epoch).
 * -ENOENT when absent, -EFBIG when longer than @max, -EBADMSG when the file
 * is damaged (it is removed), else -errno.
 */
int cache_meta_get(struct cache_meta *m, const char *key, size_t max, void **ret, size_t *ret_len,
                   int64_t *ret_mtime);

/* Removes the entry of @key, if any. 0 or -errno (-ENOENT when absent). */
int cache_meta_remove(struct cache_meta *m, const char *key);

/* Makes the entries written so far durable (syncfs of the cache's filesystem). */
int cache_meta_sync(struct cache_meta *m);

/* What the metadata caches of every store below @cache_dir hold: their
 * entries, the disk space they take (allocated bytes) and how many stores
 * have entries. No meta/ directory is 0 of each. -errno of opening it. */
struct cache_meta_usage {
    uint64_t stores, entries, bytes;
};
int cache_meta_usage(const char *cache_dir, struct cache_meta_usage *ret);

/* Removes every store's entries below @cache_dir (their directories stay:
 * a running daemon writes through its open descriptor of its store's);
 * *@ret_removed (may be NULL) gets how many entries went. Symbolic links
 * are removed, never followed. -errno of the first failure (the rest is
 * still removed). */
int cache_meta_clear(const char *cache_dir, uint64_t *ret_removed);
