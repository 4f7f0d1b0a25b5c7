/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for tests: a slow disk under one directory. write() to a
 * file whose path contains $SLOWWRITE_MATCH sleeps $SLOWWRITE_MS first, for
 * the first $SLOWWRITE_COUNT such writes (default: all) of the process; so
 * does an asynchronous write submitted to such a file (io_submit through
 * syscall(), as the disk cache's writer does).
 */
#include <dlfcn.h>
#include <linux/aio_abi.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_long slowed;

/* Sleeps if @fd is a file to slow down (and the count allows). */
static void maybe_slow(int fd)
{
    const char *match = getenv("SLOWWRITE_MATCH"), *ms = getenv("SLOWWRITE_MS");
    const char *count = getenv("SLOWWRITE_COUNT");

    if (match && *match && ms && fd > 2) {
        char link[64], path[4096];
        ssize_t n;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, path, sizeof(path) - 1);
        if (n > 0) {
            path[n] = '\0';
            if (strstr(path, match) &&
                (!count || atomic_fetch_add(&slowed, 1) < strtol(count, NULL, 10))) {
                long d = strtol(ms, NULL, 10);
                struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_write)
        real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    maybe_slow(fd);
    return real_write(fd, buf, len);
}

long syscall(long number, ...)
{
    static long (*real_syscall)(long, ...);
    long a[6];
    va_list ap;

    if (!real_syscall)
        real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_submit && a[1] > 0) {
        struct iocb **cbs = (struct iocb **)a[2];
        for (long i = 0; i < a[1]; i++)
            maybe_slow((int)cbs[i]->aio_fildes);
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
