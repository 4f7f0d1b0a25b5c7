/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "json_out.h"

#include <errno.h>
#include <string.h>

#include <json-c/json.h>

int fs_json_write(FILE *f, struct json_object *o, int flags)
{
    const char *s = json_object_to_json_string_ext(o, flags), *run;
    if (!s)
        return -ENOMEM;
    /* U+0080..U+009F is C2 80..C2 9F in UTF-8; C2 is never a continuation
     * byte, so such a pair is always that code point (inside a string: JSON
     * has no other place for it) */
    for (run = s; *s; s++) {
        if ((unsigned char)s[0] == 0xC2 && (unsigned char)s[1] >= 0x80 &&
            (unsigned char)s[1] <= 0x9F) {
            fwrite(run, 1, (size_t)(s - run), f);
            fprintf(f, "\\u%04x", (unsigned char)s[1]);
            run = ++s + 1;
        }
    }
    fwrite(run, 1, (size_t)(s - run), f);
    fputc('\n', f);
    return ferror(f) ? -EIO : 0;
}
