/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals shared by remote.c, pool.c, store_http.c and store_s3.c, exposed for the
 * unit tests: the pure parsers (directory indexes, ListObjectsV2, S3 error
 * bodies, AWS credentials files), key mapping and the blocking transfer
 * helper. Not part of the public API; nothing outside fetch/ and tests/
 * includes this header.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "error.h"
#include "remote.h"
#include "store.h"

/* ---- common (remote.c) ---- */

/* The longest wait a busy server's Retry-After gets, per retry (the retry
 * count bounds how many). */
#define FETCH_RETRY_AFTER_MAX_MS 60000u

/* The wait a busy server (429, 503) asks for in the Retry-After header of
 * the response @easy holds (seconds, or an HTTP date), at most
 * FETCH_RETRY_AFTER_MAX_MS; 0 when none or for another @status. */
unsigned fetch_remote_retry_after_ms(CURL *easy, long status);

/* Transport settings a remote store copies from fetch_remote_options. */
struct fetch_remote_conf {
    char *ca_cert; /* NULL: the system bundle */
    bool insecure;
    long connect_timeout_ms;
    long timeout_ms;
    const char *redir_protocols; /* NULL: redirects are not followed */
};

/* Copies the transport part of @o (NULL: defaults) into @c; -ENOMEM. */
int fetch_remote_conf_init(struct fetch_remote_conf *c, const struct fetch_remote_options *o);
void fetch_remote_conf_release(struct fetch_remote_conf *c);

/* @path as a file a daemon can open again after it has changed to / (made
 * absolute from the current directory, symbolic links kept: a file rotated
 * by swapping a link is the new one when read again), malloc()ed; NULL on
 * ENOMEM. For files read again later: the CA file, auth and credentials
 * files on reload. */
char *fetch_remote_abs_path(const char *path);

/* curl_global_init() and xmlInitParser(), once per process. 0 or -ENOMEM. */
int fetch_remote_global_init(fetch_error *err);

/* Options every transfer gets: @url, TLS, deadlines, HTTP/2, keepalive,
 * User-Agent, allowed protocols. 0 or -ENOMEM/-EINVAL. */
int fetch_remote_easy_setup(CURL *easy, const struct fetch_remote_conf *c, const char *url,
                            fetch_error *err);

/* A set of idle easy handles kept for their live connections, of store
 * @owner (borrowed: it owns the cache), whose outage the requests through
 * them note and obey (fetch_store_note_answer()); thread-safe. */
struct fetch_easy_cache;
struct fetch_easy_cache *fetch_easy_cache_new(struct fetch_store *owner);
void fetch_easy_cache_free(struct fetch_easy_cache *ec);

/* Configures an easy handle for one attempt (after fetch_remote_easy_setup's
 * defaults have been applied by the caller of the callback). */
typedef int (*fetch_request_setup_fn)(void *arg, CURL *easy, fetch_error *err);

struct fetch_response {
    long status; /* HTTP status, 0 if none */
    char *body;  /* malloc()ed, NUL-terminated (not counted in @len) */
    size_t len;
    char *content_type; /* malloc()ed or NULL */
    /* a 401 reached through a redirect: where it led (password masked),
     * malloc()ed; else NULL */
    char *redirected_to;
};
void fetch_response_release(struct fetch_response *r);

/*
 * fetch_remote_result() of a completed response's status; a 401 reached
 * through a redirect says where it went, and that libcurl does not send
 * credentials on to another scheme, host or port (an http:// store that
 * redirects to https://, with --http-auth-file).
 */
int fetch_response_result(const struct fetch_response *r, const char *what, fetch_error *err);

/* For a failed connection (@cc CURLE_COULDNT_CONNECT), appends the reason
 * the system gave (CURLINFO_OS_ERRNO: "Connection refused", "No route to
 * host", ...) to @errbuf (CURL_ERROR_SIZE bytes), which libcurl 7.88 words
 * the same for a refusal and for attempts nobody answered. */
void fetch_remote_connect_detail(CURL *easy, int cc, char *errbuf);

/* Whether failure @r (a -errno of fetch_remote_result) says the store is not
 * there for now: connections refused, unreachable or cut, an answer 5xx or
 * 429 (-EAGAIN). Such failures are retried for a while past the attempts. */
bool fetch_remote_unavailable(int r);
/* The longest wait between two attempts made past the attempts. */
#define FETCH_OUTAGE_STEP_MS 2000

/*
 * Performs a GET set up by @setup, up to @attempts times while the failure is
 * fetch_remote_retryable() or the answer a 429 or 5xx (backoff 100 ms, then
 * ×4, or the answer's Retry-After if longer), and past @attempts while the
 * store is unavailable (connections refused, unreachable or cut, answers 5xx
 * or 429) for less than @outage_ms since the first such failure (backoff at
 * most FETCH_OUTAGE_STEP_MS): a store that restarts is waited for. Bodies of
 * 2xx answers larger than @max fail with -EFBIG; other bodies are kept up to
 * 64 KiB (for error details) and returned with the status. Returns 0 when a
 * response arrived (whatever its status: map it with fetch_remote_result) or
 * the transport error mapped by fetch_remote_result (@what names the object).
 */
int fetch_remote_perform(struct fetch_easy_cache *ec, fetch_request_setup_fn setup, void *arg,
                         size_t max, unsigned attempts, long outage_ms, const char *what,
                         struct fetch_response *ret, fetch_error *err);
/* The same, but only an answer (429, 5xx) is tried again, never a failure
 * to get one (refused, timed out, reset): whether a store is there, asked
 * at the mount, where a store that is down must be known as soon as the
 * first attempt says so (the mount then comes from the cache). */
int fetch_remote_probe(struct fetch_easy_cache *ec, fetch_request_setup_fn setup, void *arg,
                       size_t max, unsigned attempts, const char *what, struct fetch_response *ret,
                       fetch_error *err);

/* Percent-encodes every byte outside the RFC 3986 unreserved set
 * (A-Z a-z 0-9 - . _ ~), and '/' too unless @keep_slash. NULL on ENOMEM. */
char *fetch_percent_encode(const char *s, bool keep_slash);
/* Decodes %XX in @s (len bytes) into a new string; NULL on ENOMEM, malformed
 * escapes or an encoded NUL. */
char *fetch_percent_decode(const char *s, size_t len);

/* A growable dirent vector; the parsers append to it. */
struct fetch_dirvec {
    struct fetch_dirent *v;
    size_t n, cap;
};
/* Appends a copy of @name (len bytes) unless it is not a plain entry name
 * (empty, ".", "..", containing '/' or a NUL byte). 0 or -ENOMEM. */
int fetch_dirvec_add(struct fetch_dirvec *d, const char *name, size_t len, bool is_dir);
/* Sorts by name and drops duplicates (a name seen as file and directory
 * stays a directory). */
void fetch_dirvec_finish(struct fetch_dirvec *d);
void fetch_dirvec_release(struct fetch_dirvec *d);

/* ---- HTTP (store_http.c) ---- */

/*
 * Parses a directory index: nginx `autoindex_format json`, or the HTML of
 * nginx/Apache autoindex and other servers (every <a href> that names an
 * entry of this very directory: relative, or absolute below @dir, the
 * directory's URL path percent-decoded and ending in '/'; NULL: relative
 * only). JSON is recognized by @content_type (may be NULL) or by a leading
 * '['. The result is sorted and without duplicates. -EBADMSG for malformed
 * JSON; HTML never fails (an unknown page yields no entries).
 */
int fetch_http_parse_index(const char *body, size_t len, const char *content_type, const char *dir,
                           struct fetch_dirent **ret, size_t *ret_n, fetch_error *err);

/* ---- S3 (store_s3.c, s3_xml.c, s3_creds.c) ---- */

struct fetch_s3_creds {
    char *key_id, *secret, *token; /* token may be NULL */
};
void fetch_s3_creds_release(struct fetch_s3_creds *c);
/*
 * The credentials of an S3 store, in order: the file given in @o; the
 * environment ($AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN);
 * the shared credentials file. -EINVAL with a message saying where to put
 * them, -ENOMEM (s3_creds.c). @ret_file (may be NULL): the file they were
 * read from as an absolute path (malloc()ed; a reload reads it again after
 * the daemon has changed to /), or NULL when they came from the environment.
 */
int fetch_s3_load_creds(const struct fetch_remote_options *o, struct fetch_s3_creds *ret,
                        char **ret_file, fetch_error *err);

/* Parses an AWS shared credentials file (INI) for section @profile
 * ("[name]" or "[profile name]"). -ENOENT if the section or its keys are
 * missing, -ENOMEM. The message never contains a secret. */
int fetch_s3_parse_credentials(const char *text, size_t len, const char *profile,
                               struct fetch_s3_creds *ret, fetch_error *err);

/*
 * Parses one ListObjectsV2 page. Entries are the keys and common prefixes
 * below @prefix (the request's prefix, "" or ending in '/'), appended to @d.
 * *ret_token is the NextContinuationToken (malloc()ed) when the page is
 * truncated, else NULL. -EBADMSG for a malformed page (also: truncated without
 * a token, or a DTD), -ENOMEM.
 */
int fetch_s3_parse_list(const char *xml, size_t len, const char *prefix, struct fetch_dirvec *d,
                        char **ret_token, fetch_error *err);

/*
 * Turns an S3 error answer (@status, XML body, may be empty) for @what into
 * -errno and a clear message ("S3 rejected the access key (InvalidAccessKeyId)").
 */
int fetch_s3_error(long status, const char *xml, size_t len, const char *what, fetch_error *err);

/* As fetch_s3_error(), for an answer whose -errno the caller took from its
 * status: 1 with @err set when the body names an S3 error code, else 0
 * (@err untouched). For fetch_store_ops.explain. */
int fetch_s3_explain(long status, const char *xml, size_t len, const char *what, fetch_error *err);

/* Object key of store path @path: plain layout "<prefix>/<path>"; PBS 4 S3
 * layout "<prefix>/.chunks/..." for chunks and "<prefix>/.cnt/<path>" for
 * everything else. @prefix is "" or has no leading/trailing '/'. NULL on ENOMEM. */
char *fetch_s3_key(const char *prefix, bool pbs4, const char *path);
/* The ListObjectsV2 prefix for directory @dir ("" = root): the key of @dir
 * followed by '/', or "" for the root of an unprefixed plain bucket. */
char *fetch_s3_dir_prefix(const char *prefix, bool pbs4, const char *dir);

/* Opens an S3 store; with @check false, no request is made (the layout is
 * then assumed plain). */
int fetch_s3_open(const char *location, const struct fetch_remote_options *o, bool check,
                  struct fetch_store **ret, fetch_error *err);

/*
 * setup_get() with additional request headers (for the signature test).
 * When @extra_headers is not NULL, *ret_headers receives the header list the
 * transfer uses, to be freed with curl_slist_free_all() after it.
 */
int fetch_s3_setup_request(struct fetch_store *s, CURL *easy, const char *path,
                           const char *const *extra_headers, struct curl_slist **ret_headers,
                           fetch_error *err);

int fetch_http_open(const char *location, const struct fetch_remote_options *o, bool check,
                    struct fetch_store **ret, fetch_error *err);
