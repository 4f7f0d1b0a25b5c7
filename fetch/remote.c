/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What HTTP(S) and S3 stores share: the libcurl handle
 * setup every transfer gets, the conversion of CURLcode and HTTP status into
 * -errno, and the blocking GET (with retries and a body bound) that list()
 * and get() use.
 */
#include "remote_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "clock.h"
#include "config.h"
#include "names.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS FETCH_REMOTE_DEFAULT_TIMEOUT_MS
/* A request slower than this for the fetch timeout is abandoned. */
#define STALL_BYTES_PER_S 1024L
#define ERROR_BODY_MAX (64 * 1024)
#define EASY_CACHE_MAX 8

/* ---- result conversion ---- */

static __thread bool no_outage_wait;

bool fetch_remote_wait_outages(bool wait)
{
    bool prev = !no_outage_wait;
    no_outage_wait = !wait;
    return prev;
}

void fetch_remote_connect_detail(CURL *easy, int cc, char *errbuf)
{
    long os_errno = 0;
    size_t len = strlen(errbuf);
    if (cc != CURLE_COULDNT_CONNECT ||
        curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK || os_errno <= 0)
        return;
    while (len && (errbuf[len - 1] == '\n' || errbuf[len - 1] == '\r'))
        len--;
    snprintf(errbuf + len, CURL_ERROR_SIZE - len, "%s%s", len ? ": " : "", strerror((int)os_errno));
}

bool fetch_remote_unavailable(int r)
{
    return r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ECONNRESET || r == -EAGAIN;
}

bool fetch_remote_retryable(int r)
{
    switch (r) {
    case -EAGAIN:
    case -ETIMEDOUT:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
    case -EPROTO:
    case -EBADMSG:
        return true;
    default:
        return false;
    }
}

static bool contains_ci(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

int fetch_remote_result(int curl_code, long http_status, const char *curl_errbuf, const char *what,
                        fetch_error *err)
{
    const char *detail = curl_errbuf && *curl_errbuf ? curl_errbuf : NULL;
    const char *why;
    int r;

    if (!what)
        what = "request";
    if (curl_code == CURLE_OK) {
        if (http_status >= 200 && http_status < 300)
            return 0;
        if (http_status == 404 || http_status == 410)
            return fetch_error_set(err, -ENOENT, "%s: not found (HTTP %ld)", what, http_status);
        if (http_status == 401)
            return fetch_error_set(err, -EACCES,
                                   "%s: authentication required or rejected (HTTP 401)", what);
        if (http_status == 403)
            return fetch_error_set(err, -EACCES, "%s: access denied (HTTP 403)", what);
        if (http_status == 429)
            return fetch_error_set(err, -EAGAIN, "%s: server busy (HTTP 429)", what);
        if (http_status >= 500)
            return fetch_error_set(err, -EAGAIN, "%s: server error (HTTP %ld)", what, http_status);
        if (http_status >= 300 && http_status < 400)
            return fetch_error_set(err, -EIO, "%s: unexpected redirect (HTTP %ld)", what,
                                   http_status);
        if (http_status == 0)
            return fetch_error_set(err, -EPROTO, "%s: no HTTP status in the answer", what);
        return fetch_error_set(err, -EIO, "%s: request failed (HTTP %ld)", what, http_status);
    }

    switch ((CURLcode)curl_code) {
    case CURLE_COULDNT_CONNECT:
        if (contains_ci(detail, "unreachable") || contains_ci(detail, "no route")) {
            r = -EHOSTUNREACH;
            why = "host unreachable";
        } else if (contains_ci(detail, "timed out") || contains_ci(detail, "timeout")) {
            r = -ETIMEDOUT;
            why = "connection timed out";
        } else if (!detail || !*detail || contains_ci(detail, "refused")) {
            r = -ECONNREFUSED;
            why = "connection refused";
        } else {
            /* "Couldn't connect to server" after seconds: no answer to the
             * connection attempts (a link down, packets dropped), which is
             * not the server refusing; the store is away all the same */
            r = -EHOSTUNREACH;
            why = "cannot connect";
        }
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        r = -EHOSTUNREACH;
        why = "cannot resolve host name";
        break;
    case CURLE_OPERATION_TIMEDOUT:
        r = -ETIMEDOUT;
        why = "timed out";
        break;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
        /* a local file or setting, which no retry mends */
        r = -EINVAL;
        why = "TLS setup failed (a certificate file: see --ca-cert)";
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        r = -EPROTO;
        why = curl_code == CURLE_PEER_FAILED_VERIFICATION
                  ? "TLS certificate verification failed (see --ca-cert, --insecure)"
                  : "TLS error";
        break;
    case CURLE_PARTIAL_FILE:
        r = -EPROTO;
        why = "truncated answer";
        break;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        r = -EPROTO;
        why = "protocol error";
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* the store's own URL is checked at start: only a redirect gets
         * here, to a scheme the store does not follow (no retry mends it) */
        r = -EIO;
        why = "redirect refused (an https store follows https only; others http and https)";
        break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        r = -ECONNRESET;
        why = "connection lost";
        break;
    case CURLE_LOGIN_DENIED:
        r = -EACCES;
        why = "login denied";
        break;
    case CURLE_OUT_OF_MEMORY:
        r = -ENOMEM;
        why = "out of memory";
        break;
    case CURLE_URL_MALFORMAT:
        r = -EINVAL;
        why = "malformed URL";
        break;
    case CURLE_FILESIZE_EXCEEDED:
        r = -EFBIG;
        why = "object too large";
        break;
    case CURLE_ABORTED_BY_CALLBACK:
        r = -ECANCELED;
        why = "transfer cancelled";
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        r = -EIO;
        why = "too many redirects";
        break;
    default:
        r = -EIO;
        why = curl_easy_strerror((CURLcode)curl_code);
        break;
    }
    /* the library's text adds nothing to these (and the location names the host) */
    if (detail && r != -ECONNREFUSED && curl_code != CURLE_PEER_FAILED_VERIFICATION) {
        size_t dl = strlen(detail);
        while (dl && (detail[dl - 1] == '\n' || detail[dl - 1] == '\r'))
            dl--;
        return fetch_error_set(err, r, "%s: %s (%.*s)", what, why, (int)dl, detail);
    }
    return fetch_error_set(err, r, "%s: %s", what, why);
}

/* ---- global init, configuration ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_result;

static void global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        global_result = -ENOMEM;
        return;
    }
    xmlInitParser();
}

int fetch_remote_global_init(fetch_error *err)
{
    pthread_once(&global_once, global_init);
    if (global_result < 0)
        return fetch_error_set(err, global_result, "cannot initialize libcurl");
    return 0;
}

char *fetch_remote_abs_path(const char *path)
{
    /* not realpath(): a link stays a link, so that a file rotated by
     * swapping a symbolic link (current -> v2, as Kubernetes Secret
     * volumes do) is the new one when read again */
    char cwd[PATH_MAX], *p;
    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return strdup(path);
    if (asprintf(&p, "%s/%s", cwd, path) < 0)
        return NULL;
    return p;
}

int fetch_remote_conf_init(struct fetch_remote_conf *c, const struct fetch_remote_options *o)
{
    *c = (struct fetch_remote_conf){
        .connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS,
        .timeout_ms = DEFAULT_TIMEOUT_MS,
    };
    if (!o)
        return 0;
    c->insecure = o->insecure;
    if (o->connect_timeout_ms > 0)
        c->connect_timeout_ms = o->connect_timeout_ms;
    if (o->timeout_ms > 0)
        c->timeout_ms = o->timeout_ms;
    /* every transfer opens the file again */
    if (o->ca_cert && !(c->ca_cert = fetch_remote_abs_path(o->ca_cert)))
        return -ENOMEM;
    return 0;
}

void fetch_remote_conf_release(struct fetch_remote_conf *c)
{
    free(c->ca_cert);
    c->ca_cert = NULL;
}

int fetch_remote_easy_setup(CURL *easy, const struct fetch_remote_conf *c, const char *url,
                            fetch_error *err)
{
    CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)
    SET(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (c->redir_protocols) {
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_REDIR_PROTOCOLS_STR, c->redir_protocols);
#else
        SET(CURLOPT_REDIR_PROTOCOLS, strcmp(c->redir_protocols, "https")
                                         ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)
                                         : (long)CURLPROTO_HTTPS);
#endif
    } else {
        SET(CURLOPT_FOLLOWLOCATION, 0L);
    }
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* removing a handle in the middle of a name lookup must not wait for the
     * resolver thread (an unresponsive DNS server would hold up an unmount) */
    SET(CURLOPT_QUICK_EXIT, 1L);
#endif
    SET(CURLOPT_FAILONERROR, 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    /* No deadline for a whole request: on a slow link a chunk shares it with
     * the other transfers in flight (a hydration's 12 chunks of 4 MiB on an
     * 8 Mbit/s link took over a minute each, so every one was cut off and
     * fetched again), and a large index takes longer still. A request is
     * abandoned (and retried) when it moves less than STALL_BYTES_PER_S for
     * timeout_ms, in whole seconds: a server that stopped answering, or one
     * that only trickles. libcurl averages the speed over the last 5 s, so a
     * transfer that stops mid-body is cut off up to 5 s later than one that
     * never starts. */
    SET(CURLOPT_LOW_SPEED_LIMIT, STALL_BYTES_PER_S);
    SET(CURLOPT_LOW_SPEED_TIME, (c->timeout_ms + 999) / 1000);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    /* curl reads the socket in pieces of this size (16 KiB by default; 512 KiB
     * is the most libcurl 7.88 takes): fewer recv() calls and write callbacks
     * per chunk, 10-20% less daemon CPU per GiB over HTTP on the bench. Not
     * an error when refused: libcurl 7.88 frees a handle's receive buffer
     * only when its connection is idle, so a handle reused after an HTTP/2
     * transfer that shared its connection still has one, and the option then
     * fails ("a libcurl function was given a bad argument"); the handle
     * works on with the buffer it has (allocated at an earlier setting, at
     * least the default that curl_easy_reset() restored). */
    if (cc == CURLE_OK)
        (void)curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 512L * 1024);
    SET(CURLOPT_USERAGENT, "lazyimg/" LAZYIMG_VERSION);
    SET(CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (c->ca_cert)
        SET(CURLOPT_CAINFO, c->ca_cert);
#undef SET
    if (cc == CURLE_OUT_OF_MEMORY)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    if (cc != CURLE_OK)
        return fetch_error_set(err, -EINVAL, "libcurl: %s", curl_easy_strerror(cc));
    return 0;
}

/* ---- easy handle cache ---- */

struct fetch_easy_cache {
    pthread_mutex_t lock;
    CURL *idle[EASY_CACHE_MAX];
    size_t n;
    struct fetch_store *owner; /* its outage is noted by every request */
};

struct fetch_easy_cache *fetch_easy_cache_new(struct fetch_store *owner)
{
    struct fetch_easy_cache *ec = calloc(1, sizeof(*ec));
    if (!ec)
        return NULL;
    ec->owner = owner;
    pthread_mutex_init(&ec->lock, NULL);
    return ec;
}

void fetch_easy_cache_free(struct fetch_easy_cache *ec)
{
    if (!ec)
        return;
    for (size_t i = 0; i < ec->n; i++)
        curl_easy_cleanup(ec->idle[i]);
    pthread_mutex_destroy(&ec->lock);
    free(ec);
}

static CURL *easy_take(struct fetch_easy_cache *ec)
{
    CURL *e = NULL;
    if (ec) {
        pthread_mutex_lock(&ec->lock);
        if (ec->n)
            e = ec->idle[--ec->n];
        pthread_mutex_unlock(&ec->lock);
    }
    if (e) {
        curl_easy_reset(e); /* keeps live connections and the TLS session cache */
        return e;
    }
    return curl_easy_init();
}

/*
 * Puts @e back for a later request when its transfer ended well (@ok); one
 * that failed is closed: libcurl may keep state from a failed transfer that
 * curl_easy_reset() does not clear (7.88 keeps the receive buffer after a
 * refused redirect, as after a shared HTTP/2 connection: see
 * fetch_remote_easy_setup()).
 */
static void easy_give(struct fetch_easy_cache *ec, CURL *e, bool ok)
{
    if (ec && ok) {
        pthread_mutex_lock(&ec->lock);
        if (ec->n < EASY_CACHE_MAX) {
            ec->idle[ec->n++] = e;
            e = NULL;
        }
        pthread_mutex_unlock(&ec->lock);
    }
    if (e)
        curl_easy_cleanup(e);
}

/* ---- blocking GET ---- */

struct sink {
    CURL *easy;
    char *buf;
    size_t len, cap, max;
    bool too_big, nomem, checked;
    bool success; /* 2xx: the whole body is wanted */
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;

    if (!s->checked) {
        long status = 0;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
        s->success = status >= 200 && status < 300;
        s->checked = true;
    }
    if (!s->success) {
        /* error details: keep the beginning, drop the rest quietly */
        if (s->len >= ERROR_BODY_MAX)
            return n;
        if (n > ERROR_BODY_MAX - s->len)
            n = ERROR_BODY_MAX - s->len;
    } else if (n > s->max - s->len) {
        s->too_big = true;
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 16 * 1024;
        curl_off_t cl = -1;
        char *b;
        if (s->success &&
            curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (uint64_t)cl <= s->max && (size_t)cl >= s->len + n)
            cap = (size_t)cl + 1;
        while (cap < s->len + n + 1)
            cap *= 2;
        if (!(b = realloc(s->buf, cap))) {
            s->nomem = true;
            return 0;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return size * nmemb;
}

void fetch_response_release(struct fetch_response *r)
{
    free(r->body);
    free(r->content_type);
    free(r->redirected_to);
    *r = (struct fetch_response){0};
}

int fetch_response_result(const struct fetch_response *r, const char *what, fetch_error *err)
{
    int e = fetch_remote_result(CURLE_OK, r->status, NULL, what, err);
    if (e == -EACCES && r->status == 401 && r->redirected_to)
        fetch_error_set(err, e,
                        "%s: authentication required (HTTP 401) after a redirect to %s; "
                        "credentials are not sent on to another scheme, host or port: give "
                        "that location as the store",
                        what ? what : "request", r->redirected_to);
    return e;
}

unsigned fetch_remote_retry_after_ms(CURL *easy, long status)
{
#if LIBCURL_VERSION_NUM >= 0x075400
    struct curl_header *h = NULL;
    const char *v;
    long long s = -1;

    if ((status != 429 && status != 503) ||
        curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return 0;
    v = h->value;
    if (*v >= '0' && *v <= '9') {
        char *end;
        s = strtoll(v, &end, 10);
        if (*end != '\0' && *end != ' ')
            s = -1;
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t != (time_t)-1)
            s = (long long)(t - time(NULL));
    }
    if (s <= 0)
        return 0;
    return s >= FETCH_RETRY_AFTER_MAX_MS / 1000 ? FETCH_RETRY_AFTER_MAX_MS : (unsigned)s * 1000u;
#else
    (void)easy;
    (void)status;
    return 0;
#endif
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static atomic_bool abort_all;

void fetch_remote_abort_all(void)
{
    atomic_store(&abort_all, true);
}

/* CURLOPT_XFERINFOFUNCTION: curl calls it at least once a second, even on a
 * connection where nothing moves */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load(&abort_all) ? 1 : 0;
}

static int perform_once(CURL *easy, fetch_request_setup_fn setup, void *arg, size_t max,
                        const char *what, struct fetch_response *ret, fetch_error *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct sink s = {.easy = easy, .max = max};
    const char *ct = NULL;
    CURLcode cc;
    long status = 0;
    int r;

    r = setup(arg, easy, err);
    if (r < 0)
        return r;
    errbuf[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    cc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    if (s.too_big) {
        free(s.buf);
        return fetch_error_set(err, -EFBIG, "%s: larger than the %zu bytes expected", what, max);
    }
    if (s.nomem || cc == CURLE_WRITE_ERROR) {
        free(s.buf);
        return fetch_error_set(err, -ENOMEM, "%s: out of memory", what);
    }
    if (cc != CURLE_OK) {
        free(s.buf);
        fetch_remote_connect_detail(easy, (int)cc, errbuf);
        return fetch_remote_result((int)cc, status, errbuf, what, err);
    }
    if (!s.buf && !(s.buf = malloc(1)))
        return fetch_error_set(err, -ENOMEM, "out of memory");
    s.buf[s.len] = '\0';
    if (curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct &&
        !(ret->content_type = strdup(ct))) {
        free(s.buf);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    if (status == 401) {
        long redirects = 0;
        const char *url = NULL;
        if (curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK &&
            redirects > 0 && curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK &&
            url)
            ret->redirected_to = fetch_location_shown(url); /* NULL: the message without it */
    }
    ret->status = status;
    ret->body = s.buf;
    ret->len = s.len;
    return 0;
}

static int perform(struct fetch_easy_cache *ec, fetch_request_setup_fn setup, void *arg, size_t max,
                   unsigned attempts, long outage_ms, bool transport_retries, const char *what,
                   struct fetch_response *ret, fetch_error *err)
{
    unsigned delay_ms = 100, wait_ms = 0;
    /* the store's outage; without a store, this request's */
    struct fetch_store own = {0}, *store = ec && ec->owner ? ec->owner : &own;
    int r = -EIO;

    if (attempts == 0)
        attempts = 1;
    if (no_outage_wait)
        outage_ms = 0; /* a mirror is left to try */
    for (unsigned i = 0;; i++) {
        struct fetch_response resp = {0};
        bool busy, unavailable, more;
        uint64_t now;
        CURL *easy;
        /* the backoff (or what a busy server asked for, if longer) in steps,
         * so that an abort is seen within 100 ms */
        if (i > 0 && wait_ms < delay_ms)
            wait_ms = delay_ms;
        for (unsigned slept = 0; slept < wait_ms && !atomic_load(&abort_all); slept += 100)
            sleep_ms(wait_ms - slept < 100 ? wait_ms - slept : 100);
        delay_ms *= i > 0 ? 4 : 1;
        if (i + 1 >= attempts && delay_ms > FETCH_OUTAGE_STEP_MS)
            delay_ms = FETCH_OUTAGE_STEP_MS; /* waiting out an outage: back soon after the store */
        wait_ms = 0;
        if (atomic_load(&abort_all))
            return fetch_error_set(err, -ECANCELED, "%s: cancelled (the mount is going away)",
                                   what);
        if (!(easy = easy_take(ec)))
            return fetch_error_set(err, -ENOMEM, "out of memory");
        r = perform_once(easy, setup, arg, max, what, &resp, err);
        busy = r == 0 && (resp.status == 429 || resp.status >= 500);
        unavailable = busy || fetch_remote_unavailable(r);
        now = fetch_mono_us();
        if (unavailable || r == 0) /* (r == 0: an HTTP answer, a 404 too) */
            fetch_store_note_answer(store, unavailable, now);
        /* the store's outage, not this request's (chunk fetches in the
         * fetcher pool note it too): once it has lasted outage_ms, requests
         * fail after their attempts until it answers */
        more = i + 1 < attempts || (transport_retries && unavailable && outage_ms > 0 &&
                                    fetch_store_outage_young(store, now, (uint64_t)outage_ms));
        if (busy && more) {
            wait_ms = fetch_remote_retry_after_ms(easy, resp.status);
            easy_give(ec, easy, true);
            fetch_response_release(&resp);
            r = -EAGAIN;
            continue;
        }
        easy_give(ec, easy, r == 0);
        if (r == 0) {
            *ret = resp;
            return 0;
        }
        if (!transport_retries || !fetch_remote_retryable(r) || r == -EBADMSG || !more)
            return r;
    }
}

int fetch_remote_perform(struct fetch_easy_cache *ec, fetch_request_setup_fn setup, void *arg,
                         size_t max, unsigned attempts, long outage_ms, const char *what,
                         struct fetch_response *ret, fetch_error *err)
{
    return perform(ec, setup, arg, max, attempts, outage_ms, true, what, ret, err);
}

int fetch_remote_probe(struct fetch_easy_cache *ec, fetch_request_setup_fn setup, void *arg,
                       size_t max, unsigned attempts, const char *what, struct fetch_response *ret,
                       fetch_error *err)
{
    return perform(ec, setup, arg, max, attempts, 0, false, what, ret, err);
}

/* ---- percent encoding, dirent vectors ---- */

static bool unreserved(unsigned char c)
{
    return isascii(c) && (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~');
}

char *fetch_percent_encode(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(s), o = 0;
    char *out;

    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

char *fetch_percent_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                goto bad;
            hi = fetch_hex_value(s[i + 1]);
            lo = fetch_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '\0') {
            goto bad;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

int fetch_dirvec_add(struct fetch_dirvec *d, const char *name, size_t len, bool is_dir)
{
    if (len == 0 || memchr(name, '/', len) || memchr(name, '\0', len) ||
        (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct fetch_dirent *v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        d->v = v;
        d->cap = cap;
    }
    if (!(d->v[d->n].name = strndup(name, len)))
        return -ENOMEM;
    d->v[d->n++].is_dir = is_dir;
    return 0;
}

static int cmp_dirent(const void *a, const void *b)
{
    const struct fetch_dirent *x = a, *y = b;
    return strcmp(x->name, y->name);
}

void fetch_dirvec_finish(struct fetch_dirvec *d)
{
    size_t o = 0;
    if (d->n < 2)
        return;
    qsort(d->v, d->n, sizeof(*d->v), cmp_dirent);
    for (size_t i = 0; i < d->n; i++) {
        if (o > 0 && !strcmp(d->v[o - 1].name, d->v[i].name)) {
            d->v[o - 1].is_dir |= d->v[i].is_dir;
            free(d->v[i].name);
            continue;
        }
        d->v[o++] = d->v[i];
    }
    d->n = o;
}

void fetch_dirvec_release(struct fetch_dirvec *d)
{
    fetch_dirents_free(d->v, d->n);
    *d = (struct fetch_dirvec){0};
}
