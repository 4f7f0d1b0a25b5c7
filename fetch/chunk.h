/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk formats: how the chunk an extent names (fetch/image.h: its kind,
 * digest algorithm, digest and plaintext length) is found in a store and
 * turned into verified plaintext. Each kind is one struct fetch_chunk_format,
 * defined beside its decoder (fetch/pbs.c, fetch/cacnk.c) and listed in the
 * table of fetch/chunk.c; the read path (fs/chunks.c) knows chunks only
 * through the calls below. A new kind is a new enum fetch_chunk_kind value,
 * its format and one line in that table.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "digest.h"
#include "error.h"
#include "image.h"

/* The chunk an extent names: what naming, decoding and checking need. */
struct fetch_chunk_ref {
    uint8_t kind; /* enum fetch_chunk_kind */
    uint8_t algo; /* enum fetch_digest_algo of @digest */
    uint32_t len; /* plaintext bytes */
    uint8_t digest[32];
};

struct fetch_pbs_key;

/*
 * What chunks of every kind share in one mount: where the chunk objects live
 * below each store's root ("" or "default.castr/", ending in '/' unless
 * empty), and the key of encrypted chunks (PBS chunks with keyed digests,
 * FETCH_DIGEST_SHA256_KEYED), NULL when the mount has none.
 */
struct fetch_chunk_ctx {
    const char *prefix;
    const struct fetch_pbs_key *key;
};

/* Longest object path fetch_chunk_path() writes, prefix included. */
#define FETCH_CHUNK_PATH_MAX 512

/*
 * One chunk format. A chunk may be stored under one of @names names, tried
 * in order while the store says -ENOENT or -ELOOP (casync: "<id>.cacnk",
 * then the uncompressed "<id>"); @name below is that index.
 */
struct fetch_chunk_format {
    const char *label; /* for messages: "PBS blob", "casync chunk" */
    unsigned names;
    /* The store path of the object; -ENAMETOOLONG if @len is too small. */
    int (*path)(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch, unsigned name,
                char *buf, size_t len);
    /* The largest stored object a chunk of ch->len plaintext bytes may be. */
    size_t (*max_raw)(const struct fetch_chunk_ref *ch, unsigned name);
    /* Optional: the bytes before the plaintext in an object whose plaintext
     * is used where it lies (an uncompressed blob's header), so that the
     * fetcher places the object with the plaintext page-aligned (the disk
     * cache then writes it without a copy). A hint: a compressed object is
     * decoded elsewhere whatever it says. */
    size_t (*skew)(const struct fetch_chunk_ref *ch, unsigned name);
    /* Optional: whether an object that starts with the skew() bytes @head
     * holds the plaintext as it is after them, so that the SHA-256 of the
     * rest is the chunk's digest (an unencrypted, uncompressed PBS blob):
     * fetch_chunk_tap_feed() then hashes the object as it arrives. */
    bool (*plain_after_skew)(const struct fetch_chunk_ref *ch, unsigned name, const uint8_t *head);
    /*
     * Decodes a fetched object (ownership of the malloc()ed @raw passes to
     * the call) to exactly ch->len bytes whose digest is ch->digest (when
     * @plain_sha256 is not NULL, it is the SHA-256 of @raw's bytes after
     * skew(), taken from these very bytes, and need not be taken again): 0 with
     * @ret owning them, -ENOENT for a 0-byte object, -EBADMSG when corrupt,
     * -ENOKEY when it needs a key we do not have, -ENOMEM; @err says why.
     */
    int (*decode)(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                  unsigned name, void *raw, size_t raw_len, const uint8_t *plain_sha256,
                  fetch_data *ret, fetch_error *err);
};

/* The format of chunk kind @kind, or NULL for a kind this build does not know. */
const struct fetch_chunk_format *fetch_chunk_format_of(unsigned kind);

/* The chunk extent @e names (@e must not be a zero extent). */
void fetch_chunk_ref_of(const struct fetch_extent *e, struct fetch_chunk_ref *ret);

/* Whether another name follows @name for this chunk (after -ENOENT/-ELOOP). */
bool fetch_chunk_has_next_name(const struct fetch_chunk_ref *ch, unsigned name);

/* The calls of the chunk's format; -EINVAL (with a message) for an unknown kind. */
int fetch_chunk_path(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                     unsigned name, char *buf, size_t len);
size_t fetch_chunk_max_raw(const struct fetch_chunk_ref *ch, unsigned name);
size_t fetch_chunk_skew(const struct fetch_chunk_ref *ch, unsigned name);
/*
 * A chunk object's digest taken as it arrives (a fetch_tap_fn of
 * fetch/pool.h calls fetch_chunk_tap_feed()): a transfer thread that has
 * just copied the bytes hashes them while they are in its cache, and the
 * decoder does not read them again. Only objects whose format says so
 * (plain_after_skew) are hashed, and none where fetch_sha256_pairs() (the
 * decoder's one call hashes them for less); others cost a comparison. Zero-initialise;
 * one per object being fetched; fed by one thread at a time, read by
 * fetch_chunk_decode() after the transfer.
 */
struct fetch_chunk_tap {
    fetch_sha256_ctx *sha; /* made on first use, kept for later attempts */
    uint64_t fed;          /* bytes of the current attempt seen */
    uint8_t state;         /* private */
};
/* One fetch_tap_fn call's bytes (@obj NULL: a new attempt). */
void fetch_chunk_tap_feed(struct fetch_chunk_tap *t, const struct fetch_chunk_ref *ch,
                          unsigned name, const uint8_t *obj, size_t off, size_t n);
void fetch_chunk_tap_release(struct fetch_chunk_tap *t);

/* @tap: NULL, or the tap that saw the object arrive (used only when it saw
 * all @raw_len bytes and hashed them). */
int fetch_chunk_decode(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                       unsigned name, void *raw, size_t raw_len, struct fetch_chunk_tap *tap,
                       fetch_data *ret, fetch_error *err);

/* The formats, defined beside their decoders. */
extern const struct fetch_chunk_format fetch_pbs_chunk_format;
extern const struct fetch_chunk_format fetch_cacnk_chunk_format;
