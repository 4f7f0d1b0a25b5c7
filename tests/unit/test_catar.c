/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: the catar dialect of fetch/gbarchive.c over an archive written
 * by casync itself (tests/data/catar, known answers in its README): the tree,
 * modes, owners, times, a symlink, a FIFO, file bytes, lookups of every name
 * and of none other, the goodbye hash with casync's key, and damaged copies
 * (every byte flipped in turn, truncations) giving errors, never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch/catar.h"
#include "fixtures.h"

#define TREE "catar/tree.catar"

static struct fetch_archive *open_tree(uint8_t **buf, struct fetch_stream *s)
{
    size_t len = 0;
    struct fetch_archive *a = NULL;
    fetch_error err = {""};
    *buf = fx_read(TEST_DATA_DIR, TREE, &len);
    fetch_stream_of_buffer(s, *buf, len);
    assert_int_equal(fetch_catar_open(s, &a, &err), 0);
    return a;
}

static void lookup(struct fetch_archive *a, const struct fetch_archive_entry *dir, const char *name,
                   struct fetch_archive_entry *ret)
{
    fetch_error err = {""};
    int r = fetch_archive_lookup(a, dir, name, strlen(name), ret, &err);
    if (r)
        fail_msg("lookup of %s: %d %s", name, r, err.msg);
}

static void real_tree(void **state)
{
    uint8_t *buf, got[200], want[32];
    struct fetch_stream s;
    struct fetch_archive *a = open_tree(&buf, &s);
    struct fetch_archive_entry root, e, sub;
    fetch_error err = {""};
    char name[256], target[64];
    unsigned seen = 0;
    (void)state;

    assert_int_equal(fetch_archive_root(a, &root, &err), 0);
    assert_int_equal(root.kind, FETCH_ARCHIVE_DIR);
    assert_int_equal(root.goodbye_count, 5);
    for (uint64_t i = 0; i < root.goodbye_count; i++) {
        assert_int_equal(fetch_archive_child(a, &root, i, name, sizeof(name), &e, &err), 0);
        if (!strcmp(name, "a.txt"))
            seen |= 1;
        else if (!strcmp(name, "empty"))
            seen |= 2;
        else if (!strcmp(name, "fifo"))
            seen |= 4;
        else if (!strcmp(name, "link"))
            seen |= 8;
        else if (!strcmp(name, "sub"))
            seen |= 16;
    }
    assert_int_equal(seen, 31);

    lookup(a, &root, "a.txt", &e);
    assert_int_equal(e.kind, FETCH_ARCHIVE_FILE);
    assert_int_equal(e.mode, S_IFREG | 0640);
    assert_int_equal(e.size, 6);
    assert_int_equal(e.mtime_sec, 1577836800);
    assert_int_equal(e.uid, 0);
    assert_int_equal(fetch_archive_read(a, &e, 0, got, sizeof(got), &err), 6);
    assert_memory_equal(got, "hello\n", 6);
    assert_int_equal(fetch_archive_read(a, &e, 2, got, 2, &err), 2);
    assert_memory_equal(got, "ll", 2);

    lookup(a, &root, "link", &e);
    assert_int_equal(e.kind, FETCH_ARCHIVE_SYMLINK);
    assert_int_equal(fetch_archive_readlink(a, &e, target, sizeof(target), &err), 0);
    assert_string_equal(target, "a.txt");
    lookup(a, &root, "fifo", &e);
    assert_int_equal(e.kind, FETCH_ARCHIVE_FIFO);
    lookup(a, &root, "empty", &e);
    assert_int_equal(e.kind, FETCH_ARCHIVE_DIR);
    assert_int_equal(e.goodbye_count, 0);

    lookup(a, &root, "sub", &sub);
    lookup(a, &sub, "b.bin", &e);
    assert_int_equal(e.size, 100);
    assert_int_equal(fetch_archive_read(a, &e, 0, got, sizeof(got), &err), 100);
    fx_sha256(got, 100, want);
    fx_unhex("54e6de92f9bbff74689f2c0201f796230211d791083b78b3d72b8a98e009f10c", got, 32);
    assert_memory_equal(want, got, 32);

    /* no other names */
    assert_int_equal(fetch_archive_lookup(a, &root, "b.bin", 5, &e, &err), -ENOENT);
    assert_int_equal(fetch_archive_lookup(a, &sub, "a.txt", 5, &e, &err), -ENOENT);
    assert_int_equal(fetch_archive_lookup(a, &root, "a.tx", 4, &e, &err), -ENOENT);
    assert_true(fetch_catar_hash("a.txt", 5) != fetch_catar_hash("b.bin", 5));
    fetch_archive_free(a);
    free(buf);
}

static void damaged(void **state)
{
    size_t len = 0;
    uint8_t *orig = fx_read(TEST_DATA_DIR, TREE, &len), *buf = malloc(len);
    struct fetch_stream s;
    unsigned opened = 0;
    (void)state;

    assert_non_null(buf);
    for (size_t at = 0; at < len; at++) {
        struct fetch_archive *a = NULL;
        struct fetch_archive_entry root, c;
        fetch_error err = {""};
        char name[256];
        memcpy(buf, orig, len);
        buf[at] ^= (uint8_t)(1u << (at % 8));
        fetch_stream_of_buffer(&s, buf, len);
        if (fetch_catar_open(&s, &a, &err) < 0) {
            assert_true(err.msg[0] != '\0');
            continue;
        }
        opened++;
        if (fetch_archive_root(a, &root, &err) == 0)
            for (uint64_t i = 0; i < root.goodbye_count && i < 16; i++)
                (void)fetch_archive_child(a, &root, i, name, sizeof(name), &c, &err);
        fetch_archive_free(a);
    }
    assert_true(opened > 0);
    for (size_t cut = 1; cut < len; cut = cut * 2 + 1) {
        struct fetch_archive *a = NULL;
        fetch_error err = {""};
        fetch_stream_of_buffer(&s, orig, len - cut);
        assert_int_equal(fetch_catar_open(&s, &a, &err), -EBADMSG);
    }
    free(buf);
    free(orig);
}

/* A goodbye table that names one child twice is refused when the directory
 * is listed (down a chain of such directories, a walk would meet 2^depth
 * paths); lookups of the other names still work. */
static void child_named_twice(void **state)
{
    size_t len = 0;
    uint8_t *buf = fx_read(TEST_DATA_DIR, TREE, &len);
    struct fetch_stream s;
    struct fetch_archive *a = NULL;
    struct fetch_archive_entry root, c;
    fetch_error err = {""};
    char name[256];
    (void)state;

    fetch_stream_of_buffer(&s, buf, len);
    assert_int_equal(fetch_catar_open(&s, &a, &err), 0);
    assert_int_equal(fetch_archive_root(a, &root, &err), 0);
    assert_true(root.goodbye_count >= 2);
    assert_int_equal(fetch_archive_child(a, &root, 0, name, sizeof(name), &c, &err), 0);
    fetch_archive_free(a);
    /* item 1 becomes a copy of item 0 */
    memcpy(buf + root.goodbye_off + 24, buf + root.goodbye_off, 24);
    assert_int_equal(fetch_catar_open(&s, &a, &err), 0);
    assert_int_equal(fetch_archive_root(a, &root, &err), 0);
    assert_int_equal(fetch_archive_child(a, &root, 0, name, sizeof(name), &c, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "two goodbye items"));
    fetch_archive_free(a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_tree),
        cmocka_unit_test(damaged),
        cmocka_unit_test(child_named_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
