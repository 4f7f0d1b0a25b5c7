/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SHA-256 and SHA-512/256 helpers (OpenSSL EVP). Thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FETCH_SHA256_LEN 32

/*
 * SHA-256 of @len bytes; 0 or -ENOMEM/-EIO when OpenSSL fails. On a CPU with
 * the SHA extensions this is our own code: a message of 1 MiB or more that
 * two threads hash at the same time is hashed beside the other one by one of
 * them, two blocks at a time, while the other sleeps (about half the CPU,
 * for the same wall time). LAZYIMG_NO_SHA_NI=1 in the environment (read
 * once) leaves every message to OpenSSL.
 */
int fetch_sha256(const void *data, size_t len, uint8_t out[FETCH_SHA256_LEN]);
/* The same for @len bytes at @data followed by @sfx_len (at most 64) at
 * @sfx, in one call (a keyed chunk digest, pbs.md §5); -EINVAL beyond 64. */
int fetch_sha256_suffixed(const void *data, size_t len, const void *sfx, size_t sfx_len,
                          uint8_t out[FETCH_SHA256_LEN]);
/*
 * Whether fetch_sha256() is our code on the SHA extensions, which hashes two
 * threads' messages of 1 MiB or more at once: a caller that could hash a
 * message piece by piece as it arrives (fetch_sha256_ctx) then spends less
 * CPU leaving it whole to fetch_sha256() (measured: 1.36 against 1.46 s of
 * daemon CPU per GiB for a cold read over HTTP with the cache filling),
 * even though a given message may end up hashed alone.
 */
bool fetch_sha256_pairs(void);
/* This thread's fetch_sha256() calls hash alone and take no one's message
 * along (a thread at a low priority, on which no reader may wait). */
void fetch_sha256_thread_solo(void);
/* While @on, a message of this thread that finds no other being hashed
 * waits up to a few milliseconds for another thread's to come, so that the
 * two are hashed together (for a chunk no reader waits on yet). */
void fetch_sha256_thread_patient(bool on);
/* 64-byte blocks hashed by fetch_sha256() so far, two messages at a time and
 * alone (both 0 where OpenSSL hashes). */
void fetch_sha256_pair_stats(uint64_t *paired, uint64_t *alone);

/*
 * SHA-256 of @len zero bytes. Results are memoised (a handful of chunk sizes
 * occur per image), so calling this per index entry is cheap.
 */
int fetch_sha256_zeros(uint64_t len, uint8_t out[FETCH_SHA256_LEN]);

/* Incremental form, for hashing alongside another pass over the same bytes. */
typedef struct fetch_sha256_ctx fetch_sha256_ctx;
fetch_sha256_ctx *fetch_sha256_new(void);
int fetch_sha256_update(fetch_sha256_ctx *c, const void *data, size_t len);
int fetch_sha256_final(fetch_sha256_ctx *c, uint8_t out[FETCH_SHA256_LEN]);
/* Starts over, as a new context would (after a final or part way). 0 or -EIO. */
int fetch_sha256_reset(fetch_sha256_ctx *c);
void fetch_sha256_free(fetch_sha256_ctx *c);

/* Chunk id algorithms: PBS uses SHA-256; casync SHA-512/256 or SHA-256. */
enum fetch_digest_algo {
    FETCH_DIGEST_SHA256 = 0,
    FETCH_DIGEST_SHA512_256 = 1,
    /* SHA-256(data ‖ 32-byte id key): chunks of encrypted PBS archives
     * (pbs.md §5). Needs the key: fetch_digest() refuses it (-EINVAL); see
     * fetch_pbs_key_digest() and fetch_digest_zeros_ladder_keyed(). */
    FETCH_DIGEST_SHA256_KEYED = 2,
};

/* @algo digest (32 bytes) of @len bytes; 0, -EINVAL or -ENOMEM/-EIO when OpenSSL fails. */
int fetch_digest(enum fetch_digest_algo algo, const void *data, size_t len, uint8_t out[32]);

/*
 * @algo digests of zero runs of each of @n strictly ascending lengths
 * @lens, in one pass over the longest (the hash state is copied at each
 * length): cheap for the thousands of distinct chunk lengths of a
 * variable-size index. 0, -EINVAL, -ENOMEM or -EIO.
 */
int fetch_digest_zeros_ladder(enum fetch_digest_algo algo, const uint64_t *lens, size_t n,
                              uint8_t (*out)[32]);
/* The same for FETCH_DIGEST_SHA256_KEYED: SHA-256(zeros ‖ @id_key). */
int fetch_digest_zeros_ladder_keyed(const uint8_t id_key[32], const uint64_t *lens, size_t n,
                                    uint8_t (*out)[32]);
