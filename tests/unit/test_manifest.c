/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/manifest.h (index.json.blob payload, pbs.md §7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/manifest.h"
#include "fixtures.h"

#define CSUM_HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CSUM_Q "\"" CSUM_HEX "\""

/* A JSON object of raw key/value texts; a NULL value omits the key. */
static char *object(const char *const *kv, size_t n)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    bool first = true;
    assert_non_null(f);
    fputs("{\n", f);
    for (size_t i = 0; i + 1 < 2 * n; i += 2) {
        if (!kv[i + 1])
            continue;
        fprintf(f, "%s  \"%s\": %s", first ? "" : ",\n", kv[i], kv[i + 1]);
        first = false;
    }
    fputs("\n}", f);
    fclose(f);
    return s;
}

static char *file_entry(const char *name, const char *crypt, const char *size, const char *csum)
{
    const char *kv[] = {"filename", name, "crypt-mode", crypt, "size", size, "csum", csum};
    return object(kv, 4);
}

static char *doc(const char *type, const char *id, const char *time, const char *files)
{
    const char *kv[] = {"backup-type", type,    "backup-id", id,          "backup-time",
                        time,          "files", files,       "signature", "null"};
    return object(kv, 5);
}

/* A document with one file entry. */
static char *doc1(const char *name, const char *crypt, const char *size, const char *csum)
{
    char *f = file_entry(name, crypt, size, csum), *files = NULL, *d;
    assert_true(asprintf(&files, "[%s]", f) > 0);
    d = doc("\"vm\"", "\"100\"", "1752148800", files);
    free(f);
    free(files);
    return d;
}

/* Parses @len bytes copied into an exact-size buffer (no NUL after them). */
static int parse_exact(const char *json, size_t len, struct fetch_manifest **ret, fetch_error *err)
{
    char *buf = fx_memdup(json, len);
    int r;
    if (err)
        err->msg[0] = '\0';
    r = fetch_manifest_parse(buf, len, ret, err);
    free(buf);
    return r;
}

static void expect_bad_len(const char *json, size_t len, const char *what)
{
    struct fetch_manifest *m = NULL;
    fetch_error err;
    int r = parse_exact(json, len, &m, &err);
    if (r != -EBADMSG) {
        fetch_manifest_free(m);
        fail_msg("%s: got %d, expected -EBADMSG; input:\n%.*s", what, r, (int)len, json);
    }
    if (!err.msg[0])
        fail_msg("%s: no error message", what);
    assert_null(m);
}

static void expect_bad(const char *json, const char *what)
{
    expect_bad_len(json, strlen(json), what);
}

/* expect_bad on a generated document, then free it */
static void expect_bad_doc(char *json, const char *what)
{
    expect_bad(json, what);
    free(json);
}

static void valid_pretty(void **state)
{
    struct fx_file files[] = {
        {"drive-scsi0.img.fidx", "none", 34359738368ull, {0}},
        {"drive-efidisk0.img.fidx", "encrypt", 540672, {0}},
        {"qemu-server.conf.blob", "sign-only", 412, {0}},
        {"fw.conf.blob", "none", 0, {0}},
    };
    const size_t n = sizeof(files) / sizeof(files[0]);
    static const enum fetch_crypt crypt[] = {FETCH_CRYPT_NONE, FETCH_CRYPT_ENCRYPT,
                                             FETCH_CRYPT_SIGN_ONLY, FETCH_CRYPT_NONE};
    struct fetch_manifest *m = NULL;
    fetch_error err = {""};
    char *json;
    (void)state;

    for (size_t i = 0; i < n; i++)
        fx_fill_random(files[i].csum, 32, i + 50);
    json = fx_manifest_json("vm", "100", 1752148800, files, n);
    if (parse_exact(json, strlen(json), &m, &err) != 0)
        fail_msg("valid manifest rejected: %s\n%s", err.msg, json);
    assert_string_equal(m->type, "vm");
    assert_string_equal(m->id, "100");
    assert_int_equal(m->time, 1752148800);
    assert_int_equal(m->count, n);
    for (size_t i = 0; i < n; i++) {
        const struct fetch_manifest_file *f = fetch_manifest_find(m, files[i].name);
        assert_ptr_equal(f, &m->files[i]); /* order kept */
        assert_string_equal(f->name, files[i].name);
        assert_int_equal(f->crypt, crypt[i]);
        assert_string_equal(fetch_crypt_name(f->crypt), files[i].crypt);
        assert_int_equal(f->size, files[i].size);
        assert_memory_equal(f->csum, files[i].csum, 32);
    }
    assert_null(fetch_manifest_find(m, "drive-scsi1.img.fidx"));
    assert_null(fetch_manifest_find(m, "drive-scsi0.img"));
    assert_null(fetch_manifest_find(m, ""));
    fetch_manifest_free(m);
    fetch_manifest_free(NULL);
    free(json);
}

static void valid_variants(void **state)
{
    struct fx_file one = {"root.pxar.didx", "none", 1, {0}};
    struct fetch_manifest *m = NULL;
    char *json, *padded = NULL;
    (void)state;

    /* no files at all */
    json = fx_manifest_json("ct", "200", 0, NULL, 0);
    assert_int_equal(parse_exact(json, strlen(json), &m, NULL), 0);
    assert_string_equal(m->type, "ct");
    assert_int_equal(m->count, 0);
    fetch_manifest_free(m);
    free(json);

    /* host type, dotted id; trailing whitespace */
    json = fx_manifest_json("host", "my-host.example.com", 1, &one, 1);
    assert_true(asprintf(&padded, "%s \n\t\r\n", json) > 0);
    assert_int_equal(parse_exact(padded, strlen(padded), &m, NULL), 0);
    assert_string_equal(m->type, "host");
    assert_string_equal(m->id, "my-host.example.com");
    assert_int_equal(m->count, 1);
    fetch_manifest_free(m);
    free(padded);
    free(json);

    /* the crypt names */
    assert_string_equal(fetch_crypt_name(FETCH_CRYPT_NONE), "none");
    assert_string_equal(fetch_crypt_name(FETCH_CRYPT_SIGN_ONLY), "sign-only");
    assert_string_equal(fetch_crypt_name(FETCH_CRYPT_ENCRYPT), "encrypt");
}

/* @len bounds the input: bytes after it are not looked at */
static void length_bounds_input(void **state)
{
    struct fetch_manifest *m = NULL;
    char *json = fx_manifest_json("vm", "100", 5, NULL, 0), *more = NULL;
    (void)state;
    assert_true(asprintf(&more, "%sTRAILING GARBAGE", json) > 0);
    assert_int_equal(fetch_manifest_parse(more, strlen(json), &m, NULL), 0);
    assert_int_equal(m->time, 5);
    fetch_manifest_free(m);
    /* the same document cut short is not valid */
    expect_bad_len(json, strlen(json) - 3, "document cut short");
    free(more);
    free(json);
}

static void not_json(void **state)
{
    static const char *bad[] = {"",
                                " ",
                                "\n",
                                "not json",
                                "{",
                                "}",
                                "[]",
                                "null",
                                "true",
                                "123",
                                "\"x\"",
                                "{}",
                                "{\"backup-type\":",
                                "{'backup-type':'vm'}",
                                "\xff\xfe{"};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i], "not a manifest");
    expect_bad_len("{\0}", 3, "NUL inside");
}

static void trailing_garbage(void **state)
{
    static const char *tails[] = {"x", "{}", ",", "]", "}", "\n\nnull", " 1", "\n#"};
    char *json = fx_manifest_json("vm", "100", 1752148800, NULL, 0);
    (void)state;
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        char *s = NULL;
        assert_true(asprintf(&s, "%s%s", json, tails[i]) > 0);
        expect_bad(s, "trailing garbage");
        free(s);
    }
    free(json);
}

static void missing_keys(void **state)
{
    (void)state;
    expect_bad_doc(doc(NULL, "\"100\"", "1", "[]"), "no backup-type");
    expect_bad_doc(doc("\"vm\"", NULL, "1", "[]"), "no backup-id");
    expect_bad_doc(doc("\"vm\"", "\"100\"", NULL, "[]"), "no backup-time");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", NULL), "no files");
    expect_bad_doc(doc1(NULL, "\"none\"", "1", CSUM_Q), "file without filename");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", NULL, CSUM_Q), "file without size");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "1", NULL), "file without csum");
}

static void wrong_types(void **state)
{
    (void)state;
    expect_bad_doc(doc("1", "\"100\"", "1", "[]"), "backup-type number");
    expect_bad_doc(doc("[\"vm\"]", "\"100\"", "1", "[]"), "backup-type array");
    expect_bad_doc(doc("\"vm\"", "100", "1", "[]"), "backup-id number");
    expect_bad_doc(doc("\"vm\"", "null", "1", "[]"), "backup-id null");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "\"1752148800\"", "[]"), "backup-time string");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1.5", "[]"), "backup-time fraction");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "true", "[]"), "backup-time bool");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "{}"), "files object");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "\"a.blob\""), "files string");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "[\"a.blob\"]"), "file entry string");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "[null]"), "file entry null");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "[[]]"), "file entry array");
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", "[1]"), "file entry number");
    expect_bad_doc(doc1("5", "\"none\"", "1", CSUM_Q), "filename number");
    expect_bad_doc(doc1("[\"a.blob\"]", "\"none\"", "1", CSUM_Q), "filename array");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "\"10\"", CSUM_Q), "size string");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "1.5", CSUM_Q), "size fraction");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "true", CSUM_Q), "size bool");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "null", CSUM_Q), "size null");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "1", "123"), "csum number");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "1", "null"), "csum null");
}

/* crypt-mode present but not a string must not default to "none" */
static void crypt_mode_wrong_type(void **state)
{
    (void)state;
    expect_bad_doc(doc1("\"a.blob\"", "2", "1", CSUM_Q), "crypt-mode number");
    expect_bad_doc(doc1("\"a.blob\"", "null", "1", CSUM_Q), "crypt-mode null");
    expect_bad_doc(doc1("\"a.blob\"", "[\"encrypt\"]", "1", CSUM_Q), "crypt-mode array");
    expect_bad_doc(doc1("\"a.blob\"", "{\"mode\":\"encrypt\"}", "1", CSUM_Q), "crypt-mode object");
}

static void bad_names_and_type(void **state)
{
    (void)state;
    expect_bad_doc(doc("\"qemu\"", "\"100\"", "1", "[]"), "backup-type qemu");
    expect_bad_doc(doc("\"VM\"", "\"100\"", "1", "[]"), "backup-type VM");
    expect_bad_doc(doc("\"\"", "\"100\"", "1", "[]"), "empty backup-type");
    expect_bad_doc(doc("\"vm\"", "\"../100\"", "1", "[]"), "backup-id with ..");
    expect_bad_doc(doc("\"vm\"", "\"1/2\"", "1", "[]"), "backup-id with /");
    expect_bad_doc(doc("\"vm\"", "\"\"", "1", "[]"), "empty backup-id");
    expect_bad_doc(doc("\"vm\"", "\".x\"", "1", "[]"), "backup-id leading dot");
}

static void bad_csum(void **state)
{
    static const char *bad[] = {
        "\"" CSUM_HEX "0\"",
        "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\"",
        "\"\"",
        "\"0x23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        "\"zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        "\" 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        "\"01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef\"",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "1", bad[i]), "bad csum");
}

static void hostile_filenames(void **state)
{
    static const char *bad[] = {
        "\"../x\"",   "\"a/b\"",         "\".hidden\"",      "\"..\"",    "\".\"",
        "\"\"",       "\"/etc/passwd\"", "\"x/../../y\"",    "\"a\\nb\"", "\"a\\u0001b\"",
        "\"..\\/x\"", "\"a b.blob\"",    "\"\\u00e4.blob\"",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_doc(doc1(bad[i], "\"none\"", "1", CSUM_Q), "hostile filename");
    {
        char name[300];
        memset(name, 'f', sizeof(name));
        name[0] = '"';
        name[257] = '"';
        name[258] = '\0';
        expect_bad_doc(doc1(name, "\"none\"", "1", CSUM_Q), "256-char filename");
    }
}

/* A NUL inside the JSON string must not shorten the name into a valid one. */
static void filename_with_nul(void **state)
{
    (void)state;
    expect_bad_doc(doc1("\"drive-scsi0.img.fidx\\u0000../../x\"", "\"none\"", "1", CSUM_Q),
                   "filename with embedded NUL");
}

static void unknown_crypt_mode(void **state)
{
    static const char *bad[] = {"\"aes\"", "\"NONE\"", "\"\"", "\"encrypt \"", "\"signonly\""};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_doc(doc1("\"a.blob\"", bad[i], "1", CSUM_Q), "unknown crypt-mode");
}

static void negative_size(void **state)
{
    (void)state;
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "-1", CSUM_Q), "size -1");
    expect_bad_doc(doc1("\"a.blob\"", "\"none\"", "-9223372036854775808", CSUM_Q),
                   "size INT64_MIN");
}

/* A size beyond INT64_MAX (what a file's size, off_t, holds) is rejected,
 * never clamped or kept: stat would show it negative. INT64_MAX is kept. */
static void huge_size_not_clamped(void **state)
{
    char *json = doc1("\"a.fidx\"", "\"none\"", "9223372036854775807", CSUM_Q);
    struct fetch_manifest *m = NULL;
    (void)state;
    assert_int_equal(parse_exact(json, strlen(json), &m, NULL), 0);
    assert_true(m->files[0].size == (uint64_t)INT64_MAX);
    fetch_manifest_free(m);
    free(json);
    expect_bad_doc(doc1("\"a.fidx\"", "\"none\"", "9223372036854775808", CSUM_Q),
                   "size INT64_MAX + 1");
    expect_bad_doc(doc1("\"a.fidx\"", "\"none\"", "18446744073709551615", CSUM_Q),
                   "size UINT64_MAX");
}

static void duplicate_filename(void **state)
{
    char *a = file_entry("\"x.blob\"", "\"none\"", "1", CSUM_Q);
    char *b = file_entry("\"y.blob\"", "\"none\"", "2", CSUM_Q);
    char *files = NULL;
    (void)state;
    assert_true(asprintf(&files, "[%s,%s,%s]", a, b, a) > 0);
    expect_bad_doc(doc("\"vm\"", "\"100\"", "1", files), "duplicate filename");
    free(files);
    free(a);
    free(b);
}

static void deep_nesting(void **state)
{
    const size_t depth = 100000;
    char *s = fx_malloc(2 * depth + 1);
    (void)state;
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    expect_bad(s, "deeply nested arrays");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_pretty),          cmocka_unit_test(valid_variants),
        cmocka_unit_test(length_bounds_input),   cmocka_unit_test(not_json),
        cmocka_unit_test(trailing_garbage),      cmocka_unit_test(missing_keys),
        cmocka_unit_test(wrong_types),           cmocka_unit_test(crypt_mode_wrong_type),
        cmocka_unit_test(bad_names_and_type),    cmocka_unit_test(bad_csum),
        cmocka_unit_test(hostile_filenames),     cmocka_unit_test(filename_with_nul),
        cmocka_unit_test(unknown_crypt_mode),    cmocka_unit_test(negative_size),
        cmocka_unit_test(huge_size_not_clamped), cmocka_unit_test(duplicate_filename),
        cmocka_unit_test(deep_nesting),
    };
    return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
