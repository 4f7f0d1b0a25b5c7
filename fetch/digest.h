/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SHA-256 helpers (OpenSSL EVP). Thread-safe. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FETCH_SHA256_LEN 32

/* SHA-256 of @len bytes; 0 or -ENOMEM/-EIO when OpenSSL fails. */
int fetch_sha256(const void *data, size_t len, uint8_t out[FETCH_SHA256_LEN]);

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
void fetch_sha256_free(fetch_sha256_ctx *c);
