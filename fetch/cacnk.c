/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cacnk.h"
#include "chunk.h"
#include "buf.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "names.h"

#define ID_HEX_LEN 64
/* xz streams asking for more memory than this are refused (casync writes preset
 * 6: ~9 MiB; preset 9 needs 65 MiB) */
#define XZ_MEMLIMIT (72u * 1024 * 1024)

static const uint8_t magic_zstd[] = {0x28, 0xb5, 0x2f, 0xfd};
static const uint8_t magic_xz[] = {0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00};
static const uint8_t magic_gzip[] = {0x1f, 0x8b};

int fetch_cacnk_path(const char *prefix, const uint8_t id[32], bool compressed, char *buf,
                     size_t len)
{
    char hex[ID_HEX_LEN + 1];
    int n;

    fetch_hex_encode(id, 32, hex);
    n = snprintf(buf, len, "%s%.4s/%s%s", prefix, hex, hex, compressed ? ".cacnk" : "");
    if (n < 0 || (size_t)n >= len)
        return -ENAMETOOLONG;
    return 0;
}

size_t fetch_cacnk_max_raw(size_t len)
{
    /* zstd's own bound; xz (LZMA2 stored chunks: 3 bytes per 64 KiB plus
     * stream headers and index) and gzip (stored blocks: 5 bytes per 16 KiB
     * plus 18) stay far below the second one */
    size_t zstd = ZSTD_compressBound(len);
    size_t other = len / 8 + 64 * 1024;

    if (len > SIZE_MAX - other)
        return SIZE_MAX;
    other += len;
    return zstd > other ? zstd : other;
}

/* One decompression context per thread, freed when the thread exits. */
static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;

static void zstd_key_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static void zstd_key_create(void)
{
    (void)pthread_key_create(&zstd_key, zstd_key_free);
}

static ZSTD_DCtx *zstd_context(void)
{
    ZSTD_DCtx *d;

    pthread_once(&zstd_once, zstd_key_create);
    d = pthread_getspecific(zstd_key);
    if (d)
        return d;
    d = ZSTD_createDCtx();
    if (d && pthread_setspecific(zstd_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}

/*
 * Each decoder writes into @out, which has room for @len + 1 bytes: filling
 * the extra byte proves the stream holds more than @len. The frame size
 * fields of the stream are never consulted for the length.
 */
static int decode_zstd(const uint8_t *src, size_t src_len, uint8_t *out, size_t len,
                       fetch_error *err)
{
    ZSTD_DCtx *d = zstd_context();
    size_t n;

    if (!d)
        return fetch_error_set(err, -ENOMEM, "out of memory (zstd context)");
    /* whole frames only; anything after the last frame is an error here */
    n = ZSTD_decompressDCtx(d, out, len + 1, src, src_len);
    if (ZSTD_isError(n)) {
        if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
            return fetch_error_set(err, -EBADMSG, "zstd data decompresses to more than %zu bytes",
                                   len);
        if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
            return fetch_error_set(err, -ENOMEM, "out of memory (zstd)");
        return fetch_error_set(err, -EBADMSG, "corrupt zstd data: %s", ZSTD_getErrorName(n));
    }
    if (n > len)
        return fetch_error_set(err, -EBADMSG, "zstd data decompresses to more than %zu bytes", len);
    if (n < len)
        return fetch_error_set(err, -EBADMSG, "zstd data decompresses to %zu bytes, expected %zu",
                               n, len);
    return 0;
}

static bool has_magic(const uint8_t *p, size_t len, const uint8_t *magic, size_t magic_len)
{
    return len >= magic_len && memcmp(p, magic, magic_len) == 0;
}

/*
 * Where the plaintext starts in @src when it is a zstd frame (RFC 8878 §3.1)
 * holding exactly @len bytes as one raw (stored) block and nothing else:
 * what zstd writes for data it cannot compress, such as already compressed
 * files. Such a chunk is used in place, without a decompression that is
 * only a copy. 0 for anything else (a dictionary, a checksum, a frame
 * content size other than @len, more blocks, trailing bytes...): the
 * decoder proper handles those.
 */
static size_t zstd_stored_at(const uint8_t *src, size_t src_len, size_t len)
{
    static const uint8_t fcs_bytes[4] = {0, 2, 4, 8};
    size_t at, fcs_len;
    uint32_t block;
    uint8_t fhd;

    if (src_len < 6 || !has_magic(src, src_len, magic_zstd, sizeof(magic_zstd)))
        return 0;
    fhd = src[4];
    /* reserved bit, content checksum, dictionary id */
    if (fhd & 0x08 || fhd & 0x04 || fhd & 0x03)
        return 0;
    at = 5;
    fcs_len = fcs_bytes[fhd >> 6];
    if (fhd & 0x20) {
        if (!fcs_len)
            fcs_len = 1; /* a single segment always states the content size */
    } else {
        /* the window descriptor: a block is at most the window */
        unsigned exp = src[at] >> 3, mant = src[at] & 7;
        uint64_t window = (uint64_t)1 << (10 + exp);
        window += window / 8 * mant;
        if (len > window)
            return 0;
        at++;
    }
    if (fcs_len) {
        uint64_t fcs = 0;
        if (src_len < at + fcs_len)
            return 0;
        for (size_t i = 0; i < fcs_len; i++)
            fcs |= (uint64_t)src[at + i] << (8 * i);
        if (fcs_len == 2)
            fcs += 256;
        if (fcs != len)
            return 0;
        at += fcs_len;
    }
    if (src_len < at + 3)
        return 0;
    block = (uint32_t)src[at] | (uint32_t)src[at + 1] << 8 | (uint32_t)src[at + 2] << 16;
    /* the last block, raw, of @len bytes, at most 128 KiB, ending the object */
    if (!(block & 1) || ((block >> 1) & 3) != 0 || (block >> 3) != len || len > (128u << 10))
        return 0;
    at += 3;
    return src_len == at + len ? at : 0;
}

static int decode_xz(const uint8_t *src, size_t src_len, uint8_t *out, size_t len, fetch_error *err)
{
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_ret lr;
    size_t produced;
    int r = 0;

    lr = lzma_stream_decoder(&s, XZ_MEMLIMIT, 0);
    if (lr != LZMA_OK)
        return lr == LZMA_MEM_ERROR
                   ? fetch_error_set(err, -ENOMEM, "out of memory (xz)")
                   : fetch_error_set(err, -EIO, "xz decoder setup failed (%d)", (int)lr);
    s.next_in = src;
    s.avail_in = src_len;
    s.next_out = out;
    s.avail_out = len + 1;
    /* LZMA_OK means progress; without any, the next call says LZMA_BUF_ERROR */
    do
        lr = lzma_code(&s, LZMA_FINISH);
    while (lr == LZMA_OK && s.avail_out > 0);
    produced = len + 1 - s.avail_out;

    switch (lr) {
    case LZMA_STREAM_END:
        if (s.avail_in != 0)
            r = fetch_error_set(err, -EBADMSG, "%zu trailing bytes after the xz stream",
                                s.avail_in);
        else if (produced > len)
            r = fetch_error_set(err, -EBADMSG, "xz data decompresses to more than %zu bytes", len);
        else if (produced < len)
            r = fetch_error_set(err, -EBADMSG, "xz data decompresses to %zu bytes, expected %zu",
                                produced, len);
        break;
    case LZMA_OK: /* the output is full and the stream goes on */
        r = fetch_error_set(err, -EBADMSG, "xz data decompresses to more than %zu bytes", len);
        break;
    case LZMA_MEM_ERROR:
        r = fetch_error_set(err, -ENOMEM, "out of memory (xz)");
        break;
    case LZMA_MEMLIMIT_ERROR:
        r = fetch_error_set(err, -EBADMSG, "xz stream needs more than %u bytes of memory",
                            XZ_MEMLIMIT);
        break;
    case LZMA_BUF_ERROR:
        r = fetch_error_set(err, -EBADMSG, "truncated xz stream (%zu bytes decoded)", produced);
        break;
    default: /* LZMA_FORMAT_ERROR, LZMA_OPTIONS_ERROR, LZMA_DATA_ERROR, ... */
        r = fetch_error_set(err, -EBADMSG, "corrupt xz data (liblzma error %d)", (int)lr);
        break;
    }
    lzma_end(&s);
    return r;
}

static int decode_gzip(const uint8_t *src, size_t src_len, uint8_t *out, size_t len,
                       fetch_error *err)
{
    z_stream z;
    size_t produced;
    int zr, r = 0;

    if (src_len > UINT_MAX || len >= UINT_MAX)
        return fetch_error_set(err, -EBADMSG, "gzip chunk too large for zlib");
    memset(&z, 0, sizeof(z));
    zr = inflateInit2(&z, 15 + 16); /* gzip wrapper only */
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? fetch_error_set(err, -ENOMEM, "out of memory (zlib)")
                                 : fetch_error_set(err, -EIO, "zlib setup failed (%d)", zr);
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = out;
    z.avail_out = (uInt)(len + 1);
    /* Z_OK means progress; without any, the next call says Z_BUF_ERROR */
    do
        zr = inflate(&z, Z_NO_FLUSH);
    while (zr == Z_OK && z.avail_out > 0);
    produced = len + 1 - z.avail_out;

    switch (zr) {
    case Z_STREAM_END:
        if (z.avail_in != 0)
            r = fetch_error_set(err, -EBADMSG, "%u trailing bytes after the gzip stream",
                                z.avail_in);
        else if (produced > len)
            r = fetch_error_set(err, -EBADMSG, "gzip data decompresses to more than %zu bytes",
                                len);
        else if (produced < len)
            r = fetch_error_set(err, -EBADMSG, "gzip data decompresses to %zu bytes, expected %zu",
                                produced, len);
        break;
    case Z_OK:
        r = fetch_error_set(err, -EBADMSG, "gzip data decompresses to more than %zu bytes", len);
        break;
    case Z_MEM_ERROR:
        r = fetch_error_set(err, -ENOMEM, "out of memory (zlib)");
        break;
    case Z_BUF_ERROR:
        r = fetch_error_set(err, -EBADMSG, "truncated gzip stream (%zu bytes decoded)", produced);
        break;
    default: /* Z_DATA_ERROR (also a CRC or length mismatch), Z_NEED_DICT, ... */
        r = fetch_error_set(err, -EBADMSG, "corrupt gzip data: %s",
                            z.msg ? z.msg : "unknown error");
        break;
    }
    inflateEnd(&z);
    return r;
}

static int decompress(const uint8_t *src, size_t src_len, uint8_t *out, size_t len,
                      fetch_error *err)
{
    if (has_magic(src, src_len, magic_zstd, sizeof(magic_zstd)))
        return decode_zstd(src, src_len, out, len, err);
    if (has_magic(src, src_len, magic_xz, sizeof(magic_xz)))
        return decode_xz(src, src_len, out, len, err);
    if (has_magic(src, src_len, magic_gzip, sizeof(magic_gzip)))
        return decode_gzip(src, src_len, out, len, err);
    return fetch_error_set(err, -EBADMSG, "unknown compression magic %02x %02x %02x %02x",
                           src_len > 0 ? src[0] : 0, src_len > 1 ? src[1] : 0,
                           src_len > 2 ? src[2] : 0, src_len > 3 ? src[3] : 0);
}

static int verify(enum fetch_digest_algo algo, const uint8_t id[32], const uint8_t *data,
                  size_t len, fetch_error *err)
{
    uint8_t got[32];
    char hex[ID_HEX_LEN + 1];
    int r = fetch_digest(algo, data, len, got);

    if (r < 0)
        return fetch_error_set(err, r, "hashing failed");
    if (memcmp(got, id, sizeof(got)) != 0) {
        fetch_hex_encode(got, sizeof(got), hex);
        return fetch_error_set(err, -EBADMSG, "digest mismatch (%s data hashes to %.16s…)",
                               algo == FETCH_DIGEST_SHA512_256 ? "SHA-512/256" : "SHA-256", hex);
    }
    return 0;
}

int fetch_cacnk_decode(enum fetch_digest_algo algo, const uint8_t id[32], size_t len,
                       bool compressed, void *raw, size_t raw_len, fetch_data *ret,
                       fetch_error *err)
{
    char hex[ID_HEX_LEN + 1];
    uint8_t *plain = NULL; /* owns the plaintext, from @at on */
    size_t at = 0;
    int r;

    fetch_hex_encode(id, 32, hex);
    if (raw_len == 0) {
        fetch_buf_free(raw);
        return fetch_error_set(err, -ENOENT, "chunk %s is missing (empty object)", hex);
    }
    if (!compressed) {
        if (raw_len != len) {
            r = fetch_error_set(err, -EBADMSG, "raw chunk holds %zu bytes, expected %zu", raw_len,
                                len);
            goto fail;
        }
        plain = raw; /* the object is the plaintext */
        raw = NULL;
    } else if (len == SIZE_MAX) {
        r = fetch_error_set(err, -EBADMSG, "chunk length %zu out of range", len);
        goto fail;
    } else if ((at = zstd_stored_at(raw, raw_len, len)) != 0) {
        plain = raw; /* used in place */
        raw = NULL;
    } else {
        if (!(plain = fetch_buf_alloc(len + 1))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            goto fail;
        }
        r = decompress(raw, raw_len, plain, len, err);
        fetch_buf_free(raw);
        raw = NULL;
        if (r < 0)
            goto fail;
    }
    if ((r = verify(algo, id, plain + at, len, err)) < 0)
        goto fail;
    ret->base = plain;
    ret->bytes = plain + at;
    ret->len = len;
    return 0;

fail:
    fetch_buf_free(plain);
    fetch_buf_free(raw);
    return fetch_error_prefix(err, r, "chunk %s", hex);
}

/*
 * casync chunk objects: "<prefix><4 hex>/<64 hex>.cacnk" (compressed, name
 * 0), or in an uncompressed store the plaintext under "<…>/<64 hex>" (name 1).
 */
static int cacnk_chunk_path(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                            unsigned name, char *buf, size_t len)
{
    return fetch_cacnk_path(ctx && ctx->prefix ? ctx->prefix : "", ch->digest, name == 0, buf, len);
}

static size_t cacnk_chunk_max_raw(const struct fetch_chunk_ref *ch, unsigned name)
{
    return name == 0 ? fetch_cacnk_max_raw(ch->len) : ch->len;
}

static int cacnk_chunk_decode(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                              unsigned name, void *raw, size_t raw_len, const uint8_t *plain_sha256,
                              fetch_data *ret, fetch_error *err)
{
    (void)ctx;
    (void)plain_sha256; /* no plain_after_skew: never given */
    return fetch_cacnk_decode((enum fetch_digest_algo)ch->algo, ch->digest, ch->len, name == 0, raw,
                              raw_len, ret, err);
}

const struct fetch_chunk_format fetch_cacnk_chunk_format = {
    .label = "casync chunk",
    .names = 2,
    .path = cacnk_chunk_path,
    .max_raw = cacnk_chunk_max_raw,
    .decode = cacnk_chunk_decode,
};
