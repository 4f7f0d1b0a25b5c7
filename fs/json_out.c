/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "json_out.h"

#include <errno.h>

#include <json-c/json.h>

/*
 * The length of the well-formed UTF-8 sequence at @s (Unicode §3.9, table
 * 3-7: no overlong forms, no surrogates, nothing past U+10FFFF), or 0 if the
 * byte at @s starts none. @s is NUL-terminated, and NUL is no continuation
 * byte, so a sequence cut short at the end is refused without reading past it.
 */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4;
    else
        return 0;
    /* the second byte's range narrows for these leads */
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

int fs_json_write(FILE *f, struct json_object *o, int flags)
{
    const char *s = json_object_to_json_string_ext(o, flags), *run;
    if (!s)
        return -ENOMEM;
    /* json-c puts raw bytes of 0x80 and above only inside strings (keys and
     * values), so each escape below lands inside one */
    for (run = s; *s;) {
        const unsigned char *u = (const unsigned char *)s;
        size_t n = utf8_len(u);
        if (n == 2 && u[0] == 0xC2 && u[1] <= 0x9F) {
            /* U+0080..U+009F: a C1 control */
            fwrite(run, 1, (size_t)(s - run), f);
            fprintf(f, "\\u%04x", u[1]);
            run = s += 2;
        } else if (n == 0) {
            fwrite(run, 1, (size_t)(s - run), f);
            fprintf(f, "\\udc%02x", u[0]);
            run = ++s;
        } else {
            s += n;
        }
    }
    fwrite(run, 1, (size_t)(s - run), f);
    fputc('\n', f);
    return ferror(f) ? -EIO : 0;
}
