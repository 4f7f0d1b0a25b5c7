/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [A-Za-z0-9_][A-Za-z0-9._-]{0,max-1} */
static bool is_safe_id(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !(is_alnum(s[0]) || s[0] == '_'))
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (!(is_alnum(c) || c == '_' || c == '.' || c == '-'))
            return false;
        if (n >= max)
            return false;
    }
    return true;
}

bool fetch_name_is_type(const char *s)
{
    return s && (!strcmp(s, "vm") || !strcmp(s, "ct") || !strcmp(s, "host"));
}

bool fetch_name_is_id(const char *s)
{
    return is_safe_id(s, 128);
}

bool fetch_name_is_ns(const char *s)
{
    return is_safe_id(s, 32);
}

int fetch_name_parse_time(const char *s, int64_t *ret_epoch)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    int y, mo, d, h, mi, se;
    struct tm tm = {0};
    time_t t;

    if (!s || strlen(s) != sizeof(pattern) - 1)
        return -EINVAL;
    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? !is_digit(s[i]) : s[i] != pattern[i])
            return -EINVAL;
    }
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &y, &mo, &d, &h, &mi, &se) != 6)
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    /* reject dates that timegm normalised (Feb 30 etc.) */
    if (tm.tm_year != y - 1900 || tm.tm_mon != mo - 1 || tm.tm_mday != d || tm.tm_hour != h ||
        tm.tm_min != mi || tm.tm_sec != se)
        return -EINVAL;
    if (ret_epoch)
        *ret_epoch = (int64_t)t;
    return 0;
}

bool fetch_name_is_time(const char *s)
{
    return fetch_name_parse_time(s, NULL) == 0;
}

int fetch_name_format_time(int64_t epoch, char *buf, size_t len)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return -EINVAL;
    if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -ERANGE;
    return 0;
}

bool fetch_name_is_file(const char *s)
{
    size_t n = 0;
    if (!s || !s[0] || s[0] == '.')
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (!(is_alnum(c) || c == '_' || c == '.' || c == '-' || c == '+'))
            return false;
        if (n >= 255)
            return false;
    }
    return true;
}

bool fetch_name_is_digest_hex(const char *s)
{
    size_t n = 0;
    if (!s)
        return false;
    for (; s[n]; n++) {
        if (!(is_digit(s[n]) || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    }
    return n == 64;
}

void fetch_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int fetch_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int fetch_hex_decode(const char *in, uint8_t *out, size_t len)
{
    if (!in || strlen(in) != 2 * len)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        int hi = fetch_hex_value(in[2 * i]), lo = fetch_hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
