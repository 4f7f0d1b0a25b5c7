/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PBS DataBlob decoding (pbs.md §5): magic, CRC-32, zstd, digest.
 * Chunk files and *.blob files share this format. Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Decoded bytes: @bytes points into the allocation @base, which the holder owns. */
typedef struct fetch_data {
    void *base;
    const uint8_t *bytes;
    size_t len;
} fetch_data;

/* Frees the allocation and clears @d. NULL-safe; safe on a cleared fetch_data. */
void fetch_data_release(fetch_data *d);

enum fetch_blob_kind {
    FETCH_BLOB_PLAIN,
    FETCH_BLOB_ZSTD,
    FETCH_BLOB_ENCRYPTED,
    FETCH_BLOB_ENCRYPTED_ZSTD,
};

/* Kind of a raw blob from its magic, or -EBADMSG (short or unknown magic). */
int fetch_blob_kind(const void *raw, size_t raw_len);

struct fetch_pbs_key;

struct fetch_blob_expect {
    /* exact plaintext length; 0 = not known, then at most @max_len */
    size_t len;
    size_t max_len;
    /* SHA-256 the plaintext must have (keyed with the id key for an
     * encrypted blob), or NULL to skip the check */
    const uint8_t *digest;
    /* the key encrypted blobs are read with (fetch/pbs_key.h); NULL: none */
    const struct fetch_pbs_key *key;
    /* NULL, or the SHA-256 of the raw blob's bytes after its header, taken
     * from these very bytes (as they arrived: fetch/chunk.h's tap); an
     * uncompressed blob is then checked against @digest without hashing it
     * again. Ignored for other kinds. */
    const uint8_t *plain_sha256;
};

/*
 * Decodes a raw blob. Takes ownership of @raw (a malloc()ed buffer) whether
 * it succeeds or not. On success fills @ret (plaintext; for an uncompressed
 * blob it points into @raw, so no copy is made).
 * An encrypted blob (AES-256-GCM, the CRC over the ciphertext) is decrypted
 * with @exp->key, then decompressed if it is the compressed kind; its digest
 * is keyed (SHA-256 of the plaintext and the key's id key).
 * The CRC of an uncompressed blob is checked only without @exp->digest (the
 * digest is the stronger check of the same bytes).
 * Errors: -EBADMSG (truncated, bad magic, CRC mismatch, corrupt zstd frame,
 * decoded length differs from the expected one, digest mismatch, ciphertext
 * that does not authenticate with the key), -ENOKEY (encrypted blob and no
 * key), -EFBIG (larger than the limits), -ENOMEM.
 */
int fetch_blob_decode(void *raw, size_t raw_len, const struct fetch_blob_expect *exp,
                      fetch_data *ret, fetch_error *err);
