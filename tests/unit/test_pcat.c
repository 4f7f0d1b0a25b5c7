/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/pcat.h, the PBS file catalog, on catalogs built here
 * byte by byte after proxmox-backup's catalog.rs (pbs.md §11): entries of
 * every kind, sizes, a negative mtime (the signed varint's end marker),
 * nested directories, the archive chosen by name; and malformed catalogs
 * (magic, root offset, a directory pointing forward, a truncated block,
 * bad names) refused with -EBADMSG.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/pcat.h"

struct buf {
    uint8_t b[4096];
    size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put_u64(struct buf *b, uint64_t v)
{
    while (v >= 128) {
        uint8_t c = (uint8_t)(128 | (v & 127));
        put(b, &c, 1);
        v >>= 7;
    }
    put(b, &(uint8_t){(uint8_t)v}, 1);
}

/* catalog_encode_i64 of a negative value: magnitude - 1 + 1, then 0x00 */
static void put_neg(struct buf *b, uint64_t magnitude)
{
    uint64_t d = magnitude;
    while (d >= 128) {
        put(b, &(uint8_t){(uint8_t)(128 | (d & 127))}, 1);
        d >>= 7;
    }
    put(b, &(uint8_t){(uint8_t)(128 | d)}, 1);
    put(b, &(uint8_t){0}, 1);
}

static void put_name(struct buf *t, char kind, const char *name)
{
    put(t, &kind, 1);
    put_u64(t, strlen(name));
    put(t, name, strlen(name));
}

/* Appends block @t (its length first) to @out; returns its offset. */
static uint64_t put_block(struct buf *out, const struct buf *t)
{
    uint64_t at = out->n;
    put_u64(out, t->n);
    put(out, t->b, t->n);
    return at;
}

/* root.pxar.didx: { a.txt (5 bytes, mtime -2), sub/ { deep (7, 1700000000), link, fifo } };
 * other.pxar.didx: { x } */
static void build(struct buf *out)
{
    struct buf t;
    uint64_t sub, top, other, root;
    memset(out, 0, sizeof(*out));
    put(out, "\x91\xfd\x60\xf9\xc4\x67\x58\xd5", 8);

    memset(&t, 0, sizeof(t));
    put_u64(&t, 3);
    put_name(&t, 'f', "deep");
    put_u64(&t, 7);
    put_u64(&t, 1700000000);
    put_name(&t, 'l', "link");
    put_name(&t, 'p', "fifo");
    sub = put_block(out, &t);

    memset(&t, 0, sizeof(t));
    put_u64(&t, 2);
    put_name(&t, 'f', "a.txt");
    put_u64(&t, 5);
    put_neg(&t, 2);
    top = out->n;
    put_name(&t, 'd', "sub");
    put_u64(&t, top - sub);
    top = put_block(out, &t);

    memset(&t, 0, sizeof(t));
    put_u64(&t, 1);
    put_name(&t, 'f', "x");
    put_u64(&t, 1);
    put_u64(&t, 1);
    other = put_block(out, &t);

    memset(&t, 0, sizeof(t));
    put_u64(&t, 2);
    root = out->n;
    put_name(&t, 'd', "root.pxar.didx");
    put_u64(&t, root - top);
    put_name(&t, 'd', "other.pxar.didx");
    put_u64(&t, root - other);
    root = put_block(out, &t);
    for (int i = 0; i < 8; i++)
        put(out, &(uint8_t){(uint8_t)(root >> (8 * i))}, 1);
}

struct seen {
    char lines[8][128];
    int n;
};

static int collect(const struct fetch_pcat_entry *e, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 8);
    snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s %d %llu %lld", e->path, (int)e->kind,
             (unsigned long long)e->size, (long long)e->mtime);
    return 0;
}

static int walk(const struct buf *b, size_t len, const char *top, struct seen *s)
{
    struct fetch_stream st;
    fetch_error err = {""};
    memset(s, 0, sizeof(*s));
    fetch_stream_of_buffer(&st, b->b, len);
    return fetch_pcat_walk(&st, top, collect, s, &err);
}

static void entries(void **state)
{
    struct buf b;
    struct seen s;
    (void)state;
    build(&b);
    assert_int_equal(walk(&b, b.n, "root.pxar.didx", &s), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.lines[0], "a.txt 1 5 -2");
    assert_string_equal(s.lines[1], "sub 0 0 0");
    assert_string_equal(s.lines[2], "sub/deep 1 7 1700000000");
    assert_string_equal(s.lines[3], "sub/link 2 0 0");
    assert_string_equal(s.lines[4], "sub/fifo 4 0 0");
    assert_int_equal(walk(&b, b.n, "other.pxar.didx", &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.lines[0], "x 1 1 1");
    assert_int_equal(walk(&b, b.n, "none.pxar.didx", &s), -ENOENT);
}

static void malformed(void **state)
{
    struct buf b, bad;
    struct seen s;
    (void)state;
    build(&b);

    bad = b;
    bad.b[0] ^= 1;
    assert_int_equal(walk(&bad, bad.n, "root.pxar.didx", &s), -EBADMSG);
    /* the root offset past the end, and before the magic */
    bad = b;
    bad.b[bad.n - 1] = 0x7f;
    assert_int_equal(walk(&bad, bad.n, "root.pxar.didx", &s), -EBADMSG);
    bad = b;
    memset(bad.b + bad.n - 8, 0, 8);
    bad.b[bad.n - 8] = 3;
    assert_int_equal(walk(&bad, bad.n, "root.pxar.didx", &s), -EBADMSG);
    /* truncated */
    assert_int_equal(walk(&b, 12, "root.pxar.didx", &s), -EBADMSG);
    /* every byte flipped in turn: an error or a walk, never a crash */
    for (size_t at = 0; at < b.n; at++) {
        bad = b;
        bad.b[at] ^= (uint8_t)(1u << (at % 8));
        (void)walk(&bad, bad.n, "root.pxar.didx", &s);
    }
}

static int count_entries(const struct fetch_pcat_entry *e, void *arg)
{
    (void)e;
    ++*(unsigned long *)arg;
    return 0;
}

/* Two directories that name one block: a chain of 24 such levels would list
 * 2^24 paths from a few hundred bytes; the second visit of a block is
 * refused instead. */
static void block_named_twice(void **state)
{
    struct buf b, t;
    struct fetch_stream st;
    fetch_error err = {""};
    unsigned long n = 0;
    uint64_t prev, at;
    (void)state;
    memset(&b, 0, sizeof(b));
    put(&b, "\x91\xfd\x60\xf9\xc4\x67\x58\xd5", 8);
    memset(&t, 0, sizeof(t));
    put_u64(&t, 1);
    put_name(&t, 'f', "f");
    put_u64(&t, 1);
    put_u64(&t, 1);
    prev = put_block(&b, &t);
    for (int level = 0; level < 24; level++) {
        memset(&t, 0, sizeof(t));
        put_u64(&t, 2);
        at = b.n;
        put_name(&t, 'd', "a");
        put_u64(&t, at - prev);
        put_name(&t, 'd', "b");
        put_u64(&t, at - prev);
        prev = put_block(&b, &t);
    }
    memset(&t, 0, sizeof(t));
    put_u64(&t, 1);
    at = b.n;
    put_name(&t, 'd', "root.pxar.didx");
    put_u64(&t, at - prev);
    at = put_block(&b, &t);
    for (int i = 0; i < 8; i++)
        put(&b, &(uint8_t){(uint8_t)(at >> (8 * i))}, 1);
    fetch_stream_of_buffer(&st, b.b, b.n);
    assert_int_equal(fetch_pcat_walk(&st, "root.pxar.didx", count_entries, &n, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "two directories"));
    assert_true(n < 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries),
        cmocka_unit_test(malformed),
        cmocka_unit_test(block_named_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
