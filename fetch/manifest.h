/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PBS snapshot manifest (index.json.blob payload, pbs.md §7), parsed with json-c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum fetch_crypt {
    FETCH_CRYPT_NONE,
    FETCH_CRYPT_SIGN_ONLY,
    FETCH_CRYPT_ENCRYPT,
};

struct fetch_manifest_file {
    char *name; /* validated with fetch_name_is_file() */
    enum fetch_crypt crypt;
    uint64_t size;    /* fidx: image bytes; blob: raw file length */
    uint8_t csum[32]; /* fidx: index checksum; blob: SHA-256 of the raw file */
};

struct fetch_manifest {
    char type[8];
    char *id;
    int64_t time;
    size_t count;
    struct fetch_manifest_file *files;
    /* unprotected.key-fingerprint: the key that encrypted or signed it
     * (false when absent or malformed) */
    bool has_fingerprint;
    uint8_t key_fingerprint[32];
    /* signature: HMAC-SHA256 under the key's id key of @signed_json, the
     * canonical JSON of everything but "unprotected" and "signature"
     * (NULL when unsigned, or when the signature cannot verify: not 64 hex
     * digits, or a null value in the signed part) */
    bool has_signature;
    uint8_t signature[32];
    char *signed_json;
    size_t signed_len;
};

/*
 * Parses manifest JSON (@len bytes, need not be NUL-terminated). Validates
 * backup-type, backup-id, backup-time and every file entry (name, crypt-mode,
 * size, 64-hex csum). Errors: -EBADMSG with the reason, -ENOMEM.
 */
int fetch_manifest_parse(const char *json, size_t len, struct fetch_manifest **ret,
                         fetch_error *err);
void fetch_manifest_free(struct fetch_manifest *m);

struct fetch_pbs_key;

/*
 * Whether @m was made with key @k (@what: "encrypted", "signed"): 0 when its
 * fingerprint is @k's or it names none; -EKEYREJECTED with "this snapshot
 * was <what> with key <fp>, the key file is <fp>" in @err.
 */
int fetch_manifest_check_key(const struct fetch_manifest *m, const struct fetch_pbs_key *k,
                             const char *what, fetch_error *err);

/*
 * Checks the manifest's signature with key @k: 0 when it verifies,
 * -ENODATA when the manifest is not signed and was made without a key,
 * -EKEYREJECTED when it was signed with another key (its fingerprint is not
 * @k's), -EBADMSG when the signature does not verify (the protected part
 * was changed, or the manifest has no canonical form) or is missing from a
 * manifest made with a key (it names a fingerprint, or an archive is
 * encrypted or signed: the client signs every such manifest), -EIO. @err
 * says which.
 */
int fetch_manifest_verify(const struct fetch_manifest *m, const struct fetch_pbs_key *k,
                          fetch_error *err);

/* The entry named @name, or NULL. */
const struct fetch_manifest_file *fetch_manifest_find(const struct fetch_manifest *m,
                                                      const char *name);

/* "none", "sign-only", "encrypt" */
const char *fetch_crypt_name(enum fetch_crypt c);
