/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for tests: a disk that fails reads under some directories.
 * pread(), preadv() and preadv2() (and their 64-bit names) of a file whose path contains
 * one of the ':'-separated strings in $FAILREAD_MATCH fail with EIO, as a
 * bad sector under a cache file does; other files read as usual (the cache's
 * SQLite index among them, when it is not matched).
 */
/* pread and pread64 both defined here: not the one redirected to the other */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* Whether reads of @fd are to fail. */
static int fails(int fd)
{
    const char *match = getenv("FAILREAD_MATCH");
    char link[64], path[4096], want[1024];
    ssize_t n;

    if (!match || !*match || fd <= 2)
        return 0;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    for (const char *m = match; *m;) {
        const char *end = strchr(m, ':');
        size_t len = end ? (size_t)(end - m) : strlen(m);
        if (len && len < sizeof(want)) {
            memcpy(want, m, len);
            want[len] = '\0';
            if (strstr(path, want))
                return 1;
        }
        m += len + (end ? 1 : 0);
    }
    return 0;
}

typedef ssize_t (*pread_fn)(int, void *, size_t, off64_t);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off64_t);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off64_t, int);

/* The next definition of @name, looked up once. */
#define REAL(fn_type, name) \
    static fn_type real; \
    if (!real) \
        real = (fn_type)dlsym(RTLD_NEXT, name)

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    REAL(pread_fn, "pread");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off64_t off)
{
    REAL(pread_fn, "pread64");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, buf, len, off);
}

ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    REAL(preadv_fn, "preadv");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, iov, n, off);
}

ssize_t preadv64(int fd, const struct iovec *iov, int n, off64_t off)
{
    REAL(preadv_fn, "preadv64");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, iov, n, off);
}

ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    REAL(preadv2_fn, "preadv2");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, iov, n, off, flags);
}

ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off64_t off, int flags)
{
    REAL(preadv2_fn, "preadv64v2");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd, iov, n, off, flags);
}
