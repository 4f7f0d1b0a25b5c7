/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fixtures.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lzma.h>
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

const uint8_t fx_magic_plain[8] = {0x42, 0xab, 0x38, 0x07, 0xbe, 0x83, 0x70, 0xa1};
const uint8_t fx_magic_zstd[8] = {0x31, 0xb9, 0x58, 0x42, 0x6f, 0xb6, 0xa3, 0x7f};
const uint8_t fx_magic_encrypted[8] = {0x7b, 0x67, 0x85, 0xbe, 0x22, 0x2d, 0x4c, 0xf0};
const uint8_t fx_magic_encr_compr[8] = {0xe6, 0x59, 0x1b, 0xbf, 0x0b, 0xbf, 0xd8, 0x0b};
const uint8_t fx_magic_fidx[8] = {0x2f, 0x7f, 0x41, 0xed, 0x91, 0xfd, 0x0f, 0xcd};
const uint8_t fx_magic_didx[8] = {0x1c, 0x91, 0x4e, 0xa5, 0x19, 0xba, 0xb3, 0xcd};

const uint8_t fx_fidx_uuid[16] = {0x6b, 0x1d, 0x2e, 0x40, 0x91, 0x3a, 0x4c, 0x5e,
                                  0x8f, 0x07, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66};

void fx_die(const char *fmt, ...)
{
    va_list ap;
    fputs("fixture error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *fx_malloc(size_t len)
{
    void *p = malloc(len ? len : 1);
    if (!p)
        fx_die("out of memory (%zu bytes)", len);
    return p;
}

void *fx_memdup(const void *p, size_t len)
{
    void *q = fx_malloc(len);
    if (len)
        memcpy(q, p, len);
    return q;
}

void fx_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        fx_die("EVP_Digest failed");
}

void fx_sha512_256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha512_256(), NULL) != 1 || n != 32)
        fx_die("EVP_Digest(SHA-512/256) failed");
}

void fx_hex(const uint8_t *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
    out[2 * len] = '\0';
}

void fx_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len)
        fx_die("bad hex length in fixture: %s", hex);
    for (size_t i = 0; i < len; i++) {
        unsigned int v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            fx_die("bad hex in fixture: %s", hex);
        out[i] = (uint8_t)v;
    }
}

uint32_t fx_crc32(const void *data, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *p = data;
    while (len) {
        uInt step = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, step);
        p += step;
        len -= step;
    }
    return (uint32_t)c;
}

void fx_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fx_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fx_fill_random(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x1234567ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

void fx_fill_text(void *buf, size_t len, uint64_t seed)
{
    static const char text[] =
        "lazyimg fixture line: the quick brown fox jumps over the lazy dog\n";
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)text[i % (sizeof(text) - 1)];
    /* sprinkle the seed so distinct seeds give distinct chunks */
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (uint8_t)(seed + i / 4096);
}

uint8_t *fx_zstd_frame(const void *data, size_t len, bool with_size, size_t *ret_len)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(len), n;
    uint8_t *out = fx_malloc(cap);
    if (!c)
        fx_die("ZSTD_createCCtx failed");
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size ? 1 : 0)))
        fx_die("ZSTD_CCtx_setParameter failed");
    if (with_size) {
        n = ZSTD_compress2(c, out, cap, data, len);
    } else {
        /* stream without a pledged size, like the PBS 3.x stream encoder */
        ZSTD_inBuffer in = {data, len, 0};
        ZSTD_outBuffer ob = {out, cap, 0};
        size_t rem;
        do {
            rem = ZSTD_compressStream2(c, &ob, &in, ZSTD_e_end);
            if (ZSTD_isError(rem))
                fx_die("ZSTD_compressStream2: %s", ZSTD_getErrorName(rem));
        } while (rem != 0);
        n = ob.pos;
    }
    if (ZSTD_isError(n))
        fx_die("ZSTD_compress2: %s", ZSTD_getErrorName(n));
    ZSTD_freeCCtx(c);
    /* the property under test must really hold */
    {
        unsigned long long fcs = ZSTD_getFrameContentSize(out, n);
        if (with_size ? fcs != len : fcs != ZSTD_CONTENTSIZE_UNKNOWN)
            fx_die("zstd frame content size flag not as requested (%llu)", fcs);
    }
    *ret_len = n;
    return out;
}

uint8_t *fx_zstd_rle_frame(uint64_t total, uint8_t byte, bool with_size, size_t *ret_len)
{
    const uint64_t block = 128 * 1024;
    uint64_t nblocks = total ? (total + block - 1) / block : 1;
    size_t cap = 4 + 1 + 1 + 8 + 4 * (size_t)nblocks, n = 0;
    uint8_t *f = fx_malloc(cap);

    fx_put_le32(f, 0xFD2FB528u); /* magic */
    n = 4;
    /* frame header descriptor: FCS flag 3 (8 bytes) or 0; no single segment,
     * no checksum, no dictionary */
    f[n++] = with_size ? 0xC0 : 0x00;
    f[n++] = 7 << 3; /* window descriptor: 2^(10+7) = 128 KiB */
    if (with_size) {
        fx_put_le64(f + n, total);
        n += 8;
    }
    for (uint64_t i = 0; i < nblocks; i++) {
        uint64_t sz = total - i * block < block ? total - i * block : block;
        uint32_t hdr = (uint32_t)(sz << 3) | (1u << 1) /* RLE */ | (i + 1 == nblocks ? 1u : 0u);
        f[n++] = (uint8_t)hdr;
        f[n++] = (uint8_t)(hdr >> 8);
        f[n++] = (uint8_t)(hdr >> 16);
        f[n++] = byte;
    }
    *ret_len = n;
    return f;
}

uint8_t *fx_zstd_stream(const void *data, size_t len, size_t *ret_len)
{
    ZSTD_CStream *c = ZSTD_createCStream();
    size_t cap = ZSTD_compressBound(len) + ZSTD_CStreamOutSize(), rem, piece = 4096;
    uint8_t *out = fx_malloc(cap);
    ZSTD_inBuffer in = {data, 0, 0};
    ZSTD_outBuffer ob = {out, cap, 0};

    if (!c || ZSTD_isError(ZSTD_initCStream(c, 3)))
        fx_die("ZSTD_initCStream failed");
    /* at least one ZSTD_compressStream call, so even an empty input has no pledged size */
    do {
        in.size = len - in.size < piece ? len : in.size + piece;
        do {
            rem = ZSTD_compressStream(c, &ob, &in);
            if (ZSTD_isError(rem))
                fx_die("ZSTD_compressStream: %s", ZSTD_getErrorName(rem));
        } while (in.pos < in.size);
    } while (in.size < len);
    do {
        rem = ZSTD_endStream(c, &ob);
        if (ZSTD_isError(rem))
            fx_die("ZSTD_endStream: %s", ZSTD_getErrorName(rem));
    } while (rem != 0);
    ZSTD_freeCStream(c);
    if (ZSTD_getFrameContentSize(out, ob.pos) != ZSTD_CONTENTSIZE_UNKNOWN || ob.pos < 5 ||
        (out[4] & 0xc0) != 0)
        fx_die("streamed zstd frame unexpectedly has a content size");
    *ret_len = ob.pos;
    return out;
}

uint8_t *fx_xz(const void *data, size_t len, size_t *ret_len)
{
    size_t cap = lzma_stream_buffer_bound(len), pos = 0;
    uint8_t *out = fx_malloc(cap);
    lzma_ret r = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, data, len, out, &pos, cap);
    if (r != LZMA_OK)
        fx_die("lzma_easy_buffer_encode: %d", (int)r);
    *ret_len = pos;
    return out;
}

uint8_t *fx_gzip(const void *data, size_t len, size_t *ret_len)
{
    z_stream z;
    size_t cap;
    uint8_t *out;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        fx_die("deflateInit2 failed");
    cap = deflateBound(&z, (uLong)len);
    out = fx_malloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        fx_die("deflate did not finish");
    *ret_len = z.total_out;
    deflateEnd(&z);
    return out;
}

uint8_t *fx_caibx(uint64_t flags, uint64_t min, uint64_t avg, uint64_t max, const uint64_t *ends,
                  const uint8_t *ids, size_t n, size_t *ret_len)
{
    size_t len = 104 + 40 * n;
    uint8_t *f = calloc(1, len), *tail;
    if (!f)
        fx_die("out of memory");
    fx_put_le64(f + 0, 48);
    fx_put_le64(f + 8, FX_CA_INDEX);
    fx_put_le64(f + 16, flags);
    fx_put_le64(f + 24, min);
    fx_put_le64(f + 32, avg);
    fx_put_le64(f + 40, max);
    fx_put_le64(f + 48, UINT64_MAX);
    fx_put_le64(f + 56, FX_CA_TABLE);
    for (size_t i = 0; i < n; i++) {
        fx_put_le64(f + 64 + 40 * i, ends[i]);
        memcpy(f + 64 + 40 * i + 8, ids + 32 * i, 32);
    }
    tail = f + 64 + 40 * n;
    /* two zero fills, then index_offset, table size and marker */
    fx_put_le64(tail + 16, 48);
    fx_put_le64(tail + 24, 16 + 40 * (uint64_t)n + 40);
    fx_put_le64(tail + 32, FX_CA_TAIL_MARKER);
    *ret_len = len;
    return f;
}

uint8_t *fx_blob(const uint8_t magic[8], const void *payload, size_t len, size_t *ret_len)
{
    uint8_t *b = fx_malloc(12 + len);
    memcpy(b, magic, 8);
    fx_put_le32(b + 8, fx_crc32(payload, len));
    if (len)
        memcpy(b + 12, payload, len);
    *ret_len = 12 + len;
    return b;
}

uint8_t *fx_blob_plain(const void *data, size_t len, size_t *ret_len)
{
    return fx_blob(fx_magic_plain, data, len, ret_len);
}

uint8_t *fx_blob_zstd(const void *data, size_t len, bool with_size, size_t *ret_len)
{
    size_t flen;
    uint8_t *frame = fx_zstd_frame(data, len, with_size, &flen);
    uint8_t *b = fx_blob(fx_magic_zstd, frame, flen, ret_len);
    free(frame);
    return b;
}

uint8_t *fx_blob_encrypted(const uint8_t key[32], const uint8_t iv[16], const void *data,
                           size_t len, bool compress, size_t *ret_len)
{
    size_t plen = len, flen;
    uint8_t *frame = compress ? fx_zstd_frame(data, len, true, &flen) : NULL;
    const uint8_t *plain = compress ? frame : data;
    uint8_t *b;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;

    if (compress)
        plen = flen;
    b = fx_malloc(44 + plen);
    memcpy(b, compress ? fx_magic_encr_compr : fx_magic_encrypted, 8);
    memcpy(b + 12, iv, 16);
    if (!ctx || !EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) ||
        !EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) ||
        !EVP_EncryptUpdate(ctx, b + 44, &n, plain, (int)plen) ||
        !EVP_EncryptFinal_ex(ctx, b + 44 + n, &m) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, b + 28))
        fx_die("AES-256-GCM encryption failed");
    EVP_CIPHER_CTX_free(ctx);
    fx_put_le32(b + 8, fx_crc32(b + 44, plen));
    free(frame);
    *ret_len = 44 + plen;
    return b;
}

void fx_blob_fix_crc(uint8_t *blob, size_t len)
{
    if (len < 12)
        fx_die("blob too short to fix its CRC");
    fx_put_le32(blob + 8, fx_crc32(blob + 12, len - 12));
}

uint8_t *fx_fidx(uint64_t size, uint64_t chunk_size, const uint8_t *digests, size_t n,
                 size_t *ret_len)
{
    size_t len = 4096 + 32 * n;
    uint8_t *f = calloc(1, len);
    if (!f)
        fx_die("out of memory");
    memcpy(f, fx_magic_fidx, 8);
    memcpy(f + 8, fx_fidx_uuid, 16);
    fx_put_le64(f + 24, (uint64_t)FX_FIDX_CTIME);
    fx_put_le64(f + 64, size);
    fx_put_le64(f + 72, chunk_size);
    if (n)
        memcpy(f + 4096, digests, 32 * n);
    fx_sha256(f + 4096, 32 * n, f + 32);
    *ret_len = len;
    return f;
}

int64_t fx_epoch(const char *time_str)
{
    struct tm tm;
    const char *end;
    memset(&tm, 0, sizeof(tm));
    end = strptime(time_str, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        fx_die("bad fixture time %s", time_str);
    return (int64_t)timegm(&tm);
}

char *fx_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = NULL;
    if (!base || !base[0])
        base = "/tmp";
    if (asprintf(&tmpl, "%s/lazyimg-unit-XXXXXX", base) < 0)
        fx_die("out of memory");
    if (!mkdtemp(tmpl))
        fx_die("mkdtemp %s: %s", tmpl, strerror(errno));
    return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

void fx_rmtree(const char *root)
{
    if (root && nftw(root, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
        fx_die("cannot remove %s: %s", root, strerror(errno));
}

char *fx_path(const char *root, const char *rel)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", root, rel) < 0)
        fx_die("out of memory");
    return p;
}

void fx_mkdirs(const char *root, const char *rel)
{
    char *p = fx_path(root, rel);
    for (char *s = p + strlen(root) + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                fx_die("mkdir %s: %s", p, strerror(errno));
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
}

void fx_write(const char *root, const char *rel, const void *data, size_t len)
{
    char *p = fx_path(root, rel);
    const uint8_t *b = data;
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fx_die("open %s: %s", p, strerror(errno));
    while (len) {
        ssize_t w = write(fd, b, len);
        if (w <= 0)
            fx_die("write %s: %s", p, strerror(errno));
        b += w;
        len -= (size_t)w;
    }
    if (close(fd) < 0)
        fx_die("close %s: %s", p, strerror(errno));
    free(p);
}

void *fx_read(const char *root, const char *rel, size_t *ret_len)
{
    char *p = fx_path(root, rel);
    struct stat st;
    uint8_t *buf;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        fx_die("open %s: %s", p, strerror(errno));
    buf = fx_malloc((size_t)st.st_size);
    if (read(fd, buf, (size_t)st.st_size) != st.st_size)
        fx_die("read %s", p);
    close(fd);
    free(p);
    *ret_len = (size_t)st.st_size;
    return buf;
}

void fx_put_chunk(const char *root, const void *data, size_t len, bool compress,
                  uint8_t ret_digest[32])
{
    char hex[65], dir[32], rel[128];
    size_t blen;
    uint8_t *blob;

    fx_sha256(data, len, ret_digest);
    fx_hex(ret_digest, 32, hex);
    snprintf(dir, sizeof(dir), ".chunks/%.4s", hex);
    snprintf(rel, sizeof(rel), "%s/%s", dir, hex);
    fx_mkdirs(root, dir);
    blob = compress ? fx_blob_zstd(data, len, true, &blen) : fx_blob_plain(data, len, &blen);
    fx_write(root, rel, blob, blen);
    free(blob);
}

/* growable string */
struct sb {
    char *s;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        fx_die("vsnprintf");
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t ncap = (b->len + (size_t)n + 1) * 2;
        char *ns = realloc(b->s, ncap);
        if (!ns)
            fx_die("out of memory");
        b->s = ns;
        b->cap = ncap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *fx_manifest_json(const char *type, const char *id, int64_t time, const struct fx_file *files,
                       size_t n)
{
    struct sb b = {0};
    char hex[65];

    sb_printf(&b,
              "{\n  \"backup-id\": \"%s\",\n  \"backup-time\": %lld,\n"
              "  \"backup-type\": \"%s\",\n  \"files\": [",
              id, (long long)time, type);
    for (size_t i = 0; i < n; i++) {
        fx_hex(files[i].csum, 32, hex);
        sb_printf(&b,
                  "%s\n    {\n      \"crypt-mode\": \"%s\",\n      \"csum\": \"%s\",\n"
                  "      \"filename\": \"%s\",\n      \"size\": %llu\n    }",
                  i ? "," : "", files[i].crypt, hex, files[i].name,
                  (unsigned long long)files[i].size);
    }
    sb_printf(&b,
              "%s],\n  \"signature\": null,\n  \"unprotected\": {\n"
              "    \"chunk_upload_stats\": {\n      \"compressed_size\": 1234,\n"
              "      \"count\": 3,\n      \"duplicates\": 1,\n      \"size\": 4096\n    },\n"
              "    \"key-fingerprint\": null,\n    \"verify_state\": {\n"
              "      \"state\": \"ok\",\n      \"upid\": \"UPID:pbs:0000:verify\"\n    }\n"
              "  }\n}\n",
              n ? "\n  " : "");
    return b.s;
}
