/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch/pbs.h"
#include "fetch/store.h"
#include "log.h"

int fs_parse_size(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default:
        return -EINVAL;
    }
    if (*end && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *ret = (uint64_t)v << shift;
    return 0;
}

void fs_format_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "BKMGTP";
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%lluB", (unsigned long long)v);
    else
        snprintf(buf, len, "%.1f%c", d, units[u]);
}

struct fetch_store *fs_open_store(const char *location)
{
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    struct stat st;
    int r;

    if (stat(location, &st) < 0) {
        fs_err("%s: %s", location, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        fs_err("%s: not a directory (expected a datastore directory)", location);
        return NULL;
    }
    r = fetch_store_open_local(location, &s, &err);
    if (r < 0) {
        fs_err("%s", err.msg);
        return NULL;
    }
    r = fetch_pbs_probe(s, &err);
    if (r < 0) {
        fs_err("%s: %s", location, err.msg);
        fetch_store_free(s);
        return NULL;
    }
    return s;
}
