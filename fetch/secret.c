/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_secret(const char *path, size_t max, bool pipes, char **ret, size_t *ret_len)
{
    struct stat st;
    char *buf;
    size_t len = 0, cap;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), r = 0;
    bool pipe = false;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (pipes && S_ISFIFO(st.st_mode))
        pipe = true;
    else if (!S_ISREG(st.st_mode))
        r = -EINVAL;
    else if ((uint64_t)st.st_size > max)
        r = -EFBIG;
    /* a pipe is read to its end, as its writer gives it: opened again
     * without O_NONBLOCK, which waits for a writer of a named FIFO (opened
     * without one, it would read as empty at once) */
    if (r == 0 && pipe) {
        struct stat again;
        close(fd);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
            return -errno;
        if (fstat(fd, &again) < 0)
            r = -errno;
        else if (!S_ISFIFO(again.st_mode))
            r = -EINVAL; /* replaced meanwhile */
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    /* one byte more than it claims (or than @max, for a pipe): a file that
     * grew, or a pipe that says too much, is noticed */
    cap = (pipe ? max : (size_t)st.st_size) + 1;
    if (!(buf = malloc(cap + 1))) {
        close(fd);
        return -ENOMEM;
    }
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (r == 0 && len > max)
        r = -EFBIG;
    if (r < 0) {
        fetch_secret_free(buf, cap + 1);
        return r;
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

int fetch_secret_file_read(const char *path, size_t max, char **ret, size_t *ret_len)
{
    return read_secret(path, max, false, ret, ret_len);
}

int fetch_secret_once_read(const char *path, size_t max, char **ret, size_t *ret_len)
{
    return read_secret(path, max, true, ret, ret_len);
}

void fetch_secret_free(char *buf, size_t len)
{
    if (!buf)
        return;
    explicit_bzero(buf, len);
    free(buf);
}
