/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int fetch_error_set(fetch_error *e, int err, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
    }
    return err;
}

int fetch_error_prefix(fetch_error *e, int err, const char *fmt, ...)
{
    if (e) {
        char prefix[160];
        char old[sizeof(e->msg)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, e->msg, sizeof(old));
        old[sizeof(old) - 1] = '\0';
        size_t plen = strnlen(prefix, sizeof(prefix));
        size_t olen = strnlen(old, sizeof(old));
        if (plen + 2 >= sizeof(e->msg))
            plen = sizeof(e->msg) - 3;
        memcpy(e->msg, prefix, plen);
        memcpy(e->msg + plen, ": ", 2);
        if (olen > sizeof(e->msg) - plen - 3)
            olen = sizeof(e->msg) - plen - 3;
        memcpy(e->msg + plen + 2, old, olen);
        e->msg[plen + 2 + olen] = '\0';
    }
    return err;
}
