/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening a store by its location (a directory, http(s):// or s3://), and
 * what every store shares: freeing, and showing a location without its
 * password. The stores themselves are store_local.c, store_http.c and
 * store_s3.c.
 */
#include "remote_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool fetch_location_is_remote(const char *location)
{
    return location &&
           (!strncasecmp(location, "http://", 7) || !strncasecmp(location, "https://", 8) ||
            !strncasecmp(location, "s3://", 5));
}

/* The end of the authority of the URL whose "://" is at @sep. */
static const char *authority_end(const char *sep)
{
    return sep + 3 + strcspn(sep + 3, "/?#");
}

size_t fetch_location_mask(const char *location, const char *replacement, char *buf, size_t size)
{
    const char *p = location, *sep;
    size_t o = 0;

#define PUT(src, n)                                                                                \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (size && o < size - 1)                                                                  \
            memcpy(buf + o, (src), n_ < size - 1 - o ? n_ : size - 1 - o);                         \
        o += n_;                                                                                   \
    } while (0)
    while ((sep = strstr(p, "://"))) {
        const char *auth = sep + 3, *end = authority_end(sep), *at = NULL, *colon;
        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q;
        colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (!at && (colon = memchr(auth, ':', (size_t)(end - auth))) &&
            strspn(colon + 1, "0123456789") != (size_t)(end - colon - 1) &&
            (at = strrchr(end, '@'))) {
            /*
             * A password with an unencoded '/', '?' or '#' ("u:p/ss@host"):
             * not a valid URL, but it must not be shown either. The
             * authority seemed to end inside it: "user:" then no port, and an
             * '@' further on. Everything up to the last '@' is hidden.
             */
            end = at + strcspn(at, "/?#");
        } else if (!at) {
            colon = NULL;
        }
        if (!colon) {
            PUT(p, (size_t)(end - p));
            p = end;
            continue;
        }
        if (replacement) {
            PUT(p, (size_t)(colon + 1 - p));
            PUT(replacement, strlen(replacement));
        } else {
            PUT(p, (size_t)(colon - p));
        }
        PUT(at, (size_t)(end - at));
        p = end;
    }
    PUT(p, strlen(p));
#undef PUT
    if (size)
        buf[o < size ? o : size - 1] = '\0';
    return o;
}

char *fetch_location_shown(const char *location)
{
    size_t n = fetch_location_mask(location, "***", NULL, 0);
    char *s = malloc(n + 1);
    if (s)
        fetch_location_mask(location, "***", s, n + 1);
    return s;
}

int fetch_store_open(const char *location, const struct fetch_remote_options *o,
                     struct fetch_store **ret, fetch_error *err)
{
    if (!location || !*location)
        return fetch_error_set(err, -EINVAL, "empty store location");
    if (!strncasecmp(location, "s3://", 5)) {
        if (memchr(location + 5, '@', (size_t)(authority_end(location + 2) - (location + 5)))) {
            char *shown = fetch_location_shown(location);
            int r = fetch_error_set(err, -EINVAL,
                                    "%s: an s3:// location takes no credentials (use "
                                    "--s3-credentials-file or $AWS_ACCESS_KEY_ID and "
                                    "$AWS_SECRET_ACCESS_KEY)",
                                    shown ? shown : "s3://");
            free(shown);
            return r;
        }
        return fetch_s3_open(location, o, true, ret, err);
    }
    if (!strncasecmp(location, "http://", 7) || !strncasecmp(location, "https://", 8))
        return fetch_http_open(location, o, true, ret, err);
    /* "ftp://x" and the like: a clear error rather than a missing directory */
    const char *colon = strstr(location, "://");
    if (colon && !memchr(location, '/', (size_t)(colon - location)))
        return fetch_error_set(err, -EINVAL,
                               "%.*s: unsupported location scheme (use a directory, http://, "
                               "https:// or s3://)",
                               (int)(colon - location), location); /* the scheme only */
    return fetch_store_open_local(location, ret, err);
}

int fetch_store_open_unchecked(const char *location, const struct fetch_remote_options *o,
                               struct fetch_store **ret, fetch_error *err)
{
    if (location && !strncasecmp(location, "s3://", 5))
        return fetch_s3_open(location, o, false, ret, err);
    if (location && (!strncasecmp(location, "http://", 7) || !strncasecmp(location, "https://", 8)))
        return fetch_http_open(location, o, false, ret, err);
    return fetch_store_open(location, o, ret, err);
}

void fetch_store_free(struct fetch_store *s)
{
    if (s)
        s->ops->free(s);
}
