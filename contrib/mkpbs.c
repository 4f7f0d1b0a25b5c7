/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lazyimg-mkpbs: writes one Proxmox Backup Server snapshot into a datastore
 * directory, without PBS, following shared/formats/pbs.md (§3 fixed index,
 * §5 DataBlob, §6 zero chunk, §7 layout and manifest). It produces test
 * fixtures for lazyimg's readers and the data sets of its benchmarks.
 *
 * Images are streamed chunk by chunk: the main thread reads chunks into a
 * small ring of slots (skipping holes of sparse inputs with SEEK_DATA) and a
 * pool of worker threads hashes, compresses, encrypts and stores them. Only
 * the main thread touches the digest array; workers hand digests back in
 * their slot.
 */
#include "mkpbs_key.h"
#include "util.h"
#include "fetch/pbs_format.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define MAX_ARCHIVES 64
#define MAX_JOBS 64
#define ARCHIVE_NAME_MAX 128
#define ERRMSG_LEN 512

/* ------------------------------------------------------------------------ */
/* configuration */

enum archive_kind { ARCHIVE_FIXED, ARCHIVE_BLOB };

struct archive {
    enum archive_kind kind;
    char name[ARCHIVE_NAME_MAX + 8]; /* file name in the snapshot, with .fidx/.blob */
    const char *src;                 /* input file */
    int fd;
    /* results, for the manifest */
    uint64_t size;
    uint8_t csum[PBS_DIGEST_LEN];
};

struct options {
    const char *datastore;
    const char *ns;
    const char *type;
    const char *id;
    const char *owner;
    int64_t time;
    uint64_t chunk_size;
    bool compress;
    bool zstd_no_content_size;
    bool keyed;         /* a key was given: the manifest is signed and names it */
    bool encrypt;       /* crypt-mode encrypt (else sign-only, with a key) */
    uint8_t key[32];    /* AES-256-GCM key (enc_key) */
    uint8_t id_key[32]; /* PBKDF2(key, "_id_key", 10): appended to plaintext for digests */
    const char *keyfile_out, *kdf, *password_file;
    bool quiet;
    unsigned jobs;
    struct archive archives[MAX_ARCHIVES];
    size_t narchives;
};

/* OpenSSL algorithms, fetched once and shared read-only by all threads */
static EVP_MD *md_sha256;
static EVP_CIPHER *cipher_gcm;

/* ------------------------------------------------------------------------ */
/* blob encoding (pbs.md §5) */

/* Per-thread encoder state. */
struct encoder {
    const struct options *opt;
    ZSTD_CCtx *zc;
    EVP_CIPHER_CTX *cc;
    EVP_MD_CTX *mdc;
};

static void encoder_init(struct encoder *e, const struct options *opt)
{
    e->opt = opt;
    e->zc = ZSTD_createCCtx();
    e->cc = EVP_CIPHER_CTX_new();
    e->mdc = EVP_MD_CTX_new();
    if (!e->zc || !e->cc || !e->mdc)
        die("out of memory (codec contexts)");
    if (ZSTD_isError(ZSTD_CCtx_setParameter(e->zc, ZSTD_c_compressionLevel, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(e->zc, ZSTD_c_contentSizeFlag,
                                            opt->zstd_no_content_size ? 0 : 1)))
        die("cannot configure zstd");
}

static void encoder_release(struct encoder *e)
{
    ZSTD_freeCCtx(e->zc);
    EVP_CIPHER_CTX_free(e->cc);
    EVP_MD_CTX_free(e->mdc);
}

/* Worst-case encoded size of @len bytes: the header plus the uncompressed payload. */
static size_t blob_max_len(size_t len)
{
    return PBS_BLOB_ENC_HDR_LEN + len;
}

/* SHA-256(data), or SHA-256(data || id_key) when @keyed. Returns false on an OpenSSL error. */
static bool digest_compute(struct encoder *e, const void *data, size_t len, bool keyed,
                           uint8_t out[PBS_DIGEST_LEN])
{
    unsigned int outlen = 0;

    if (!EVP_DigestInit_ex(e->mdc, md_sha256, NULL) || !EVP_DigestUpdate(e->mdc, data, len))
        return false;
    if (keyed && !EVP_DigestUpdate(e->mdc, e->opt->id_key, sizeof(e->opt->id_key)))
        return false;
    return EVP_DigestFinal_ex(e->mdc, out, &outlen) && outlen == PBS_DIGEST_LEN;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Encodes @len bytes of @in as a DataBlob into @out (at least blob_max_len(len)
 * bytes, not overlapping @in). With @compress, uses a zstd level 1 frame when it
 * is strictly shorter than the input; encrypts when @encrypt. Returns the blob
 * length, or 0 with a message in @err.
 */
static size_t blob_encode(struct encoder *e, const uint8_t *in, size_t len, bool compress,
                          bool encrypt, uint8_t *out, char *err, size_t errlen)
{
    size_t hdr = encrypt ? PBS_BLOB_ENC_HDR_LEN : PBS_BLOB_HDR_LEN;
    uint8_t *payload = out + hdr;
    size_t plen = len;
    bool compressed = false;
    const char *magic;

    if (compress && len > 1) {
        /* capacity len-1: zstd fails with dstSize_tooSmall unless the frame is shorter */
        size_t r = ZSTD_compress2(e->zc, payload, len - 1, in, len);

        if (!ZSTD_isError(r)) {
            compressed = true;
            plen = r;
        } else if (ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall) {
            snprintf(err, errlen, "zstd compression failed: %s", ZSTD_getErrorName(r));
            return 0;
        }
    }

    if (encrypt) {
        uint8_t *iv = out + PBS_MAGIC_LEN + 4;
        uint8_t *tag = iv + PBS_BLOB_IV_LEN;
        const uint8_t *src = compressed ? payload : in;
        int n1 = 0, n2 = 0;

        if (RAND_bytes(iv, PBS_BLOB_IV_LEN) != 1 ||
            !EVP_EncryptInit_ex(e->cc, cipher_gcm, NULL, NULL, NULL) ||
            !EVP_CIPHER_CTX_ctrl(e->cc, EVP_CTRL_GCM_SET_IVLEN, PBS_BLOB_IV_LEN, NULL) ||
            !EVP_EncryptInit_ex(e->cc, NULL, NULL, e->opt->key, iv) ||
            !EVP_EncryptUpdate(e->cc, payload, &n1, src, (int)plen) ||
            !EVP_EncryptFinal_ex(e->cc, payload + n1, &n2) || (size_t)n1 + (size_t)n2 != plen ||
            !EVP_CIPHER_CTX_ctrl(e->cc, EVP_CTRL_GCM_GET_TAG, PBS_BLOB_TAG_LEN, tag)) {
            snprintf(err, errlen, "AES-256-GCM encryption failed");
            return 0;
        }
        magic = compressed ? PBS_MAGIC_BLOB_ENCR_COMPR : PBS_MAGIC_BLOB_ENCRYPTED;
    } else {
        if (!compressed)
            memcpy(payload, in, len);
        magic = compressed ? PBS_MAGIC_BLOB_COMPRESSED : PBS_MAGIC_BLOB_UNCOMPRESSED;
    }
    memcpy(out, magic, PBS_MAGIC_LEN);
    /* the CRC covers everything after the header: the payload or the ciphertext */
    put_le32(out + PBS_BLOB_CRC_OFFSET, (uint32_t)crc32_z(0, payload, plen));
    return hdr + plen;
}

/* ------------------------------------------------------------------------ */
/* files */

static uint64_t tmp_counter;

/*
 * Writes @len bytes to @name (relative to @dirfd) through a unique temporary
 * file in the same directory and an atomic rename. Returns 0 or -errno.
 */
static int write_file_atomic(int dirfd, const char *name, const void *buf, size_t len)
{
    char tmp[PATH_MAX];
    int fd, r;

    for (;;) {
        uint64_t n = __atomic_fetch_add(&tmp_counter, 1, __ATOMIC_RELAXED);

        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp_%d_%" PRIu64, name, (int)getpid(), n) >=
            sizeof(tmp))
            return -ENAMETOOLONG;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0)
        return -errno;
    r = write_all(fd, buf, len);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        r = -errno;
    if (r < 0)
        unlinkat(dirfd, tmp, 0);
    return r;
}

/* mkdir -p relative to @dirfd (AT_FDCWD for the working directory). */
static void mkdir_p(int dirfd, const char *path, const char *display)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof(buf))
        die("path too long: %s", display);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        if (mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST)
            die("cannot create directory %s: %s", display, strerror(errno));
        if (i < len)
            buf[i] = '/';
    }
}

/* Creates @name (relative to @dirfd) with @content unless it exists. */
static void create_file_if_missing(int dirfd, const char *name, const char *content,
                                   const char *display)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int r;

    if (fd < 0) {
        if (errno == EEXIST)
            return;
        die("cannot create %s: %s", display, strerror(errno));
    }
    r = write_all(fd, content, strlen(content));
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        die("cannot write %s: %s", display, strerror(-r));
}

/* Removes @name/0000 … @name/ffff and @name itself (cleanup of a lost race). */
static void remove_chunk_dirs(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        for (unsigned i = 0; i < 0x10000; i++) {
            char sub[8];

            snprintf(sub, sizeof(sub), "%04x", i);
            unlinkat(fd, sub, AT_REMOVEDIR);
        }
        close(fd);
    }
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

/*
 * Makes @path a datastore: the directory, .chunks/0000 … ffff (built under a
 * temporary name and renamed, so .chunks is never half-populated) and .lock.
 * Returns an fd of the datastore directory.
 */
static int datastore_open(const char *path)
{
    struct stat st;
    int fd;

    mkdir_p(AT_FDCWD, path, path);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open datastore %s: %s", path, strerror(errno));

    if (fstatat(fd, PBS_CHUNK_DIR, &st, 0) < 0) {
        char tmp[64];
        int cfd;

        if (errno != ENOENT)
            die("cannot access %s/%s: %s", path, PBS_CHUNK_DIR, strerror(errno));
        snprintf(tmp, sizeof(tmp), "%s.tmp_%d", PBS_CHUNK_DIR, (int)getpid());
        remove_chunk_dirs(fd, tmp);
        if (mkdirat(fd, tmp, 0755) < 0)
            die("cannot create %s/%s: %s", path, tmp, strerror(errno));
        cfd = openat(fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cfd < 0)
            die("cannot open %s/%s: %s", path, tmp, strerror(errno));
        for (unsigned i = 0; i < 0x10000; i++) {
            char sub[8];

            snprintf(sub, sizeof(sub), "%04x", i);
            if (mkdirat(cfd, sub, 0755) < 0)
                die("cannot create %s/%s/%s: %s", path, tmp, sub, strerror(errno));
        }
        close(cfd);
        if (renameat(fd, tmp, fd, PBS_CHUNK_DIR) < 0) {
            if (errno != EEXIST && errno != ENOTEMPTY)
                die("cannot rename %s/%s: %s", path, tmp, strerror(errno));
            remove_chunk_dirs(fd, tmp); /* someone else created .chunks meanwhile */
        }
    } else if (!S_ISDIR(st.st_mode)) {
        die("%s/%s is not a directory", path, PBS_CHUNK_DIR);
    }
    create_file_if_missing(fd, ".lock", "", ".lock");
    return fd;
}

/* ------------------------------------------------------------------------ */
/* chunk store */

/* The set of digests already handled in this run, so each chunk is stored once. */
struct digest_set {
    uint8_t (*slot)[PBS_DIGEST_LEN];
    bool *used;
    size_t cap, count;
};

static size_t digest_hash(const uint8_t *d)
{
    uint64_t h;

    memcpy(&h, d, sizeof(h));
    return (size_t)h;
}

static bool digest_set_has(const struct digest_set *s, const uint8_t *d)
{
    if (s->cap == 0)
        return false;
    for (size_t i = digest_hash(d) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return false;
        if (memcmp(s->slot[i], d, PBS_DIGEST_LEN) == 0)
            return true;
    }
}

static void digest_set_put(struct digest_set *s, const uint8_t *d)
{
    size_t i;

    if (2 * (s->count + 1) > s->cap) {
        struct digest_set bigger = {0};

        bigger.cap = s->cap ? 2 * s->cap : 1024;
        bigger.slot = xcalloc(bigger.cap, PBS_DIGEST_LEN);
        bigger.used = xcalloc(bigger.cap, sizeof(bool));
        for (size_t j = 0; j < s->cap; j++)
            if (s->used[j])
                digest_set_put(&bigger, s->slot[j]);
        free(s->slot);
        free(s->used);
        *s = bigger;
    }
    for (i = digest_hash(d) & (s->cap - 1); s->used[i]; i = (i + 1) & (s->cap - 1))
        ;
    memcpy(s->slot[i], d, PBS_DIGEST_LEN);
    s->used[i] = true;
    s->count++;
}

struct stats {
    uint64_t chunks, new_chunks, zero_chunks, bytes, stored_bytes;
};

struct chunk_store {
    int fd; /* .chunks */
    const char *display;
    pthread_mutex_t lock;
    struct digest_set seen; /* under lock */
};

static void chunk_path(const uint8_t *digest, char *out, size_t outlen)
{
    char hex[2 * PBS_DIGEST_LEN + 1];

    hex_encode(digest, PBS_DIGEST_LEN, hex);
    snprintf(out, outlen, "%.4s/%s", hex, hex);
}

/*
 * Stores an encoded chunk unless a non-empty chunk file already exists.
 * Returns 1 if written, 0 if already present, or -errno.
 */
static int chunk_store_insert(struct chunk_store *cs, const uint8_t *digest, const uint8_t *blob,
                              size_t len)
{
    char path[80];
    int r;

    chunk_path(digest, path, sizeof(path));
    r = write_file_atomic(cs->fd, path, blob, len);
    if (r == -ENOENT) {
        /* a missing prefix directory (damaged .chunks): create it and retry */
        char sub[5];

        memcpy(sub, path, 4);
        sub[4] = '\0';
        if (mkdirat(cs->fd, sub, 0755) < 0 && errno != EEXIST)
            return -errno;
        r = write_file_atomic(cs->fd, path, blob, len);
    }
    return r < 0 ? r : 1;
}

/* True if the chunk file exists with content (0-byte files are evicted markers). */
static bool chunk_store_has(struct chunk_store *cs, const uint8_t *digest)
{
    char path[80];
    struct stat st;

    chunk_path(digest, path, sizeof(path));
    return fstatat(cs->fd, path, &st, 0) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* ------------------------------------------------------------------------ */
/* fixed-index writer: a reader thread and a worker pool */

struct slot {
    uint8_t *buf; /* chunk_size bytes */
    size_t len;
    uint64_t index;
    bool pending; /* carries a digest the main thread has not collected yet */
    bool zero;
    uint8_t digest[PBS_DIGEST_LEN];
};

struct pool {
    const struct options *opt;
    struct chunk_store *store;
    const uint8_t *zero_digest; /* digest of a full zero chunk */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slot *slots;
    size_t nslots;
    struct slot **work; /* FIFO of filled slots */
    size_t work_head, work_count;
    struct slot **free_slots; /* stack of processed slots */
    size_t free_count;
    bool done;
    bool failed;
    char errmsg[ERRMSG_LEN];
    struct stats stats;

    pthread_t threads[MAX_JOBS];
    unsigned nthreads;
};

static void pool_fail(struct pool *p, const char *msg)
{
    pthread_mutex_lock(&p->lock);
    if (!p->failed) {
        p->failed = true;
        snprintf(p->errmsg, sizeof(p->errmsg), "%s", msg);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Hashes, dedups, encodes and stores one chunk. Returns false with @err set. */
static bool process_chunk(struct pool *p, struct encoder *e, struct slot *s, uint8_t *out,
                          char *err, size_t errlen)
{
    const struct options *opt = p->opt;
    bool claimed = false;
    size_t blen;
    int r;

    s->zero = is_all_zero(s->buf, s->len);
    if (s->zero && s->len == opt->chunk_size) {
        memcpy(s->digest, p->zero_digest, PBS_DIGEST_LEN);
    } else if (!digest_compute(e, s->buf, s->len, opt->encrypt, s->digest)) {
        snprintf(err, errlen, "SHA-256 failed");
        return false;
    }

    pthread_mutex_lock(&p->store->lock);
    if (!digest_set_has(&p->store->seen, s->digest)) {
        digest_set_put(&p->store->seen, s->digest);
        claimed = true;
    }
    pthread_mutex_unlock(&p->store->lock);
    if (!claimed || chunk_store_has(p->store, s->digest))
        return true;

    blen = blob_encode(e, s->buf, s->len, opt->compress, opt->encrypt, out, err, errlen);
    if (blen == 0)
        return false;
    r = chunk_store_insert(p->store, s->digest, out, blen);
    if (r < 0) {
        char path[80];

        chunk_path(s->digest, path, sizeof(path));
        snprintf(err, errlen, "cannot write chunk %s/%s: %s", p->store->display, path,
                 strerror(-r));
        return false;
    }
    __atomic_fetch_add(&p->stats.new_chunks, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->stats.stored_bytes, blen, __ATOMIC_RELAXED);
    return true;
}

static void *worker_main(void *arg)
{
    struct pool *p = arg;
    struct encoder enc;
    uint8_t *out = xmalloc(blob_max_len(p->opt->chunk_size));
    char err[ERRMSG_LEN];

    encoder_init(&enc, p->opt);
    for (;;) {
        struct slot *s;
        bool ok;

        pthread_mutex_lock(&p->lock);
        while (p->work_count == 0 && !p->done && !p->failed)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->work_count == 0 || p->failed) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        s = p->work[p->work_head];
        p->work_head = (p->work_head + 1) % p->nslots;
        p->work_count--;
        pthread_mutex_unlock(&p->lock);

        ok = process_chunk(p, &enc, s, out, err, sizeof(err));
        if (!ok) {
            pool_fail(p, err);
            break;
        }
        pthread_mutex_lock(&p->lock);
        p->free_slots[p->free_count++] = s;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    encoder_release(&enc);
    free(out);
    return NULL;
}

static void pool_start(struct pool *p, const struct options *opt, struct chunk_store *store,
                       const uint8_t *zero_digest)
{
    memset(p, 0, sizeof(*p));
    p->opt = opt;
    p->store = store;
    p->zero_digest = zero_digest;
    p->nthreads = opt->jobs;
    p->nslots = opt->jobs + 2;
    p->slots = xcalloc(p->nslots, sizeof(*p->slots));
    p->work = xcalloc(p->nslots, sizeof(*p->work));
    p->free_slots = xcalloc(p->nslots, sizeof(*p->free_slots));
    for (size_t i = 0; i < p->nslots; i++) {
        p->slots[i].buf = xmalloc(opt->chunk_size);
        p->free_slots[p->free_count++] = &p->slots[i];
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0 || pthread_cond_init(&p->cond, NULL) != 0)
        die("cannot initialize thread synchronization");
    for (unsigned i = 0; i < p->nthreads; i++) {
        int r = pthread_create(&p->threads[i], NULL, worker_main, p);

        if (r != 0)
            die("cannot start worker thread: %s", strerror(r));
    }
}

/* Moves a finished slot's digest into the index and its counters into the stats. */
static void collect(struct pool *p, struct slot *s, uint8_t (*digests)[PBS_DIGEST_LEN])
{
    if (!s->pending)
        return;
    memcpy(digests[s->index], s->digest, PBS_DIGEST_LEN);
    if (s->zero)
        p->stats.zero_chunks++;
    s->pending = false;
}

/* Waits for a processed slot (main thread). Dies if a worker failed. */
static struct slot *pool_get_slot(struct pool *p, uint8_t (*digests)[PBS_DIGEST_LEN])
{
    struct slot *s;

    pthread_mutex_lock(&p->lock);
    while (p->free_count == 0 && !p->failed)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->failed)
        die("%s", p->errmsg);
    s = p->free_slots[--p->free_count];
    pthread_mutex_unlock(&p->lock);
    collect(p, s, digests);
    return s;
}

static void pool_submit(struct pool *p, struct slot *s)
{
    s->pending = true;
    pthread_mutex_lock(&p->lock);
    p->work[(p->work_head + p->work_count) % p->nslots] = s;
    p->work_count++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Waits for all workers, collects the remaining digests and frees the pool. */
static void pool_finish(struct pool *p, uint8_t (*digests)[PBS_DIGEST_LEN])
{
    pthread_mutex_lock(&p->lock);
    p->done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->failed)
        die("%s", p->errmsg);
    for (size_t i = 0; i < p->nslots; i++) {
        collect(p, &p->slots[i], digests);
        free(p->slots[i].buf);
    }
    free(p->slots);
    free(p->work);
    free(p->free_slots);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

/*
 * Finds whether [off, off+len) of a regular file lies entirely in a hole.
 * *next_data caches the start of the next data region (UINT64_MAX: unknown).
 */
static bool range_is_hole(int fd, uint64_t off, uint64_t len, uint64_t file_size, bool *seek_ok,
                          uint64_t *next_data)
{
    if (!*seek_ok)
        return false;
    if (*next_data == UINT64_MAX || *next_data < off) {
        off_t d = lseek(fd, (off_t)off, SEEK_DATA);

        if (d >= 0) {
            *next_data = (uint64_t)d;
        } else if (errno == ENXIO) {
            *next_data = file_size;
        } else {
            *seek_ok = false; /* no hole support: read everything */
            return false;
        }
    }
    return *next_data >= off + len;
}

/* Chunks the image of @a into the store and writes <name>.fidx into @snapfd. */
static void write_fixed_index(struct options *opt, struct archive *a, int snapfd,
                              struct chunk_store *store, struct stats *total)
{
    uint64_t cs = opt->chunk_size;
    uint8_t(*digests)[PBS_DIGEST_LEN] = NULL;
    size_t cap = 0, n = 0;
    uint8_t zero_digest[PBS_DIGEST_LEN];
    uint8_t *header;
    struct encoder enc;
    struct pool pool;
    struct stat st;
    bool regular, seek_ok, zero_submitted = false;
    uint64_t file_size = 0, off = 0, next_data = UINT64_MAX;
    char tmpname[ARCHIVE_NAME_MAX + 16];
    unsigned int csum_len = 0;
    int fd, r;

    if (fstat(a->fd, &st) < 0)
        die("cannot stat %s: %s", a->src, strerror(errno));
    regular = S_ISREG(st.st_mode);
    seek_ok = regular;
    if (regular) {
        file_size = (uint64_t)st.st_size;
        cap = (size_t)((file_size + cs - 1) / cs);
        digests = xcalloc(cap ? cap : 1, PBS_DIGEST_LEN);
        posix_fadvise(a->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }

    /* the digest of a full zero chunk, to skip hashing holes and zero chunks */
    encoder_init(&enc, opt);
    {
        uint8_t *zeros = xcalloc(1, cs);

        if (!digest_compute(&enc, zeros, cs, opt->encrypt, zero_digest))
            die("SHA-256 failed");
        free(zeros);
    }
    encoder_release(&enc);

    pool_start(&pool, opt, store, zero_digest);
    for (;;) {
        uint64_t len = cs;
        struct slot *s;
        ssize_t got;

        if (regular) {
            if (off >= file_size)
                break;
            if (file_size - off < len)
                len = file_size - off;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            digests = xrealloc(digests, cap, PBS_DIGEST_LEN);
        }
        /* a full chunk in a hole has the zero digest: no read, no hash, stored once */
        if (len == cs && zero_submitted &&
            range_is_hole(a->fd, off, len, file_size, &seek_ok, &next_data)) {
            memcpy(digests[n], zero_digest, PBS_DIGEST_LEN);
            pool.stats.zero_chunks++;
            n++;
            off += len;
            continue;
        }

        s = pool_get_slot(&pool, digests);
        if (range_is_hole(a->fd, off, len, file_size, &seek_ok, &next_data)) {
            memset(s->buf, 0, len);
            got = (ssize_t)len;
        } else {
            got = regular ? pread_full(a->fd, s->buf, len, (off_t)off)
                          : read_full(a->fd, s->buf, len);
            if (got < 0)
                die("cannot read %s: %s", a->src, strerror((int)-got));
        }
        if (regular && (uint64_t)got != len)
            die("%s changed while reading it (short read at offset %" PRIu64 ")", a->src, off);
        if (got == 0) {
            /* end of a stream input: give the slot back unused */
            pthread_mutex_lock(&pool.lock);
            pool.free_slots[pool.free_count++] = s;
            pthread_mutex_unlock(&pool.lock);
            break;
        }
        if (len == cs && is_all_zero(s->buf, (size_t)got))
            zero_submitted = true;
        s->len = (size_t)got;
        s->index = n;
        pool_submit(&pool, s);
        n++;
        off += (uint64_t)got;
        if ((uint64_t)got < len)
            break; /* a short chunk ends a stream input */
    }
    pool_finish(&pool, digests);

    a->size = off;
    total->chunks += n;
    total->zero_chunks += pool.stats.zero_chunks;
    total->new_chunks += pool.stats.new_chunks;
    total->stored_bytes += pool.stats.stored_bytes;
    total->bytes += off;

    /* header (pbs.md §3), then the digests; index_csum = SHA-256 of the digests */
    header = xcalloc(1, PBS_FIDX_HDR_LEN);
    memcpy(header + PBS_FIDX_OFF_MAGIC, PBS_MAGIC_FIXED_INDEX, PBS_MAGIC_LEN);
    if (RAND_bytes(header + PBS_FIDX_OFF_UUID, 16) != 1)
        die("cannot get random bytes for the index uuid");
    header[PBS_FIDX_OFF_UUID + 6] = (header[PBS_FIDX_OFF_UUID + 6] & 0x0f) | 0x40;
    header[PBS_FIDX_OFF_UUID + 8] = (header[PBS_FIDX_OFF_UUID + 8] & 0x3f) | 0x80;
    put_le64(header + PBS_FIDX_OFF_CTIME, (uint64_t)(int64_t)time(NULL));
    if (!EVP_Digest(digests, n * PBS_DIGEST_LEN, a->csum, &csum_len, md_sha256, NULL) ||
        csum_len != PBS_DIGEST_LEN)
        die("SHA-256 failed");
    memcpy(header + PBS_FIDX_OFF_CSUM, a->csum, PBS_DIGEST_LEN);
    put_le64(header + PBS_FIDX_OFF_SIZE, off);
    put_le64(header + PBS_FIDX_OFF_CHUNK_SIZE, cs);

    snprintf(tmpname, sizeof(tmpname), "%.*s.tmp_fidx", (int)(strlen(a->name) - 5), a->name);
    fd = openat(snapfd, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("cannot create %s: %s", tmpname, strerror(errno));
    r = write_all(fd, header, PBS_FIDX_HDR_LEN);
    if (r == 0)
        r = write_all(fd, digests, n * PBS_DIGEST_LEN);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        die("cannot write %s: %s", tmpname, strerror(-r));
    if (renameat(snapfd, tmpname, snapfd, a->name) < 0)
        die("cannot rename %s to %s: %s", tmpname, a->name, strerror(errno));
    free(header);
    free(digests);
}

/* ------------------------------------------------------------------------ */
/* blobs and manifest */

/* Encodes @len bytes into a blob file @name in @snapfd; returns the blob length. */
static size_t write_blob(const struct options *opt, int snapfd, const char *name,
                         const uint8_t *data, size_t len, bool compress, bool encrypt,
                         uint8_t csum[PBS_DIGEST_LEN])
{
    struct encoder enc;
    uint8_t *out = xmalloc(blob_max_len(len));
    char err[ERRMSG_LEN];
    unsigned int csum_len = 0;
    size_t blen;
    int r;

    encoder_init(&enc, opt);
    blen = blob_encode(&enc, data, len, compress, encrypt, out, err, sizeof(err));
    if (blen == 0)
        die("%s: %s", name, err);
    encoder_release(&enc);
    if (!EVP_Digest(out, blen, csum, &csum_len, md_sha256, NULL) || csum_len != PBS_DIGEST_LEN)
        die("SHA-256 failed");
    r = write_file_atomic(snapfd, name, out, blen);
    if (r < 0)
        die("cannot write %s: %s", name, strerror(-r));
    free(out);
    return blen;
}

static void write_blob_archive(const struct options *opt, struct archive *a, int snapfd)
{
    uint8_t *data;
    size_t cap = 64 * 1024, len = 0;

    data = xmalloc(cap);
    for (;;) {
        ssize_t got;

        if (len == cap) {
            if (cap >= PBS_BLOB_MAX)
                die("%s is too large for a blob (at most %u bytes)", a->src,
                    PBS_BLOB_MAX - PBS_BLOB_ENC_HDR_LEN);
            cap *= 2;
            data = xrealloc(data, cap, 1);
        }
        got = read_full(a->fd, data + len, cap - len);
        if (got < 0)
            die("cannot read %s: %s", a->src, strerror((int)-got));
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (len > PBS_BLOB_MAX - PBS_BLOB_ENC_HDR_LEN)
        die("%s is too large for a blob (at most %u bytes)", a->src,
            PBS_BLOB_MAX - PBS_BLOB_ENC_HDR_LEN);
    a->size = write_blob(opt, snapfd, a->name, data, len, opt->compress, opt->encrypt, a->csum);
    free(data);
}

static void json_add(json_object *obj, const char *key, json_object *val)
{
    if (!val || json_object_object_add(obj, key, val) != 0)
        die("out of memory (building the manifest)");
}

static json_object *hex_string(const uint8_t *bytes, size_t len)
{
    char hex[2 * 64 + 1];

    hex_encode(bytes, len, hex);
    return json_object_new_string(hex);
}

static void write_manifest(const struct options *opt, int snapfd, const struct stats *st)
{
    json_object *root = json_object_new_object();
    json_object *files = json_object_new_array();
    json_object *unprotected = json_object_new_object();
    json_object *upload = json_object_new_object();
    const char *text;
    uint8_t csum[PBS_DIGEST_LEN];

    if (!root || !files || !unprotected || !upload)
        die("out of memory (building the manifest)");
    /* keys in byte order, as the signature's canonical form has them */
    json_add(root, "backup-id", json_object_new_string(opt->id));
    json_add(root, "backup-time", json_object_new_int64(opt->time));
    json_add(root, "backup-type", json_object_new_string(opt->type));
    for (size_t i = 0; i < opt->narchives; i++) {
        const struct archive *a = &opt->archives[i];
        json_object *f = json_object_new_object();

        if (!f)
            die("out of memory (building the manifest)");
        json_add(f, "crypt-mode",
                 json_object_new_string(opt->encrypt ? "encrypt"
                                        : opt->keyed ? "sign-only"
                                                     : "none"));
        json_add(f, "csum", hex_string(a->csum, PBS_DIGEST_LEN));
        json_add(f, "filename", json_object_new_string(a->name));
        json_add(f, "size", json_object_new_uint64(a->size));
        if (json_object_array_add(files, f) != 0)
            die("out of memory (building the manifest)");
    }
    json_add(root, "files", files);
    if (opt->keyed) {
        char fp[96], sig[65];
        /* the signed part in canonical form (pbs.md §5): every key above was
         * added in byte order and json-c keeps that order; no whitespace */
        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
            die("out of memory (serializing the manifest)");
        mkpbs_sign(opt->id_key, text, strlen(text), sig);
        mkpbs_fingerprint(opt->id_key, fp);
        json_add(unprotected, "key-fingerprint", json_object_new_string(fp));
        json_add(root, "signature", json_object_new_string(sig));
    } else if (json_object_object_add(root, "signature", NULL) != 0) {
        die("out of memory (building the manifest)");
    }
    json_add(upload, "count", json_object_new_uint64(st->chunks));
    json_add(upload, "duplicates", json_object_new_uint64(st->chunks - st->new_chunks));
    json_add(upload, "size", json_object_new_uint64(st->bytes));
    json_add(upload, "compressed_size", json_object_new_uint64(st->stored_bytes));
    json_add(unprotected, "chunk_upload_stats", upload);
    json_add(root, "unprotected", unprotected);

    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text)
        die("out of memory (serializing the manifest)");
    /* like PBS: always compressed when that is shorter, never encrypted */
    write_blob(opt, snapfd, PBS_MANIFEST_NAME, (const uint8_t *)text, strlen(text), true, false,
               csum);
    json_object_put(root);
}

/* ------------------------------------------------------------------------ */
/* command line */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] DATASTORE ARCHIVE=FILE...\n"
            "       %s --encrypt-key HEX64 --write-keyfile FILE [--kdf K ...]\n"
            "\n"
            "Writes one Proxmox Backup Server snapshot into the datastore directory\n"
            "DATASTORE (created if missing, with .chunks/0000..ffff and .lock).\n"
            "ARCHIVE ending in .img: FILE is a raw image, written as ARCHIVE.fidx.\n"
            "Any other ARCHIVE: FILE's bytes are written as the blob ARCHIVE.blob.\n"
            "(ARCHIVE may also be given with its .fidx or .blob extension.)\n"
            "\n"
            "Options:\n"
            "  --ns A/B               namespace (ns/A/ns/B/...), default the root\n"
            "  --type vm|ct|host      backup type (default vm)\n"
            "  --id ID                backup id (default 100)\n"
            "  --time T               backup time, YYYY-MM-DDTHH:MM:SSZ or unix seconds\n"
            "                         (default now)\n"
            "  --owner AUTHID         group owner if the group is new (default root@pam)\n"
            "  --chunk-size SIZE      fixed-index chunk size: 64K 128K 256K 512K 1M 2M 4M\n"
            "                         (default 4M)\n"
            "  --no-compress          store chunks and blobs uncompressed\n"
            "  --zstd-no-content-size write zstd frames without the content size field\n"
            "  --encrypt-key HEX64    encrypt chunks and blobs with this raw AES-256 key,\n"
            "                         sign the manifest with it and name its fingerprint\n"
            "  --crypt-mode MODE      with a key: encrypt (default) or sign-only (plain\n"
            "                         chunks and blobs, signed manifest)\n"
            "  --write-keyfile FILE   also write the key as a PBS key file (0600; may be\n"
            "                         given without DATASTORE to write only that)\n"
            "  --kdf none|scrypt|pbkdf2  how the key file protects the key (default\n"
            "                         scrypt; none stores it in the clear)\n"
            "  --keyfile-password-file FILE  the key file's password (first line)\n"
            "  --jobs N               worker threads (default: online CPUs, at most 8)\n"
            "  --quiet                print no summary\n"
            "  --help                 show this help\n"
            "\n"
            "On success prints: SNAPSHOT_DIR chunks=N new=N zero=N bytes=N stored=N\n",
            util_progname, util_progname);
}

/* [A-Za-z0-9_][A-Za-z0-9._-]* (pbs.md §7: backup id, namespace SAFE_ID) */
static bool valid_id(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || (i > 0 && (c == '.' || c == '-'));

        if (!ok)
            return false;
    }
    return true;
}

static void check_ns(const char *ns)
{
    size_t depth = 0;

    if (strlen(ns) > PBS_NS_MAX_LEN)
        die("namespace '%s' is longer than %d characters", ns, PBS_NS_MAX_LEN);
    for (const char *p = ns; *p;) {
        size_t len = strcspn(p, "/");

        if (!valid_id(p, len))
            die("invalid namespace component '%.*s' in '%s' (expected "
                "[A-Za-z0-9_][A-Za-z0-9._-]*)",
                (int)len, p, ns);
        if (++depth > PBS_NS_MAX_DEPTH)
            die("namespace '%s' is deeper than %d levels", ns, PBS_NS_MAX_DEPTH);
        p += len;
        if (*p == '/' && *++p == '\0')
            die("namespace '%s' ends with '/'", ns);
    }
}

/* user@realm or user@realm!token, as in PBS auth ids; no spaces, slashes or newlines */
static void check_owner(const char *owner)
{
    const char *at = strchr(owner, '@');

    if (!at || at == owner || at[1] == '\0' || at[1] == '!')
        die("invalid owner '%s' (expected USER@REALM or USER@REALM!TOKEN)", owner);
    for (const char *p = owner; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == 0x7f)
            die("invalid owner '%s' (no spaces, slashes or control characters)", owner);
}

static int64_t parse_time(const char *s)
{
    uint64_t v;
    struct tm tm = {0};
    char tail;
    time_t t;

    if (parse_u64(s, &v)) {
        if (v > (uint64_t)253402300799) /* 9999-12-31T23:59:59Z */
            die("--time %s is out of range", s);
        return (int64_t)v;
    }
    if (strlen(s) != PBS_TIME_LEN ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &tail) != 6 ||
        s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        die("invalid --time '%s' (expected YYYY-MM-DDTHH:MM:SSZ or unix seconds)", s);
    for (size_t i = 0; i < PBS_TIME_LEN; i++)
        if (!(s[i] >= '0' && s[i] <= '9') && i != 4 && i != 7 && i != 10 && i != 13 && i != 16 &&
            i != 19)
            die("invalid --time '%s' (expected YYYY-MM-DDTHH:MM:SSZ or unix seconds)", s);
    {
        struct tm check;
        int year = tm.tm_year, mon = tm.tm_mon, mday = tm.tm_mday;

        if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
            die("invalid --time '%s' (no such time of day)", s);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        /* timegm() normalizes out-of-range dates: a round trip detects them */
        t = timegm(&tm);
        if (t == (time_t)-1 || t < 0 || !gmtime_r(&t, &check) || check.tm_year + 1900 != year ||
            check.tm_mon + 1 != mon || check.tm_mday != mday)
            die("invalid --time '%s' (no such date or time)", s);
    }
    return (int64_t)t;
}

static void parse_key(const char *hex, uint8_t key[32])
{
    if (strlen(hex) != 64)
        die("--encrypt-key must be 64 hex digits (a raw 32-byte key)");
    for (size_t i = 0; i < 32; i++) {
        unsigned v = 0;

        for (size_t j = 0; j < 2; j++) {
            char c = hex[2 * i + j];

            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                die("--encrypt-key must be 64 hex digits (a raw 32-byte key)");
        }
        key[i] = (uint8_t)v;
    }
}

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);

    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Parses ARCHIVE=FILE into @a (and opens FILE). */
static void parse_archive(const char *arg, struct archive *a)
{
    const char *eq = strchr(arg, '=');
    size_t len;

    if (!eq || eq == arg || eq[1] == '\0')
        die("invalid argument '%s' (expected ARCHIVE=FILE)", arg);
    len = (size_t)(eq - arg);
    if (len > ARCHIVE_NAME_MAX)
        die("archive name '%.*s' is longer than %d characters", (int)len, arg, ARCHIVE_NAME_MAX);
    if (!valid_id(arg, len))
        die("invalid archive name '%.*s' (expected [A-Za-z0-9_][A-Za-z0-9._-]*)", (int)len, arg);
    if (has_suffix(arg, len, ".didx"))
        die("archive '%.*s': dynamic indexes are not supported", (int)len, arg);
    if (has_suffix(arg, len, ".fidx")) {
        if (!has_suffix(arg, len - 5, ".img"))
            die("archive '%.*s': a fixed index must be named NAME.img.fidx", (int)len, arg);
        a->kind = ARCHIVE_FIXED;
        snprintf(a->name, sizeof(a->name), "%.*s", (int)len, arg);
    } else if (has_suffix(arg, len, ".img")) {
        a->kind = ARCHIVE_FIXED;
        snprintf(a->name, sizeof(a->name), "%.*s.fidx", (int)len, arg);
    } else if (has_suffix(arg, len, ".blob")) {
        a->kind = ARCHIVE_BLOB;
        snprintf(a->name, sizeof(a->name), "%.*s", (int)len, arg);
    } else {
        a->kind = ARCHIVE_BLOB;
        snprintf(a->name, sizeof(a->name), "%.*s.blob", (int)len, arg);
    }
    if (strcmp(a->name, PBS_MANIFEST_NAME) == 0 || strcmp(a->name, ".img.fidx") == 0 ||
        strcmp(a->name, ".blob") == 0)
        die("invalid archive name '%.*s'", (int)len, arg);
    a->src = eq + 1;
    a->fd = open(a->src, O_RDONLY | O_CLOEXEC);
    if (a->fd < 0)
        die("cannot open %s: %s", a->src, strerror(errno));
}

static void parse_options(int argc, char **argv, struct options *opt)
{
    enum {
        OPT_NS = 256,
        OPT_TYPE,
        OPT_ID,
        OPT_TIME,
        OPT_OWNER,
        OPT_CHUNK_SIZE,
        OPT_NO_COMPRESS,
        OPT_NO_CONTENT_SIZE,
        OPT_ENCRYPT_KEY,
        OPT_CRYPT_MODE,
        OPT_WRITE_KEYFILE,
        OPT_KDF,
        OPT_PASSWORD_FILE,
        OPT_JOBS,
        OPT_QUIET,
        OPT_HELP,
    };
    static const struct option longopts[] = {
        {"ns", required_argument, NULL, OPT_NS},
        {"type", required_argument, NULL, OPT_TYPE},
        {"id", required_argument, NULL, OPT_ID},
        {"time", required_argument, NULL, OPT_TIME},
        {"owner", required_argument, NULL, OPT_OWNER},
        {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
        {"no-compress", no_argument, NULL, OPT_NO_COMPRESS},
        {"zstd-no-content-size", no_argument, NULL, OPT_NO_CONTENT_SIZE},
        {"encrypt-key", required_argument, NULL, OPT_ENCRYPT_KEY},
        {"crypt-mode", required_argument, NULL, OPT_CRYPT_MODE},
        {"write-keyfile", required_argument, NULL, OPT_WRITE_KEYFILE},
        {"kdf", required_argument, NULL, OPT_KDF},
        {"keyfile-password-file", required_argument, NULL, OPT_PASSWORD_FILE},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    bool have_time = false, sign_only = false;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t v;
    int c;

    opt->ns = "";
    opt->type = "vm";
    opt->id = "100";
    opt->owner = "root@pam";
    opt->chunk_size = PBS_CHUNK_SIZE_DEFAULT;
    opt->compress = true;
    opt->jobs = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (unsigned)ncpu;

    opterr = 0; /* report bad options with our own prefix */
    while ((c = getopt_long(argc, argv, "q", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_NS:
            opt->ns = optarg;
            break;
        case OPT_TYPE:
            opt->type = optarg;
            break;
        case OPT_ID:
            opt->id = optarg;
            break;
        case OPT_TIME:
            opt->time = parse_time(optarg);
            have_time = true;
            break;
        case OPT_OWNER:
            opt->owner = optarg;
            break;
        case OPT_CHUNK_SIZE:
            if (!parse_size(optarg, &v) || v < PBS_CHUNK_SIZE_MIN || v > PBS_CHUNK_SIZE_MAX ||
                (v & (v - 1)) != 0)
                die("invalid --chunk-size '%s' (allowed: 64K 128K 256K 512K 1M 2M 4M)", optarg);
            opt->chunk_size = v;
            break;
        case OPT_NO_COMPRESS:
            opt->compress = false;
            break;
        case OPT_NO_CONTENT_SIZE:
            opt->zstd_no_content_size = true;
            break;
        case OPT_ENCRYPT_KEY:
            parse_key(optarg, opt->key);
            opt->keyed = true;
            break;
        case OPT_CRYPT_MODE:
            if (strcmp(optarg, "encrypt") && strcmp(optarg, "sign-only"))
                die("--crypt-mode: expected encrypt or sign-only, got '%s'", optarg);
            sign_only = !strcmp(optarg, "sign-only");
            break;
        case OPT_WRITE_KEYFILE:
            opt->keyfile_out = optarg;
            break;
        case OPT_KDF:
            opt->kdf = optarg;
            break;
        case OPT_PASSWORD_FILE:
            opt->password_file = optarg;
            break;
        case OPT_JOBS:
            if (!parse_u64(optarg, &v) || v < 1 || v > MAX_JOBS)
                die("invalid --jobs '%s' (1 to %d)", optarg, MAX_JOBS);
            opt->jobs = (unsigned)v;
            break;
        case 'q':
        case OPT_QUIET:
            opt->quiet = true;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            die("invalid option or missing argument: %s (try --help)", argv[optind - 1]);
        }
    }
    opt->encrypt = opt->keyed && !sign_only;
    if (sign_only && !opt->keyed)
        die("--crypt-mode sign-only needs --encrypt-key");
    if (opt->keyfile_out && !opt->keyed)
        die("--write-keyfile needs --encrypt-key (the key to write)");
    if (opt->keyfile_out && argc == optind)
        return; /* only the key file */
    if (argc - optind < 2) {
        usage(stderr);
        exit(1);
    }
    if (!have_time)
        opt->time = (int64_t)time(NULL);

    if (strcmp(opt->type, "vm") != 0 && strcmp(opt->type, "ct") != 0 &&
        strcmp(opt->type, "host") != 0)
        die("invalid --type '%s' (expected vm, ct or host)", opt->type);
    if (!valid_id(opt->id, strlen(opt->id)))
        die("invalid --id '%s' (expected [A-Za-z0-9_][A-Za-z0-9._-]*)", opt->id);
    check_ns(opt->ns);
    check_owner(opt->owner);

    opt->datastore = argv[optind++];
    if (!*opt->datastore)
        die("empty datastore path");
    if (argc - optind > MAX_ARCHIVES)
        die("too many archives (at most %d)", MAX_ARCHIVES);
    for (; optind < argc; optind++) {
        struct archive *a = &opt->archives[opt->narchives];

        parse_archive(argv[optind], a);
        for (size_t i = 0; i < opt->narchives; i++)
            if (strcmp(opt->archives[i].name, a->name) == 0)
                die("archive %s given twice", a->name);
        opt->narchives++;
    }
}

int main(int argc, char **argv)
{
    static struct options opt;
    struct chunk_store store = {0};
    struct stats stats = {0};
    char group[PATH_MAX], snap[PATH_MAX + 32], display[2 * PATH_MAX], chunk_dir[PATH_MAX + 16];
    char timestr[PBS_TIME_LEN + 1];
    struct stat st;
    struct tm tm;
    time_t t;
    size_t pos = 0;
    int dsfd, snapfd;

    util_progname = "lazyimg-mkpbs";
    parse_options(argc, argv, &opt);

    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    cipher_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!md_sha256 || !cipher_gcm)
        die("OpenSSL lacks SHA-256 or AES-256-GCM");
    if (opt.keyed)
        mkpbs_id_key(opt.key, opt.id_key);
    if (opt.keyfile_out) {
        char password[1024] = "";
        FILE *f = opt.password_file ? fopen(opt.password_file, "re") : NULL;
        if (opt.password_file && (!f || !fgets(password, sizeof(password), f)))
            die("cannot read %s: %s", opt.password_file, f ? "empty file" : strerror(errno));
        if (f)
            fclose(f);
        password[strcspn(password, "\r\n")] = '\0';
        mkpbs_write_keyfile(opt.keyfile_out, opt.key, opt.kdf ? opt.kdf : "scrypt", password);
        OPENSSL_cleanse(password, sizeof(password));
        if (!opt.datastore)
            return 0;
    }

    /* [ns/A/ns/B/]TYPE/ID and TYPE/ID/TIME, relative to the datastore */
    for (const char *p = opt.ns; *p;) {
        size_t len = strcspn(p, "/");

        pos +=
            (size_t)snprintf(group + pos, sizeof(group) - pos, "%s/%.*s/", PBS_NS_DIR, (int)len, p);
        p += len;
        if (*p == '/')
            p++;
    }
    snprintf(group + pos, sizeof(group) - pos, "%s/%s", opt.type, opt.id);
    t = (time_t)opt.time;
    if (!gmtime_r(&t, &tm) ||
        strftime(timestr, sizeof(timestr), "%Y-%m-%dT%H:%M:%SZ", &tm) != PBS_TIME_LEN)
        die("cannot format backup time %" PRId64, opt.time);
    snprintf(snap, sizeof(snap), "%s/%s", group, timestr);
    snprintf(display, sizeof(display), "%s/%s", opt.datastore, snap);

    dsfd = datastore_open(opt.datastore);
    store.fd = openat(dsfd, PBS_CHUNK_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store.fd < 0)
        die("cannot open %s/%s: %s", opt.datastore, PBS_CHUNK_DIR, strerror(errno));
    snprintf(chunk_dir, sizeof(chunk_dir), "%s/%s", opt.datastore, PBS_CHUNK_DIR);
    store.display = chunk_dir;
    if (pthread_mutex_init(&store.lock, NULL) != 0)
        die("cannot initialize a mutex");

    mkdir_p(dsfd, group, group);
    {
        char owner_path[PATH_MAX + 8], owner_line[512];

        snprintf(owner_path, sizeof(owner_path), "%s/owner", group);
        snprintf(owner_line, sizeof(owner_line), "%s\n", opt.owner);
        create_file_if_missing(dsfd, owner_path, owner_line, owner_path);
    }
    if (mkdirat(dsfd, snap, 0755) < 0 && errno != EEXIST)
        die("cannot create %s: %s", display, strerror(errno));
    snapfd = openat(dsfd, snap, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (snapfd < 0)
        die("cannot open %s: %s", display, strerror(errno));
    if (fstatat(snapfd, PBS_MANIFEST_NAME, &st, 0) == 0)
        die("snapshot %s already exists", display);

    for (size_t i = 0; i < opt.narchives; i++) {
        struct archive *a = &opt.archives[i];

        if (a->kind == ARCHIVE_FIXED)
            write_fixed_index(&opt, a, snapfd, &store, &stats);
        else
            write_blob_archive(&opt, a, snapfd);
        close(a->fd);
    }
    /* the manifest marks the snapshot as finished, so it comes last */
    write_manifest(&opt, snapfd, &stats);

    if (!opt.quiet)
        printf("%s chunks=%" PRIu64 " new=%" PRIu64 " zero=%" PRIu64 " bytes=%" PRIu64
               " stored=%" PRIu64 "\n",
               display, stats.chunks, stats.new_chunks, stats.zero_chunks, stats.bytes,
               stats.stored_bytes);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("cannot write to stdout");

    close(snapfd);
    close(store.fd);
    close(dsfd);
    pthread_mutex_destroy(&store.lock);
    free(store.seen.slot);
    free(store.seen.used);
    EVP_MD_free(md_sha256);
    EVP_CIPHER_free(cipher_gcm);
    return 0;
}
