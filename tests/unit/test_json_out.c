/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/json_out.h. The C1 control characters (U+0080-U+009F) of
 * strings and keys are written as \u escapes, and a JSON reader gets the
 * same strings back; each byte that is not UTF-8 is written as \udcNN, so
 * that the text is valid UTF-8; nothing else changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "fs/json_out.h"

static char *write_json(struct json_object *o, int flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(fs_json_write(f, o, flags), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void c1_escaped(void **state)
{
    (void)state;
    /* CSI (U+009B) and NEL (U+0085) in a value and a key; é (C3 A9), NBSP
     * (C2 A0), DEL and a tab around them */
    static const char value[] = "a\xc2\x9b"
                                "31mred\xc2\x85x \xc3\xa9\xc2\xa0\x7f\tz\xc2\x80\xc2\x9f";
    static const char key[] = "k\xc2\x9b"
                              "2J";
    struct json_object *o = json_object_new_object(), *back, *v;
    char *out;

    json_object_object_add(o, key, json_object_new_string(value));
    for (int pretty = 0; pretty < 2; pretty++) {
        out = write_json(o, pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE
                                   : JSON_C_TO_STRING_PLAIN);
        for (const char *p = out; *p; p++)
            assert_false((unsigned char)p[0] == 0xC2 && (unsigned char)p[1] >= 0x80 &&
                         (unsigned char)p[1] <= 0x9F);
        assert_non_null(strstr(out, "\\u009b31mred\\u0085x"));
        assert_non_null(strstr(out, "\\u0080\\u009f"));
        assert_non_null(strstr(out, "k\\u009b2J"));
        assert_non_null(strstr(out, "\xc3\xa9\xc2\xa0")); /* é and NBSP kept */
        assert_int_equal(out[strlen(out) - 1], '\n');
        back = json_tokener_parse(out);
        assert_non_null(back);
        assert_true(json_object_object_get_ex(back, key, &v));
        assert_string_equal(json_object_get_string(v), value);
        json_object_put(back);
        free(out);
    }
    json_object_put(o);
}

/* Whether @s is well-formed UTF-8 (checked the long way, not with the
 * decoder under test: each sequence decoded and range-checked). */
static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned cp, n, min;
        if (*s < 0x80) {
            s++;
            continue;
        }
        if ((*s & 0xE0) == 0xC0)
            n = 1, cp = *s & 0x1F, min = 0x80;
        else if ((*s & 0xF0) == 0xE0)
            n = 2, cp = *s & 0x0F, min = 0x800;
        else if ((*s & 0xF8) == 0xF0)
            n = 3, cp = *s & 0x07, min = 0x10000;
        else
            return false;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += n + 1;
    }
    return true;
}

static void invalid_utf8_escaped(void **state)
{
    (void)state;
    /* a Latin-1 é, a lone continuation byte, an overlong NUL (C0 80), an
     * encoded surrogate (ED A0 80), a code point past U+10FFFF (F4 90 80 80),
     * a 3-byte sequence cut short by 'x', 0xFF; around them €, U+1F600 and
     * U+10FFFF, which stay; a lead byte cut short by the end of the string */
    static const char value[] = "caf\xe9 \x80 \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82x "
                                "\xff \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc3";
    static const char key[] = "k\xe9y";
    struct json_object *o = json_object_new_object();
    char *out;

    json_object_object_add(o, key, json_object_new_string(value));
    out = write_json(o, JSON_C_TO_STRING_PLAIN);
    assert_true(valid_utf8((const unsigned char *)out));
    assert_string_equal(out, "{\"k\\udce9y\":\"caf\\udce9 \\udc80 \\udcc0\\udc80 "
                             "\\udced\\udca0\\udc80 \\udcf4\\udc90\\udc80\\udc80 "
                             "\\udce2\\udc82x \\udcff \xe2\x82\xac \xf0\x9f\x98\x80 "
                             "\xf4\x8f\xbf\xbf \\udcc3\"}\n");
    free(out);
    json_object_put(o);
}

static void plain_text_unchanged(void **state)
{
    (void)state;
    struct json_object *o = json_object_new_array();
    char *out;
    json_object_array_add(o, json_object_new_string("plain"));
    json_object_array_add(o, json_object_new_int(42));
    out = write_json(o, JSON_C_TO_STRING_PLAIN);
    assert_string_equal(out, "[\"plain\",42]\n");
    free(out);
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(c1_escaped),
        cmocka_unit_test(invalid_utf8_escaped),
        cmocka_unit_test(plain_text_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
