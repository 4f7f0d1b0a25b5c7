/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * HTTP(S) store: a datastore directory published by a web server. Objects
 * are plain GETs of <base>/<percent-encoded path>; directory listings come
 * from the server's index page (nginx autoindex in JSON or HTML, Apache
 * mod_autoindex). Credentials, if any, come from a file (basic or bearer)
 * or from the URL's userinfo (basic), and never appear in messages.
 */
#include "remote_internal.h"
#include "secret.h"

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>

#define LIST_MAX (64u << 20)
/* Entries of one listing, and JSON objects and arrays in one: parsed JSON
 * costs ~750 bytes per object ("[{},{},...]" would take 16 GiB at LIST_MAX),
 * so the containers are counted before json-c builds anything. */
#define LIST_ENTRIES_MAX 250000
#define LIST_CONTAINERS_MAX (LIST_ENTRIES_MAX + 16)
#define AUTH_FILE_MAX 4096
#define ATTEMPTS 3

struct http_store {
    struct fetch_store base;
    char *base_url; /* no trailing '/' */
    struct fetch_remote_conf conf;
    struct fetch_easy_cache *ec;
    /* basic or bearer authentication, swapped by http_reload under @auth_lock */
    pthread_mutex_t auth_lock;
    char *user, *password;
    char *bearer;
    char *auth_file; /* --http-auth-file, read again by http_reload */
};

/* ---- index parsing ---- */

/* Objects and arrays in JSON text @body (outside strings). */
static size_t json_containers(const char *body, size_t len)
{
    size_t n = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = body[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            n++;
        }
    }
    return n;
}

static int too_many_entries(fetch_error *err)
{
    return fetch_error_set(err, -EFBIG, "directory index: more than %u entries", LIST_ENTRIES_MAX);
}

static int parse_json_index(const char *body, size_t len, struct fetch_dirvec *d, fetch_error *err)
{
    struct json_tokener *tok;
    json_object *root;
    size_t used, n;
    int r = 0;

    if (len > INT_MAX)
        return fetch_error_set(err, -EFBIG, "directory index too large");
    if (json_containers(body, len) > LIST_CONTAINERS_MAX)
        return too_many_entries(err);
    tok = json_tokener_new_ex(8);
    if (!tok)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    root = json_tokener_parse_ex(tok, body, (int)len);
    used = (size_t)json_tokener_get_parse_end(tok);
    if (!root || json_tokener_get_error(tok) != json_tokener_success) {
        json_tokener_free(tok);
        json_object_put(root);
        return fetch_error_set(err, -EBADMSG, "directory index: malformed JSON");
    }
    json_tokener_free(tok);
    while (used < len && isspace((unsigned char)body[used]))
        used++;
    if (used != len || !json_object_is_type(root, json_type_array)) {
        json_object_put(root);
        return fetch_error_set(err, -EBADMSG, "directory index: expected one JSON array");
    }
    n = json_object_array_length(root);
    for (size_t i = 0; i < n && r == 0; i++) {
        json_object *e = json_object_array_get_idx(root, i), *name, *type;
        const char *t;
        if (!json_object_is_type(e, json_type_object) ||
            !json_object_object_get_ex(e, "name", &name) ||
            !json_object_is_type(name, json_type_string) ||
            !json_object_object_get_ex(e, "type", &type) ||
            !json_object_is_type(type, json_type_string))
            continue;
        t = json_object_get_string(type);
        if (strcmp(t, "directory") && strcmp(t, "file"))
            continue; /* "other": symlinks to nowhere, devices */
        if (d->n >= LIST_ENTRIES_MAX) {
            json_object_put(root);
            return too_many_entries(err);
        }
        r = fetch_dirvec_add(d, json_object_get_string(name),
                             (size_t)json_object_get_string_len(name), !strcmp(t, "directory"));
    }
    json_object_put(root);
    return r < 0 ? fetch_error_set(err, r, "out of memory") : 0;
}

/* Replaces the HTML character references of @s (in place). Unknown ones
 * stay as they are. */
static void html_unescape(char *s)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    char *o = s;
    for (char *p = s; *p;) {
        if (*p != '&') {
            *o++ = *p++;
            continue;
        }
        if (p[1] == '#') {
            bool hex = p[2] == 'x' || p[2] == 'X';
            char *q = p + (hex ? 3 : 2), *end;
            unsigned long v;
            if (isxdigit((unsigned char)*q)) {
                v = strtoul(q, &end, hex ? 16 : 10);
                /* ASCII only: names with other characters come percent-encoded */
                if (end != q && *end == ';' && v > 0 && v < 0x80) {
                    *o++ = (char)v;
                    p = end + 1;
                    continue;
                }
            }
        } else {
            size_t k;
            for (k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
                size_t nl = strlen(named[k].name);
                if (!strncmp(p + 1, named[k].name, nl)) {
                    *o++ = named[k].c;
                    p += 1 + nl;
                    break;
                }
            }
            if (k < sizeof(named) / sizeof(named[0]))
                continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
}

/* Whether @href starts with a URI scheme ("http:", "mailto:", "javascript:"). */
static bool has_scheme(const char *href, size_t len)
{
    size_t i = 0;
    if (len == 0 || !isalpha((unsigned char)href[0]))
        return false;
    while (i < len &&
           (isalnum((unsigned char)href[i]) || href[i] == '+' || href[i] == '-' || href[i] == '.'))
        i++;
    return i < len && href[i] == ':';
}

/* The entry @name (percent-decoded, "NAME" or "NAME/") of a directory, or nothing. */
static int add_name(struct fetch_dirvec *d, char *name)
{
    size_t n = strlen(name);
    bool is_dir = false;

    if (n && name[n - 1] == '/') {
        is_dir = true;
        name[--n] = '\0';
    }
    /* "a/b" is not an entry of this directory ("." and ".." are refused there) */
    if (!n || strchr(name, '/'))
        return 0;
    return d->n >= LIST_ENTRIES_MAX ? -EFBIG : fetch_dirvec_add(d, name, n, is_dir);
}

/*
 * One href of an index page: an entry of this directory, or nothing. @dir:
 * the directory's URL path, percent-decoded, ending in '/' ("/pbs/ds/"), for
 * hrefs that name an entry by its absolute path ("/pbs/ds/vm/", as npm's
 * serve writes them); NULL: those are skipped.
 */
static int add_href(struct fetch_dirvec *d, const char *dir, const char *raw, size_t len)
{
    char *copy, *name, *decoded;
    size_t n;
    bool absolute;
    int r = 0;

    if (!(copy = strndup(raw, len)))
        return -ENOMEM;
    html_unescape(copy);
    n = strcspn(copy, "?#"); /* queries: Apache's sort links; fragments */
    if (n == 0 || has_scheme(copy, n) || strstr(copy, "//")) {
        free(copy);
        return 0;
    }
    copy[n] = '\0';
    name = copy;
    if (!strncmp(name, "./", 2)) /* Apache writes "./a:b" for names with a colon */
        name += 2;
    absolute = name[0] == '/';
    /* a malformed escape or %00 is not a name we could ask for again */
    decoded = fetch_percent_decode(name, strlen(name));
    free(copy);
    if (!decoded)
        return 0;
    if (!absolute) {
        /* relative: a '/' in it, even an escaped one, is no entry of ours */
        r = add_name(d, decoded);
    } else if (dir) {
        /* absolute: an entry when right below @dir ("/pbs/" is the parent) */
        size_t dl = strlen(dir);
        if (!strncmp(decoded, dir, dl))
            r = add_name(d, decoded + dl);
    }
    free(decoded);
    return r;
}

static const char *find_ci(const char *p, const char *end, const char *needle)
{
    size_t nl = strlen(needle);
    for (; p + nl <= end; p++) {
        if (!strncasecmp(p, needle, nl))
            return p;
    }
    return NULL;
}

static int parse_html_index(const char *body, size_t len, const char *dir, struct fetch_dirvec *d)
{
    const char *p = body, *end = body + len;

    while ((p = find_ci(p, end, "<a"))) {
        const char *tag_end, *q;
        p += 2;
        if (p >= end || !(isspace((unsigned char)*p)))
            continue;
        tag_end = memchr(p, '>', (size_t)(end - p));
        if (!tag_end)
            break;
        /* the href attribute of this tag */
        for (q = p; (q = find_ci(q, tag_end, "href"));) {
            const char *v, *vend;
            bool boundary = isspace((unsigned char)q[-1]);
            q += 4;
            while (q < tag_end && isspace((unsigned char)*q))
                q++;
            if (!boundary || q >= tag_end || *q != '=')
                continue;
            q++;
            while (q < tag_end && isspace((unsigned char)*q))
                q++;
            if (q < tag_end && (*q == '"' || *q == '\'')) {
                v = q + 1;
                vend = memchr(v, *q, (size_t)(end - v));
                if (!vend)
                    return 0;
                if (vend > tag_end) { /* a quoted '>' inside the value */
                    const char *gt = memchr(vend, '>', (size_t)(end - vend));
                    tag_end = gt ? gt : end;
                }
            } else {
                v = q;
                for (vend = v; vend < tag_end && !isspace((unsigned char)*vend); vend++)
                    ;
            }
            int r = add_href(d, dir, v, (size_t)(vend - v));
            if (r < 0)
                return r;
            break;
        }
        p = tag_end;
    }
    return 0;
}

int fetch_http_parse_index(const char *body, size_t len, const char *content_type, const char *dir,
                           struct fetch_dirent **ret, size_t *ret_n, fetch_error *err)
{
    struct fetch_dirvec d = {0};
    size_t i = 0;
    bool json;
    int r;

    while (i < len && isspace((unsigned char)body[i]))
        i++;
    json = (content_type && strcasestr(content_type, "json")) || (i < len && body[i] == '[');
    if (json) {
        r = parse_json_index(body, len, &d, err);
    } else {
        r = parse_html_index(body, len, dir, &d);
        if (r == -EFBIG)
            too_many_entries(err);
        else if (r < 0)
            fetch_error_set(err, r, "out of memory");
    }
    if (r < 0) {
        fetch_dirvec_release(&d);
        return r;
    }
    fetch_dirvec_finish(&d);
    *ret = d.v;
    *ret_n = d.n;
    return 0;
}

/* ---- transfers ---- */

static char *object_url(const struct http_store *hs, const char *path, bool dir)
{
    char *enc = fetch_percent_encode(path, true), *url;
    if (!enc)
        return NULL;
    if (asprintf(&url, "%s/%s%s", hs->base_url, enc, dir && *enc ? "/" : "") < 0)
        url = NULL;
    free(enc);
    return url;
}

static int setup_url(struct http_store *hs, CURL *easy, const char *url, fetch_error *err)
{
    int r = fetch_remote_easy_setup(easy, &hs->conf, url, err);
    if (r < 0)
        return r;
    /* Objects are asked for as they are ("Accept-Encoding: identity": chunks
     * are compressed already), and one a server compresses anyway, as some
     * do to a request that names no coding, is decoded (libcurl does once
     * this is set); listings accept any coding (req_setup). */
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "identity");
    /* libcurl copies these strings: a reload may free them afterwards */
    pthread_mutex_lock(&hs->auth_lock);
    if (hs->bearer) {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        if (curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, hs->bearer) != CURLE_OK)
            r = fetch_error_set(err, -ENOMEM, "out of memory");
    } else if (hs->user) {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        if (curl_easy_setopt(easy, CURLOPT_USERNAME, hs->user) != CURLE_OK ||
            curl_easy_setopt(easy, CURLOPT_PASSWORD, hs->password) != CURLE_OK)
            r = fetch_error_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&hs->auth_lock);
    return r;
}

static int http_setup_get(struct fetch_store *s, void *easy, const char *path, fetch_error *err)
{
    struct http_store *hs = (struct http_store *)s;
    char *url = object_url(hs, path, false);
    int r;
    if (!url)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    r = setup_url(hs, easy, url, err);
    free(url);
    return r;
}

struct req {
    struct http_store *hs;
    const char *url;
    bool compress;
};

static int req_setup(void *arg, CURL *easy, fetch_error *err)
{
    struct req *q = arg;
    int r = setup_url(q->hs, easy, q->url, err);
    if (r == 0 && q->compress)
        curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    return r;
}

/* The path of directory @url ("http://h/pbs/ds/"), percent-decoded
 * ("/pbs/ds/"); NULL when it has none that decodes. */
static char *url_dir_path(const char *url)
{
    CURLU *u = curl_url();
    char *path = NULL, *decoded = NULL;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path[0] == '/')
        decoded = fetch_percent_decode(path, strlen(path));
    curl_free(path);
    curl_url_cleanup(u);
    return decoded;
}

static int do_list(struct http_store *hs, const char *dir, unsigned attempts, const char *what,
                   struct fetch_dirent **ret, size_t *ret_n, fetch_error *err)
{
    struct fetch_response resp = {0};
    struct req q = {.hs = hs, .compress = true};
    char *url = object_url(hs, dir, true), *path;
    int r;

    if (!url)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    q.url = url;
    r = fetch_remote_perform(hs->ec, req_setup, &q, LIST_MAX, attempts, hs->conf.timeout_ms, what,
                             &resp, err);
    if (r < 0) {
        free(url);
        return r;
    }
    r = fetch_response_result(&resp, what, err);
    if (r == 0) {
        path = url_dir_path(url);
        r = fetch_http_parse_index(resp.body, resp.len, resp.content_type, path, ret, ret_n, err);
        free(path);
        if (r < 0)
            fetch_error_prefix(err, r, "%s", what);
    }
    free(url);
    fetch_response_release(&resp);
    return r;
}

static int http_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret,
                     size_t *ret_n, fetch_error *err)
{
    return do_list((struct http_store *)s, dir, ATTEMPTS, dir[0] ? dir : "/", ret, ret_n, err);
}

static int http_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                    size_t *ret_len, fetch_error *err)
{
    struct http_store *hs = (struct http_store *)s;
    struct fetch_response resp = {0};
    struct req q = {.hs = hs};
    char *url = object_url(hs, path, false);
    int r;

    if (!url)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    q.url = url;
    r = fetch_remote_perform(hs->ec, req_setup, &q, max, ATTEMPTS, hs->conf.timeout_ms, path, &resp,
                             err);
    free(url);
    if (r < 0)
        return r;
    r = fetch_response_result(&resp, path, err);
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

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void http_free(struct fetch_store *s)
{
    struct http_store *hs = (struct http_store *)s;
    fetch_easy_cache_free(hs->ec);
    fetch_remote_conf_release(&hs->conf);
    wipe_free(hs->user);
    wipe_free(hs->password);
    wipe_free(hs->bearer);
    free(hs->auth_file);
    pthread_mutex_destroy(&hs->auth_lock);
    free(hs->base_url);
    free(hs->base.location);
    free(hs);
}

static int read_auth_file(struct http_store *hs, const char *file, fetch_error *err);

static int http_reload(struct fetch_store *s, fetch_error *err)
{
    struct http_store *hs = (struct http_store *)s, fresh = {0};
    char *old[3];
    int r;

    if (!hs->auth_file)
        return 0;
    if ((r = read_auth_file(&fresh, hs->auth_file, err)) < 0) {
        wipe_free(fresh.user);
        wipe_free(fresh.password);
        wipe_free(fresh.bearer);
        return r;
    }
    pthread_mutex_lock(&hs->auth_lock);
    old[0] = hs->user;
    old[1] = hs->password;
    old[2] = hs->bearer;
    hs->user = fresh.user;
    hs->password = fresh.password;
    hs->bearer = fresh.bearer;
    pthread_mutex_unlock(&hs->auth_lock);
    for (int i = 0; i < 3; i++)
        wipe_free(old[i]);
    return 0;
}

static const struct fetch_store_ops http_ops = {
    .kind = "http",
    .list = http_list,
    .get = http_get,
    .free = http_free,
    .setup_get = http_setup_get,
    .reload = http_reload,
};

/* ---- opening ---- */

static int read_auth_file(struct http_store *hs, const char *file, fetch_error *err)
{
    char *buf = NULL;
    size_t len = 0, size;
    int r = fetch_secret_file_read(file, AUTH_FILE_MAX, &buf, &len);

    if (r == -EFBIG)
        return fetch_error_set(err, -EINVAL, "%s: HTTP auth file too large", file);
    if (r < 0)
        return fetch_error_set(err, r == -ENOENT || r == -EINVAL ? -EINVAL : r,
                               "%s: cannot read the HTTP auth file: %s", file,
                               r == -EINVAL ? "not a regular file" : strerror(-r));
    size = len + 1;
    len = strcspn(buf, "\r\n"); /* the first line */
    while (len && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = '\0';
    char *line = buf;
    while (isspace((unsigned char)*line))
        line++;
    if (!strncasecmp(line, "Bearer", 6) && isspace((unsigned char)line[6])) {
        char *tok = line + 7;
        while (isspace((unsigned char)*tok))
            tok++;
        if (!*tok)
            r = fetch_error_set(err, -EINVAL, "%s: empty bearer token", file);
        else if (!(hs->bearer = strdup(tok)))
            r = fetch_error_set(err, -ENOMEM, "out of memory");
    } else {
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            r = fetch_error_set(
                err, -EINVAL, "%s: expected one line \"user:password\" or \"Bearer TOKEN\"", file);
        } else {
            *colon = '\0';
            if (!(hs->user = strdup(line)) || !(hs->password = strdup(colon + 1)))
                r = fetch_error_set(err, -ENOMEM, "out of memory");
        }
    }
    fetch_secret_free(buf, size);
    return r;
}

/* Validates @location, and sets the base URL (without userinfo), the basic
 * authentication a "user:password@" in it gives, and the location shown in
 * messages (fetch_location_shown: without the password). */
static int parse_location(struct http_store *hs, const char *location, fetch_error *err)
{
    CURLU *u = curl_url();
    char *host = NULL, *query = NULL, *frag = NULL, *user = NULL, *pw = NULL, *bare = NULL;
    char *shown = fetch_location_shown(location);
    size_t len;
    int r = 0;

    if (!u || !shown) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        r = fetch_error_set(err, -EINVAL, "%s: malformed URL", shown);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        r = fetch_error_set(err, -EINVAL, "%s: a store URL takes no query or fragment", shown);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK && user) {
        /* basic authentication, kept out of every URL the store builds */
        if (curl_url_get(u, CURLUPART_PASSWORD, &pw, CURLU_URLDECODE) != CURLUE_OK)
            pw = NULL;
        if (!(hs->user = strdup(user)) || !(hs->password = strdup(pw ? pw : ""))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        if (curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_OPTIONS, NULL, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &bare, 0) != CURLUE_OK) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
    hs->base.location = shown;
    shown = NULL;
    hs->base_url = strdup(bare ? bare : location);
    if (!hs->base_url) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    len = strlen(hs->base_url);
    while (len && hs->base_url[len - 1] == '/')
        hs->base_url[--len] = '\0';
    len = strlen(hs->base.location);
    while (len > 1 && hs->base.location[len - 1] == '/' && hs->base.location[len - 2] != '/')
        hs->base.location[--len] = '\0';
out:
    if (user)
        explicit_bzero(user, strlen(user));
    if (pw)
        explicit_bzero(pw, strlen(pw));
    curl_free(user);
    curl_free(pw);
    curl_free(bare);
    curl_free(host);
    curl_free(query);
    curl_free(frag);
    free(shown);
    curl_url_cleanup(u);
    return r;
}

/*
 * Whether the server answers for the store's directory: any answer but 403
 * and 404 must be a success; a refused connection, a TLS failure or a 401
 * fail here with a clear message. 403 and 404 are what servers without a
 * directory index answer (nginx and Apache 403; Caddy's file_server, static
 * hosts and CDNs 404): such a store works with known paths (--snapshot,
 * --chunk-store), and a wrong URL fails at its first listing or object.
 */
static int check_root(struct http_store *hs, fetch_error *err)
{
    struct fetch_response resp = {0};
    struct req q = {.hs = hs, .compress = true};
    char *url = object_url(hs, "", true);
    int r;

    if (!url)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    q.url = url;
    /* a server error again, as an index load would: one at the mount must
     * not make it a mount from the cache for its whole life (a store that
     * does not answer is known at once) */
    r = fetch_remote_probe(hs->ec, req_setup, &q, LIST_MAX, ATTEMPTS, hs->base.location, &resp,
                           err);
    free(url);
    if (r == -EFBIG)
        return 0; /* an answer, even if a large one (its status is not kept) */
    if (r < 0)
        return r;
    if (resp.status != 403 && resp.status != 404)
        r = fetch_response_result(&resp, hs->base.location, err);
    fetch_response_release(&resp);
    return r;
}

int fetch_http_open(const char *location, const struct fetch_remote_options *o, bool check,
                    struct fetch_store **ret, fetch_error *err)
{
    struct http_store *hs;
    int r;

    r = fetch_remote_global_init(err);
    if (r < 0)
        return r;
    hs = calloc(1, sizeof(*hs));
    if (!hs)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    hs->base.ops = &http_ops;
    pthread_mutex_init(&hs->auth_lock, NULL);
    r = parse_location(hs, location, err);
    if (r < 0)
        goto fail;
    if (fetch_remote_conf_init(&hs->conf, o) < 0 || !(hs->ec = fetch_easy_cache_new(&hs->base))) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    /* a redirect may go from http to https, never from https to http */
    hs->conf.redir_protocols = strncasecmp(location, "https:", 6) ? "http,https" : "https";
    if (o && o->http_auth_file) {
        if (hs->user) {
            r = fetch_error_set(err, -EINVAL,
                                "%s: credentials both in the URL and in --http-auth-file "
                                "(give them once)",
                                hs->base.location);
            goto fail;
        }
        r = read_auth_file(hs, o->http_auth_file, err);
        if (r < 0)
            goto fail;
        if (!(hs->auth_file = fetch_remote_abs_path(o->http_auth_file))) {
            r = fetch_error_set(err, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (check) {
        r = check_root(hs, err);
        if (r < 0)
            goto fail;
    }
    *ret = &hs->base;
    return 0;
fail:
    http_free(&hs->base);
    return r;
}
