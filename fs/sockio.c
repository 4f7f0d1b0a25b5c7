/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bounded socket I/O for the daemon's servers (see sockio.h). */
#include "sockio.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

void fs_sock_set_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (!err || !len)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

int64_t fs_sock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fs_sock_wait(int fd, short events, int stop_fd, int64_t deadline)
{
    for (;;) {
        struct pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
        int64_t left = deadline - fs_sock_now_ms();
        int r;
        if (left <= 0)
            return -ETIMEDOUT;
        r = poll(p, stop_fd >= 0 ? 2 : 1, (int)(left > INT_MAX ? INT_MAX : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (stop_fd >= 0 && p[1].revents)
            return -ECANCELED;
        if (p[0].revents)
            return 0;
    }
}

int fs_sock_send_all(int fd, const char *buf, size_t len, int stop_fd, int64_t deadline)
{
    while (len) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            int r;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            if ((r = fs_sock_wait(fd, POLLOUT, stop_fd, deadline)) < 0)
                return r;
            continue;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

void fs_sock_drain(int fd, int stop_fd)
{
    int64_t deadline = fs_sock_now_ms() + 500;
    size_t total = 0;
    char buf[4096];
    shutdown(fd, SHUT_WR);
    while (total < 65536 && fs_sock_wait(fd, POLLIN, stop_fd, deadline) == 0) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}
