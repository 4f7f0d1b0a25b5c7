/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/disklabel.h (MBR and GPT partition tables). The tables
 * are written here with the test's own writers (CRCs from zlib), and read
 * back from fixtures made by sfdisk and sgdisk (tests/data/disklabel/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uchar.h>
#include <unistd.h>

#include "fetch/disklabel.h"
#include "fixtures.h"

#define SECT 512u

/* ---- a device over a buffer ---- */

struct memdev {
    uint8_t *buf;
    uint64_t size;
    int64_t fail_lba; /* a read touching this sector fails with -EIO; -1: none */
    unsigned reads;
    uint64_t bytes_read;
};

static int memdev_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    struct memdev *m = ctx;
    if (off > m->size || len > m->size - off)
        fail_msg("read of %zu bytes at %llu past the device's %llu bytes", len,
                 (unsigned long long)off, (unsigned long long)m->size);
    m->reads++;
    m->bytes_read += len;
    if (m->fail_lba >= 0 && (uint64_t)m->fail_lba * SECT < off + len &&
        off < (uint64_t)(m->fail_lba + 1) * SECT)
        return fetch_error_set(err, -EIO, "injected read error at sector %lld",
                               (long long)m->fail_lba);
    memcpy(buf, m->buf + off, len);
    return 0;
}

static struct memdev *memdev_new(uint64_t size)
{
    struct memdev *m = fx_malloc(sizeof(*m));
    m->buf = calloc(1, size ? size : 1);
    if (!m->buf)
        fx_die("out of memory");
    m->size = size;
    m->fail_lba = -1;
    m->reads = 0;
    m->bytes_read = 0;
    return m;
}

static void memdev_free(struct memdev *m)
{
    free(m->buf);
    free(m);
}

static uint8_t *sector(struct memdev *m, uint64_t lba)
{
    assert_true((lba + 1) * SECT <= m->size);
    return m->buf + lba * SECT;
}

static int label_read(struct memdev *m, struct fetch_label **ret, fetch_error *err)
{
    struct fetch_dev dev = {.size = m->size, .read = memdev_read, .ctx = m};
    if (err)
        err->msg[0] = '\0';
    return fetch_label_read(&dev, ret, err);
}

static struct fetch_label *read_ok(struct memdev *m)
{
    struct fetch_label *l = NULL;
    fetch_error err;
    int r = label_read(m, &l, &err);
    if (r != 0)
        fail_msg("valid table rejected (%d): %s", r, err.msg);
    assert_non_null(l);
    return l;
}

/* -EBADMSG whose message contains @needle */
static void expect_bad(struct memdev *m, const char *needle)
{
    struct fetch_label *l = NULL;
    fetch_error err;
    int r = label_read(m, &l, &err);
    if (r != -EBADMSG)
        fail_msg("expected -EBADMSG (\"%s\"), got %d (%s)", needle, r, r ? err.msg : "accepted");
    assert_null(l);
    if (!strstr(err.msg, needle))
        fail_msg("message \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void expect_none(struct memdev *m)
{
    struct fetch_label *l = read_ok(m);
    assert_int_equal(l->kind, FETCH_LABEL_NONE);
    assert_int_equal(l->count, 0);
    fetch_label_free(l);
}

static void check_part(const struct fetch_partition *p, unsigned number, uint64_t first_lba,
                       uint64_t sectors)
{
    if (p->number != number || p->start != first_lba * SECT || p->size != sectors * SECT)
        fail_msg("partition %u at %llu+%llu bytes, expected %u at %llu+%llu", p->number,
                 (unsigned long long)p->start, (unsigned long long)p->size, number,
                 (unsigned long long)(first_lba * SECT), (unsigned long long)(sectors * SECT));
}

/* ---- MBR writer ---- */

static void mbr_entry(uint8_t *s, unsigned slot, uint8_t status, uint8_t type, uint32_t lba,
                      uint32_t count)
{
    uint8_t *e = s + 446 + 16 * slot;
    memset(e, 0, 16);
    e[0] = status;
    e[4] = type;
    fx_put_le32(e + 8, lba);
    fx_put_le32(e + 12, count);
    s[510] = 0x55;
    s[511] = 0xAA;
}

/*
 * A 64 MiB disk: primaries 1 (2048+2048, bootable, 0x83), 2 (4096+4096,
 * 0x82), 3 (8192+1024, 0x07); extended 4 (16384+32768, 0x0F) with logicals
 * at 18432+1000 (0x83), 22528+2048 (0x8E), 30720+4096 (0x0B).
 */
static struct memdev *mbr_disk(void)
{
    struct memdev *m = memdev_new(64 * FX_MIB);
    uint8_t *s = sector(m, 0);
    fx_put_le32(s + 440, 0xdeadbeef);
    mbr_entry(s, 0, 0x80, 0x83, 2048, 2048);
    mbr_entry(s, 1, 0x00, 0x82, 4096, 4096);
    mbr_entry(s, 2, 0x00, 0x07, 8192, 1024);
    mbr_entry(s, 3, 0x00, 0x0F, 16384, 32768);
    /* EBRs at 16384, 20480, 28672: logical relative to the EBR, link to the extended */
    mbr_entry(sector(m, 16384), 0, 0, 0x83, 2048, 1000);
    mbr_entry(sector(m, 16384), 1, 0, 0x05, 4096, 8192);
    mbr_entry(sector(m, 20480), 0, 0, 0x8E, 2048, 2048);
    mbr_entry(sector(m, 20480), 1, 0, 0x05, 12288, 8192);
    mbr_entry(sector(m, 28672), 0, 0, 0x0B, 2048, 4096);
    return m;
}

static void mbr_primaries_and_logicals(void **state)
{
    struct memdev *m = mbr_disk();
    struct fetch_label *l;
    static const unsigned numbers[] = {1, 2, 3, 5, 6, 7};
    static const uint64_t starts[] = {2048, 4096, 8192, 18432, 22528, 30720};
    static const uint64_t sizes[] = {2048, 4096, 1024, 1000, 2048, 4096};
    static const uint8_t types[] = {0x83, 0x82, 0x07, 0x83, 0x8E, 0x0B};
    (void)state;

    l = read_ok(m);
    assert_int_equal(l->kind, FETCH_LABEL_MBR);
    assert_false(l->used_backup);
    assert_int_equal(l->disk_id, 0xdeadbeef);
    assert_int_equal(l->count, 6);
    for (size_t i = 0; i < 6; i++) {
        check_part(&l->parts[i], numbers[i], starts[i], sizes[i]);
        assert_int_equal(l->parts[i].mbr_type, types[i]);
        assert_int_equal(l->parts[i].bootable, i == 0);
        assert_string_equal(l->parts[i].name, "");
    }
    /* only the MBR and the three EBRs were read */
    assert_int_equal(m->reads, 4);
    assert_int_equal(m->bytes_read, 4 * SECT);
    fetch_label_free(l);
    fetch_label_free(NULL);
    memdev_free(m);
}

static void mbr_empty_ebr_and_slots(void **state)
{
    struct memdev *m = mbr_disk();
    struct fetch_label *l;
    (void)state;
    /* the second EBR holds no partition but links on; slot 2 is empty, slot 3 has size 0 */
    memset(sector(m, 20480) + 446, 0, 16);
    memset(sector(m, 0) + 446 + 16, 0, 16);
    mbr_entry(sector(m, 0), 2, 0x00, 0x07, 8192, 0);
    l = read_ok(m);
    assert_int_equal(l->count, 3);
    check_part(&l->parts[0], 1, 2048, 2048);
    check_part(&l->parts[1], 5, 18432, 1000);
    check_part(&l->parts[2], 6, 30720, 4096);
    fetch_label_free(l);

    /* a primary of type 0 with a size is a partition to the kernel (only a
     * size of 0 makes an entry empty), as to partx */
    mbr_entry(sector(m, 0), 2, 0x00, 0x00, 8192, 2048);
    l = read_ok(m);
    assert_int_equal(l->count, 4);
    check_part(&l->parts[1], 3, 8192, 2048);
    assert_int_equal(l->parts[1].mbr_type, 0x00);
    fetch_label_free(l);
    /* ... unless it does not fit, a stale entry: left out, not the table */
    mbr_entry(sector(m, 0), 2, 0x00, 0x00, 8192, 0xfffff000u);
    l = read_ok(m);
    assert_int_equal(l->count, 3);
    fetch_label_free(l);
    mbr_entry(sector(m, 0), 2, 0x00, 0x00, 2048, 100);
    l = read_ok(m);
    assert_int_equal(l->count, 3);
    fetch_label_free(l);
    mbr_entry(sector(m, 0), 2, 0x00, 0x00, 8192, 0);

    /* an extended partition whose first EBR has no signature holds nothing */
    memset(sector(m, 16384), 0, SECT);
    l = read_ok(m);
    assert_int_equal(l->count, 1);
    fetch_label_free(l);
    memdev_free(m);
}

/*
 * EBRs as the kernel reads them (block/partitions/msdos.c): a link in the
 * first entry and no partition (the "DRDOS" layout), a partition of type 0
 * with a size (numbered all the same), and a partition in the 3rd entry.
 */
static void mbr_ebr_entries_as_the_kernel(void **state)
{
    struct memdev *m = memdev_new(64 * FX_MIB);
    struct fetch_label *l;
    (void)state;
    mbr_entry(sector(m, 0), 0, 0x00, 0x83, 2048, 2048);
    mbr_entry(sector(m, 0), 1, 0x00, 0x05, 8192, 32768);
    /* EBR 8192: only a link, in entry 0, to the EBR at 16384 */
    mbr_entry(sector(m, 8192), 0, 0, 0x05, 8192, 6144);
    /* EBR 16384: a type-0 partition (a size, so the kernel numbers it), a
     * Linux one in entry 2, the link in entry 3 to the EBR at 24576 */
    mbr_entry(sector(m, 16384), 0, 0, 0x00, 2048, 1024);
    mbr_entry(sector(m, 16384), 2, 0, 0x83, 4096, 2048);
    mbr_entry(sector(m, 16384), 3, 0, 0x0F, 16384, 8192);
    /* EBR 24576: a partition, and garbage in entry 3 that fits nowhere */
    mbr_entry(sector(m, 24576), 0, 0, 0x8E, 2048, 4096);
    mbr_entry(sector(m, 24576), 3, 0, 0x07, 100000, 100000);
    l = read_ok(m);
    assert_int_equal(l->count, 4);
    check_part(&l->parts[0], 1, 2048, 2048);
    check_part(&l->parts[1], 5, 18432, 1024);
    assert_int_equal(l->parts[1].mbr_type, 0);
    check_part(&l->parts[2], 6, 20480, 2048);
    check_part(&l->parts[3], 7, 26624, 4096);
    fetch_label_free(l);
    memdev_free(m);
}

static void mbr_ebr_missing_signature(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    sector(m, 20480)[510] = 0;
    expect_bad(m, "EBR at sector 20480");
    memdev_free(m);
}

static void mbr_ebr_loop(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    /* the third EBR links back to the first */
    mbr_entry(sector(m, 28672), 1, 0, 0x05, 0, 8192);
    expect_bad(m, "loop");
    /* an EBR linking to itself */
    mbr_entry(sector(m, 28672), 1, 0, 0x05, 12288, 8192);
    expect_bad(m, "loop");
    memdev_free(m);
}

static void mbr_ebr_outside(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    /* the link points past the extended partition's 32768 sectors */
    mbr_entry(sector(m, 20480), 1, 0, 0x05, 32768, 8192);
    expect_bad(m, "outside");
    memdev_free(m);

    /* a logical partition reaching past its extended partition */
    m = mbr_disk();
    mbr_entry(sector(m, 28672), 0, 0, 0x0B, 2048, 18433);
    expect_bad(m, "outside its extended partition 4");
    memdev_free(m);

    /* a logical partition starting on its own EBR would overwrite the chain */
    m = mbr_disk();
    mbr_entry(sector(m, 20480), 0, 0, 0x8E, 0, 2048);
    expect_bad(m, "logical partition 6 starts on its own EBR (sector 20480)");
    memdev_free(m);
}

static void mbr_too_many_logicals(void **state)
{
    struct memdev *m = memdev_new(16 * FX_MIB);
    const uint32_t ext = 2048, n = 200;
    (void)state;
    mbr_entry(sector(m, 0), 0, 0, 0x05, ext, 8 * n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *s = sector(m, ext + 8 * i);
        mbr_entry(s, 0, 0, 0x83, 1, 7);
        if (i + 1 < n)
            mbr_entry(s, 1, 0, 0x05, 8 * (i + 1), 8);
    }
    expect_bad(m, "more than 128");
    /* exactly 128 are fine: cut the chain there */
    memset(sector(m, ext + 8 * 127) + 446 + 16, 0, 16);
    {
        struct fetch_label *l = read_ok(m);
        assert_int_equal(l->count, 128);
        check_part(&l->parts[127], 132, ext + 8 * 127 + 1, 7);
        fetch_label_free(l);
    }
    memdev_free(m);
}

static void mbr_overlaps(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    /* primary 2 reaches into primary 3 */
    mbr_entry(sector(m, 0), 1, 0x00, 0x82, 4096, 4097);
    expect_bad(m, "partition 3 (sectors 8192..9215) overlaps partition 2 (sectors 4096..8192)");
    memdev_free(m);

    /* a primary inside the extended partition */
    m = mbr_disk();
    mbr_entry(sector(m, 0), 2, 0x00, 0x07, 40000, 10);
    expect_bad(m, "overlaps extended partition 4");
    memdev_free(m);

    /* two logical partitions sharing a sector */
    m = mbr_disk();
    mbr_entry(sector(m, 16384), 0, 0, 0x83, 2048, 4097);
    expect_bad(m, "partition 6 (sectors 22528..24575) overlaps partition 5");
    memdev_free(m);
}

static void mbr_past_end(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    mbr_entry(sector(m, 0), 2, 0x00, 0x07, 131000, 73);
    expect_bad(m, "partition 3 (sectors 131000..131072) ends past the device's last sector 131071");
    /* one sector less fits */
    mbr_entry(sector(m, 0), 2, 0x00, 0x07, 131000, 72);
    fetch_label_free(read_ok(m));
    /* 32-bit start and count: the sum must not wrap */
    mbr_entry(sector(m, 0), 2, 0x00, 0x07, 0xFFFFFFFFu, 0xFFFFFFFFu);
    expect_bad(m, "ends past");
    memdev_free(m);
}

static void no_table(void **state)
{
    struct memdev *m = mbr_disk();
    (void)state;
    sector(m, 0)[511] = 0x55; /* no 0x55AA */
    expect_none(m);
    assert_int_equal(m->reads, 1);
    memdev_free(m);

    /* a signature over an all-zero table */
    m = memdev_new(FX_MIB);
    sector(m, 0)[510] = 0x55;
    sector(m, 0)[511] = 0xAA;
    expect_none(m);
    /* a FAT boot sector: BPB and code bytes where the status bytes would be */
    fx_fill_random(sector(m, 0) + 62, 448, 7);
    sector(m, 0)[446] = 0x4c;
    expect_none(m);
    memdev_free(m);

    /* shorter than a sector: nothing is read */
    m = memdev_new(511);
    expect_none(m);
    assert_int_equal(m->reads, 0);
    memdev_free(m);
}

static void read_errors(void **state)
{
    static const int64_t fail_at[] = {0, 16384, 28672};
    (void)state;
    for (size_t i = 0; i < sizeof(fail_at) / sizeof(fail_at[0]); i++) {
        struct memdev *m = mbr_disk();
        struct fetch_label *l = NULL;
        fetch_error err;
        m->fail_lba = fail_at[i];
        assert_int_equal(label_read(m, &l, &err), -EIO);
        assert_null(l);
        assert_non_null(strstr(err.msg, "injected"));
        memdev_free(m);
    }
}

/* ---- GPT writer ---- */

struct gpt_part {
    uint8_t type[16], uuid[16];
    uint64_t first, last, attrs;
    const char16_t *name;
    size_t name_units; /* copy this many units, NULs included; 0: up to the NUL */
};

/* 36 UTF-16 units at most; copied as is (the compiler encoded the literal) */
static void put_name(uint8_t *e, const char16_t *name, size_t units)
{
    for (size_t i = 0; name && (units ? i < units : name[i] != 0) && i < 36; i++) {
        e[56 + 2 * i] = (uint8_t)name[i];
        e[56 + 2 * i + 1] = (uint8_t)(name[i] >> 8);
    }
}

static void gpt_header_crc(uint8_t *h)
{
    uint32_t size = (uint32_t)h[12] | (uint32_t)h[13] << 8;
    memset(h + 16, 0, 4);
    fx_put_le32(h + 16, fx_crc32(h, size));
}

/* Writes entry array @lba and the header at @my_lba pointing to it. */
static void gpt_write_one(struct memdev *m, uint64_t my_lba, uint64_t alt_lba, uint64_t array_lba,
                          const uint8_t *array, uint32_t count, uint32_t esize)
{
    uint8_t *h = sector(m, my_lba);
    uint64_t nsect = m->size / SECT;
    memcpy(m->buf + array_lba * SECT, array, (size_t)count * esize);
    memset(h, 0, SECT);
    memcpy(h, "EFI PART", 8);
    fx_put_le32(h + 8, 0x00010000);
    fx_put_le32(h + 12, 92);
    fx_put_le64(h + 24, my_lba);
    fx_put_le64(h + 32, alt_lba);
    fx_put_le64(h + 40, 34);
    fx_put_le64(h + 48, nsect - 34);
    for (int i = 0; i < 16; i++)
        h[56 + i] = (uint8_t)(0xd0 + i);
    fx_put_le64(h + 72, array_lba);
    fx_put_le32(h + 80, count);
    fx_put_le32(h + 84, esize);
    fx_put_le32(h + 88, fx_crc32(array, (size_t)count * esize));
    gpt_header_crc(h);
}

/* A protective MBR, both headers and arrays (128 entries of 128 bytes). */
static void gpt_write(struct memdev *m, const struct gpt_part *parts, size_t n)
{
    uint64_t nsect = m->size / SECT;
    uint8_t array[128 * 128] = {0};
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = array + 128 * i;
        memcpy(e, parts[i].type, 16);
        memcpy(e + 16, parts[i].uuid, 16);
        fx_put_le64(e + 32, parts[i].first);
        fx_put_le64(e + 40, parts[i].last);
        fx_put_le64(e + 48, parts[i].attrs);
        put_name(e, parts[i].name, parts[i].name_units);
    }
    mbr_entry(sector(m, 0), 0, 0, 0xEE, 1, (uint32_t)(nsect - 1));
    gpt_write_one(m, 1, nsect - 1, 2, array, 128, 128);
    gpt_write_one(m, nsect - 1, 1, nsect - 33, array, 128, 128);
}

static const uint8_t guid_linux[16] = {0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
                                       0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4};
static const uint8_t guid_esp[16] = {0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
                                     0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b};

/* 8 MiB: entries 1 (ESP), 2 (Linux), 3 unused, 4 (Linux, non-ASCII name) */
static struct memdev *gpt_disk(void)
{
    struct memdev *m = memdev_new(8 * FX_MIB);
    struct gpt_part p[4] = {
        {.first = 2048, .last = 4095, .name = u"EFI system partition", .attrs = 1},
        {.first = 4096, .last = 8191, .name = u"root"},
        {.first = 0},
        {.first = 8192, .last = 16000, .name = u"données 𝄞 ✓"},
    };
    memcpy(p[0].type, guid_esp, 16);
    memcpy(p[1].type, guid_linux, 16);
    memcpy(p[3].type, guid_linux, 16);
    fx_fill_random(p[0].uuid, 16, 1);
    fx_fill_random(p[1].uuid, 16, 2);
    fx_fill_random(p[2].uuid, 16, 3); /* an unused entry may hold leftovers */
    fx_fill_random(p[3].uuid, 16, 4);
    gpt_write(m, p, 4);
    return m;
}

static void check_gpt_disk(const struct fetch_label *l)
{
    uint8_t uuid[16];
    assert_int_equal(l->kind, FETCH_LABEL_GPT);
    assert_int_equal(l->count, 3);
    check_part(&l->parts[0], 1, 2048, 2048);
    check_part(&l->parts[1], 2, 4096, 4096);
    check_part(&l->parts[2], 4, 8192, 16000 - 8192 + 1);
    assert_memory_equal(l->parts[0].type_guid, guid_esp, 16);
    assert_memory_equal(l->parts[2].type_guid, guid_linux, 16);
    fx_fill_random(uuid, 16, 4);
    assert_memory_equal(l->parts[2].uuid, uuid, 16);
    assert_string_equal(l->parts[0].name, "EFI system partition");
    assert_string_equal(l->parts[1].name, "root");
    assert_string_equal(l->parts[2].name, "donn\xc3\xa9"
                                          "es \xf0\x9d\x84\x9e \xe2\x9c\x93");
    assert_int_equal(l->parts[0].attributes, 1);
    assert_int_equal(l->parts[0].mbr_type, 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(l->disk_guid[i], 0xd0 + i);
}

static void gpt_named(void **state)
{
    struct memdev *m = gpt_disk();
    struct fetch_label *l = read_ok(m);
    (void)state;
    check_gpt_disk(l);
    assert_false(l->used_backup);
    /* MBR, header, array; never the backup */
    assert_int_equal(m->reads, 3);
    assert_int_equal(m->bytes_read, 2 * SECT + 128 * 128);
    fetch_label_free(l);
    memdev_free(m);
}

static void gpt_backup_used(void **state)
{
    struct memdev *m = gpt_disk();
    struct fetch_label *l;
    (void)state;
    /* primary header CRC wrong */
    sector(m, 1)[40] ^= 1;
    l = read_ok(m);
    check_gpt_disk(l);
    assert_true(l->used_backup);
    fetch_label_free(l);

    /* primary array CRC wrong (header intact) */
    sector(m, 1)[40] ^= 1;
    sector(m, 2)[100] ^= 0x80;
    l = read_ok(m);
    check_gpt_disk(l);
    assert_true(l->used_backup);
    fetch_label_free(l);

    /* primary usable sectors covering the primary header itself */
    sector(m, 2)[100] ^= 0x80;
    fx_put_le64(sector(m, 1) + 40, 1);
    fx_put_le64(sector(m, 1) + 72, m->size / SECT - 33); /* array out of the way */
    gpt_header_crc(sector(m, 1));
    l = read_ok(m);
    assert_true(l->used_backup);
    fetch_label_free(l);

    /* primary header zeroed */
    memset(sector(m, 1), 0, SECT);
    l = read_ok(m);
    assert_true(l->used_backup);
    fetch_label_free(l);
    memdev_free(m);
}

static void gpt_both_bad(void **state)
{
    struct memdev *m = gpt_disk();
    uint64_t last = m->size / SECT - 1;
    (void)state;
    sector(m, 1)[40] ^= 1;
    sector(m, last)[40] ^= 1;
    expect_bad(m, "GPT: header CRC mismatch");
    memdev_free(m);

    m = gpt_disk();
    sector(m, 2)[0] ^= 1;
    sector(m, last - 32)[0] ^= 1;
    expect_bad(m, "GPT: entry array CRC mismatch");
    memdev_free(m);

    m = gpt_disk();
    memset(sector(m, 1), 0, SECT);
    memset(sector(m, last), 0, SECT);
    expect_bad(m, "signature");
    memdev_free(m);
}

/* A header field changed (CRC made right again) in both headers -> -EBADMSG */
static void gpt_header_fields(void **state)
{
    struct {
        unsigned off, width;
        uint64_t value;
        const char *needle;
    } cases[] = {
        {8, 4, 0x00020000, "revision"},
        {12, 4, 91, "header size"},
        {12, 4, 513, "header size"},
        {24, 8, 5, "says it is at sector"},
        {40, 8, 20000, "after the last usable"},
        {48, 8, 16384, "not inside the device"},
        {84, 4, 120, "entry size"},
        {84, 4, 132, "entry size"},
        {84, 4, 8192, "entry size"},
        {80, 4, 4097, "more than 4096"},
        {80, 4, 4096, "more than 4194304"}, /* 4096 x 128 is 512 KiB: 4096 x 2048 is not */
        {72, 8, 16383, "entry array"},
        {72, 8, 100, "entry array"}, /* inside the usable sectors */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct memdev *m = gpt_disk();
        uint64_t lbas[2] = {1, m->size / SECT - 1};
        for (int k = 0; k < 2; k++) {
            uint8_t *h = sector(m, lbas[k]);
            if (cases[i].off == 24)
                cases[i].value = lbas[k] + 4;
            if (cases[i].width == 4)
                fx_put_le32(h + cases[i].off, (uint32_t)cases[i].value);
            else
                fx_put_le64(h + cases[i].off, cases[i].value);
            if (strstr(cases[i].needle, "4194304"))
                fx_put_le32(h + 84, 2048);
            gpt_header_crc(h);
        }
        expect_bad(m, cases[i].needle);
        memdev_free(m);
    }
}

/* Rewrites the arrays and headers of @m after changing entry @idx's range. */
static void gpt_set_range(struct memdev *m, unsigned idx, uint64_t first, uint64_t last)
{
    uint64_t nsect = m->size / SECT;
    uint8_t array[128 * 128];
    memcpy(array, sector(m, 2), sizeof(array));
    fx_put_le64(array + 128 * idx + 32, first);
    fx_put_le64(array + 128 * idx + 40, last);
    gpt_write_one(m, 1, nsect - 1, 2, array, 128, 128);
    gpt_write_one(m, nsect - 1, 1, nsect - 33, array, 128, 128);
}

static void gpt_bad_entries(void **state)
{
    struct memdev *m = gpt_disk();
    uint64_t last_usable = m->size / SECT - 34;
    char msg[160];
    (void)state;
    gpt_set_range(m, 3, 8192, last_usable + 1);
    snprintf(msg, sizeof(msg),
             "GPT: partition 4 ends at sector %llu, past the device's last usable sector %llu",
             (unsigned long long)last_usable + 1, (unsigned long long)last_usable);
    expect_bad(m, msg);
    gpt_set_range(m, 3, 8192, last_usable);
    fetch_label_free(read_ok(m));

    gpt_set_range(m, 3, 33, 40);
    expect_bad(m, "before the first usable sector 34");
    gpt_set_range(m, 3, 9000, 8999);
    expect_bad(m, "GPT: partition 4 starts at sector 9000, after its last sector 8999");
    gpt_set_range(m, 3, 8000, 9000);
    expect_bad(m,
               "GPT: partition 4 (sectors 8000..9000) overlaps partition 2 (sectors 4096..8191)");
    gpt_set_range(m, 3, UINT64_MAX - 1, UINT64_MAX);
    expect_bad(m, "past the device's last usable");
    memdev_free(m);
}

static void gpt_names(void **state)
{
    struct memdev *m = memdev_new(FX_MIB);
    const char16_t lone_high[] = {'a', 0xD834, 'b', 0};
    const char16_t lone_low[] = {'a', 0xDD1E, 0};
    const char16_t high_at_end[] = {'x', 'x', 'x', 'x', 'x', 'x',    'x', 'x', 'x', 'x',
                                    'x', 'x', 'x', 'x', 'x', 'x',    'x', 'x', 'x', 'x',
                                    'x', 'x', 'x', 'x', 'x', 'x',    'x', 'x', 'x', 'x',
                                    'x', 'x', 'x', 'x', 'x', 0xD834, 0};
    const char16_t full[] = u"0123456789abcdefghijklmnopqrstuvwxyZ"; /* 36: no NUL */
    const char16_t bmp_max[] = {0xFFFD, 0x7FF, 0x80, 0x7F, 0};
    const char16_t after_nul[] = {'a', 'b', 0, 'c', 0xD834, 0};
    struct gpt_part p[6] = {
        {.first = 100, .last = 100, .name = lone_high},
        {.first = 101, .last = 101, .name = lone_low},
        {.first = 102, .last = 102, .name = high_at_end},
        {.first = 103, .last = 103, .name = full},
        {.first = 104, .last = 104, .name = bmp_max},
        {.first = 105, .last = 105, .name = after_nul, .name_units = 6},
    };
    struct fetch_label *l;
    (void)state;
    for (int i = 0; i < 6; i++)
        memcpy(p[i].type, guid_linux, 16);
    gpt_write(m, p, 6);
    l = read_ok(m);
    assert_int_equal(l->count, 6);
    assert_string_equal(l->parts[0].name, "");
    assert_string_equal(l->parts[1].name, "");
    assert_string_equal(l->parts[2].name, "");
    assert_string_equal(l->parts[3].name, "0123456789abcdefghijklmnopqrstuvwxyZ");
    assert_string_equal(l->parts[4].name, "\xef\xbf\xbd\xdf\xbf\xc2\x80\x7f");
    assert_string_equal(l->parts[5].name, "ab"); /* what follows the NUL is not read */
    fetch_label_free(l);
    memdev_free(m);
}

static void gpt_read_errors(void **state)
{
    static const int64_t fail_at[] = {1, 2, 33};
    (void)state;
    for (size_t i = 0; i < sizeof(fail_at) / sizeof(fail_at[0]); i++) {
        struct memdev *m = gpt_disk();
        struct fetch_label *l = NULL;
        fetch_error err;
        m->fail_lba = fail_at[i];
        assert_int_equal(label_read(m, &l, &err), -EIO);
        assert_null(l);
        assert_non_null(strstr(err.msg, "injected"));
        memdev_free(m);
    }
    /* the backup's read error, once the primary is bad */
    {
        struct memdev *m = gpt_disk();
        struct fetch_label *l = NULL;
        m->fail_lba = (int64_t)(m->size / SECT - 1);
        sector(m, 1)[0] = 'X';
        assert_int_equal(label_read(m, &l, NULL), -EIO);
        memdev_free(m);
    }
}

static void gpt_tiny_device(void **state)
{
    struct memdev *m = memdev_new(SECT);
    (void)state;
    mbr_entry(sector(m, 0), 0, 0, 0xEE, 1, 100);
    expect_bad(m, "too small");
    memdev_free(m);
}

/* ---- fixtures made by sfdisk and sgdisk ---- */

static uint8_t *slurp(const char *name, size_t *ret_len)
{
    char path[512];
    uint8_t *buf;
    size_t len = 0;
    FILE *f;
    snprintf(path, sizeof(path), "%s/disklabel/%s", TEST_DATA_DIR, name);
    f = fopen(path, "rbe");
    if (!f)
        fx_die("%s: cannot open", path);
    buf = fx_malloc(1 << 20);
    len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    *ret_len = len;
    return buf;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static struct memdev *fixture_dev(const char *name)
{
    size_t len;
    uint8_t *f = slurp(name, &len);
    struct memdev *m;
    size_t o = 16;
    if (len < 16 || memcmp(f, "LZDLSECT", 8) != 0)
        fx_die("%s: not a sectors file", name);
    m = memdev_new(get_le64(f + 8));
    for (; o + 8 + SECT <= len; o += 8 + SECT)
        memcpy(sector(m, get_le64(f + o)), f + o + 8, SECT);
    assert_int_equal(o, len);
    free(f);
    return m;
}

static struct json_object *fixture_json(const char *name)
{
    size_t len;
    uint8_t *f = slurp(name, &len);
    struct json_object *root, *pt;
    f[len < (1 << 20) ? len : len - 1] = 0;
    root = json_tokener_parse((const char *)f);
    free(f);
    if (!root || !json_object_object_get_ex(root, "partitiontable", &pt))
        fx_die("%s: no partitiontable", name);
    json_object_get(pt);
    json_object_put(root);
    return pt;
}

static const char *jstr(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static uint64_t jnum(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        fx_die("no \"%s\"", key);
    return (uint64_t)json_object_get_int64(v);
}

/* "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" -> on-disk bytes (first three fields little endian) */
static void guid_from_text(const char *s, uint8_t out[16])
{
    uint8_t b[16];
    char hex[33];
    size_t n = 0;
    for (const char *p = s; *p && n < 32; p++)
        if (*p != '-')
            hex[n++] = *p;
    hex[n] = 0;
    assert_int_equal(n, 32);
    fx_unhex(hex, b, 16);
    static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int i = 0; i < 16; i++)
        out[i] = b[order[i]];
}

/* The partition number at the end of sfdisk's node name ("gpt.img4" -> 4) */
static unsigned node_number(const char *node)
{
    size_t n = strlen(node);
    while (n && node[n - 1] >= '0' && node[n - 1] <= '9')
        n--;
    return (unsigned)strtoul(node + n, NULL, 10);
}

static void compare_with_sfdisk(const struct fetch_label *l, struct json_object *pt)
{
    struct json_object *parts;
    size_t k = 0, n;
    bool gpt = strcmp(jstr(pt, "label"), "gpt") == 0;

    assert_int_equal(l->kind, gpt ? FETCH_LABEL_GPT : FETCH_LABEL_MBR);
    if (!json_object_object_get_ex(pt, "partitions", &parts))
        fx_die("no partitions");
    n = json_object_array_length(parts);
    if (gpt) {
        uint8_t g[16];
        guid_from_text(jstr(pt, "id"), g);
        assert_memory_equal(l->disk_guid, g, 16);
    } else {
        assert_int_equal(l->disk_id, strtoul(jstr(pt, "id"), NULL, 16));
    }
    for (size_t i = 0; i < n; i++) {
        struct json_object *p = json_object_array_get_idx(parts, i);
        const char *type = jstr(p, "type");
        const struct fetch_partition *got;
        if (!gpt) {
            unsigned long t = strtoul(type, NULL, 16);
            if (t == 0x05 || t == 0x0F || t == 0x85)
                continue; /* the extended container is not a partition here */
        }
        assert_true(k < l->count);
        got = &l->parts[k++];
        check_part(got, node_number(jstr(p, "node")), jnum(p, "start"), jnum(p, "size"));
        if (gpt) {
            uint8_t g[16];
            const char *name = jstr(p, "name");
            guid_from_text(type, g);
            assert_memory_equal(got->type_guid, g, 16);
            guid_from_text(jstr(p, "uuid"), g);
            assert_memory_equal(got->uuid, g, 16);
            assert_string_equal(got->name, name ? name : "");
        } else {
            struct json_object *boot;
            assert_int_equal(got->mbr_type, strtoul(type, NULL, 16));
            assert_int_equal(got->bootable, json_object_object_get_ex(p, "bootable", &boot) &&
                                                json_object_get_boolean(boot));
        }
    }
    assert_int_equal(k, l->count);
}

static void fixture_sfdisk_mbr(void **state)
{
    struct memdev *m = fixture_dev("mbr.sectors");
    struct json_object *pt = fixture_json("mbr.json");
    struct fetch_label *l = read_ok(m);
    (void)state;
    compare_with_sfdisk(l, pt);
    assert_int_equal(l->count, 6);
    fetch_label_free(l);
    json_object_put(pt);
    memdev_free(m);
}

static void fixture_sgdisk_gpt(void **state)
{
    struct memdev *m = fixture_dev("gpt.sectors");
    struct json_object *pt = fixture_json("gpt.json");
    struct fetch_label *l = read_ok(m);
    (void)state;
    compare_with_sfdisk(l, pt);
    assert_int_equal(l->count, 3);
    assert_false(l->used_backup);
    fetch_label_free(l);

    /* sgdisk's backup header and array alone give the same answer */
    memset(sector(m, 1), 0, 33 * SECT);
    l = read_ok(m);
    assert_true(l->used_backup);
    compare_with_sfdisk(l, pt);
    fetch_label_free(l);
    json_object_put(pt);
    memdev_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mbr_primaries_and_logicals),
        cmocka_unit_test(mbr_empty_ebr_and_slots),
        cmocka_unit_test(mbr_ebr_entries_as_the_kernel),
        cmocka_unit_test(mbr_ebr_missing_signature),
        cmocka_unit_test(mbr_ebr_loop),
        cmocka_unit_test(mbr_ebr_outside),
        cmocka_unit_test(mbr_too_many_logicals),
        cmocka_unit_test(mbr_overlaps),
        cmocka_unit_test(mbr_past_end),
        cmocka_unit_test(no_table),
        cmocka_unit_test(read_errors),
        cmocka_unit_test(gpt_named),
        cmocka_unit_test(gpt_backup_used),
        cmocka_unit_test(gpt_both_bad),
        cmocka_unit_test(gpt_header_fields),
        cmocka_unit_test(gpt_bad_entries),
        cmocka_unit_test(gpt_names),
        cmocka_unit_test(gpt_read_errors),
        cmocka_unit_test(gpt_tiny_device),
        cmocka_unit_test(fixture_sfdisk_mbr),
        cmocka_unit_test(fixture_sgdisk_gpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
