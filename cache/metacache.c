/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "metacache.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define META_MAGIC "LZIMETA1"
#define META_MAGIC_LEN 8
#define META_KEY_MAX 4096
/* magic, key length (u32 LE), data length (u64 LE), SHA-256(key || data) */
#define META_HDR_LEN (META_MAGIC_LEN + 4 + 8 + 32)

struct cache_meta {
    int dirfd;
};

static atomic_uint tmp_counter;

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 over up to two buffers. */
static int sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
             (!blen || EVP_DigestUpdate(ctx, b, blen)) && EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -ENOMEM;
}

int cache_meta_store_key(const char *location, char out[CACHE_META_STORE_KEY_LEN + 1])
{
    size_t len = location ? strlen(location) : 0;
    const char *scheme_end = location ? strstr(location, "://") : NULL;
    char *norm;
    uint8_t d[32];
    int r;

    if (!len)
        return -EINVAL;
    norm = malloc(len + 1);
    if (!norm)
        return -ENOMEM;
    if (scheme_end && !memchr(location, '/', (size_t)(scheme_end - location))) {
        /* scheme://[userinfo@]host[:port][/path]: the userinfo dropped; for
         * http and https also the scheme and host in lower case and a port
         * that is the scheme's default (or empty): each names the same
         * server either way (not so an s3:// bucket: legacy names have case) */
        const char *auth = scheme_end + 3, *end = auth + strcspn(auth, "/?#"), *host = auth;
        const char *colon = NULL;
        size_t scheme_len = (size_t)(scheme_end - location), at = 0, host_len;
        bool http = scheme_len == 4 && !strncasecmp(location, "http", 4);
        bool https = scheme_len == 5 && !strncasecmp(location, "https", 5);

        for (const char *c = auth; c < end; c++)
            if (*c == '@')
                host = c + 1;
        for (const char *c = host; c < end; c++)
            colon = *c == ':' ? c : *c == ']' ? NULL : colon; /* not within an IPv6 literal */
        host_len = (size_t)(end - host);
        if (colon && (http || https)) {
            size_t plen = (size_t)(end - colon - 1);
            if (!plen || (http && plen == 2 && !memcmp(colon + 1, "80", 2)) ||
                (https && plen == 3 && !memcmp(colon + 1, "443", 3)))
                host_len = (size_t)(colon - host);
        }
        for (size_t i = 0; i < scheme_len; i++)
            norm[at++] = http || https ? (char)tolower((unsigned char)location[i]) : location[i];
        memcpy(norm + at, "://", 3);
        at += 3;
        for (size_t i = 0; i < host_len; i++)
            norm[at++] = http || https ? (char)tolower((unsigned char)host[i]) : host[i];
        snprintf(norm + at, len + 1 - at, "%s", end);
    } else {
        memcpy(norm, location, len + 1);
    }
    len = strlen(norm);
    while (len > 1 && norm[len - 1] == '/')
        norm[--len] = '\0';
    r = sha256_2(norm, len, NULL, 0, d);
    free(norm);
    if (r < 0)
        return r;
    hex(d, sizeof(d), out);
    return 0;
}

static int mkdirat_p(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/*
 * Like the chunk cache (diskcache.h, "Trust"): a directory of the metadata
 * cache must be ours and writable by nobody else, or whoever can write it
 * could plant a self-consistent manifest or index.
 */
static int check_owned(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
        return -EPERM;
    return 0;
}

/* A temp file (".tmp.PID.N") of a writer that is gone for good: a put
 * writes its file in well under this, so one older is no live writer's,
 * even one in another PID namespace (whose pid means nothing here). */
#define STALE_TMP_SEC 60

/*
 * Removes the temp files of puts that a crash or a kill interrupted: their
 * process is gone and they are unchanged for a minute (a pid in use again
 * keeps its files: harmless). Nothing else removes them, and no budget
 * counts them (an entry is up to CACHE_META_ENTRY_MAX bytes).
 */
static void sweep_stale_tmp(int dirfd)
{
    time_t now = time(NULL);
    struct dirent *de;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(d))) {
        struct stat st;
        char *end;
        long pid;
        if (strncmp(de->d_name, ".tmp.", 5))
            continue;
        errno = 0;
        pid = strtol(de->d_name + 5, &end, 10);
        if (errno || end == de->d_name + 5 || *end != '.' || pid <= 0 || pid == (long)getpid())
            continue;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_mtime > now - STALE_TMP_SEC)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
            unlinkat(dirfd, de->d_name, 0);
    }
    closedir(d);
}

int cache_meta_open(const char *cache_dir, const char *location, struct cache_meta **ret, char *msg,
                    size_t msg_len)
{
    char key[CACHE_META_STORE_KEY_LEN + 1];
    struct cache_meta *m;
    int top = -1, meta = -1, r;

    if ((r = cache_meta_store_key(location, key)) < 0) {
        if (msg)
            snprintf(msg, msg_len, "no store location");
        return r;
    }
    top = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top < 0) {
        r = -errno;
        goto fail;
    }
    if ((r = mkdirat_p(top, "meta")) < 0)
        goto fail;
    meta = openat(top, "meta", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (meta < 0) {
        r = -errno;
        goto fail;
    }
    if ((r = check_owned(meta)) < 0)
        goto fail;
    if ((r = mkdirat_p(meta, key)) < 0)
        goto fail;
    m = calloc(1, sizeof(*m));
    if (!m) {
        r = -ENOMEM;
        goto fail;
    }
    m->dirfd = openat(meta, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (m->dirfd < 0 || (r = check_owned(m->dirfd)) < 0) {
        if (m->dirfd < 0)
            r = -errno;
        else
            close(m->dirfd);
        free(m);
        goto fail;
    }
    close(meta);
    close(top);
    sweep_stale_tmp(m->dirfd);
    *ret = m;
    return 0;
fail:
    if (msg)
        snprintf(msg, msg_len, "metadata cache in %s/meta: %s", cache_dir,
                 r == -EPERM ? "not owned by this user, or writable by group or others; "
                               "refusing to use it (chmod -R go-w, or remove it)"
                             : strerror(-r));
    if (meta >= 0)
        close(meta);
    if (top >= 0)
        close(top);
    return r;
}

void cache_meta_free(struct cache_meta *m)
{
    if (!m)
        return;
    close(m->dirfd);
    free(m);
}

static int entry_name(const char *key, char out[65])
{
    uint8_t d[32];
    int r = sha256_2(key, strlen(key), NULL, 0, d);
    if (r == 0)
        hex(d, sizeof(d), out);
    return r;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads the whole file @fd (of @size bytes) into a buffer with a NUL after it. */
static int read_whole(int fd, size_t size, uint8_t **ret)
{
    uint8_t *buf = malloc(size + 1);
    size_t got = 0;
    if (!buf)
        return -ENOMEM;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EBADMSG;
            free(buf);
            return r;
        }
        got += (size_t)n;
    }
    buf[size] = 0;
    *ret = buf;
    return 0;
}

/*
 * Opens and checks entry @name for @key: the whole file into *ret_file, the
 * data at *ret_data. -ENOENT, -EBADMSG (damaged or another key), -errno.
 */
static int load_entry(struct cache_meta *m, const char *name, const char *key, size_t max,
                      uint8_t **ret_file, const uint8_t **ret_data, size_t *ret_len,
                      int64_t *ret_mtime)
{
    size_t klen = strlen(key);
    struct stat st;
    uint8_t *file = NULL, d[32];
    uint64_t dlen;
    int fd, r;

    fd = openat(m->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_size < META_HDR_LEN ||
        (uint64_t)st.st_size > (uint64_t)META_HDR_LEN + META_KEY_MAX + CACHE_META_ENTRY_MAX) {
        r = -EBADMSG;
        goto out;
    }
    if ((uint64_t)st.st_size < META_HDR_LEN + klen) {
        r = -EBADMSG;
        goto out;
    }
    dlen = (uint64_t)st.st_size - META_HDR_LEN - klen;
    if (dlen > max) {
        r = -EFBIG;
        goto out;
    }
    if ((r = read_whole(fd, (size_t)st.st_size, &file)) < 0)
        goto out;
    if (memcmp(file, META_MAGIC, META_MAGIC_LEN) || get_le(file + META_MAGIC_LEN, 4) != klen ||
        get_le(file + META_MAGIC_LEN + 4, 8) != dlen || memcmp(file + META_HDR_LEN, key, klen)) {
        r = -EBADMSG;
        goto out;
    }
    if ((r = sha256_2(file + META_HDR_LEN, klen, file + META_HDR_LEN + klen, (size_t)dlen, d)) < 0)
        goto out;
    if (memcmp(d, file + META_MAGIC_LEN + 12, 32)) {
        r = -EBADMSG;
        goto out;
    }
    *ret_file = file;
    *ret_data = file + META_HDR_LEN + klen;
    *ret_len = (size_t)dlen;
    if (ret_mtime)
        *ret_mtime = (int64_t)st.st_mtime;
    file = NULL;
out:
    free(file);
    close(fd);
    return r;
}

int cache_meta_get(struct cache_meta *m, const char *key, size_t max, void **ret, size_t *ret_len,
                   int64_t *ret_mtime)
{
    char name[65];
    uint8_t *file = NULL, *out;
    const uint8_t *data;
    size_t len;
    int r;

    if (!key || strlen(key) > META_KEY_MAX)
        return -EINVAL;
    if (max > CACHE_META_ENTRY_MAX)
        max = CACHE_META_ENTRY_MAX;
    if ((r = entry_name(key, name)) < 0)
        return r;
    r = load_entry(m, name, key, max, &file, &data, &len, ret_mtime);
    if (r == -EBADMSG)
        unlinkat(m->dirfd, name, 0); /* the next put writes a good copy */
    if (r < 0)
        return r;
    out = malloc(len + 1);
    if (!out) {
        free(file);
        return -ENOMEM;
    }
    memcpy(out, data, len);
    out[len] = 0;
    free(file);
    *ret = out;
    *ret_len = len;
    return 0;
}

int cache_meta_put(struct cache_meta *m, const char *key, const void *data, size_t len)
{
    uint8_t hdr[META_HDR_LEN], *old = NULL;
    const uint8_t *old_data;
    size_t klen = key ? strlen(key) : 0, old_len;
    char name[65], tmp[96];
    int fd, r;

    if (!klen || klen > META_KEY_MAX)
        return -EINVAL;
    if (len > CACHE_META_ENTRY_MAX)
        return -EFBIG;
    if ((r = entry_name(key, name)) < 0)
        return r;
    /* immutable objects are put again by every mount: skip the write */
    if (load_entry(m, name, key, len, &old, &old_data, &old_len, NULL) == 0) {
        bool same = old_len == len && (!len || !memcmp(old_data, data, len));
        free(old);
        if (same)
            return 0;
    }
    memcpy(hdr, META_MAGIC, META_MAGIC_LEN);
    put_le(hdr + META_MAGIC_LEN, klen, 4);
    put_le(hdr + META_MAGIC_LEN + 4, len, 8);
    if ((r = sha256_2(key, klen, data, len, hdr + META_MAGIC_LEN + 12)) < 0)
        return r;
    snprintf(tmp, sizeof(tmp), ".tmp.%ld.%u", (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    fd = openat(m->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if ((r = write_all(fd, hdr, sizeof(hdr))) < 0 || (r = write_all(fd, key, klen)) < 0 ||
        (len && (r = write_all(fd, data, len)) < 0))
        goto fail;
    /* no fsync per entry (it made a first mount of 300 snapshots 30 times
     * slower): a file a crash left torn fails its checksum and reads as a
     * miss; cache_meta_sync() makes what was written durable */
    if (close(fd) < 0) {
        fd = -1;
        r = -errno;
        goto fail;
    }
    fd = -1;
    if (renameat(m->dirfd, tmp, m->dirfd, name) < 0) {
        r = -errno;
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlinkat(m->dirfd, tmp, 0);
    return r;
}

int cache_meta_remove(struct cache_meta *m, const char *key)
{
    char name[65];
    int r;
    if (!key || strlen(key) > META_KEY_MAX)
        return -EINVAL;
    if ((r = entry_name(key, name)) < 0)
        return r;
    return unlinkat(m->dirfd, name, 0) < 0 ? -errno : 0;
}

int cache_meta_sync(struct cache_meta *m)
{
    return syncfs(m->dirfd) < 0 ? -errno : 0;
}

/* ---- the whole meta/ directory (lazyimg cache stats, clear) ---- */

/*
 * Calls @fn for each file of every store directory below CACHE_DIR/meta,
 * then @store_done for that store (@is_dir false: what stands there is not
 * a directory, a symbolic link say, never followed); -errno of opening
 * meta/ (-ENOENT: none).
 */
static int
walk_meta(const char *cache_dir,
          void (*fn)(int store_dirfd, const char *name, const struct stat *st, void *arg),
          void (*store_done)(int meta_fd, const char *name, bool is_dir, void *arg), void *arg)
{
    int top = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), meta, fd;
    DIR *d;
    struct dirent *de;

    if (top < 0)
        return -errno;
    meta = openat(top, "meta", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(top);
    if (meta < 0)
        return -errno;
    if ((fd = dup(meta)) < 0 || !(d = fdopendir(fd))) {
        int r = -errno;
        if (fd >= 0)
            close(fd);
        close(meta);
        return r;
    }
    while ((de = readdir(d))) {
        int sd;
        DIR *sdir;
        struct dirent *e;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        sd = openat(meta, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sd < 0) {
            store_done(meta, de->d_name, false, arg);
            continue;
        }
        if ((fd = dup(sd)) >= 0 && (sdir = fdopendir(fd))) {
            while ((e = readdir(sdir))) {
                struct stat st;
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
                    fstatat(sd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                    continue;
                fn(sd, e->d_name, &st, arg);
            }
            closedir(sdir);
        } else if (fd >= 0) {
            close(fd);
        }
        close(sd);
        store_done(meta, de->d_name, true, arg);
    }
    closedir(d);
    close(meta);
    return 0;
}

/* Whether file @name of a store's directory is an entry (not a temporary
 * file of a put in progress) */
static bool is_entry(const char *name, const struct stat *st)
{
    return S_ISREG(st->st_mode) && strncmp(name, ".tmp.", 5) != 0;
}

struct usage_state {
    struct cache_meta_usage u;
    uint64_t entries_before; /* when the current store began */
};

static void count_entry(int store_dirfd, const char *name, const struct stat *st, void *arg)
{
    struct usage_state *us = arg;
    (void)store_dirfd;
    if (!is_entry(name, st))
        return;
    us->u.entries++;
    us->u.bytes += (uint64_t)st->st_blocks * 512;
}

/* a store with entries (an empty directory: one cleared) */
static void count_store(int meta_fd, const char *name, bool is_dir, void *arg)
{
    struct usage_state *us = arg;
    (void)meta_fd;
    (void)name;
    if (is_dir && us->u.entries > us->entries_before)
        us->u.stores++;
    us->entries_before = us->u.entries;
}

int cache_meta_usage(const char *cache_dir, struct cache_meta_usage *ret)
{
    struct usage_state us = {{0, 0, 0}, 0};
    int r = walk_meta(cache_dir, count_entry, count_store, &us);
    *ret = us.u;
    return r == -ENOENT ? 0 : r;
}

struct clear_state {
    uint64_t removed;
    int err;
};

static void remove_entry(int store_dirfd, const char *name, const struct stat *st, void *arg)
{
    struct clear_state *cs = arg;
    if (S_ISDIR(st->st_mode))
        return; /* the cache makes none here: not ours to remove */
    if (unlinkat(store_dirfd, name, 0) < 0) {
        if (errno != ENOENT && !cs->err)
            cs->err = -errno;
        return;
    }
    if (is_entry(name, st))
        cs->removed++;
}

static void remove_store(int meta_fd, const char *name, bool is_dir, void *arg)
{
    struct clear_state *cs = arg;
    /* a store's directory stays: a running daemon writes through its open
     * descriptor of it, and would write into a removed one for the rest of
     * its mount; what is not a directory there goes */
    if (!is_dir && unlinkat(meta_fd, name, 0) < 0 && errno != ENOENT && !cs->err)
        cs->err = -errno;
}

int cache_meta_clear(const char *cache_dir, uint64_t *ret_removed)
{
    struct clear_state cs = {0, 0};
    int r = walk_meta(cache_dir, remove_entry, remove_store, &cs);
    if (ret_removed)
        *ret_removed = cs.removed;
    if (r == -ENOENT)
        r = 0;
    return r < 0 ? r : cs.err;
}
