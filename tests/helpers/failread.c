/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for tests: a disk that fails reads under some directories.
 * pread(), preadv() and preadv2() (and their 64-bit names) of a file whose path contains
 * one of the ':'-separated strings in $FAILREAD_MATCH fail with EIO, as a
 * bad sector under a cache file does; other files read as usual (the cache's
 * SQLite index among them, when it is not matched). Paths are compared as
 * the kernel shows them (/proc/self/fd): give real paths, without ':'.
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

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pread64_fn)(int, void *, size_t, off64_t);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*preadv64_fn)(int, const struct iovec *, int, off64_t);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off_t, int);
typedef ssize_t (*preadv64v2_fn)(int, const struct iovec *, int, off64_t, int);

/* the next definitions, looked up before any thread runs */
static pread_fn real_pread;
static pread64_fn real_pread64;
static preadv_fn real_preadv;
static preadv64_fn real_preadv64;
static preadv2_fn real_preadv2;
static preadv64v2_fn real_preadv64v2;

__attribute__((constructor)) static void init(void)
{
    real_pread = (pread_fn)dlsym(RTLD_NEXT, "pread");
    real_pread64 = (pread64_fn)dlsym(RTLD_NEXT, "pread64");
    real_preadv = (preadv_fn)dlsym(RTLD_NEXT, "preadv");
    real_preadv64 = (preadv64_fn)dlsym(RTLD_NEXT, "preadv64");
    real_preadv2 = (preadv2_fn)dlsym(RTLD_NEXT, "preadv2");
    real_preadv64v2 = (preadv64v2_fn)dlsym(RTLD_NEXT, "preadv64v2");
}

/* EIO where @fd is to fail, else the real call */
#define FAIL_OR(call)                                                                              \
    do {                                                                                           \
        if (fails(fd)) {                                                                           \
            errno = EIO;                                                                           \
            return -1;                                                                             \
        }                                                                                          \
        return call;                                                                               \
    } while (0)

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    FAIL_OR(real_pread(fd, buf, len, off));
}

ssize_t pread64(int fd, void *buf, size_t len, off64_t off)
{
    FAIL_OR(real_pread64(fd, buf, len, off));
}

ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    FAIL_OR(real_preadv(fd, iov, n, off));
}

ssize_t preadv64(int fd, const struct iovec *iov, int n, off64_t off)
{
    FAIL_OR(real_preadv64(fd, iov, n, off));
}

ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    FAIL_OR(real_preadv2(fd, iov, n, off, flags));
}

ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off64_t off, int flags)
{
    FAIL_OR(real_preadv64v2(fd, iov, n, off, flags));
}
