/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The checksum repair of the fuzz mutators (repair.c) against the real
 * parsers: a seed with a changed digest list or payload is rejected by its
 * checksum, and accepted again, with the change, once repaired.
 * Usage: fuzz_repair_test CORPUS_DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch/blob.h"
#include "fetch/fidx.h"
#include "repair.h"

static int fails;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

/* Reads @dir/@name into a buffer with @extra spare bytes. */
static uint8_t *load(const char *dir, const char *name, size_t extra, size_t *len)
{
    char path[4096];
    struct stat st;
    uint8_t *buf;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + extra)) ||
        read(fd, buf, (size_t)st.st_size) != st.st_size) {
        perror(path);
        exit(1);
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static int fidx_parse(const uint8_t *data, size_t len, size_t *count, fetch_error *err)
{
    struct fetch_fidx *idx = NULL;
    void *copy = malloc(len);
    int r;
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    r = fetch_fidx_parse(copy, len, &idx, err);
    if (r == 0) {
        *count = idx->count;
        fetch_fidx_free(idx);
    }
    return r;
}

static void test_fidx(const char *corpus)
{
    char dir[4096];
    fetch_error err = {{0}};
    size_t len, count = 0, count0 = 0;
    uint8_t *b;

    snprintf(dir, sizeof(dir), "%s/fidx", corpus);
    b = load(dir, "mixed-64k.fidx", 32, &len);
    CHECK(fidx_parse(b, len, &count0, &err) == 0);

    /* a changed digest: the checksum rejects it, the repair makes it pass */
    b[len - 1] ^= 0x5a;
    CHECK(fidx_parse(b, len, &count, &err) == -EBADMSG && strstr(err.msg, "checksum"));
    fuzz_fidx_repair(b, len, false);
    CHECK(fidx_parse(b, len, &count, &err) == 0 && count == count0);

    /* one digest more: the length check rejects it until the size is repaired too */
    memset(b + len, 0x77, 32);
    fuzz_fidx_repair(b, len + 32, false);
    CHECK(fidx_parse(b, len + 32, &count, &err) == -EBADMSG && strstr(err.msg, "length"));
    fuzz_fidx_repair(b, len + 32, true);
    CHECK(fidx_parse(b, len + 32, &count, &err) == 0 && count == count0 + 1);

    /* shorter than a header: untouched */
    uint8_t small[64];
    memset(small, 0xab, sizeof(small));
    fuzz_fidx_repair(small, sizeof(small), true);
    CHECK(small[0] == 0xab && small[63] == 0xab);
    free(b);
}

static int blob_decode(const uint8_t *data, size_t len, fetch_data *out, fetch_error *err)
{
    struct fetch_blob_expect exp = {.max_len = 1 << 20};
    void *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    return fetch_blob_decode(copy, len, &exp, out, err);
}

static void test_blob(const char *corpus)
{
    char dir[4096];
    fetch_error err = {{0}};
    fetch_data out = {0};
    size_t len;
    uint8_t *b;

    snprintf(dir, sizeof(dir), "%s/blob", corpus);
    /* uncompressed: the changed byte comes out once the CRC is repaired */
    b = load(dir, "conf.blob", 0, &len);
    CHECK(len > 12 && blob_decode(b, len, &out, &err) == 0);
    fetch_data_release(&out);
    b[len - 1] ^= 0x20;
    CHECK(blob_decode(b, len, &out, &err) == -EBADMSG && strstr(err.msg, "CRC"));
    fuzz_blob_repair(b, len);
    CHECK(blob_decode(b, len, &out, &err) == 0 && out.len == len - 12 &&
          out.bytes[len - 13] == b[len - 1]);
    fetch_data_release(&out);
    free(b);

    /* zstd: the CRC covers the compressed bytes */
    b = load(dir, "chunk-zstd", 0, &len);
    b[len / 2] ^= 0x01;
    CHECK(blob_decode(b, len, &out, &err) == -EBADMSG && strstr(err.msg, "CRC"));
    fuzz_blob_repair(b, len);
    if (blob_decode(b, len, &out, &err) == 0)
        fetch_data_release(&out);
    else
        CHECK(!strstr(err.msg, "CRC"));
    free(b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    test_fidx(argv[1]);
    test_blob(argv[1]);
    if (fails)
        fprintf(stderr, "%d checks failed\n", fails);
    else
        printf("repair: all checks passed\n");
    return fails ? 1 : 0;
}
