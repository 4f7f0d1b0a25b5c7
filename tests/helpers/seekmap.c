/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Prints the data/hole map of a file, one "data|hole OFFSET LENGTH" line per
 * extent, adjacent extents of one kind merged:
 *   seekmap FILE                 as reported by lseek(SEEK_DATA/SEEK_HOLE)
 *   seekmap --expect CHUNK FILE  as expected for a backup of FILE with fixed
 *                                CHUNK-byte chunks (a chunk is a hole iff all
 *                                of its bytes are zero), by reading FILE
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct map {
    bool have;
    bool hole;
    off_t start, len;
};

static void emit(struct map *m, bool hole, off_t off, off_t len)
{
    if (len == 0)
        return;
    if (m->have && m->hole == hole && m->start + m->len == off) {
        m->len += len;
        return;
    }
    if (m->have)
        printf("%s %lld %lld\n", m->hole ? "hole" : "data", (long long)m->start, (long long)m->len);
    *m = (struct map){true, hole, off, len};
}

static void flush(struct map *m)
{
    if (m->have)
        printf("%s %lld %lld\n", m->hole ? "hole" : "data", (long long)m->start, (long long)m->len);
}

static int actual(int fd, off_t size)
{
    struct map m = {0};
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0 && errno != ENXIO) {
            perror("lseek(SEEK_DATA)");
            return 1;
        }
        if (data < 0)
            data = size;
        emit(&m, true, pos, data - pos);
        if (data >= size)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            perror("lseek(SEEK_HOLE)");
            return 1;
        }
        emit(&m, false, data, hole - data);
        pos = hole;
    }
    flush(&m);
    return 0;
}

static int expected(int fd, off_t size, size_t chunk)
{
    struct map m = {0};
    char *buf = malloc(chunk);
    if (!buf)
        return 1;
    for (off_t off = 0; off < size; off += (off_t)chunk) {
        size_t want = size - off < (off_t)chunk ? (size_t)(size - off) : chunk, got = 0;
        bool zero = true;
        while (got < want) {
            ssize_t n = pread(fd, buf + got, want - got, off + (off_t)got);
            if (n <= 0) {
                perror("read");
                free(buf);
                return 1;
            }
            got += (size_t)n;
        }
        for (size_t i = 0; i < want && zero; i++)
            zero = buf[i] == 0;
        emit(&m, zero, off, (off_t)want);
    }
    flush(&m);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    size_t chunk = 0;
    struct stat st;
    int fd, r;

    if (argc == 4 && !strcmp(argv[1], "--expect")) {
        chunk = strtoul(argv[2], NULL, 0);
        argv += 2;
        argc -= 2;
    }
    if (argc != 2 || (argv[0] && chunk == 0 && !strcmp(argv[1], "--expect"))) {
        fprintf(stderr, "usage: seekmap [--expect CHUNK] FILE\n");
        return 2;
    }
    fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    r = chunk ? expected(fd, st.st_size, chunk) : actual(fd, st.st_size);
    close(fd);
    return r;
}
