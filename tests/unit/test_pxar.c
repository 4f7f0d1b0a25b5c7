/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/pxar.h over real pxar v2 metadata streams written by the
 * Proxmox Backup client (tests/data/pxar; known answers in its README): the
 * goodbye hash against pxar's own constants, the tree (10 folders of 10
 * files of 1 MiB, modes, owners), every name found by lookup and no other,
 * file bytes mapped onto the payload stream through PAYLOAD_REF (the
 * payload stream is generated: its chunks are not public), and damaged
 * streams (every byte flipped in turn, truncations) giving errors, never a
 * crash or a hang.
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
#include <sys/stat.h>

#include "fetch/pxar.h"
#include "fixtures.h"

#define DATA_MPXAR "pxar/backup-client-pxar-data.mpxar"
#define EXPECTED_MPXAR "pxar/backup-client-pxar-expected.mpxar"
#define PAYLOAD_SIZE 104859232ull /* the .ppxar.didx's stream length */
#define FILE_SIZE 1048576ull
#define PXAR_PAYLOAD 0x28147a1b0b7c1a25ull

/* ---- a generated payload stream: start marker, 100 x (PAYLOAD header + 1 MiB), tail ---- */

static uint8_t payload_byte(uint64_t off)
{
    uint64_t slot = 16 + FILE_SIZE, k, r;
    uint8_t h[16];
    if (off < 16 || off >= PAYLOAD_SIZE - 16)
        return 0xee; /* the markers: never file bytes */
    k = (off - 16) / slot;
    r = (off - 16) % slot;
    if (r < 16) {
        fx_put_le64(h, PXAR_PAYLOAD);
        fx_put_le64(h + 8, 16 + FILE_SIZE);
        return h[r];
    }
    return (uint8_t)(k * 31 + (r - 16) * 7 + ((r - 16) >> 9));
}

static int payload_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    (void)ctx;
    (void)err;
    for (size_t i = 0; i < len; i++)
        ((uint8_t *)buf)[i] = payload_byte(off + i);
    return 0;
}

static const struct fetch_stream payload = {PAYLOAD_SIZE, payload_read, NULL};

/* ---- helpers -------------------------------------------------------------- */

static uint8_t *load(const char *rel, size_t *len)
{
    return fx_read(TEST_DATA_DIR, rel, len);
}

static void hash_vectors(void **state)
{
    (void)state;
    /* pxar's constants are the hash of their own names (pbs.md §11) */
    assert_true(fetch_pxar_hash("__PROXMOX_FORMAT_ENTRY_V2__", 27) == 0xd5956474e588acefull);
    assert_true(fetch_pxar_hash("a", 1) != fetch_pxar_hash("b", 1));
}

/* Walks the tree of @a: the 10 x 10 layout of both fixtures. */
static void check_tree(struct fetch_archive *a, bool payload_pairs)
{
    struct fetch_archive_entry root, dir, file, again;
    fetch_error err = {""};
    char name[256], want[32];
    unsigned seen_dirs = 0;

    assert_int_equal(fetch_archive_root(a, &root, &err), 0);
    assert_int_equal(root.kind, FETCH_ARCHIVE_DIR);
    assert_int_equal(root.goodbye_count, 10);
    for (uint64_t i = 0; i < root.goodbye_count; i++) {
        unsigned seen_files = 0;
        assert_int_equal(fetch_archive_child(a, &root, i, name, sizeof(name), &dir, &err), 0);
        assert_int_equal(strncmp(name, "folder_", 7), 0);
        seen_dirs |= 1u << (name[7] - '0');
        assert_int_equal(dir.kind, FETCH_ARCHIVE_DIR);
        assert_int_equal(dir.mode, 040777);
        assert_int_equal(dir.uid, 1000);
        assert_int_equal(dir.gid, 1000);
        assert_int_equal(dir.goodbye_count, 10);
        /* found by name: the same entry */
        assert_int_equal(fetch_archive_lookup(a, &root, name, strlen(name), &again, &err), 0);
        assert_int_equal(again.pos, dir.pos);
        for (uint64_t j = 0; j < dir.goodbye_count; j++) {
            assert_int_equal(fetch_archive_child(a, &dir, j, want, sizeof(want), &file, &err), 0);
            assert_int_equal(strncmp(want, "file_", 5), 0);
            seen_files |= 1u << (want[5] - '0');
            assert_int_equal(file.kind, FETCH_ARCHIVE_FILE);
            assert_int_equal(file.mode, 0100777);
            assert_int_equal(file.size, FILE_SIZE);
            assert_true(file.data_in_payload);
            assert_int_equal(fetch_archive_lookup(a, &dir, want, strlen(want), &again, &err), 0);
            assert_int_equal(again.pos, file.pos);
            assert_int_equal(again.data_off, file.data_off);
            if (payload_pairs) {
                /* the file's bytes: a range of the payload stream, after its header */
                uint8_t got[300];
                assert_int_equal(
                    fetch_archive_read(a, &file, FILE_SIZE - 100, got, sizeof(got), &err), 100);
                for (size_t k = 0; k < 100; k++)
                    assert_int_equal(got[k], payload_byte(file.data_off + FILE_SIZE - 100 + k));
                assert_int_equal(fetch_archive_read(a, &file, FILE_SIZE, got, 10, &err), 0);
            }
        }
        assert_int_equal(seen_files, 0x3ff);
        /* no other names */
        assert_int_equal(fetch_archive_lookup(a, &dir, "file_10", 7, &again, &err), -ENOENT);
        assert_int_equal(fetch_archive_lookup(a, &dir, "folder_0", 8, &again, &err), -ENOENT);
    }
    assert_int_equal(seen_dirs, 0x3ff);
    assert_int_equal(fetch_archive_lookup(a, &root, "file_0", 6, &again, &err), -ENOENT);
    assert_int_equal(fetch_archive_lookup(a, &root, "folder_", 7, &again, &err), -ENOENT);
    assert_int_equal(fetch_archive_child(a, &root, 10, name, sizeof(name), &again, &err), -ERANGE);
}

static void real_v2_archive(void **state)
{
    size_t len = 0;
    uint8_t *buf = load(DATA_MPXAR, &len);
    struct fetch_stream meta;
    struct fetch_archive *a = NULL;
    fetch_error err = {""};
    (void)state;

    assert_int_equal(len, 15070);
    fetch_stream_of_buffer(&meta, buf, len);
    assert_int_equal(fetch_pxar_open(&meta, &payload, &a, &err), 0);
    assert_int_equal(fetch_pxar_version(a), 2);
    check_tree(a, true);
    fetch_archive_free(a);

    /* a v2 metadata stream needs its payload stream */
    assert_int_equal(fetch_pxar_open(&meta, NULL, &a, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "payload"));
    free(buf);
}

/* The re-encoded archive: a PRELUDE, reused payloads, goodbye sizes covering
 * the metadata only. */
static void real_v2_with_prelude(void **state)
{
    size_t len = 0;
    uint8_t *buf = load(EXPECTED_MPXAR, &len);
    struct fetch_stream meta;
    struct fetch_archive *a = NULL;
    fetch_error err = {""};
    (void)state;

    fetch_stream_of_buffer(&meta, buf, len);
    assert_int_equal(fetch_pxar_open(&meta, &payload, &a, &err), 0);
    check_tree(a, false);
    fetch_archive_free(a);
    free(buf);
}

/* Walks everything reachable, as a mount would; errors are fine, crashes not. */
static unsigned walk(struct fetch_archive *a, const struct fetch_archive_entry *dir, int depth)
{
    struct fetch_archive_entry c;
    fetch_error err = {""};
    char name[FETCH_ARCHIVE_NAME_MAX + 1], target[FETCH_ARCHIVE_PATH_MAX + 1];
    unsigned n = 0;
    uint8_t b[64];

    if (depth > 8)
        return 0;
    for (uint64_t i = 0; i < dir->goodbye_count && i < 64; i++) {
        if (fetch_archive_child(a, dir, i, name, sizeof(name), &c, &err) < 0)
            continue;
        n++;
        (void)fetch_archive_lookup(a, dir, name, strlen(name), &c, &err);
        if (c.kind == FETCH_ARCHIVE_DIR)
            n += walk(a, &c, depth + 1);
        else if (c.kind == FETCH_ARCHIVE_FILE)
            (void)fetch_archive_read(a, &c, 0, b, sizeof(b), &err);
        else if (c.kind == FETCH_ARCHIVE_SYMLINK)
            (void)fetch_archive_readlink(a, &c, target, sizeof(target), &err);
    }
    return n;
}

static void damaged_streams(void **state)
{
    size_t len = 0;
    uint8_t *orig = load(DATA_MPXAR, &len), *buf = malloc(len);
    struct fetch_stream meta;
    unsigned opened = 0;
    (void)state;

    assert_non_null(buf);
    /* every byte flipped in turn (a step keeps it quick under sanitizers) */
    for (size_t at = 0; at < len; at += 7) {
        struct fetch_archive *a = NULL;
        struct fetch_archive_entry root;
        fetch_error err = {""};
        memcpy(buf, orig, len);
        buf[at] ^= (uint8_t)(1u << (at % 8));
        fetch_stream_of_buffer(&meta, buf, len);
        if (fetch_pxar_open(&meta, &payload, &a, &err) < 0) {
            assert_true(err.msg[0] != '\0');
            continue;
        }
        opened++;
        if (fetch_archive_root(a, &root, &err) == 0)
            (void)walk(a, &root, 0);
        fetch_archive_free(a);
    }
    assert_true(opened > 0);
    /* truncated: the tail is gone or points outside */
    for (size_t cut = 1; cut < len; cut = cut * 3 + 1) {
        struct fetch_archive *a = NULL;
        fetch_error err = {""};
        fetch_stream_of_buffer(&meta, orig, len - cut);
        assert_int_equal(fetch_pxar_open(&meta, &payload, &a, &err), -EBADMSG);
    }
    free(buf);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_vectors),
        cmocka_unit_test(real_v2_archive),
        cmocka_unit_test(real_v2_with_prelude),
        cmocka_unit_test(damaged_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
