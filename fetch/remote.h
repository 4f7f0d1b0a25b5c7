/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Remote stores (HTTP(S) and S3) and the one entry point that opens a store of
 * any kind from a location given by the user:
 *   /path or ./path                 local directory (store_local.c)
 *   http://host/dir, https://...    a web server: objects by plain GET, listings
 *                                   from its directory index (nginx/Apache
 *                                   autoindex, HTML or nginx JSON)
 *   s3://bucket[/prefix]            S3 (SigV4): objects by GET, listings by
 *                                   ListObjectsV2 with pagination
 * Foreign result codes (CURLcode, HTTP status) are converted here, once.
 * Remote stores are thread-safe; each call of list()/get() performs its own
 * blocking transfer (used for catalogs and small files), while chunks are
 * fetched by the pool (fetch/pool.h) through setup_get().
 */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "store.h"

struct fetch_remote_options {
    /* TLS: verification is on unless @insecure; @ca_cert is a PEM bundle file. */
    const char *ca_cert;
    bool insecure;
    /* HTTP: a file holding "user:password" (basic) or "Bearer TOKEN" (one line). */
    const char *http_auth_file;
    /* S3 */
    const char *s3_endpoint; /* default https://s3.<region>.amazonaws.com */
    const char *s3_region;   /* default $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1 */
    bool s3_path_style;      /* bucket in the path instead of the host name */
    /* Keys come from this file if set (AWS shared credentials format,
     * [default] or $AWS_PROFILE section, also "[profile NAME]"), else from
     * $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN, else
     * from $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials if present;
     * never from the command line. */
    const char *s3_credentials_file;
    /* In milliseconds; 0 picks the default: 10 s per connection attempt, and
     * a request that moves less than 1 KiB/s for 60 s is abandoned (no
     * deadline for a whole transfer). */
    long connect_timeout_ms;
    long timeout_ms;
};

/* The fetch timeout when fetch_remote_options.timeout_ms is 0. */
#define FETCH_REMOTE_DEFAULT_TIMEOUT_MS 60000L

/* Whether the requests this thread makes wait out an unavailable store past
 * their attempts (the default): fetch_mirrors_run() turns it off while
 * another mirror is left to try, which answers now. Returns the previous
 * setting. */
bool fetch_remote_wait_outages(bool wait);

/*
 * The form of @location that may be shown to anyone (messages, the mount's
 * fsname in /proc/mounts, the store name in the cache, status, ls): the
 * password of every URL userinfo in it ("https://user:secret@host/ds")
 * replaced by @replacement ("***" gives "https://user:***@host/ds"), or left
 * out with its ':' when @replacement is NULL ("https://user@host/ds").
 * Everything else is copied unchanged; malformed URLs are masked too (the
 * userinfo of "scheme://" is what precedes the last '@' before the first
 * '/', '?' or '#'). Like snprintf: writes at most @size bytes, NUL included,
 * and returns the length of the whole result. Pure and thread-safe.
 */
size_t fetch_location_mask(const char *location, const char *replacement, char *buf, size_t size);
/* fetch_location_mask(@location, "***") into a new string; NULL on ENOMEM. */
char *fetch_location_shown(const char *location);

/* True for locations handled by a remote store (http://, https://, s3://). */
bool fetch_location_is_remote(const char *location);

/*
 * Opens the store at @location (see above); @o may be NULL (defaults).
 * An http(s):// location may carry "user:password@" (percent-encoded): it is
 * taken out of the URL and used as HTTP basic authentication, like
 * --http-auth-file (giving both is -EINVAL); an s3:// location may not
 * (-EINVAL: keys come from the credentials options). The store's location,
 * and every message, show the location as fetch_location_shown() does. Remote
 * stores check that the server answers, so that a wrong URL, a refused
 * connection, a TLS failure or bad credentials fail here with a clear
 * one-line message naming the location: -ECONNREFUSED, -EHOSTUNREACH,
 * -ETIMEDOUT, -EACCES (401/403, unknown key, bad signature), -ENOENT (404,
 * no such bucket, nothing below an S3 prefix), -EPROTO (TLS), -EINVAL
 * (malformed location or options, unreadable auth or credentials file,
 * missing credentials), -EAGAIN (5xx).
 *  - HTTP: a GET of the directory URL. 403 is accepted (a server without a
 *    directory index, usable with known snapshot paths); 401 and 404 are not.
 *  - S3: the first ListObjectsV2 page below the prefix, which also tells the
 *    PBS 4 layout (a .cnt/ prefix) from a plain synced datastore.
 * Locations with another scheme ("ftp://") are -EINVAL; anything else is a
 * local directory (fetch_store_open_local).
 */
int fetch_store_open(const char *location, const struct fetch_remote_options *o,
                     struct fetch_store **ret, fetch_error *err);

/*
 * Like fetch_store_open(), but a remote store does not check that the server
 * answers: for a store known to be unreachable now that later transfers may
 * reach (a mount from cached metadata). Local stores are opened as usual.
 */
int fetch_store_open_unchecked(const char *location, const struct fetch_remote_options *o,
                               struct fetch_store **ret, fetch_error *err);

/*
 * Converts the outcome of a transfer set up by setup_get() or performed by a
 * remote store: 0 for 2xx; -ENOENT for 404; -EACCES for 401/403; -EIO for
 * other 4xx; -EAGAIN for 5xx and 429; -ETIMEDOUT for deadlines;
 * -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH; -EPROTO for TLS and protocol
 * errors and truncated bodies; -EINVAL when TLS cannot be set up from the
 * local files (an unreadable --ca-cert). @curl_errbuf (may be NULL) is the transfer's
 * CURLOPT_ERRORBUFFER; the message names @what (the object path).
 */
int fetch_remote_result(int curl_code, long http_status, const char *curl_errbuf, const char *what,
                        fetch_error *err);

/*
 * Ends every blocking store request of this process (listings, index and
 * blob loads through fetch_remote_perform), now and from now on: a running
 * transfer stops within about a second with -ECANCELED, a new one fails at
 * once. For a daemon that is going away: a FUSE thread or the hydrator inside
 * a request to a stalled server must not hold up the unmount for minutes.
 * Async-signal-safe. Transfers of the fetcher pool are stopped by
 * fetch_pool_stop instead.
 */
void fetch_remote_abort_all(void);

/* Whether a failure of that kind is worth another attempt (or another mirror):
 * -EAGAIN, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -EPROTO and
 * -EBADMSG (bytes corrupted in transit). Never -ENOENT, -EACCES or -EIO. */
bool fetch_remote_retryable(int r);
