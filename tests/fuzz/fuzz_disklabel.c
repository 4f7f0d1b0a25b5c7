/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: MBR/GPT partition tables (fetch/disklabel.h). The input is
 * the whole device (at most FUZZ_DEV_MAX bytes), so the GPT backup header at
 * the last LBA is inside it too. Every accepted label is checked against the
 * header's promises: partitions numbered in increasing order, each non-empty,
 * inside the device and overlapping no other, names NUL-terminated.
 * In the libFuzzer build a custom mutator recomputes the CRC32s of both GPT
 * headers and their entry arrays after most mutations, so mutated GPT
 * fields and entries get past the checksums.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/disklabel.h"
#include "fuzz.h"

#ifdef FUZZ_LIBFUZZER
#include <zlib.h>
#endif

#define FUZZ_DEV_MAX (1u << 20)

struct input {
    const uint8_t *data;
    size_t size;
};

static int input_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    const struct input *in = ctx;
    if (off > in->size || len > in->size - off)
        abort(); /* the parser read past the size it was given */
    /* a device whose last sector is unreadable: the error must propagate */
    if (in->size >= 2048 && in->data[0] == 0xE5 && off + len == in->size)
        return fetch_error_set(err, -EIO, "unreadable");
    memcpy(buf, in->data + off, len);
    return 0;
}

static int by_start(const void *a, const void *b)
{
    const struct fetch_partition *x = *(const struct fetch_partition *const *)a;
    const struct fetch_partition *y = *(const struct fetch_partition *const *)b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void check(const struct fetch_label *l, uint64_t size)
{
    const struct fetch_partition **sorted;
    if (l->kind == FETCH_LABEL_NONE && l->count != 0)
        abort();
    if (l->count == 0)
        return;
    sorted = malloc(l->count * sizeof(*sorted));
    if (!sorted)
        return;
    for (size_t i = 0; i < l->count; i++) {
        const struct fetch_partition *p = &l->parts[i];
        if (p->size == 0 || p->start > size || p->size > size - p->start)
            abort();
        if (p->start % FETCH_SECTOR || p->size % FETCH_SECTOR)
            abort();
        if (i && p->number <= l->parts[i - 1].number)
            abort();
        if (!memchr(p->name, 0, sizeof(p->name)))
            abort();
        sorted[i] = p;
    }
    qsort(sorted, l->count, sizeof(*sorted), by_start);
    for (size_t i = 1; i < l->count; i++)
        if (sorted[i]->start < sorted[i - 1]->start + sorted[i - 1]->size)
            abort();
    free(sorted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct fetch_dev dev = {.size = size, .read = input_read, .ctx = &in};
    struct fetch_label *l = NULL;
    fetch_error err;
    int r;

    if (size > FUZZ_DEV_MAX)
        return 0;
    r = fetch_label_read(&dev, &l, &err);
    if (r < 0) {
        if (l || (r != -EBADMSG && r != -EIO) || !err.msg[0])
            abort();
        return 0;
    }
    check(l, size);
    fetch_label_free(l);
    return 0;
}

#ifdef FUZZ_LIBFUZZER
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Makes the CRCs of the GPT header at @lba (if any) and of its array right. */
static void repair_gpt(uint8_t *data, size_t size, uint64_t lba)
{
    uint8_t *h = data + lba * FETCH_SECTOR;
    uint64_t array_off, array_len;
    uint32_t hdr_size;

    if ((lba + 1) * FETCH_SECTOR > size || memcmp(h, "EFI PART", 8) != 0)
        return;
    array_len = (uint64_t)get32(h + 80) * get32(h + 84);
    if (get64(h + 72) < size / FETCH_SECTOR) {
        array_off = get64(h + 72) * FETCH_SECTOR;
        if (array_len <= size - array_off)
            put32(h + 88, (uint32_t)crc32(0, data + array_off, (uInt)array_len));
    }
    hdr_size = get32(h + 12);
    if (hdr_size < 92 || hdr_size > FETCH_SECTOR)
        return;
    memset(h + 16, 0, 4);
    put32(h + 16, (uint32_t)crc32(0, h, hdr_size));
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (max_size > FUZZ_DEV_MAX)
        max_size = FUZZ_DEV_MAX;
    size = LLVMFuzzerMutate(data, size, max_size);
    /* leave 1 in 8 unrepaired: the CRC checks and the backup stay covered */
    if (seed % 8 != 0) {
        repair_gpt(data, size, 1);
        repair_gpt(data, size, size / FETCH_SECTOR - (size >= FETCH_SECTOR));
    }
    return size;
}
#endif
