/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "blob.h"
#include "pbs_key.h"
#include "buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <zstd.h>

#include "digest.h"
#include "names.h"
#include "pbs_format.h"

/* CRC and digest are computed in steps of this size so the bytes stay in L2 between them. */
#define HASH_STEP (256u * 1024)

void fetch_data_release(fetch_data *d)
{
    if (!d)
        return;
    fetch_buf_free(d->base);
    d->base = NULL;
    d->bytes = NULL;
    d->len = 0;
}

int fetch_blob_kind(const void *raw, size_t raw_len)
{
    static const struct {
        const char *magic;
        enum fetch_blob_kind kind;
    } kinds[] = {
        {PBS_MAGIC_BLOB_UNCOMPRESSED, FETCH_BLOB_PLAIN},
        {PBS_MAGIC_BLOB_COMPRESSED, FETCH_BLOB_ZSTD},
        {PBS_MAGIC_BLOB_ENCRYPTED, FETCH_BLOB_ENCRYPTED},
        {PBS_MAGIC_BLOB_ENCR_COMPR, FETCH_BLOB_ENCRYPTED_ZSTD},
    };
    if (raw_len < PBS_MAGIC_LEN)
        return -EBADMSG;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (memcmp(raw, kinds[i].magic, PBS_MAGIC_LEN) == 0)
            return (int)kinds[i].kind;
    }
    return -EBADMSG;
}

static uint32_t read_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One decompression context per thread, freed when the thread exits. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_destroy(void *p)
{
    ZSTD_freeDCtx(p);
}

static void dctx_key_init(void)
{
    (void)pthread_key_create(&dctx_key, dctx_destroy);
}

static ZSTD_DCtx *thread_dctx(void)
{
    ZSTD_DCtx *d;
    pthread_once(&dctx_once, dctx_key_init);
    d = pthread_getspecific(dctx_key);
    if (!d) {
        d = ZSTD_createDCtx();
        if (d && pthread_setspecific(dctx_key, d) != 0) {
            ZSTD_freeDCtx(d);
            d = NULL;
        }
    } else {
        ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    }
    return d;
}

/* The digest of @bytes (keyed with @key's id key for an encrypted blob, NULL
 * for none) must be @want. */
static int check_digest(const uint8_t *bytes, size_t len, const uint8_t *want,
                        const struct fetch_pbs_key *key, fetch_error *err)
{
    uint8_t got[FETCH_SHA256_LEN];
    char hex_want[2 * FETCH_SHA256_LEN + 1], hex_got[2 * FETCH_SHA256_LEN + 1];
    int r = key ? fetch_pbs_key_digest(key, bytes, len, got) : fetch_sha256(bytes, len, got);
    if (r < 0)
        return fetch_error_set(err, r, "SHA-256 failed");
    if (memcmp(got, want, FETCH_SHA256_LEN) != 0) {
        fetch_hex_encode(want, FETCH_SHA256_LEN, hex_want);
        fetch_hex_encode(got, FETCH_SHA256_LEN, hex_got);
        return fetch_error_set(err, -EBADMSG,
                               "digest mismatch: expected %.16s…, data hashes to %.16s…", hex_want,
                               hex_got);
    }
    return 0;
}

/*
 * Uncompressed payload: the digest if given, else the CRC. The CRC only
 * catches damage, and bytes whose SHA-256 matches are the right bytes: with a
 * digest it would be a second pass over every chunk for nothing (a tenth of
 * a cold read's CPU measured).
 */
static int verify_plain(const uint8_t *p, size_t len, uint32_t want_crc, const uint8_t *digest,
                        const uint8_t *plain_sha256, fetch_error *err)
{
    uint32_t crc;

    if (digest && plain_sha256) /* hashed as it arrived; a mismatch is explained below */
        return memcmp(plain_sha256, digest, FETCH_SHA256_LEN) == 0
                   ? 0
                   : check_digest(p, len, digest, NULL, err);
    if (digest) /* in one call: fetch_sha256() may hash it beside another thread's */
        return check_digest(p, len, digest, NULL, err);
    /* ISA-L's folded CRC-32 (IEEE, reflected: same as zlib's) runs ~6x faster than zlib */
    crc = crc32_gzip_refl(0, p, (uint64_t)len);
    if (crc != want_crc)
        return fetch_error_set(err, -EBADMSG, "CRC-32 mismatch (stored %08x, computed %08x)",
                               want_crc, crc);
    return 0;
}

/*
 * Decompresses one zstd frame into a buffer of exactly @want bytes (or, if
 * @want is 0, of at most @max bytes). Frames may lack a content size.
 */
static int decompress(const uint8_t *src, size_t src_len, size_t want, size_t max,
                      uint8_t **ret_buf, size_t *ret_len, fetch_error *err)
{
    ZSTD_DCtx *d = thread_dctx();
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out;
    size_t cap, rc;
    uint8_t *buf;

    if (!d)
        return fetch_error_set(err, -ENOMEM, "out of memory (zstd context)");
    if (want) {
        cap = want;
    } else {
        unsigned long long fcs = ZSTD_getFrameContentSize(src, src_len);
        if (fcs == ZSTD_CONTENTSIZE_ERROR)
            return fetch_error_set(err, -EBADMSG, "corrupt zstd frame header");
        if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs > max)
            return fetch_error_set(err, -EFBIG, "blob decodes to %llu bytes, limit %zu", fcs, max);
        cap = fcs != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)fcs : (max < 65536 ? max : 65536);
    }
    buf = fetch_buf_alloc(cap ? cap : 1);
    if (!buf)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    out = (ZSTD_outBuffer){buf, cap, 0};

    for (;;) {
        rc = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(rc)) {
            fetch_buf_free(buf);
            return fetch_error_set(err, -EBADMSG, "corrupt zstd data: %s", ZSTD_getErrorName(rc));
        }
        if (rc == 0)
            break; /* frame complete */
        if (out.pos < out.size) {
            if (in.pos == in.size) {
                fetch_buf_free(buf);
                return fetch_error_set(err, -EBADMSG, "truncated zstd frame");
            }
            continue;
        }
        /* output full, frame not complete */
        if (want || cap >= max) {
            /* does the frame really hold more data? */
            uint8_t extra;
            ZSTD_outBuffer probe = {&extra, 1, 0};
            rc = ZSTD_decompressStream(d, &probe, &in);
            if (ZSTD_isError(rc) || probe.pos) {
                fetch_buf_free(buf);
                if (ZSTD_isError(rc))
                    return fetch_error_set(err, -EBADMSG, "corrupt zstd data: %s",
                                           ZSTD_getErrorName(rc));
                if (!want)
                    return fetch_error_set(err, -EFBIG, "blob decodes to more than %zu bytes", max);
                return fetch_error_set(err, -EBADMSG, "chunk decompresses to more than %zu bytes",
                                       want);
            }
            if (rc == 0)
                break;
            if (in.pos == in.size) {
                fetch_buf_free(buf);
                return fetch_error_set(err, -EBADMSG, "truncated zstd frame");
            }
            continue;
        }
        {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > max)
                ncap = max;
            uint8_t *nbuf = fetch_buf_realloc(buf, ncap);
            if (!nbuf) {
                fetch_buf_free(buf);
                return fetch_error_set(err, -ENOMEM, "out of memory");
            }
            buf = nbuf;
            cap = ncap;
            out.dst = buf;
            out.size = cap;
        }
    }
    if (in.pos != in.size) {
        fetch_buf_free(buf);
        return fetch_error_set(err, -EBADMSG, "trailing bytes after zstd frame");
    }
    if (want && out.pos != want) {
        fetch_buf_free(buf);
        return fetch_error_set(err, -EBADMSG, "chunk decompresses to %zu bytes, expected %zu",
                               out.pos, want);
    }
    *ret_buf = buf;
    *ret_len = out.pos;
    return 0;
}

/* The digest of the plaintext, step by step in the decryption's pass. */
static int enc_after(void *arg, const uint8_t *bytes, size_t len)
{
    return fetch_sha256_update(arg, bytes, len);
}

/*
 * An encrypted blob: magic, CRC of the ciphertext, IV, tag, ciphertext.
 * Takes @raw. Decrypted in place (the plaintext takes the ciphertext's
 * bytes, as a plain blob's payload stays in @raw), uncompressed with the
 * keyed digest of the plaintext in the same pass (where fetch_sha256_pairs(),
 * that digest is taken afterwards, in one call).
 *
 * The CRC is read only when the tag does not authenticate: GCM's tag proves
 * the ciphertext, so a CRC of it on every chunk would be a pass for nothing
 * (AES-256-GCM decrypts 4.5 GB/s alone, 4.1-4.2 with it, in a test program:
 * 2-3% of an encrypted read's CPU), as it is with a digest for plain blobs.
 * When the tag fails, the ciphertext is put back and its CRC tells damage (a
 * mismatch) from a wrong key.
 */
static int decode_encrypted(void *raw, size_t raw_len, bool zstd,
                            const struct fetch_blob_expect *exp, fetch_data *ret, fetch_error *err)
{
    uint8_t *p = raw, *plain, *out = NULL, got[FETCH_SHA256_LEN];
    size_t max = exp->len ? exp->len : exp->max_len, n;
    fetch_sha256_ctx *sha = NULL; /* of the plaintext, NULL when not checked in the pass */
    size_t out_len;
    uint32_t want_crc, crc;
    int r;

    if (!exp->key) {
        r = fetch_error_set(err, -ENOKEY, "blob is encrypted and no key is configured");
        goto fail;
    }
    if (raw_len < PBS_BLOB_ENC_HDR_LEN) {
        r = fetch_error_set(err, -EBADMSG, "encrypted blob truncated (%zu bytes)", raw_len);
        goto fail;
    }
    n = raw_len - PBS_BLOB_ENC_HDR_LEN;
    if (!zstd && (exp->len ? n != exp->len : n > max)) {
        r = fetch_error_set(err, exp->len ? -EBADMSG : -EFBIG,
                            "encrypted blob holds %zu bytes, expected %s%zu", n,
                            exp->len ? "" : "at most ", max);
        goto fail;
    }
    /* hashed in the decryption's pass, step by step while the plaintext is
     * in the CPU's cache, unless fetch_sha256() pairs messages: then the
     * whole plaintext afterwards, in one call, costs less */
    if (!zstd && exp->digest && !fetch_sha256_pairs() && !(sha = fetch_sha256_new())) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    plain = p + PBS_BLOB_ENC_HDR_LEN;
    want_crc = read_le32(p + PBS_BLOB_CRC_OFFSET);
    r = fetch_pbs_gcm_decrypt_steps(exp->key->key, p + PBS_BLOB_HDR_LEN,
                                    p + PBS_BLOB_HDR_LEN + PBS_BLOB_IV_LEN, plain, n,
                                    sha ? HASH_STEP : 0, sha ? enc_after : NULL, sha);
    if (r == -EBADMSG && (crc = crc32_gzip_refl(0, plain, (uint64_t)n)) != want_crc) {
        r = fetch_error_set(err, -EBADMSG, "CRC-32 mismatch (stored %08x, computed %08x)", want_crc,
                            crc);
        goto fail;
    }
    if (r < 0) {
        r = r == -EBADMSG ? fetch_error_set(err, r,
                                            "encrypted blob does not authenticate (a wrong key, "
                                            "or damaged)")
                          : fetch_error_set(err, r, "AES-256-GCM failed");
        goto fail;
    }
    if (zstd) {
        r = decompress(plain, n, exp->len, max, &out, &out_len, err);
        fetch_buf_free(raw);
        raw = NULL;
        if (r < 0)
            goto fail;
        raw = out;
        if (exp->digest && (r = check_digest(out, out_len, exp->digest, exp->key, err)) < 0)
            goto fail;
    } else {
        out = plain;
        out_len = n;
        if (sha &&
            ((r = fetch_sha256_update(sha, exp->key->id_key, sizeof(exp->key->id_key))) < 0 ||
             (r = fetch_sha256_final(sha, got)) < 0)) {
            r = fetch_error_set(err, r, "SHA-256 failed");
            goto fail;
        }
        /* a mismatch: the full check says so, with both digests */
        if (exp->digest && (!sha || memcmp(got, exp->digest, FETCH_SHA256_LEN) != 0) &&
            (r = check_digest(out, out_len, exp->digest, exp->key, err)) < 0)
            goto fail;
    }
    fetch_sha256_free(sha);
    ret->base = raw;
    ret->bytes = out;
    ret->len = out_len;
    return 0;
fail:
    fetch_sha256_free(sha);
    fetch_buf_free(raw);
    return r;
}

int fetch_blob_decode(void *raw, size_t raw_len, const struct fetch_blob_expect *exp,
                      fetch_data *ret, fetch_error *err)
{
    const uint8_t *p = raw;
    size_t max = exp->len ? exp->len : exp->max_len;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    uint32_t crc;
    int kind, r;

    if (raw_len > PBS_BLOB_MAX) {
        r = fetch_error_set(err, -EFBIG, "blob of %zu bytes exceeds the %u byte limit", raw_len,
                            PBS_BLOB_MAX);
        goto fail;
    }
    kind = fetch_blob_kind(raw, raw_len);
    if (kind < 0) {
        if (raw_len < PBS_MAGIC_LEN)
            r = fetch_error_set(err, -EBADMSG, "blob truncated (%zu bytes)", raw_len);
        else
            r = fetch_error_set(err, -EBADMSG, "not a blob (unknown magic)");
        goto fail;
    }
    if (kind == FETCH_BLOB_ENCRYPTED || kind == FETCH_BLOB_ENCRYPTED_ZSTD)
        return decode_encrypted(raw, raw_len, kind == FETCH_BLOB_ENCRYPTED_ZSTD, exp, ret, err);
    if (raw_len < PBS_BLOB_HDR_LEN) {
        r = fetch_error_set(err, -EBADMSG, "blob truncated (%zu bytes)", raw_len);
        goto fail;
    }
    crc = read_le32(p + PBS_BLOB_CRC_OFFSET);

    if (kind == FETCH_BLOB_PLAIN) {
        size_t n = raw_len - PBS_BLOB_HDR_LEN;
        if (exp->len && n != exp->len) {
            r = fetch_error_set(err, -EBADMSG, "blob holds %zu bytes, expected %zu", n, exp->len);
            goto fail;
        }
        if (!exp->len && n > max) {
            r = fetch_error_set(err, -EFBIG, "blob holds %zu bytes, limit %zu", n, max);
            goto fail;
        }
        r = verify_plain(p + PBS_BLOB_HDR_LEN, n, crc, exp->digest, exp->plain_sha256, err);
        if (r < 0)
            goto fail;
        ret->base = raw;
        ret->bytes = p + PBS_BLOB_HDR_LEN;
        ret->len = n;
        return 0;
    }

    /* zstd: CRC covers the compressed payload, the digest the plaintext */
    r = verify_plain(p + PBS_BLOB_HDR_LEN, raw_len - PBS_BLOB_HDR_LEN, crc, NULL, NULL, err);
    if (r < 0)
        goto fail;
    r = decompress(p + PBS_BLOB_HDR_LEN, raw_len - PBS_BLOB_HDR_LEN, exp->len, max, &plain,
                   &plain_len, err);
    if (r < 0)
        goto fail;
    fetch_buf_free(raw);
    if (exp->digest && (r = check_digest(plain, plain_len, exp->digest, NULL, err)) < 0) {
        fetch_buf_free(plain);
        return r;
    }
    ret->base = plain;
    ret->bytes = plain;
    ret->len = plain_len;
    return 0;

fail:
    fetch_buf_free(raw);
    return r;
}
