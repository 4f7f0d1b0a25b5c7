/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PBS datastore reader over a fetch_store: the catalog of finished snapshots,
 * their archives, and verified chunks (pbs.md §3-§7). Thread-safe: a catalog
 * is immutable once loaded; chunk reads share nothing.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "error.h"
#include "image.h"
#include "manifest.h"
#include "store.h"

/* Manifest and config blobs larger than this are not read into memory. */
#define FETCH_PBS_SMALL_BLOB_MAX (16u * 1024 * 1024)

struct fetch_pbs_snapshot {
    char *ns;     /* "" for the root namespace, else "a/b" (validated components) */
    char type[8]; /* vm, ct, host */
    char *id;
    int64_t time;
    char time_str[24]; /* YYYY-MM-DDTHH:MM:SSZ */
    char *path;        /* store-relative directory, e.g. "ns/a/vm/100/2025-07-10T12:00:00Z" */
    struct fetch_manifest *manifest;
};

struct fetch_pbs_catalog {
    size_t count;
    struct fetch_pbs_snapshot *snaps; /* sorted by ns, type, id, time */
    size_t warning_count;
    char **warnings; /* skipped entries, one line each */
};

/*
 * Checks that the store looks like a datastore (has a .chunks directory).
 * -EMEDIUMTYPE with a message if not.
 */
int fetch_pbs_probe(struct fetch_store *s, fetch_error *err);
/*
 * The same for directory @dir of the store ("" = the root). Costs one small
 * listing of @dir and, when its listing hides dot entries (nginx autoindex),
 * one of .chunks/0000 (never the 65536 entries of .chunks, unless a copy
 * without empty directories lacks .chunks/0000).
 */
int fetch_pbs_probe_dir(struct fetch_store *s, const char *dir, fetch_error *err);

/*
 * Walks namespaces, groups and snapshots. Only finished snapshots (with an
 * index.json.blob) are listed; unreadable or inconsistent ones are skipped
 * and described in warnings. Fails only when the root cannot be read.
 */
int fetch_pbs_catalog_load(struct fetch_store *s, struct fetch_pbs_catalog **ret, fetch_error *err);

/*
 * Builds a catalog of just the snapshots at @paths ("[ns/NS/]TYPE/ID/TIME"),
 * without listing anything. Fails with -EINVAL for a malformed path and
 * -ENOENT (or the manifest's error) for a snapshot that cannot be read.
 */
int fetch_pbs_catalog_load_paths(struct fetch_store *s, const char *const *paths, size_t n,
                                 struct fetch_pbs_catalog **ret, fetch_error *err);
void fetch_pbs_catalog_free(struct fetch_pbs_catalog *c);

enum fetch_pbs_archive {
    FETCH_PBS_ARCHIVE_OTHER,
    FETCH_PBS_ARCHIVE_FIDX,
    FETCH_PBS_ARCHIVE_DIDX, /* a pxar file archive (.pxar, .mpxar, .ppxar) or other .didx */
    FETCH_PBS_ARCHIVE_BLOB,
    FETCH_PBS_ARCHIVE_CATALOG, /* catalog.pcat1.didx: the file list of the pxar archives */
};

/* Kind of a snapshot file by its suffix (and the name of the catalog);
 * @ret_stem_len (may be NULL) gets the length of the name without
 * ".fidx"/".didx"/".blob". */
enum fetch_pbs_archive fetch_pbs_archive_kind(const char *file, size_t *ret_stem_len);

struct fetch_pbs_key;

/*
 * Whether archive @file of @snap can be read with @key (NULL: no key): 0
 * for an archive that is not encrypted, or an encrypted one whose manifest
 * names @key's fingerprint (or none); -ENOKEY encrypted and no key;
 * -EKEYREJECTED encrypted with another key ("this snapshot was encrypted with
 * key <fp>, the key file is <fp>").
 */
int fetch_pbs_check_key(const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        fetch_error *err);

/*
 * Reads a .fidx archive of @snap and builds its image. Checks the key
 * (fetch_pbs_check_key), the index and that its checksum and size equal the
 * manifest's: -ENOKEY, -EKEYREJECTED, -EBADMSG for any inconsistency. The
 * image of an encrypted archive names its chunks by keyed digests
 * (FETCH_DIGEST_SHA256_KEYED): the chunk layer needs @key to read them.
 */
int fetch_pbs_open_fidx(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        struct fetch_image **ret, fetch_error *err);

/*
 * Reads a .didx archive of @snap (a pxar stream) and builds the image of its
 * stream, like fetch_pbs_open_fidx.
 */
int fetch_pbs_open_didx(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        struct fetch_image **ret, fetch_error *err);

/* Reads and decodes a small .blob of @snap, verifying the manifest csum;
 * an encrypted one is decrypted with @key (errors as fetch_pbs_check_key). */
int fetch_pbs_read_blob(struct fetch_store *s, const struct fetch_pbs_snapshot *snap,
                        const struct fetch_manifest_file *file, const struct fetch_pbs_key *key,
                        fetch_data *ret, fetch_error *err);

/* ".chunks/<4 hex>/<64 hex>": the store path of chunk @digest. */
#define FETCH_PBS_CHUNK_PATH_MAX 80
void fetch_pbs_chunk_path(const uint8_t digest[32], char *buf, size_t len);
/* The largest stored object a chunk of @len plaintext bytes may be. */
size_t fetch_pbs_chunk_max_raw(size_t len);
/*
 * Decodes a fetched chunk object (ownership of the malloc()ed @raw passes to
 * this call) to exactly @len bytes whose SHA-256 is @digest. With @key, the
 * chunk of an encrypted archive: it must be encrypted, it is decrypted and
 * its digest is keyed; without, the chunk of a plain archive, which must not
 * be. -ENOENT for a 0-byte object, -EBADMSG when corrupt, not authentic or
 * encrypted where it must not be (or the other way round). @plain_sha256:
 * NULL, or the SHA-256 of @raw's bytes after the blob header, taken from
 * these very bytes (struct fetch_blob_expect).
 */
int fetch_pbs_decode_chunk(const uint8_t digest[32], size_t len, const struct fetch_pbs_key *key,
                           void *raw, size_t raw_len, const uint8_t *plain_sha256, fetch_data *ret,
                           fetch_error *err);

/*
 * Reads chunk @digest from .chunks/ and decodes it to exactly @len bytes whose
 * SHA-256 is @digest. -ENOENT when missing (a 0-byte file counts as missing),
 * -EBADMSG when corrupt.
 */
int fetch_pbs_read_chunk(struct fetch_store *s, const uint8_t digest[32], size_t len,
                         fetch_data *ret, fetch_error *err);
