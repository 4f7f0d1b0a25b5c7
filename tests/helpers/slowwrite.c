/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for tests: a slow disk under one directory. write() to a
 * file whose path contains $SLOWWRITE_MATCH sleeps $SLOWWRITE_MS first, for
 * the first $SLOWWRITE_COUNT such writes (default: all) of the process.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long slowed;

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real_write)(int, const void *, size_t);
    const char *match = getenv("SLOWWRITE_MATCH"), *ms = getenv("SLOWWRITE_MS");
    const char *count = getenv("SLOWWRITE_COUNT");

    if (!real_write)
        real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
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
    return real_write(fd, buf, len);
}
