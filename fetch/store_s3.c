/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S3 store: s3://bucket[/prefix]. Requests are signed with SigV4 by libcurl
 * (CURLOPT_AWS_SIGV4); listings use ListObjectsV2 with '/' as delimiter and
 * follow continuation tokens. Two layouts are understood:
 *   - plain (a datastore directory synced to the bucket): path P is key
 *     <prefix>/P;
 *   - PBS 4 S3 datastores: chunks under <prefix>/.chunks/, everything else
 *     (namespaces, groups, snapshots) under <prefix>/.cnt/. Recognized by a
 *     .cnt/ "directory" directly below the prefix.
 * Keys are percent-encoded with the RFC 3986 unreserved set, which is also
 * the canonical form SigV4 signs, so the URL and the signature agree.
 * The XML of listings and errors is in s3_xml.c, credentials in s3_creds.c.
 */
#include "clock.h"
#include "remote_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define LIST_PAGE_MAX (16u << 20)
/*
 * Bounds of one listing (one "directory", all its pages). The largest a sane
 * store needs is far below them (a PBS group of thousands of snapshots, a
 * casync directory of at most FETCH_CASYNC_MAX_INDEXES indexes), while a
 * server that keeps answering IsTruncated with a fresh token hits one within
 * seconds instead of filling memory. LAZYIMG_S3_LIST_MAX_{PAGES,ENTRIES,BYTES}
 * lower or raise them (tests, exotic stores).
 */
#define LIST_PAGES_MAX 10000
#define LIST_ENTRIES_MAX 1000000
#define LIST_BYTES_MAX (256ull << 20)
#define ATTEMPTS 3
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define CHUNK_DIR ".chunks"
#define CNT_DIR ".cnt"

struct s3_store {
    struct fetch_store base;
    char *bucket;
    char *prefix; /* "" or without leading/trailing '/' */
    /* the PBS 4 layout (snapshots below .cnt/), known once the top level has
     * been listed: at the open, or (opened without the check while the
     * store was down) at its first listing or object that needs it */
    pthread_mutex_t layout_lock;
    _Atomic bool layout_known;
    _Atomic bool pbs4;
    /* a failed look at the layout is the answer for LAYOUT_RETRY_MS, so
     * that callers queued on the lock do not each wait for a store that is
     * down (@layout_lock) */
    int layout_err;
    uint64_t layout_failed_ms;
    char layout_msg[sizeof(((fetch_error *)0)->msg)];
    bool path_style;
    char *root_url; /* objects are root_url + "/" + key */
    char *sigv4;    /* "aws:amz:<region>:s3" */
    /* the credentials and the headers (with the session token), swapped by
     * s3_reload under @cred_lock; a transfer in flight keeps using the
     * header list it was set up with, so replaced lists are kept (@retired)
     * until the store is freed */
    pthread_mutex_t cred_lock;
    struct fetch_s3_creds creds;
    struct curl_slist *headers;
    struct curl_slist **retired;
    size_t nretired;
    char *creds_file; /* where the keys came from (absolute), or NULL: the environment */
    struct fetch_remote_conf conf;
    struct fetch_easy_cache *ec;
    /* listing bounds (LIST_*_MAX unless the environment says otherwise) */
    unsigned long long list_max_pages, list_max_entries, list_max_bytes;
};

/* ---- key mapping ---- */

static bool is_chunk_path(const char *path)
{
    size_t n = strlen(CHUNK_DIR);
    return !strncmp(path, CHUNK_DIR, n) && (path[n] == '\0' || path[n] == '/');
}

char *fetch_s3_key(const char *prefix, bool pbs4, const char *path)
{
    const char *parts[3];
    size_t np = 0, len = 0, o = 0;
    char *key;

    if (*prefix)
        parts[np++] = prefix;
    if (pbs4 && !is_chunk_path(path))
        parts[np++] = CNT_DIR;
    if (*path)
        parts[np++] = path;
    for (size_t i = 0; i < np; i++)
        len += strlen(parts[i]) + 1;
    key = malloc(len + 1);
    if (!key)
        return NULL;
    for (size_t i = 0; i < np; i++) {
        size_t l = strlen(parts[i]);
        if (i)
            key[o++] = '/';
        memcpy(key + o, parts[i], l);
        o += l;
    }
    key[o] = '\0';
    return key;
}

char *fetch_s3_dir_prefix(const char *prefix, bool pbs4, const char *dir)
{
    char *key = fetch_s3_key(prefix, pbs4, dir), *p;
    size_t l;
    if (!key || !*key)
        return key;
    l = strlen(key);
    p = realloc(key, l + 2);
    if (!p) {
        free(key);
        return NULL;
    }
    p[l] = '/';
    p[l + 1] = '\0';
    return p;
}

/* ---- requests ---- */

static struct curl_slist *headers_with(const struct curl_slist *base, const char *const *extra)
{
    struct curl_slist *copy = NULL, *t;
    for (const struct curl_slist *h = base; h; h = h->next) {
        if (!(t = curl_slist_append(copy, h->data)))
            goto nomem;
        copy = t;
    }
    for (size_t i = 0; extra[i]; i++) {
        if (!(t = curl_slist_append(copy, extra[i])))
            goto nomem;
        copy = t;
    }
    return copy;
nomem:
    curl_slist_free_all(copy);
    return NULL;
}

int fetch_s3_setup_request(struct fetch_store *s, CURL *easy, const char *path,
                           const char *const *extra_headers, struct curl_slist **ret_headers,
                           fetch_error *err)
{
    struct s3_store *ss = (struct s3_store *)s;
    struct curl_slist *hdrs;
    char *key = fetch_s3_key(ss->prefix, ss->pbs4, path), *enc = NULL, *url = NULL;
    int r;

    if (!key || !(enc = fetch_percent_encode(key, true)) ||
        asprintf(&url, "%s/%s", ss->root_url, enc) < 0) {
        free(key);
        free(enc);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    free(key);
    free(enc);
    r = fetch_remote_easy_setup(easy, &ss->conf, url, err);
    free(url);
    if (r < 0)
        return r;
    /* libcurl copies the strings; the header list lives on (see @retired) */
    pthread_mutex_lock(&ss->cred_lock);
    hdrs = ss->headers;
    if (extra_headers) {
        if (!(hdrs = headers_with(ss->headers, extra_headers))) {
            pthread_mutex_unlock(&ss->cred_lock);
            return fetch_error_set(err, -ENOMEM, "out of memory");
        }
        *ret_headers = hdrs;
    }
    if (curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, ss->sigv4) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_USERNAME, ss->creds.key_id) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_PASSWORD, ss->creds.secret) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK)
        r = fetch_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_unlock(&ss->cred_lock);
    return r;
}

static int s3_setup_get(struct fetch_store *s, void *easy, const char *path, fetch_error *err)
{
    return fetch_s3_setup_request(s, easy, path, NULL, NULL, err);
}

struct req {
    struct s3_store *ss;
    const char *path; /* object, or NULL with @url */
    const char *url;
};

static int req_setup(void *arg, CURL *easy, fetch_error *err)
{
    struct req *q = arg;
    struct s3_store *ss = q->ss;
    int r;
    if (q->path)
        return fetch_s3_setup_request(&ss->base, easy, q->path, NULL, NULL, err);
    r = fetch_remote_easy_setup(easy, &ss->conf, q->url, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&ss->cred_lock);
    if (curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, ss->sigv4) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_USERNAME, ss->creds.key_id) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_PASSWORD, ss->creds.secret) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, ss->headers) != CURLE_OK)
        r = fetch_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_unlock(&ss->cred_lock);
    return r;
}

static int find_layout(struct s3_store *ss, unsigned attempts, fetch_error *err);

static int s3_get(struct fetch_store *s, const char *path, size_t max, void **ret, size_t *ret_len,
                  fetch_error *err)
{
    struct s3_store *ss = (struct s3_store *)s;
    struct fetch_response resp = {0};
    struct req q = {.ss = ss, .path = path};
    int r;

    /* (a chunk's key is the same in both layouts) */
    if (!is_chunk_path(path) && (r = find_layout(ss, ATTEMPTS, err)) < 0)
        return r;
    r = fetch_remote_perform(ss->ec, req_setup, &q, max, ATTEMPTS, ss->conf.timeout_ms, path, &resp,
                             err);
    if (r < 0)
        return r;
    r = fetch_s3_error(resp.status, resp.body, resp.len, path, err);
    if (r < 0) {
        fetch_response_release(&resp);
        return r;
    }
    *ret = resp.body;
    *ret_len = resp.len;
    resp.body = NULL;
    fetch_response_release(&resp);
    return 0;
}

/* The URL of a ListObjectsV2 request; its query is in SigV4 canonical
 * order (sorted, fully encoded) as libcurl signs it as given. Keys come
 * back URL-encoded (encoding-type=url): XML 1.0 cannot carry some bytes a
 * key may hold (a control character made the whole listing malformed). */
static char *list_url(const struct s3_store *ss, const char *prefix, const char *token)
{
    char *ep = fetch_percent_encode(prefix, false), *et = NULL, *url = NULL;
    if (!ep || (token && !(et = fetch_percent_encode(token, false)))) {
        free(ep);
        return NULL;
    }
    if (asprintf(&url, "%s%s?%s%s%sdelimiter=%%2F&encoding-type=url&list-type=2&prefix=%s",
                 ss->root_url, ss->path_style ? "" : "/", et ? "continuation-token=" : "",
                 et ? et : "", et ? "&" : "", ep) < 0)
        url = NULL;
    free(ep);
    free(et);
    return url;
}

/* A positive bound from the environment variable @name, else @def. */
static unsigned long long env_bound(const char *name, unsigned long long def)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long n;
    if (!v || !*v)
        return def;
    errno = 0;
    n = strtoull(v, &end, 10);
    return errno || *end || n == 0 ? def : n;
}

/*
 * Lists the "directory" @prefix ("" or ending in '/'). @max_pages 0: all
 * pages, within the store's listing bounds (beyond one: -EFBIG and a message
 * naming it); else stops quietly after @max_pages pages.
 */
static int list_prefix(struct s3_store *ss, const char *prefix, unsigned attempts, bool probe,
                       unsigned max_pages, const char *what, struct fetch_dirvec *d,
                       fetch_error *err)
{
    char *token = NULL;
    unsigned long long pages = 0, bytes = 0;
    size_t first = d->n;
    const char *sep = what[0] == '/' ? "" : "/"; /* "s3://b/p" + "/" or "/dir" */
    int r;

    do {
        struct fetch_response resp = {0};
        struct req q = {.ss = ss};
        char *url, *next = NULL;
        if (!max_pages && pages >= ss->list_max_pages) {
            r = fetch_error_set(err, -EFBIG,
                                "S3 listing of %s%s%s exceeded %llu pages (the server keeps "
                                "answering IsTruncated; set LAZYIMG_S3_LIST_MAX_PAGES to "
                                "allow more)",
                                ss->base.location, sep, what, ss->list_max_pages);
            break;
        }
        if (!(url = list_url(ss, prefix, token))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            break;
        }
        q.url = url;
        r = probe ? fetch_remote_probe(ss->ec, req_setup, &q, LIST_PAGE_MAX, attempts, what, &resp,
                                       err)
                  : fetch_remote_perform(ss->ec, req_setup, &q, LIST_PAGE_MAX, attempts,
                                         ss->conf.timeout_ms, what, &resp, err);
        free(url);
        if (r == 0)
            r = fetch_s3_error(resp.status, resp.body, resp.len, what, err);
        if (r == 0) {
            bytes += resp.len;
            r = fetch_s3_parse_list(resp.body, resp.len, prefix, d, &next, err);
            if (r < 0)
                fetch_error_prefix(err, r, "%s", what);
        }
        fetch_response_release(&resp);
        if (r == 0 && next && token && !strcmp(next, token))
            r = fetch_error_set(err, -EBADMSG, "%s: S3 listing repeats its continuation token",
                                what);
        if (r == 0 && d->n - first > ss->list_max_entries)
            r = fetch_error_set(err, -EFBIG,
                                "S3 listing of %s%s%s exceeded %llu entries (set "
                                "LAZYIMG_S3_LIST_MAX_ENTRIES to allow more)",
                                ss->base.location, sep, what, ss->list_max_entries);
        if (r == 0 && bytes > ss->list_max_bytes)
            r = fetch_error_set(err, -EFBIG,
                                "S3 listing of %s%s%s exceeded %llu bytes (set "
                                "LAZYIMG_S3_LIST_MAX_BYTES to allow more)",
                                ss->base.location, sep, what, ss->list_max_bytes);
        free(token);
        token = next;
        if (r < 0)
            break;
        if (++pages >= max_pages && max_pages)
            break;
    } while (token);
    free(token);
    return r;
}

#define LAYOUT_RETRY_MS 2000

/*
 * Lists one page of the top level (@attempts of it): whether the store is
 * there, with these credentials, and in which layout. 0 with ss->pbs4 set
 * and known; -ENOENT when nothing is below the prefix; the failure else.
 */
static int find_layout(struct s3_store *ss, unsigned attempts, fetch_error *err)
{
    struct fetch_dirvec d = {0};
    char *prefix;
    bool pbs4 = false;
    int r = 0;

    if (atomic_load(&ss->layout_known))
        return 0;
    pthread_mutex_lock(&ss->layout_lock);
    if (!atomic_load(&ss->layout_known) && ss->layout_err < 0 &&
        fetch_mono_ms() < ss->layout_failed_ms + LAYOUT_RETRY_MS) {
        r = fetch_error_set(err, ss->layout_err, "%s", ss->layout_msg);
    } else if (!atomic_load(&ss->layout_known)) {
        if (!(prefix = fetch_s3_dir_prefix(ss->prefix, false, ""))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
        } else {
            r = list_prefix(ss, prefix, attempts, true, 1, ss->base.location, &d, err);
            free(prefix);
        }
        if (r == 0 && d.n == 0 && ss->prefix[0])
            r = fetch_error_set(err, -ENOENT, "%s: no objects below this prefix",
                                ss->base.location);
        for (size_t i = 0; r == 0 && i < d.n; i++)
            if (d.v[i].is_dir && !strcmp(d.v[i].name, CNT_DIR))
                pbs4 = true;
        fetch_dirvec_release(&d);
        if (r == 0) {
            atomic_store(&ss->pbs4, pbs4);
            atomic_store(&ss->layout_known, true);
        } else {
            ss->layout_err = r;
            ss->layout_failed_ms = fetch_mono_ms();
            snprintf(ss->layout_msg, sizeof(ss->layout_msg), "%s", err->msg);
        }
    }
    pthread_mutex_unlock(&ss->layout_lock);
    return r;
}

static int s3_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret, size_t *ret_n,
                   fetch_error *err)
{
    struct s3_store *ss = (struct s3_store *)s;
    struct fetch_dirvec d = {0};
    const char *what = dir[0] ? dir : "/";
    char *prefix;
    int r;

    if ((r = find_layout(ss, ATTEMPTS, err)) < 0)
        return r;
    prefix = fetch_s3_dir_prefix(ss->prefix, ss->pbs4, dir);
    if (!prefix)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = list_prefix(ss, prefix, ATTEMPTS, false, 0, what, &d, err);
    free(prefix);
    if (r == 0 && ss->pbs4 && !dir[0] && fetch_dirvec_add(&d, CHUNK_DIR, strlen(CHUNK_DIR), true))
        r = fetch_error_set(err, -ENOMEM, "out of memory");
    if (r == 0 && d.n == 0 && (dir[0] || ss->prefix[0]))
        r = fetch_error_set(err, -ENOENT, "%s: not found (no objects below it)", what);
    if (r < 0) {
        fetch_dirvec_release(&d);
        return r;
    }
    fetch_dirvec_finish(&d);
    *ret = d.v;
    *ret_n = d.n;
    return 0;
}

static void s3_free(struct fetch_store *s)
{
    struct s3_store *ss = (struct s3_store *)s;
    fetch_easy_cache_free(ss->ec);
    curl_slist_free_all(ss->headers); /* holds the session token */
    for (size_t i = 0; i < ss->nretired; i++)
        curl_slist_free_all(ss->retired[i]);
    free(ss->retired);
    free(ss->creds_file);
    pthread_mutex_destroy(&ss->cred_lock);
    pthread_mutex_destroy(&ss->layout_lock);
    fetch_s3_creds_release(&ss->creds);
    fetch_remote_conf_release(&ss->conf);
    free(ss->bucket);
    free(ss->prefix);
    free(ss->root_url);
    free(ss->sigv4);
    free(ss->base.location);
    free(ss);
}

/* The headers every request carries: the payload hash S3 requires (and
 * s3rver insists on: GETs have no body) and the session token, if any. */
static struct curl_slist *base_headers(const char *token)
{
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " EMPTY_SHA256);
    if (h && token) {
        char *line = NULL;
        struct curl_slist *t = NULL;
        if (asprintf(&line, "x-amz-security-token: %s", token) >= 0) {
            t = curl_slist_append(h, line);
            explicit_bzero(line, strlen(line));
            free(line);
        }
        if (!t) {
            curl_slist_free_all(h);
            h = NULL;
        }
    }
    return h;
}

static int s3_reload(struct fetch_store *s, fetch_error *err)
{
    struct s3_store *ss = (struct s3_store *)s;
    struct fetch_remote_options o = {.s3_credentials_file = ss->creds_file};
    struct fetch_s3_creds fresh = {0}, old;
    struct curl_slist *h, **nv;
    int r;

    if ((r = fetch_s3_load_creds(&o, &fresh, NULL, err)) < 0)
        return fetch_error_prefix(err, r, "%s", ss->base.location);
    h = base_headers(fresh.token);
    nv = h ? realloc(ss->retired, (ss->nretired + 1) * sizeof(*nv)) : NULL;
    if (!nv) {
        curl_slist_free_all(h);
        fetch_s3_creds_release(&fresh);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    ss->retired = nv;
    pthread_mutex_lock(&ss->cred_lock);
    old = ss->creds;
    ss->creds = fresh;
    ss->retired[ss->nretired++] = ss->headers;
    ss->headers = h;
    pthread_mutex_unlock(&ss->cred_lock);
    fetch_s3_creds_release(&old);
    return 0;
}

static int s3_explain(struct fetch_store *s, long status, const char *body, size_t len,
                      const char *path, fetch_error *err)
{
    (void)s;
    return fetch_s3_explain(status, body, len, path, err);
}

static const struct fetch_store_ops s3_ops = {
    .kind = "s3",
    .list = s3_list,
    .get = s3_get,
    .free = s3_free,
    .setup_get = s3_setup_get,
    .reload = s3_reload,
    .explain = s3_explain,
};

/* ---- opening ---- */

static int parse_location(struct s3_store *ss, const char *location, fetch_error *err)
{
    const char *b = location + 5, *slash = strchr(b, '/');
    size_t bl = slash ? (size_t)(slash - b) : strlen(b);
    const char *p = slash ? slash + 1 : "";
    size_t pl;

    /* no bucket name has a ':': "s3://KEY:SECRET/WITH/SLASHES@bucket" is not
     * echoed (a secret with a '/' ends the part fetch_location_mask() hides) */
    if (memchr(b, ':', bl))
        return fetch_error_set(err, -EINVAL,
                               "s3://...: an s3:// location takes no credentials and a bucket "
                               "name has no ':' (use --s3-credentials-file or "
                               "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY)");
    if (bl == 0 || bl > 255)
        return fetch_error_set(err, -EINVAL, "%s: expected s3://BUCKET[/PREFIX]", location);
    for (size_t i = 0; i < bl; i++) {
        if (!isalnum((unsigned char)b[i]) && b[i] != '.' && b[i] != '-' && b[i] != '_')
            return fetch_error_set(err, -EINVAL, "%s: invalid bucket name", location);
    }
    while (*p == '/')
        p++;
    pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    /* every prefix segment must be a plain name */
    for (size_t i = 0; i < pl;) {
        size_t sl = strcspn(p + i, "/");
        if (sl > pl - i)
            sl = pl - i;
        if (sl == 0 || (sl == 1 && p[i] == '.') || (sl == 2 && p[i] == '.' && p[i + 1] == '.'))
            return fetch_error_set(err, -EINVAL, "%s: invalid prefix", location);
        for (size_t k = i; k < i + sl; k++) {
            if ((unsigned char)p[k] < 0x20 || p[k] == 0x7f)
                return fetch_error_set(err, -EINVAL, "%s: invalid prefix", location);
        }
        i += sl + 1;
    }
    if (!(ss->bucket = strndup(b, bl)) || !(ss->prefix = strndup(p, pl)) ||
        asprintf(&ss->base.location, "s3://%s%s%s", ss->bucket, pl ? "/" : "", ss->prefix) < 0) {
        ss->base.location = NULL;
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static bool host_is_ip_or_local(const char *host)
{
    struct in_addr a4;
    return host[0] == '[' || inet_pton(AF_INET, host, &a4) == 1 || !strcasecmp(host, "localhost");
}

static int setup_endpoint(struct s3_store *ss, const struct fetch_remote_options *o,
                          const char *region, fetch_error *err)
{
    char *def = NULL, *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, shown[512];
    const char *endpoint = o ? o->s3_endpoint : NULL;
    CURLU *u = NULL;
    size_t pl;
    int r = 0;

    if (!endpoint || !*endpoint) {
        if (asprintf(&def, "https://s3.%s.amazonaws.com", region) < 0)
            return fetch_error_set(err, -ENOMEM, "out of memory");
        endpoint = def;
    }
    /* the endpoint as messages show it: a password in it masked */
    fetch_location_mask(endpoint, "***", shown, sizeof(shown));
    if (!(u = curl_url())) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))) {
        r = fetch_error_set(err, -EINVAL,
                            "%s: invalid S3 endpoint (expected http(s)://HOST[:PORT])", shown);
        goto out;
    }
    {
        char *q = NULL, *user = NULL;
        bool extra = curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK ||
                     curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK;
        curl_free(q);
        curl_free(user);
        if (extra) {
            r = fetch_error_set(err, -EINVAL, "%s: an S3 endpoint takes no query or user name",
                                shown);
            goto out;
        }
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        path = NULL;
    pl = path ? strlen(path) : 0;
    while (pl && path[pl - 1] == '/')
        path[--pl] = '\0';
    ss->path_style = (o && o->s3_path_style) || host_is_ip_or_local(host) ||
                     (strchr(ss->bucket, '.') && !strcasecmp(scheme, "https")) ||
                     strchr(ss->bucket, '_');
    if (ss->path_style)
        r = asprintf(&ss->root_url, "%s://%s%s%s%s/%s", scheme, host, port ? ":" : "",
                     port ? port : "", path ? path : "", ss->bucket);
    else
        r = asprintf(&ss->root_url, "%s://%s.%s%s%s%s", scheme, ss->bucket, host, port ? ":" : "",
                     port ? port : "", path ? path : "");
    if (r < 0) {
        ss->root_url = NULL;
        r = fetch_error_set(err, -ENOMEM, "out of memory");
    } else {
        r = 0;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    free(def);
    return r;
}

static const char *pick_region(const struct fetch_remote_options *o)
{
    const char *r = o ? o->s3_region : NULL;
    if (!r || !*r)
        r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    if (!r || !*r)
        r = "us-east-1";
    return r;
}

static bool region_valid(const char *r)
{
    if (!*r || strlen(r) > 64)
        return false;
    for (; *r; r++) {
        if (!isalnum((unsigned char)*r) && *r != '-' && *r != '_')
            return false;
    }
    return true;
}

int fetch_s3_open(const char *location, const struct fetch_remote_options *o, bool check,
                  struct fetch_store **ret, fetch_error *err)
{
    const char *region = pick_region(o);
    struct s3_store *ss;
    int r;

    r = fetch_remote_global_init(err);
    if (r < 0)
        return r;
    if (!region_valid(region))
        return fetch_error_set(err, -EINVAL, "%s: invalid S3 region", region);
    ss = calloc(1, sizeof(*ss));
    if (!ss)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    ss->base.ops = &s3_ops;
    pthread_mutex_init(&ss->cred_lock, NULL);
    pthread_mutex_init(&ss->layout_lock, NULL);
    r = parse_location(ss, location, err);
    if (r < 0)
        goto fail;
    r = setup_endpoint(ss, o, region, err);
    if (r < 0)
        goto fail;
    /* the file they came from as an absolute path, read again on reload */
    r = fetch_s3_load_creds(o, &ss->creds, &ss->creds_file, err);
    if (r < 0) {
        fetch_error_prefix(err, r, "%s", ss->base.location);
        goto fail;
    }
    if (fetch_remote_conf_init(&ss->conf, o) < 0 || !(ss->ec = fetch_easy_cache_new(&ss->base)) ||
        asprintf(&ss->sigv4, "aws:amz:%s:s3", region) < 0) {
        ss->sigv4 = NULL;
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    ss->list_max_pages = env_bound("LAZYIMG_S3_LIST_MAX_PAGES", LIST_PAGES_MAX);
    ss->list_max_entries = env_bound("LAZYIMG_S3_LIST_MAX_ENTRIES", LIST_ENTRIES_MAX);
    ss->list_max_bytes = env_bound("LAZYIMG_S3_LIST_MAX_BYTES", LIST_BYTES_MAX);
    ss->headers = base_headers(ss->creds.token);
    if (!ss->headers) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    /* one page of the top level: reachability, credentials, bucket, layout
     * (as often as an index load tries: one server error must not make the
     * mount one from the cache for its whole life) */
    if (check && (r = find_layout(ss, ATTEMPTS, err)) < 0)
        goto fail;
    *ret = &ss->base;
    return 0;
fail:
    s3_free(&ss->base);
    return r;
}
