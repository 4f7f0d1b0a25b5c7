/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fixture builders for the fetch/ unit tests. Everything here is computed
 * with the reference libraries (OpenSSL SHA-256, zlib crc32, libzstd) and
 * never with fetch/ itself, so the fixtures are correct by construction and
 * independent of the code under test. Failures abort the test (fx_die).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FX_KIB ((size_t)1024)
#define FX_MIB ((size_t)1024 * 1024)

/* blob magics (pbs.md §2), spelled out here independently of fetch/pbs_format.h */
extern const uint8_t fx_magic_plain[8];
extern const uint8_t fx_magic_zstd[8];
extern const uint8_t fx_magic_encrypted[8];
extern const uint8_t fx_magic_encr_compr[8];
extern const uint8_t fx_magic_fidx[8];
extern const uint8_t fx_magic_didx[8];

__attribute__((noreturn, format(printf, 1, 2))) void fx_die(const char *fmt, ...);
void *fx_malloc(size_t len);
void *fx_memdup(const void *p, size_t len);

void fx_sha256(const void *data, size_t len, uint8_t out[32]);
void fx_sha512_256(const void *data, size_t len, uint8_t out[32]);
void fx_hex(const uint8_t *in, size_t len, char *out); /* 2*len+1 bytes */
void fx_unhex(const char *hex, uint8_t *out, size_t len);
uint32_t fx_crc32(const void *data, size_t len);
void fx_put_le32(uint8_t *p, uint32_t v);
void fx_put_le64(uint8_t *p, uint64_t v);

/* Deterministic, poorly compressible bytes (seeded xorshift). */
void fx_fill_random(void *buf, size_t len, uint64_t seed);
/* Compressible bytes: a short repeating text with the seed mixed in. */
void fx_fill_text(void *buf, size_t len, uint64_t seed);

/* One zstd frame of @data (level 1); @with_size: write Frame_Content_Size. */
uint8_t *fx_zstd_frame(const void *data, size_t len, bool with_size, size_t *ret_len);
/*
 * A hand-made zstd frame of @total bytes of @byte built from 128 KiB RLE
 * blocks (4 bytes each), so a few hundred KiB describe many GiB.
 */
uint8_t *fx_zstd_rle_frame(uint64_t total, uint8_t byte, bool with_size, size_t *ret_len);

/*
 * One zstd frame written the way casync 2 does (ZSTD_initCStream at level 3,
 * input fed in pieces, then ZSTD_endStream): the size is never pledged, so
 * the frame header has no content size (checked).
 */
uint8_t *fx_zstd_stream(const void *data, size_t len, size_t *ret_len);
/* One .xz stream (liblzma, preset 6, CRC64 check), as casync --compression=xz writes. */
uint8_t *fx_xz(const void *data, size_t len, size_t *ret_len);
/* One gzip member (zlib deflate with the gzip wrapper), as casync --compression=gzip. */
uint8_t *fx_gzip(const void *data, size_t len, size_t *ret_len);

/* casync index constants (casync.md §2.2), spelled out independently of fetch/caibx.h */
#define FX_CA_INDEX 0x96824d9c7b129ff9ull
#define FX_CA_TABLE 0xe75b9e112f17417dull
#define FX_CA_TAIL_MARKER 0x4b4f050e5549ecd1ull
#define FX_CA_SHA512_256 0x2000000000000000ull
#define FX_CA_FLAGS_CASYNC 0xb000000000000000ull /* casync make defaults */
#define FX_CA_FLAGS_SHA256 0x9000000000000000ull /* casync make --digest=sha256 */

/*
 * A .caibx file laid out as casync.md §2.1 describes: header, @n items
 * {le64 @ends[i], @ids[32*i]}, tail. Returns a malloc()ed buffer of 104 + 40n.
 */
uint8_t *fx_caibx(uint64_t flags, uint64_t min, uint64_t avg, uint64_t max, const uint64_t *ends,
                  const uint8_t *ids, size_t n, size_t *ret_len);

/* A blob: magic, CRC-32 of @payload (LE), payload. Returns a malloc()ed buffer. */
uint8_t *fx_blob(const uint8_t magic[8], const void *payload, size_t len, size_t *ret_len);
uint8_t *fx_blob_plain(const void *data, size_t len, size_t *ret_len);
uint8_t *fx_blob_zstd(const void *data, size_t len, bool with_size, size_t *ret_len);
/* Recomputes the CRC of a (modified) blob with a 12-byte header. */
void fx_blob_fix_crc(uint8_t *blob, size_t len);
/* An encrypted blob (AES-256-GCM with @iv, 16 bytes; zstd first when
 * @compress): magic, CRC of the ciphertext, IV, tag, ciphertext. */
uint8_t *fx_blob_encrypted(const uint8_t key[32], const uint8_t iv[16], const void *data,
                           size_t len, bool compress, size_t *ret_len);

/* A .fidx file: 4096-byte header (csum computed over the @n digests) + digests. */
uint8_t *fx_fidx(uint64_t size, uint64_t chunk_size, const uint8_t *digests, size_t n,
                 size_t *ret_len);
#define FX_FIDX_CTIME 1752148800 /* 2025-07-10T12:00:00Z */
extern const uint8_t fx_fidx_uuid[16];

/* Epoch of a "YYYY-MM-DDTHH:MM:SSZ" string, computed with strptime/timegm. */
int64_t fx_epoch(const char *time_str);

/* Datastore directories. Paths are relative to @root unless said otherwise. */
char *fx_tmpdir(void);            /* mkdtemp under $TMPDIR or /tmp */
void fx_rmtree(const char *root); /* rm -rf, not following symlinks */
void fx_mkdirs(const char *root, const char *rel);
void fx_write(const char *root, const char *rel, const void *data, size_t len);
void *fx_read(const char *root, const char *rel, size_t *ret_len);
char *fx_path(const char *root, const char *rel); /* malloc()ed "root/rel" */

/* Writes @data as a chunk (plain or zstd blob) under .chunks/, returns its digest. */
void fx_put_chunk(const char *root, const void *data, size_t len, bool compress,
                  uint8_t ret_digest[32]);

/* A file entry of a manifest to be generated. */
struct fx_file {
    const char *name;
    const char *crypt; /* "none", "sign-only", "encrypt" */
    uint64_t size;
    uint8_t csum[32];
};

/* Pretty-printed manifest JSON (PBS style, with "unprotected" and "signature"). */
char *fx_manifest_json(const char *type, const char *id, int64_t time, const struct fx_file *files,
                       size_t n);
