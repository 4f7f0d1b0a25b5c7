/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "json_out.h"
#include "log.h"

#include <errno.h>
#include <string.h>

#include <json-c/json.h>

int fs_json_write(FILE *f, struct json_object *o, int flags)
{
    const char *s = json_object_to_json_string_ext(o, flags), *run, *end;
    if (!s)
        return -ENOMEM;
    end = s + strlen(s);
    /* json-c puts raw bytes of 0x80 and above only inside strings (keys and
     * values), so each escape below lands inside one */
    for (run = s; *s;) {
        const unsigned char *u = (const unsigned char *)s;
        size_t n = u[0] < 0x80 ? 1 : fs_utf8_len(u, (size_t)(end - s));
        if (fs_utf8_is_c1(u, n)) {
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
