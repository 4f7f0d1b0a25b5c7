/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/names.h (name validation, snapshot times, hex). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/names.h"
#include "fixtures.h"

static char *repeat(char c, size_t n)
{
    char *s = fx_malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void type_names(void **state)
{
    static const char *good[] = {"vm", "ct", "host"};
    static const char *bad[] = {"",    "VM",  "Vm",   "vms", "v",    "hos", "hostx", "host ",
                                " vm", "vm/", "qemu", "lxc", "vm\n", ".",   ".."};
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(fetch_name_is_type(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fetch_name_is_type(bad[i]))
            fail_msg("type '%s' accepted", bad[i]);
    }
    assert_false(fetch_name_is_type(NULL));
}

static void id_names(void **state)
{
    static const char *good[] = {
        "100",  "a", "_", "_x", "9", "my-host.example_1", "A-b.C_d", "host.example.com",
        "x..y", "a-"};
    static const char *bad[] = {"",    ".",    "..", ".x",   "..x", "-x",    "a/b",   "/a",
                                "a/",  "a b",  " a", "a\n",  "a\t", "a\x7f", "a\x01", "\xc3\xa4",
                                "a:b", "a\\b", "a*", "a%2f", "a+b", "a~",    "a@b"};
    char *max, *over;
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!fetch_name_is_id(good[i]))
            fail_msg("id '%s' rejected", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fetch_name_is_id(bad[i]))
            fail_msg("id '%s' accepted", bad[i]);
    }
    assert_false(fetch_name_is_id(NULL));
    max = repeat('i', 128);
    over = repeat('i', 129);
    assert_true(fetch_name_is_id(max));
    assert_false(fetch_name_is_id(over));
    free(max);
    free(over);
}

static void ns_names(void **state)
{
    static const char *good[] = {"a", "prod", "team_1", "x.y-z", "_", "0"};
    static const char *bad[] = {"",     ".",   "..",  ".a",    "-a",      "a/b",
                                "ns/a", "a b", "a\n", "a\x01", "\xc3\xa4"};
    char *max, *over;
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!fetch_name_is_ns(good[i]))
            fail_msg("namespace '%s' rejected", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fetch_name_is_ns(bad[i]))
            fail_msg("namespace '%s' accepted", bad[i]);
    }
    assert_false(fetch_name_is_ns(NULL));
    max = repeat('n', 32);
    over = repeat('n', 33);
    assert_true(fetch_name_is_ns(max));
    assert_false(fetch_name_is_ns(over));
    free(max);
    free(over);
}

static void time_valid(void **state)
{
    static const char *good[] = {
        "2025-07-10T12:00:00Z", "1970-01-01T00:00:00Z", "2024-02-29T23:59:59Z",
        "2000-02-29T00:00:00Z", "2025-12-31T23:59:59Z", "2025-04-30T08:30:15Z",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t epoch = -1;
        if (!fetch_name_is_time(good[i]))
            fail_msg("time '%s' rejected", good[i]);
        assert_int_equal(fetch_name_parse_time(good[i], &epoch), 0);
        if (epoch != fx_epoch(good[i]))
            fail_msg("%s parsed as %lld, expected %lld", good[i], (long long)epoch,
                     (long long)fx_epoch(good[i]));
    }
}

static void time_invalid(void **state)
{
    static const char *bad[] = {
        "",
        "2025-02-30T00:00:00Z", /* no such day */
        "2023-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* not a leap year either */
        "2025-04-31T00:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-00-10T00:00:00Z",
        "2025-07-00T00:00:00Z",
        "2025-07-32T00:00:00Z",
        "2025-07-10T24:00:00Z",
        "2025-07-10T12:60:00Z",
        "2025-07-10T12:00:61Z",
        "2025-07-10T12:00:99Z",
        "2025-07-10 12:00:00Z", /* wrong pattern */
        "2025-07-10t12:00:00Z",
        "2025-07-10T12:00:00z",
        "2025-07-10T12:00:00",   /* missing Z */
        "2025-07-10T12:00:00Z ", /* trailing chars */
        "2025-07-10T12:00:00Zx",
        "2025-07-10T12:00:00ZZ",
        "2025-07-10T12:00:00Z\n",
        " 2025-07-10T12:00:00Z",
        "2025-7-10T12:00:00Z",
        "25-07-10T12:00:00Z",
        "+025-07-10T12:00:00Z",
        "2025-+7-10T12:00:00Z",
        "2025-07-10T1 :00:00Z",
        "2025-07-10T-1:00:00Z",
        "2025-07-10T12:00:00+00:00",
        "2025-07-10T12:00:00.000Z",
        "../../../../../../etc",
        "2025/07/10T12:00:00Z",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t epoch = 4242;
        if (fetch_name_is_time(bad[i]))
            fail_msg("time '%s' accepted", bad[i]);
        assert_int_equal(fetch_name_parse_time(bad[i], &epoch), -EINVAL);
        /* out parameter untouched on failure */
        assert_int_equal(epoch, 4242);
    }
    assert_false(fetch_name_is_time(NULL));
}

/*
 * A snapshot directory name is the canonical formatting of its epoch, so a
 * name is valid only if formatting its parsed value gives the same name;
 * otherwise two directories alias one backup-time.
 */
static void time_is_canonical(void **state)
{
    static const char *names[] = {
        "2025-07-10T12:00:60Z", /* would be 12:01:00 */
        "2025-07-10T12:59:60Z", /* would be 13:00:00 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int64_t epoch = 0;
        char back[32];
        if (fetch_name_parse_time(names[i], &epoch) < 0)
            continue; /* rejected: fine */
        assert_int_equal(fetch_name_format_time(epoch, back, sizeof(back)), 0);
        if (strcmp(back, names[i]) != 0)
            fail_msg("'%s' accepted as a snapshot time but is the same instant as '%s'", names[i],
                     back);
    }
}

static void time_format(void **state)
{
    char buf[32];
    int64_t epoch = 0;
    (void)state;
    assert_int_equal(fetch_name_format_time(1752148800, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2025-07-10T12:00:00Z");
    assert_int_equal(fetch_name_format_time(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    /* exactly 21 bytes is enough; 20 is not */
    assert_int_equal(fetch_name_format_time(1709251199, buf, 21), 0);
    assert_string_equal(buf, "2024-02-29T23:59:59Z");
    assert_true(fetch_name_format_time(1709251199, buf, 20) < 0);
    /* round trip over a spread of epochs */
    for (int64_t t = 0; t < 4102444800; t += 86400 * 37 + 3671) {
        assert_int_equal(fetch_name_format_time(t, buf, sizeof(buf)), 0);
        assert_true(fetch_name_is_time(buf));
        assert_int_equal(fetch_name_parse_time(buf, &epoch), 0);
        assert_int_equal(epoch, t);
    }
}

static void file_names(void **state)
{
    static const char *good[] = {"drive-scsi0.img.fidx",
                                 "index.json.blob",
                                 "qemu-server.conf.blob",
                                 "root.pxar.didx",
                                 "a",
                                 "x+y",
                                 "A_b-C.d",
                                 "catalog.pcat1.didx",
                                 "drive-tpmstate0-backup.img.fidx",
                                 "a..b"};
    static const char *bad[] = {"",      ".",     "..",       ".hidden", "..x",  "a/b",
                                "/abs",  "a/",    "../x",     "a\x01b",  "a\nb", "a\tb",
                                "a\x7f", "a b",   "a\\b",     "a:b",     "a*b",  "\xc3\xa4.blob",
                                "a\rb",  "a%2fb", ".tmp_fidx"};
    char *max, *over;
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!fetch_name_is_file(good[i]))
            fail_msg("file name '%s' rejected", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fetch_name_is_file(bad[i]))
            fail_msg("file name '%s' accepted", bad[i]);
    }
    assert_false(fetch_name_is_file(NULL));
    max = repeat('f', 255);
    over = repeat('f', 256);
    assert_true(fetch_name_is_file(max));
    assert_false(fetch_name_is_file(over));
    free(max);
    free(over);
}

static void digest_hex(void **state)
{
    const char *good = "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8";
    char buf[80];
    (void)state;
    assert_true(fetch_name_is_digest_hex(good));
    assert_true(fetch_name_is_digest_hex(
        "0000000000000000000000000000000000000000000000000000000000000000"));
    assert_false(fetch_name_is_digest_hex(NULL));
    assert_false(fetch_name_is_digest_hex(""));
    /* 63 and 65 digits */
    snprintf(buf, sizeof(buf), "%.63s", good);
    assert_false(fetch_name_is_digest_hex(buf));
    snprintf(buf, sizeof(buf), "%s0", good);
    assert_false(fetch_name_is_digest_hex(buf));
    /* uppercase, non-hex, separators, suffixes */
    snprintf(buf, sizeof(buf), "%s", good);
    buf[0] = 'B';
    assert_false(fetch_name_is_digest_hex(buf));
    buf[0] = 'g';
    assert_false(fetch_name_is_digest_hex(buf));
    buf[0] = ' ';
    assert_false(fetch_name_is_digest_hex(buf));
    buf[0] = '/';
    assert_false(fetch_name_is_digest_hex(buf));
    snprintf(buf, sizeof(buf), "%.62s.0", good);
    assert_false(fetch_name_is_digest_hex(buf));
    snprintf(buf, sizeof(buf), "%s.0.bad", good);
    assert_false(fetch_name_is_digest_hex(buf));
}

static void hex_round_trip(void **state)
{
    uint8_t all[256], back[256];
    char hex[513], ref[513];
    (void)state;
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    fetch_hex_encode(all, sizeof(all), hex);
    fx_hex(all, sizeof(all), ref);
    assert_string_equal(hex, ref);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 500, "fafbfcfdfeff");
    memset(back, 0xaa, sizeof(back));
    assert_int_equal(fetch_hex_decode(hex, back, sizeof(back)), 0);
    assert_memory_equal(back, all, sizeof(all));

    /* either case decodes */
    {
        uint8_t b[4];
        assert_int_equal(fetch_hex_decode("DeadBEEF", b, 4), 0);
        assert_int_equal(b[0], 0xde);
        assert_int_equal(b[1], 0xad);
        assert_int_equal(b[2], 0xbe);
        assert_int_equal(b[3], 0xef);
    }
    /* zero length */
    fetch_hex_encode(all, 0, hex);
    assert_string_equal(hex, "");
    assert_int_equal(fetch_hex_decode("", back, 0), 0);
}

static void hex_decode_invalid(void **state)
{
    static const char *bad[] = {"abc",
                                "abcdef",
                                "abcdefab0",
                                "abcdefgh",
                                "abcd efa",
                                "0x12abcd",
                                "-1234567",
                                "abcdef\n1",
                                ("ab\xc3\xa4"
                                 "cdef")};
    uint8_t out[4];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fetch_hex_decode(bad[i], out, sizeof(out)) != -EINVAL)
            fail_msg("hex '%s' decoded into 4 bytes", bad[i]);
    }
    assert_int_equal(fetch_hex_decode(NULL, out, sizeof(out)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(type_names),         cmocka_unit_test(id_names),
        cmocka_unit_test(ns_names),           cmocka_unit_test(time_valid),
        cmocka_unit_test(time_invalid),       cmocka_unit_test(time_is_canonical),
        cmocka_unit_test(time_format),        cmocka_unit_test(file_names),
        cmocka_unit_test(digest_hex),         cmocka_unit_test(hex_round_trip),
        cmocka_unit_test(hex_decode_invalid),
    };
    return cmocka_run_group_tests_name("names", tests, NULL, NULL);
}
