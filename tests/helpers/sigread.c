/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sigread FILE OFFSET LEN INTERVAL_MS: one pread() of LEN bytes at OFFSET of
 * FILE while a SIGALRM handler, installed with SA_RESTART, runs every
 * INTERVAL_MS (a program with a timer: a profiler, a progress display).
 * Writes what it read to stdout and, on stderr, how many signals arrived
 * during the read. Exit 0 when the read returned LEN bytes, 1 when it
 * failed (the error on stderr), 2 on bad use.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t signals;

static void on_alarm(int sig)
{
    (void)sig;
    signals++;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    struct itimerval every = {{0, 0}, {0, 0}};
    long long off, len, ms;
    char *buf;
    ssize_t n;
    int fd;

    if (argc != 5 || (off = atoll(argv[2])) < 0 || (len = atoll(argv[3])) <= 0 ||
        (ms = atoll(argv[4])) <= 0) {
        fprintf(stderr, "usage: sigread FILE OFFSET LEN INTERVAL_MS\n");
        return 2;
    }
    if (!(buf = malloc((size_t)len)) || (fd = open(argv[1], O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "sigread: %s: %s\n", argv[1], strerror(errno));
        free(buf);
        return 1;
    }
    sigemptyset(&sa.sa_mask);
    every.it_interval.tv_sec = every.it_value.tv_sec = ms / 1000;
    every.it_interval.tv_usec = every.it_value.tv_usec = (ms % 1000) * 1000;
    if (sigaction(SIGALRM, &sa, NULL) < 0 || setitimer(ITIMER_REAL, &every, NULL) < 0) {
        fprintf(stderr, "sigread: timer: %s\n", strerror(errno));
        return 1;
    }
    n = pread(fd, buf, (size_t)len, (off_t)off);
    every = (struct itimerval){{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &every, NULL);
    close(fd);
    if (n < 0) {
        fprintf(stderr, "sigread: read: %s (%d signals)\n", strerror(errno), (int)signals);
        free(buf);
        return 1;
    }
    fprintf(stderr, "sigread: %zd bytes, %d signals\n", n, (int)signals);
    if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
        n = -1;
    free(buf); /* (a sanitizer build reports what is left) */
    return n == len ? 0 : 1;
}
