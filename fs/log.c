/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static enum fs_log_level max_level = FS_LOG_INFO;
static bool use_syslog;

void fs_log_set_level(enum fs_log_level max)
{
    max_level = max;
}

void fs_log_use_syslog(bool on)
{
    if (on && !use_syslog)
        openlog("lazyimg", LOG_PID, LOG_DAEMON);
    use_syslog = on;
}

size_t fs_utf8_len(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len;

    if (n == 0 || s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool fs_utf8_is_c1(const unsigned char *s, size_t len)
{
    return len == 2 && s[0] == 0xc2 && s[1] <= 0x9f;
}

size_t fs_escape(const char *s, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0, w = 0; /* w: bytes written, whole pieces only */

    for (size_t i = 0; i < n;) {
        char esc[4];
        const char *piece = (const char *)p + i;
        size_t plen = 1, u;

        if (p[i] >= 0x20 && p[i] < 0x7f) {
            i++;
        } else if ((u = fs_utf8_len(p + i, n - i)) && !fs_utf8_is_c1(p + i, u)) {
            plen = u;
            i += u;
        } else {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[p[i] >> 4];
            esc[3] = hex[p[i] & 15];
            piece = esc;
            plen = 4;
            i++;
        }
        /* never half an escape or half a character */
        if (w == o && size && plen < size - o) {
            memcpy(buf + o, piece, plen);
            w += plen;
        }
        o += plen;
    }
    if (size)
        buf[w] = '\0';
    return o;
}

void fs_log(enum fs_log_level level, const char *fmt, ...)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static const char *const tag[] = {"", "warning: ", "", "debug: "};
    char msg[1024], out[4 * sizeof(msg)];
    va_list ap;

    if (level > max_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* one line, whatever a store or a user put into the arguments */
    fs_escape(msg, out, sizeof(out));
    if (use_syslog)
        syslog(prio[level], "%s", out);
    else
        fprintf(stderr, "lazyimg: %s%s\n", tag[level], out);
}
