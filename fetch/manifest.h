/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PBS snapshot manifest (index.json.blob payload, pbs.md §7), parsed with json-c. */
#pragma once

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
};

/*
 * Parses manifest JSON (@len bytes, need not be NUL-terminated). Validates
 * backup-type, backup-id, backup-time and every file entry (name, crypt-mode,
 * size, 64-hex csum). Errors: -EBADMSG with the reason, -ENOMEM.
 */
int fetch_manifest_parse(const char *json, size_t len, struct fetch_manifest **ret,
                         fetch_error *err);
void fetch_manifest_free(struct fetch_manifest *m);

/* The entry named @name, or NULL. */
const struct fetch_manifest_file *fetch_manifest_find(const struct fetch_manifest *m,
                                                      const char *name);

/* "none", "sign-only", "encrypt" */
const char *fetch_crypt_name(enum fetch_crypt c);
