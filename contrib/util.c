/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *util_progname = "lazyimg";

void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", util_progname, msg);
    exit(1);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (!p)
        die("out of memory (allocating %zu bytes)", size);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);

    if (!p)
        die("out of memory (allocating %zu x %zu bytes)", count, size);
    return p;
}

void *xrealloc(void *ptr, size_t count, size_t size)
{
    size_t total;
    void *p;

    if (__builtin_mul_overflow(count, size, &total))
        die("out of memory (allocation size overflows)");
    p = realloc(ptr, total ? total : 1);
    if (!p)
        die("out of memory (allocating %zu bytes)", total);
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (!p)
        die("out of memory");
    return p;
}

/* @offset < 0: at the file position (write), else at @offset (pwrite). */
static int write_at(int fd, const void *buf, size_t len, off_t offset)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = offset < 0 ? write(fd, p, len) : pwrite(fd, p, len, offset);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        if (offset >= 0)
            offset += n;
    }
    return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
    return write_at(fd, buf, len, -1);
}

int pwrite_all(int fd, const void *buf, size_t len, off_t offset)
{
    return write_at(fd, buf, len, offset);
}

/* @offset < 0: at the file position (read), else at @offset (pread). */
static ssize_t read_at(int fd, void *buf, size_t len, off_t offset)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = offset < 0 ? read(fd, p + done, len - done)
                               : pread(fd, p + done, len - done, offset + (off_t)done);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
    return read_at(fd, buf, len, -1);
}

ssize_t pread_full(int fd, void *buf, size_t len, off_t offset)
{
    return read_at(fd, buf, len, offset);
}

bool parse_u64(const char *s, uint64_t *ret_value)
{
    uint64_t v = 0;

    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    }
    *ret_value = v;
    return true;
}

bool parse_size(const char *s, uint64_t *ret_size)
{
    char digits[32];
    size_t len = s ? strlen(s) : 0;
    unsigned shift = 0;
    uint64_t v;

    if (len == 0 || len >= sizeof(digits))
        return false;
    switch (toupper((unsigned char)s[len - 1])) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    default:
        break;
    }
    if (shift)
        len--;
    memcpy(digits, s, len);
    digits[len] = '\0';
    if (!parse_u64(digits, &v))
        return false;
    if (shift && v > (UINT64_MAX >> shift))
        return false;
    *ret_size = v << shift;
    return true;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

bool is_all_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t head = len < 16 ? len : 16;

    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    /* the first 16 bytes are zero, so the buffer is zero iff it equals itself shifted by 16 */
    return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}
