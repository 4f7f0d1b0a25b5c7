/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Local directory store: every path is opened beneath one directory fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so neither ".." nor a
 * symlink in any component leads out of the datastore. Kernels without
 * openat2 (< 5.6) fall back to openat(O_NOFOLLOW), which guards the last
 * component only; paths are built from validated names either way.
 */
#include "store.h"
#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/openat2.h>

struct local_store {
    struct fetch_store base;
    int rootfd;
    atomic_bool no_direct;         /* the filesystem refused O_DIRECT */
    bool fowner;                   /* CAP_FOWNER: mincore() answers for any file */
    _Atomic uint64_t direct_reads; /* chunk objects read with O_DIRECT */
};

/*
 * Chunk objects (the fetcher pool's reads, get_buf) of at least DIRECT_MIN
 * bytes whose pages are not all in the page cache (residency()) are read
 * with O_DIRECT, from the disk straight into the chunk's buffer: a datastore
 * that is not in memory is read without filling page-cache pages that
 * nothing reads again and without copying out of them. Measured on this
 * project's VM (a cold --no-cache read of 1 GiB of 4 MiB chunks, the store's
 * files dropped from the page cache, 4 alternating pairs): 1,055-1,147 MB/s
 * and 0.75-0.86 s of daemon CPU per GiB against 802-931 MB/s and 1.12-1.36
 * s; the same read filling the cache 711-865 against 634-726 MB/s. The
 * buffer then starts on a page, so the payload after the blob's header is
 * not page-aligned as a skewed buffer's is (an O_DIRECT read needs the file
 * offset and the memory aligned alike): the disk cache's writer copies such
 * a chunk through its bounce buffer.
 */
#define DIRECT_MIN ((size_t)1 << 20)
#define DIRECT_ALIGN ((size_t)4096)

/* The error of an open_beneath() of @path that failed (errno). */
static int open_error(const char *path, fetch_error *err)
{
    int e = errno;
    if (e == ELOOP)
        return fetch_error_set(err, -e,
                               "%s: a symbolic link on the way (links inside a store are "
                               "not followed)",
                               path);
    return fetch_error_set(err, -e, "%s: %s", path, strerror(e));
}

static int open_beneath(int rootfd, const char *path, int flags)
{
    static bool no_openat2;
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
        long fd;
        do {
            fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
        } while (fd < 0 && (errno == EAGAIN || errno == EINTR));
        if (fd >= 0 || errno != ENOSYS)
            return (int)fd;
        __atomic_store_n(&no_openat2, true, __ATOMIC_RELAXED);
    }
    return openat(rootfd, path, flags | O_CLOEXEC | O_NOFOLLOW);
}

void fetch_dirents_free(struct fetch_dirent *d, size_t n)
{
    if (!d)
        return;
    for (size_t i = 0; i < n; i++)
        free(d[i].name);
    free(d);
}

static int local_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret,
                      size_t *ret_n, fetch_error *err)
{
    struct local_store *ls = (struct local_store *)s;
    struct fetch_dirent *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;
    int fd, r = 0;

    fd = open_beneath(ls->rootfd, dir[0] ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return open_error(dir[0] ? dir : ".", err);
    d = fdopendir(fd);
    if (!d) {
        r = -errno;
        close(fd);
        return fetch_error_set(err, r, "%s: %s", dir, strerror(-r));
    }
    errno = 0;
    while ((de = readdir(d))) {
        bool is_dir;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            is_dir = S_ISDIR(st.st_mode);
        } else {
            is_dir = de->d_type == DT_DIR;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct fetch_dirent *nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[n].name = strdup(de->d_name);
        if (!v[n].name) {
            r = -ENOMEM;
            break;
        }
        v[n++].is_dir = is_dir;
        errno = 0;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    if (r < 0) {
        fetch_dirents_free(v, n);
        return fetch_error_set(err, r, "%s: %s", dir, strerror(-r));
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Whether every page of the first @len bytes of @fd is in the page cache
 * (mincore() of a mapping never touched reads nothing); true when unknown. */
static bool mincore_cached(int fd, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), npages = (len + page - 1) / page;
    unsigned char vec[256];
    bool all = true;
    uint8_t *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return true;
    for (size_t i = 0; all && i < npages; i += sizeof(vec)) {
        size_t n = npages - i < sizeof(vec) ? npages - i : sizeof(vec);
        if (mincore(map + i * page, n * page, vec) < 0)
            break;
        for (size_t k = 0; all && k < n; k++)
            all = vec[k] & 1;
    }
    munmap(map, len);
    return all;
}

/*
 * Where a chunk file's pages are, for the choice of O_DIRECT. The kernel
 * answers mincore() truthfully only to the file's owner, to a caller with
 * CAP_FOWNER, and to one who may write the file; to anyone else (a daemon
 * reading a datastore owned by "backup", say) every page reads as cached.
 * For those files a read of the last page with RWF_NOWAIT tells instead: it
 * fails with EAGAIN when that page is not in the page cache. It also reads
 * that page in (checked on kernel 6.18), which PROBE_NOT_CACHED asks the
 * caller to drop after its direct read, or the next probe of the file
 * would find it. Only the last page is asked about: a file read in part
 * goes through the page cache, as before. A daemon running as nobody,
 * reading root's datastore with the page cache dropped before each read
 * (4 alternating pairs): 1,626-1,705 MB/s against 976-1,297 with mincore().
 */
enum residency { CACHED, NOT_CACHED, PROBE_NOT_CACHED };

static enum residency residency(const struct local_store *ls, int fd, const struct stat *st,
                                size_t len)
{
    uint8_t page[DIRECT_ALIGN];
    size_t last = (len - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
    struct iovec iov = {page, len - last};
    ssize_t n;

    if (ls->fowner || st->st_uid == geteuid())
        return mincore_cached(fd, len) ? CACHED : NOT_CACHED;
    do
        n = preadv2(fd, &iov, 1, (off_t)last, RWF_NOWAIT);
    while (n < 0 && errno == EINTR);
    /* anything but EAGAIN (EOPNOTSUPP: no such reads here) is unknown */
    return n < 0 && errno == EAGAIN ? PROBE_NOT_CACHED : CACHED;
}

/*
 * Drops the last page of @fd (@len bytes) that residency()'s probe read in.
 * That read may still be in flight, and POSIX_FADV_DONTNEED skips a page
 * under I/O: a plain read of the page first waits for it. (With the
 * fadvise alone, a second read of t-usermount's store found chunk files in
 * the page cache in 2 of 8 runs under disk and CPU load; with the read
 * first, in none of 14.)
 */
static void drop_probed(int fd, size_t len)
{
    uint8_t page[DIRECT_ALIGN];
    size_t last = (len - 1) / DIRECT_ALIGN * DIRECT_ALIGN;

    if (pread(fd, page, len - last, (off_t)last) >= 0)
        (void)posix_fadvise(fd, (off_t)last, 0, POSIX_FADV_DONTNEED);
}

/* Whether this process has CAP_FOWNER in its effective set (the CapEff line
 * of /proc/self/status; false when unknown: the probe then decides). */
static bool has_fowner(void)
{
    char line[256];
    bool yes = false;
    FILE *f = fopen("/proc/self/status", "re");

    if (!f)
        return false;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "CapEff:", 7) == 0) {
            yes = (strtoull(line + 7, NULL, 16) >> CAP_FOWNER) & 1;
            break;
        }
    fclose(f);
    return yes;
}

/*
 * The @len bytes of @fd (a regular file of that size, opened by us) read
 * with O_DIRECT into a page-aligned buffer from fetch_buf_alloc(), or NULL
 * when that does not work out (the caller then reads through the page
 * cache, which also reports any error). O_DIRECT stays off for the store
 * once the filesystem refuses it. @fd is left without O_DIRECT.
 */
static uint8_t *read_direct(struct local_store *ls, int fd, size_t len)
{
    size_t cap = (len + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN, done = 0;
    int fl = fcntl(fd, F_GETFL);
    uint8_t *buf;

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
        if (errno == EINVAL)
            atomic_store(&ls->no_direct, true);
        return NULL;
    }
    buf = fetch_buf_alloc(cap);
    while (buf && done < len) {
        ssize_t n = pread(fd, buf + done, cap - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL && done == 0)
            atomic_store(&ls->no_direct, true); /* an alignment the device refuses */
        if (n <= 0)
            break;
        done += (size_t)n;
        if ((size_t)n % DIRECT_ALIGN)
            break; /* the end of the file, or a short read */
    }
    (void)fcntl(fd, F_SETFL, fl);
    if (done != len) { /* an error, a short read, a file that changed size */
        fetch_buf_free(buf);
        return NULL;
    }
    atomic_fetch_add(&ls->direct_reads, 1);
    return buf;
}

/* @pooled: the buffer from fetch_buf_alloc_skewed(len, @skew), else from malloc() */
static int read_object(struct fetch_store *s, const char *path, size_t max, bool pooled,
                       size_t skew, void **ret, size_t *ret_len, fetch_error *err)
{
    struct local_store *ls = (struct local_store *)s;
    struct stat st;
    size_t len, done = 0;
    uint8_t *buf;
    enum residency res;
    int fd, r;

    /* O_NONBLOCK: a FIFO planted in the store must not hang us */
    fd = open_beneath(ls->rootfd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return open_error(path, err);
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return fetch_error_set(err, r, "%s: %s", path, strerror(-r));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fetch_error_set(err, -EINVAL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fetch_error_set(err, -EFBIG, "%s: %lld bytes, more than the %zu expected", path,
                               (long long)st.st_size, max);
    }
    len = (size_t)st.st_size;
    if (pooled && len >= DIRECT_MIN && !atomic_load(&ls->no_direct) &&
        (res = residency(ls, fd, &st, len)) != CACHED) {
        buf = read_direct(ls, fd, len);
        if (res == PROBE_NOT_CACHED)
            drop_probed(fd, len);
        if (buf) {
            close(fd);
            *ret = buf;
            *ret_len = len;
            return 0;
        }
    }
    buf = pooled ? fetch_buf_alloc_skewed(len, skew) : malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : -EIO;
            if (pooled)
                fetch_buf_free(buf);
            else
                free(buf);
            close(fd);
            return fetch_error_set(err, r, "%s: read: %s", path,
                                   n < 0 ? strerror(-r) : "file shrank while reading");
        }
        done += (size_t)n;
    }
    close(fd);
    *ret = buf;
    *ret_len = len;
    return 0;
}

static int local_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                     size_t *ret_len, fetch_error *err)
{
    return read_object(s, path, max, false, 0, ret, ret_len, err);
}

static int local_get_buf(struct fetch_store *s, const char *path, size_t max, size_t skew,
                         void **ret, size_t *ret_len, fetch_error *err)
{
    return read_object(s, path, max, true, skew, ret, ret_len, err);
}

static uint64_t local_direct_reads(struct fetch_store *s)
{
    return atomic_load(&((struct local_store *)s)->direct_reads);
}

static void local_free(struct fetch_store *s)
{
    struct local_store *ls = (struct local_store *)s;
    close(ls->rootfd);
    free(ls->base.location);
    free(ls);
}

static const struct fetch_store_ops local_ops = {
    .kind = "local",
    .list = local_list,
    .get = local_get,
    .get_buf = local_get_buf,
    .free = local_free,
    .direct_reads = local_direct_reads,
};

int fetch_store_open_local(const char *path, struct fetch_store **ret, fetch_error *err)
{
    struct local_store *ls;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fetch_error_set(err, -errno, "%s: %s", path, strerror(errno));
    ls = calloc(1, sizeof(*ls));
    if (!ls || !(ls->base.location = strdup(path))) {
        free(ls);
        close(fd);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    ls->base.ops = &local_ops;
    ls->rootfd = fd;
    ls->fowner = has_fowner();
    *ret = &ls->base;
    return 0;
}
