/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: remote stores (fetch/remote.h, store_http.c, store_s3.c).
 * The parsers are tested on canned bodies; the transfers against a tiny
 * HTTP/1.1 server on 127.0.0.1 run by a thread of this test, which answers
 * a scripted list of responses and records the requests. The SigV4 test
 * checks a request our S3 store actually sent against the example of the
 * AWS S3 documentation ("Signature Calculations for the Authorization
 * Header", GET Object).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fetch/remote.h"
#include "fetch/remote_internal.h"
#include "fixtures.h"

/* ---- a scripted HTTP server ---- */

#define SRV_MAX 8

struct srv {
    int fd;
    int port;
    pthread_t thread;
    const char *responses[SRV_MAX]; /* raw answers, one per connection */
    size_t n;
    char requests[SRV_MAX][8192];
    size_t served;
};

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        size_t len = 0;
        if (c < 0)
            break;
        while (len + 1 < sizeof(s->requests[i])) {
            ssize_t r = recv(c, s->requests[i] + len, sizeof(s->requests[i]) - 1 - len, 0);
            if (r <= 0)
                break;
            len += (size_t)r;
            s->requests[i][len] = '\0';
            if (strstr(s->requests[i], "\r\n\r\n"))
                break;
        }
        const char *resp = s->responses[i];
        size_t off = 0, rl = strlen(resp);
        while (off < rl) {
            ssize_t w = send(c, resp + off, rl - off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        shutdown(c, SHUT_WR);
        close(c);
        s->served++;
    }
    return NULL;
}

static int listen_any(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0)
        fx_die("listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

static void srv_start(struct srv *s, size_t n, const char *const *responses)
{
    memset(s, 0, sizeof(*s));
    s->fd = listen_any(&s->port);
    s->n = n;
    for (size_t i = 0; i < n; i++)
        s->responses[i] = responses[i];
    if (pthread_create(&s->thread, NULL, srv_main, s) != 0)
        fx_die("pthread_create");
}

static void srv_stop(struct srv *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* The value of header @name in raw request @req, into @buf; NULL if absent. */
static const char *header(const char *req, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(buf, len, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return buf;
        }
    }
    return NULL;
}

static char *responsef(const char *status, const char *ctype, const char *body)
{
    char *r;
    if (asprintf(&r,
                 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 status, ctype, strlen(body), body) < 0)
        fx_die("asprintf");
    return r;
}

/* ---- helpers ---- */

static bool has_entry(const struct fetch_dirent *d, size_t n, const char *name, bool is_dir)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(d[i].name, name))
            return d[i].is_dir == is_dir;
    }
    return false;
}

static void parse_index(const char *body, const char *ctype, struct fetch_dirent **d, size_t *n)
{
    fetch_error err = {""};
    int r = fetch_http_parse_index(body, strlen(body), ctype, NULL, d, n, &err);
    if (r < 0)
        fail_msg("parse failed: %d %s", r, err.msg);
}

static void s3_env(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
}

/* ---- percent encoding ---- */

static void percent_encoding(void **state)
{
    char *s;
    (void)state;
    s = fetch_percent_encode("a b/c~d-e_f.g:h", true);
    assert_string_equal(s, "a%20b/c~d-e_f.g%3Ah");
    free(s);
    s = fetch_percent_encode("a b/c+=&?\xc3\xa9", false);
    assert_string_equal(s, "a%20b%2Fc%2B%3D%26%3F%C3%A9");
    free(s);
    s = fetch_percent_decode("a%20b%2fc%C3%A9", 15);
    assert_string_equal(s, "a b/c\xc3\xa9");
    free(s);
    assert_null(fetch_percent_decode("a%2", 3));
    assert_null(fetch_percent_decode("a%zz", 4));
    assert_null(fetch_percent_decode("a%00b", 5));
}

/* ---- directory indexes ---- */

static void nginx_json(void **state)
{
    static const char body[] =
        "[\n"
        "{ \"name\":\"vm\", \"type\":\"directory\", \"mtime\":\"Mon, 01 Jan 2024 00:00:00 GMT\" "
        "},\n"
        "{ \"name\":\"2024-01-01T00:00:00Z\", \"type\":\"directory\", \"mtime\":\"x\" },\n"
        "{ \"name\":\"index.json.blob\", \"type\":\"file\", \"mtime\":\"x\", \"size\":123 },\n"
        "{ \"name\":\"sp ace \\u00e9\", \"type\":\"file\", \"size\":1 },\n"
        "{ \"name\":\"link\", \"type\":\"other\" },\n"
        "{ \"name\":\"..\", \"type\":\"directory\" },\n"
        "{ \"name\":\"a/b\", \"type\":\"file\" },\n"
        "{ \"name\":\"nul\\u0000x\", \"type\":\"file\" },\n"
        "{ \"name\":\"\", \"type\":\"file\" },\n"
        "{ \"name\":7, \"type\":\"file\" },\n"
        "{ \"type\":\"file\" },\n"
        "\"junk\"\n"
        "]\n";
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    (void)state;
    parse_index(body, "application/json", &d, &n);
    assert_int_equal(n, 4);
    assert_true(has_entry(d, n, "vm", true));
    assert_true(has_entry(d, n, "2024-01-01T00:00:00Z", true));
    assert_true(has_entry(d, n, "index.json.blob", false));
    assert_true(has_entry(d, n, "sp ace \xc3\xa9", false));
    assert_string_equal(d[0].name, "2024-01-01T00:00:00Z"); /* sorted */
    fetch_dirents_free(d, n);

    /* JSON recognized without a content type */
    parse_index("  [{\"name\":\"ct\",\"type\":\"directory\"}]", NULL, &d, &n);
    assert_int_equal(n, 1);
    assert_true(has_entry(d, n, "ct", true));
    fetch_dirents_free(d, n);

    static const char *bad[] = {
        "[", "[{\"name\":\"a\"}] x", "{\"name\":\"a\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fetch_error err = {""};
        d = NULL;
        n = 0;
        assert_int_equal(
            fetch_http_parse_index(bad[i], strlen(bad[i]), "application/json", NULL, &d, &n, &err),
            -EBADMSG);
        assert_null(d);
    }
}

/* A listing of more entries than lazyimg takes, or JSON of more objects
 * ("[{},{},...]": ~750 bytes of memory per object once parsed), is refused
 * before it is built: -EFBIG, and a message that says why. A JSON string
 * full of braces is not counted. */
static void listing_bounded(void **state)
{
    enum { N = 260000 };
    char *body = malloc(12 * (size_t)N + 64), *p = body;
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    fetch_error err = {""};
    (void)state;
    assert_non_null(body);
    *p++ = '[';
    for (int i = 0; i < N; i++) {
        memcpy(p, "{},", 3);
        p += 3;
    }
    memcpy(p - 1, "]", 2);
    assert_int_equal(
        fetch_http_parse_index(body, strlen(body), "application/json", NULL, &d, &n, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "more than 250000 entries"));
    assert_null(d);
    /* braces in strings are names, not objects */
    p = body;
    p += sprintf(p, "[{\"name\":\"");
    for (int i = 0; i < N; i++)
        *p++ = '{';
    p += sprintf(p, "\",\"type\":\"file\"}]");
    assert_int_equal(
        fetch_http_parse_index(body, strlen(body), "application/json", NULL, &d, &n, &err), 0);
    assert_int_equal(n, 1);
    fetch_dirents_free(d, n);
    /* HTML: an href each, past the bound */
    p = body;
    for (int i = 0; i < N; i++)
        p += sprintf(p, "<a href=%d>", i % 10);
    d = NULL;
    n = 0;
    assert_int_equal(fetch_http_parse_index(body, strlen(body), "text/html", NULL, &d, &n, &err),
                     -EFBIG);
    assert_non_null(strstr(err.msg, "more than 250000 entries"));
    assert_null(d);
    free(body);
}

static void nginx_html(void **state)
{
    static const char body[] =
        "<html>\r\n<head><title>Index of /ds/vm/</title></head>\r\n<body>\r\n"
        "<h1>Index of /ds/vm/</h1><hr><pre><a href=\"../\">../</a>\r\n"
        "<a href=\"100/\">100/</a>                                               01-Jan-2024 00:00 "
        "                  -\r\n"
        "<a href=\"my%20vm/\">my vm/</a>                                            01-Jan-2024 "
        "00:00                   -\r\n"
        "<a href=\"a&amp;b.blob\">a&amp;b.blob</a>                                  01-Jan-2024 "
        "00:00                 123\r\n"
        "<a href=\"owner\">owner</a>                                                01-Jan-2024 "
        "00:00                   5\r\n"
        "<a href=\"2024-01-01T00:00:00Z/\">2024-01-01T00:00:00Z/</a>\r\n"
        "</pre><hr></body>\r\n</html>\r\n";
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    (void)state;
    parse_index(body, "text/html", &d, &n);
    assert_int_equal(n, 5);
    assert_true(has_entry(d, n, "100", true));
    assert_true(has_entry(d, n, "my vm", true));
    assert_true(has_entry(d, n, "a&b.blob", false));
    assert_true(has_entry(d, n, "owner", false));
    assert_true(has_entry(d, n, "2024-01-01T00:00:00Z", true));
    fetch_dirents_free(d, n);
}

static void apache_html(void **state)
{
    static const char body[] =
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html>\n <head>\n"
        "  <title>Index of /ds</title>\n </head>\n <body>\n<h1>Index of /ds</h1>\n"
        "<table>\n<tr><th valign=\"top\"><img src=\"/icons/blank.gif\" alt=\"[ICO]\"></th>"
        "<th><a href=\"?C=N;O=D\">Name</a></th><th><a href=\"?C=M;O=A\">Last modified</a></th>"
        "<th><a href=\"?C=S;O=A\">Size</a></th></tr>\n"
        "<tr><td><a href=\"/\">Parent Directory</a></td></tr>\n"
        "<tr><td><a href=\"/ds/../\">Up</a></td></tr>\n"
        "<tr><td><a href=\".chunks/\">.chunks/</a></td></tr>\n"
        "<tr><td><A HREF=\"ns/\"><img src=\"x.gif\"></A> <a href=\"ns/\">ns/</a></td></tr>\n"
        "<tr><td><a href=\"./2024-01-01T00:00:00Z/\">2024-01-01T00:00:00Z/</a></td></tr>\n"
        "<tr><td><a class=\"x\" href='single.fidx'>single.fidx</a></td></tr>\n"
        "<tr><td><a href=bare.blob>bare.blob</a></td></tr>\n"
        "<tr><td><a href=\"vm/?C=N\">vm</a></td></tr>\n"
        /* hostile ones: none of these is an entry of this directory */
        "<tr><td><a href=\"http://evil.example/x/\">x</a></td></tr>\n"
        "<tr><td><a href=\"//evil.example/y/\">y</a></td></tr>\n"
        "<tr><td><a href=\"javascript:alert(1)\">z</a></td></tr>\n"
        "<tr><td><a href=\"mailto:root@localhost\">z</a></td></tr>\n"
        "<tr><td><a href=\"a/b/\">a/b</a></td></tr>\n"
        "<tr><td><a href=\"%2e%2e/\">dotdot</a></td></tr>\n"
        "<tr><td><a href=\"x%2Fy\">slash</a></td></tr>\n"
        "<tr><td><a href=\"nul%00\">nul</a></td></tr>\n"
        "<tr><td><a href=\"bad%zz\">bad</a></td></tr>\n"
        "<tr><td><a href=\"#frag\">frag</a></td></tr>\n"
        "<tr><td><a href=\"\">empty</a></td></tr>\n"
        "<tr><td><abbr href=\"notalink\">n</abbr><a name=\"anchor\">a</a></td></tr>\n"
        "<tr><td><a data-href=\"fake\" href=\"real\">r</a></td></tr>\n"
        "<tr><td><a href=\"quoted&gt;gt\">q</a></td></tr>\n"
        "<tr><td><a href=\"unterminated";
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    (void)state;
    parse_index(body, "text/html;charset=UTF-8", &d, &n);
    assert_true(has_entry(d, n, ".chunks", true));
    assert_true(has_entry(d, n, "ns", true)); /* once, though linked twice */
    assert_true(has_entry(d, n, "2024-01-01T00:00:00Z", true));
    assert_true(has_entry(d, n, "single.fidx", false));
    assert_true(has_entry(d, n, "bare.blob", false));
    assert_true(has_entry(d, n, "vm", true));
    assert_true(has_entry(d, n, "real", false));
    assert_true(has_entry(d, n, "quoted>gt", false));
    assert_int_equal(n, 8);
    fetch_dirents_free(d, n);

    /* an unrelated page yields no entries, not an error */
    parse_index("<html><body>It works!</body></html>", "text/html", &d, &n);
    assert_int_equal(n, 0);
    fetch_dirents_free(d, n);
}

/* Links by absolute path (npm's serve writes "&#47;pbs&#47;ds&#47;vm&#47;"): an
 * entry when right below the listed directory, nothing else. */
static void absolute_html(void **state)
{
    static const char body[] =
        "<ul><li><a href=\"&#47;pbs&#47;\">..</a></li>\n"
        "<li><a href=\"&#47;pbs&#47;my%20ds&#47;vm&#47;\">vm/</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/.chunks/\">.chunks/</a></li>\n"
        "<li><a href=\"/pbs/my ds/index.json.blob\">index.json.blob</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/owner?download\">owner</a></li>\n"
        /* none of these is an entry of /pbs/my ds/ */
        "<li><a href=\"/pbs/my%20ds/\">itself</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/vm/100/\">deeper</a></li>\n"
        "<li><a href=\"/pbs/my%20dsx/y/\">sibling</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/../etc/\">up</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/%2e%2e/\">dotdot</a></li>\n"
        "<li><a href=\"/pbs/my%20ds/a%2Fb\">slash</a></li>\n"
        "<li><a href=\"//evil.example/pbs/my%20ds/x/\">host</a></li>\n"
        "<li><a href=\"/other/ns/\">other</a></li>\n"
        "<li><a href=\"%2Fpbs%2Fmy%20ds%2Fsneaky\">encoded</a></li></ul>\n";
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    fetch_error err = {""};
    (void)state;
    assert_int_equal(
        fetch_http_parse_index(body, strlen(body), "text/html", "/pbs/my ds/", &d, &n, &err), 0);
    assert_true(has_entry(d, n, "vm", true));
    assert_true(has_entry(d, n, ".chunks", true));
    assert_true(has_entry(d, n, "index.json.blob", false));
    assert_true(has_entry(d, n, "owner", false));
    assert_int_equal(n, 4);
    fetch_dirents_free(d, n);
    /* without the directory's path, absolute links name nothing */
    assert_int_equal(fetch_http_parse_index(body, strlen(body), "text/html", NULL, &d, &n, &err),
                     0);
    assert_int_equal(n, 0);
    fetch_dirents_free(d, n);
}

/* ---- S3 ---- */

static void assert_string_prefix(const char *s, const char *prefix)
{
    if (strncmp(s, prefix, strlen(prefix)) != 0)
        fail_msg("\"%.200s\" does not start with \"%s\"", s, prefix);
}

/* encoding-type=url: keys come percent-encoded, '+' for a space (a key
 * with a byte XML 1.0 cannot carry no longer breaks the page); a server that
 * ignores the parameter (no EncodingType) sends them as they are */
static void s3_list_url_encoded(void **state)
{
    static const char page[] =
        "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
        "<Contents><Key>ds/vm/notes%1B.txt</Key></Contents>"
        "<Contents><Key>ds/vm/a+b%2Bc%C3%A9</Key></Contents>"
        "<CommonPrefixes><Prefix>ds/vm/100%2F</Prefix></CommonPrefixes>"
        "<CommonPrefixes><Prefix>ds/vm/sp+ace/</Prefix></CommonPrefixes>"
        "</ListBucketResult>";
    static const char plain[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                "<Contents><Key>ds/vm/a+b%2B</Key></Contents>"
                                "</ListBucketResult>";
    static const char bad[] = "<ListBucketResult><EncodingType>url</EncodingType>"
                              "<IsTruncated>false</IsTruncated>"
                              "<Contents><Key>ds/vm/x%zz</Key></Contents>"
                              "<Contents><Key>ds/vm/nul%00</Key></Contents>"
                              "<Contents><Key>ds/vm/ok</Key></Contents></ListBucketResult>";
    struct fetch_dirvec d = {0};
    fetch_error err = {""};
    char *token = NULL;
    (void)state;

    assert_int_equal(fetch_s3_parse_list(page, strlen(page), "ds/vm/", &d, &token, &err), 0);
    assert_null(token);
    fetch_dirvec_finish(&d);
    assert_true(has_entry(d.v, d.n, "a b+c\xc3\xa9", false));
    assert_true(has_entry(d.v, d.n, "100", true));
    assert_true(has_entry(d.v, d.n, "sp ace", true));
    fetch_dirvec_release(&d);
    assert_int_equal(fetch_s3_parse_list(plain, strlen(plain), "ds/vm/", &d, &token, &err), 0);
    fetch_dirvec_finish(&d);
    assert_true(has_entry(d.v, d.n, "a+b%2B", false));
    fetch_dirvec_release(&d);
    /* keys that do not decode are left out, not the listing */
    assert_int_equal(fetch_s3_parse_list(bad, strlen(bad), "ds/vm/", &d, &token, &err), 0);
    fetch_dirvec_finish(&d);
    assert_int_equal(d.n, 1);
    assert_true(has_entry(d.v, d.n, "ok", false));
    fetch_dirvec_release(&d);
}

static void s3_list_pages(void **state)
{
    static const char page1[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><Prefix>ds/vm/</Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys>"
        "<Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        "<Contents><Key>ds/vm/</Key><Size>0</Size></Contents>"
        "<Contents><Key>ds/vm/owner</Key><Size>5</Size></Contents>"
        "<Contents><Key>ds/vm/a&amp;b</Key><Size>5</Size></Contents>"
        "<Contents><Key>other/x</Key></Contents>"
        "<CommonPrefixes><Prefix>ds/vm/100/</Prefix></CommonPrefixes>"
        "<CommonPrefixes><Prefix>ds/vm/101/</Prefix></CommonPrefixes>"
        "<NextContinuationToken>1/abc+def==</NextContinuationToken>"
        "</ListBucketResult>";
    static const char page2[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                                "<CommonPrefixes><Prefix>ds/vm/102/</Prefix></CommonPrefixes>"
                                "<CommonPrefixes><Prefix>ds/vm/x/y/</Prefix></CommonPrefixes>"
                                "<CommonPrefixes><Prefix>ds/vm/../</Prefix></CommonPrefixes>"
                                "</ListBucketResult>";
    struct fetch_dirvec d = {0};
    fetch_error err = {""};
    char *token = NULL;
    (void)state;

    assert_int_equal(fetch_s3_parse_list(page1, strlen(page1), "ds/vm/", &d, &token, &err), 0);
    assert_string_equal(token, "1/abc+def==");
    free(token);
    assert_int_equal(fetch_s3_parse_list(page2, strlen(page2), "ds/vm/", &d, &token, &err), 0);
    assert_null(token);
    fetch_dirvec_finish(&d);
    assert_int_equal(d.n, 5);
    assert_true(has_entry(d.v, d.n, "owner", false));
    assert_true(has_entry(d.v, d.n, "a&b", false));
    assert_true(has_entry(d.v, d.n, "100", true));
    assert_true(has_entry(d.v, d.n, "101", true));
    assert_true(has_entry(d.v, d.n, "102", true));
    fetch_dirvec_release(&d);

    static const char *bad[] = {
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "<NotAListing/>",
        "not xml at all",
        "<ListBucketResult><Contents>",
        ("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\">]>"
         "<ListBucketResult><Contents><Key>&a;</Key></Contents></ListBucketResult>"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        token = NULL;
        assert_int_equal(fetch_s3_parse_list(bad[i], strlen(bad[i]), "", &d, &token, &err),
                         -EBADMSG);
        assert_null(token);
        fetch_dirvec_release(&d);
    }
}

static void s3_errors(void **state)
{
    static const struct {
        long status;
        const char *code;
        int expect;
        const char *text;
    } cases[] = {
        {403, "InvalidAccessKeyId", -EACCES, "S3 rejected the access key (InvalidAccessKeyId)"},
        {403, "SignatureDoesNotMatch", -EACCES, "SignatureDoesNotMatch"},
        {403, "AccessDenied", -EACCES, "S3 denied access (AccessDenied)"},
        {404, "NoSuchBucket", -ENOENT, "bucket does not exist (NoSuchBucket)"},
        {404, "NoSuchKey", -ENOENT, "not found"},
        {403, "RequestTimeTooSkewed", -EACCES, "clock"},
        {400, "ExpiredToken", -EACCES, "session token"},
        {503, "SlowDown", -EAGAIN, "SlowDown"},
        {400, "InvalidArgument", -EIO, "S3 error InvalidArgument (HTTP 400): bad ?thing"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512];
        fetch_error err = {""};
        snprintf(body, sizeof(body),
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                 "<Message>bad &#9;thing</Message><RequestId>1</RequestId></Error>",
                 cases[i].code);
        int r = fetch_s3_error(cases[i].status, body, strlen(body), "s3://b", &err);
        if (r != cases[i].expect)
            fail_msg("%s: %d, expected %d (%s)", cases[i].code, r, cases[i].expect, err.msg);
        if (i + 1 == sizeof(cases) / sizeof(cases[0])) {
            assert_non_null(strstr(err.msg, "S3 error InvalidArgument (HTTP 400): bad ?thing"));
        } else if (!strstr(err.msg, cases[i].text)) {
            fail_msg("%s: message '%s' lacks '%s'", cases[i].code, err.msg, cases[i].text);
        }
        assert_int_equal(strncmp(err.msg, "s3://b: ", 8), 0);
    }
    /* the region hint of AuthorizationHeaderMalformed */
    {
        static const char body[] = "<Error><Code>AuthorizationHeaderMalformed</Code>"
                                   "<Region>eu-west-1</Region></Error>";
        fetch_error err = {""};
        assert_int_equal(fetch_s3_error(400, body, strlen(body), "x", &err), -EACCES);
        assert_non_null(strstr(err.msg, "region eu-west-1"));
    }
    /* no or a broken body: the status decides */
    {
        fetch_error err = {""};
        assert_int_equal(fetch_s3_error(500, "", 0, "x", &err), -EAGAIN);
        assert_int_equal(fetch_s3_error(404, "<html>", 6, "x", &err), -ENOENT);
        assert_int_equal(fetch_s3_error(200, "", 0, "x", &err), 0);
    }
    /* fetch_s3_explain: only a body that names a code says more than its status */
    {
        static const char body[] = "<Error><Code>ExpiredToken</Code></Error>";
        fetch_error err = {"untouched"};
        assert_int_equal(fetch_s3_explain(400, body, strlen(body), "p", &err), 1);
        assert_string_equal(err.msg, "p: S3 rejected the session token (ExpiredToken)");
        strcpy(err.msg, "untouched");
        assert_int_equal(fetch_s3_explain(403, "<html>denied</html>", 19, "p", &err), 0);
        assert_int_equal(fetch_s3_explain(500, "", 0, "p", &err), 0);
        assert_int_equal(fetch_s3_explain(403, body, 20, "p", &err), 0); /* cut before the code */
        assert_string_equal(err.msg, "untouched");
    }
    /* AWS's answers can run to KiBs (a request's canonical form, a token):
     * the start of one kept, its code still found */
    {
        char body[4096];
        fetch_error err = {""};
        int n = snprintf(body, sizeof(body),
                         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                         "SignatureDoesNotMatch</Code><Message>The request signature we "
                         "calculated does not match</Message><StringToSignBytes>");
        memset(body + n, '4', sizeof(body) - (size_t)n);
        assert_int_equal(fetch_s3_explain(403, body, sizeof(body), "p", &err), 1);
        assert_non_null(strstr(err.msg, "S3 rejected the request signature"));
    }
}

static void s3_credentials(void **state)
{
    static const char text[] = "# comment\n"
                               "[default]\n"
                               "aws_access_key_id = AKIDDEFAULT\n"
                               "aws_secret_access_key=secret/default+x\n"
                               "\n"
                               "[profile other]\r\n"
                               "  AWS_ACCESS_KEY_ID =  AKIDOTHER  \r\n"
                               "; another comment\r\n"
                               "aws_secret_access_key = s3cr3t=\r\n"
                               "aws_session_token = TOKEN/abc==\r\n"
                               "region = eu-west-1\r\n"
                               "[half]\n"
                               "aws_access_key_id = AKIDHALF\n";
    struct fetch_s3_creds c = {0};
    fetch_error err = {""};
    (void)state;

    assert_int_equal(fetch_s3_parse_credentials(text, strlen(text), "default", &c, &err), 0);
    assert_string_equal(c.key_id, "AKIDDEFAULT");
    assert_string_equal(c.secret, "secret/default+x");
    assert_null(c.token);
    fetch_s3_creds_release(&c);

    assert_int_equal(fetch_s3_parse_credentials(text, strlen(text), "other", &c, &err), 0);
    assert_string_equal(c.key_id, "AKIDOTHER");
    assert_string_equal(c.secret, "s3cr3t=");
    assert_string_equal(c.token, "TOKEN/abc==");
    fetch_s3_creds_release(&c);

    assert_int_equal(fetch_s3_parse_credentials(text, strlen(text), "half", &c, &err), -ENOENT);
    assert_null(strstr(err.msg, "AKIDHALF"));
    assert_int_equal(fetch_s3_parse_credentials(text, strlen(text), "nope", &c, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "[nope]"));
    assert_int_equal(fetch_s3_parse_credentials("", 0, "default", &c, &err), -ENOENT);
}

static void s3_key_mapping(void **state)
{
    static const struct {
        const char *prefix;
        bool pbs4;
        const char *path, *key, *dir;
    } cases[] = {
        {"", false, "", "", ""},
        {"", false, "vm/100", "vm/100", "vm/100/"},
        {"", false, ".chunks/abcd/ef", ".chunks/abcd/ef", ".chunks/abcd/ef/"},
        {"ds", false, "", "ds", "ds/"},
        {"a/ds", false, "ns/x/vm/1/index.json.blob", "a/ds/ns/x/vm/1/index.json.blob",
         "a/ds/ns/x/vm/1/index.json.blob/"},
        {"ds", true, "", "ds/.cnt", "ds/.cnt/"},
        {"ds", true, "vm/100/2024-01-01T00:00:00Z/index.json.blob",
         "ds/.cnt/vm/100/2024-01-01T00:00:00Z/index.json.blob",
         "ds/.cnt/vm/100/2024-01-01T00:00:00Z/index.json.blob/"},
        {"ds", true, ".chunks", "ds/.chunks", "ds/.chunks/"},
        {"ds", true, ".chunks/0123/0123ab", "ds/.chunks/0123/0123ab", "ds/.chunks/0123/0123ab/"},
        {"ds", true, ".chunksx", "ds/.cnt/.chunksx", "ds/.cnt/.chunksx/"},
        {"", true, "ns", ".cnt/ns", ".cnt/ns/"},
        {"", true, ".chunks/0000", ".chunks/0000", ".chunks/0000/"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *k = fetch_s3_key(cases[i].prefix, cases[i].pbs4, cases[i].path);
        char *d = fetch_s3_dir_prefix(cases[i].prefix, cases[i].pbs4, cases[i].path);
        assert_string_equal(k, cases[i].key);
        assert_string_equal(d, cases[i].dir);
        free(k);
        free(d);
    }
}

/* ---- a store's outage (fetch/store.h) ---- */

static void store_outage(void **state)
{
    struct fetch_store s = {0};
    (void)state;
    assert_false(fetch_store_outage_young(&s, 1000000, 1000)); /* none */
    fetch_store_note_answer(&s, true, 1000000);                /* begins at 1 s */
    assert_true(fetch_store_outage_young(&s, 1500000, 1000));
    assert_false(fetch_store_outage_young(&s, 2000000, 1000)); /* lasted 1 s: over */
    /* a later failure does not begin it again */
    fetch_store_note_answer(&s, true, 3000000);
    assert_false(fetch_store_outage_young(&s, 3000000, 1000));
    /* a thread that read the clock before another began it: just begun
     * (the unsigned difference wrapped: "over" at once) */
    fetch_store_note_answer(&s, false, 0);
    fetch_store_note_answer(&s, true, 4000000);
    assert_true(fetch_store_outage_young(&s, 3999000, 1000));
    /* the store's answer ends it; the next failure begins another */
    fetch_store_note_answer(&s, false, 0);
    assert_false(fetch_store_outage_young(&s, 4100000, 1000));
    fetch_store_note_answer(&s, true, 9000000);
    assert_true(fetch_store_outage_young(&s, 9999000, 1000));
}

/* ---- result mapping ---- */

static void result_mapping(void **state)
{
    static const struct {
        int cc;
        long status;
        const char *errbuf;
        int expect;
    } cases[] = {
        {CURLE_OK, 200, NULL, 0},
        {CURLE_OK, 206, NULL, 0},
        {CURLE_OK, 404, NULL, -ENOENT},
        {CURLE_OK, 410, NULL, -ENOENT},
        {CURLE_OK, 401, NULL, -EACCES},
        {CURLE_OK, 403, NULL, -EACCES},
        {CURLE_OK, 400, NULL, -EIO},
        {CURLE_OK, 416, NULL, -EIO},
        {CURLE_OK, 429, NULL, -EAGAIN},
        {CURLE_OK, 500, NULL, -EAGAIN},
        {CURLE_OK, 503, NULL, -EAGAIN},
        {CURLE_OK, 301, NULL, -EIO},
        {CURLE_COULDNT_CONNECT, 0, "Failed to connect to 127.0.0.1 port 9: Connection refused",
         -ECONNREFUSED},
        {CURLE_COULDNT_CONNECT, 0, "Failed to connect: No route to host", -EHOSTUNREACH},
        /* no answer to the attempts (a link down): not "refused" */
        {CURLE_COULDNT_CONNECT, 0,
         "Failed to connect to 10.78.0.2 port 8080 after 6130 ms: Couldn't connect to server",
         -EHOSTUNREACH},
        {CURLE_COULDNT_RESOLVE_HOST, 0, "Could not resolve host: nowhere.invalid", -EHOSTUNREACH},
        {CURLE_OPERATION_TIMEDOUT, 0, NULL, -ETIMEDOUT},
        {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, -EPROTO},
        {CURLE_SSL_CONNECT_ERROR, 0, NULL, -EPROTO},
        /* a local file: not retried */
        {CURLE_SSL_CACERT_BADFILE, 0, "error setting certificate file: ca.pem", -EINVAL},
        {CURLE_PARTIAL_FILE, 200, NULL, -EPROTO},
        {CURLE_RECV_ERROR, 0, NULL, -ECONNRESET},
        {CURLE_SEND_ERROR, 0, NULL, -ECONNRESET},
        {CURLE_GOT_NOTHING, 0, NULL, -ECONNRESET},
        {CURLE_HTTP2_STREAM, 0, NULL, -EPROTO},
        {CURLE_OUT_OF_MEMORY, 0, NULL, -ENOMEM},
        {CURLE_FAILED_INIT, 0, NULL, -EIO},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fetch_error err = {""};
        int r = fetch_remote_result(cases[i].cc, cases[i].status, cases[i].errbuf, ".chunks/abcd/x",
                                    &err);
        if (r != cases[i].expect)
            fail_msg("case %zu (curl %d, HTTP %ld): %d, expected %d", i, cases[i].cc,
                     cases[i].status, r, cases[i].expect);
        if (r < 0 && strncmp(err.msg, ".chunks/abcd/x: ", 16))
            fail_msg("case %zu: message '%s' does not name the object", i, err.msg);
    }
    assert_true(fetch_remote_retryable(-EAGAIN));
    assert_true(fetch_remote_retryable(-ETIMEDOUT));
    assert_true(fetch_remote_retryable(-ECONNRESET));
    assert_true(fetch_remote_retryable(-ECONNREFUSED));
    assert_true(fetch_remote_retryable(-EHOSTUNREACH));
    assert_true(fetch_remote_retryable(-EPROTO));
    assert_true(fetch_remote_retryable(-EBADMSG));
    assert_false(fetch_remote_retryable(-ENOENT));
    assert_false(fetch_remote_retryable(-EACCES));
    assert_false(fetch_remote_retryable(-EIO));
    assert_false(fetch_remote_retryable(-EFBIG));
    assert_false(fetch_remote_retryable(0));
    /* the failures a store that restarts gives: waited out past the attempts */
    assert_true(fetch_remote_unavailable(-ECONNREFUSED));
    assert_true(fetch_remote_unavailable(-EHOSTUNREACH));
    assert_true(fetch_remote_unavailable(-ECONNRESET));
    assert_true(fetch_remote_unavailable(-EAGAIN));
    assert_false(fetch_remote_unavailable(-ETIMEDOUT)); /* a stall: each attempt waited already */
    assert_false(fetch_remote_unavailable(-EBADMSG));
    assert_false(fetch_remote_unavailable(-EPROTO));
    assert_false(fetch_remote_unavailable(-ENOENT));
    {
        /* and its message: "cannot connect", not "connection refused" */
        fetch_error err = {""};
        fetch_remote_result(
            CURLE_COULDNT_CONNECT, 0,
            "Failed to connect to h port 1 after 6130 ms: Couldn't connect to server", "x", &err);
        assert_non_null(strstr(err.msg, "x: cannot connect"));
    }

    assert_true(fetch_location_is_remote("http://x/ds"));
    assert_true(fetch_location_is_remote("HTTPS://x/ds"));
    assert_true(fetch_location_is_remote("s3://b"));
    assert_false(fetch_location_is_remote("/srv/ds"));
    assert_false(fetch_location_is_remote("./http://x"));
}

/* ---- SigV4, checked on the wire ---- */

/*
 * The GET Object example of the AWS S3 documentation (Signature Version 4,
 * "Signature Calculations for the Authorization Header: Transferring
 * Payload in a Single Chunk"): bucket examplebucket, key test.txt, header
 * Range: bytes=0-9, x-amz-date 20130524T000000Z, region us-east-1, the
 * documented example key pair. The request is set up by our store's
 * setup function (URL, key encoding, signing options, payload hash header);
 * the test adds only the two headers of the example that vary per request
 * (Range and the fixed date, which libcurl then signs with instead of the
 * clock) and routes examplebucket.s3.amazonaws.com:80 to the local listener
 * with CURLOPT_CONNECT_TO, so Host is exactly the example's.
 */
static void sigv4_aws_example(void **state)
{
    static const char expected[] =
        "AWS4-HMAC-SHA256 "
        "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    static const char *const extra[] = {"Range: bytes=0-9", "X-Amz-Date: 20130524T000000Z", NULL};
    const char *resp[] = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"};
    struct fetch_remote_options o = {.s3_endpoint = "http://s3.amazonaws.com",
                                     .s3_region = "us-east-1"};
    struct curl_slist *hdrs = NULL, *connect_to = NULL;
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    char buf[512], route[128], auth[512];
    struct srv srv;
    CURL *easy;
    (void)state;

    s3_env();
    assert_int_equal(fetch_s3_open("s3://examplebucket", &o, false, &s, &err), 0);
    srv_start(&srv, 1, resp);
    easy = curl_easy_init();
    assert_non_null(easy);
    assert_int_equal(fetch_s3_setup_request(s, easy, "test.txt", extra, &hdrs, &err), 0);
    snprintf(route, sizeof(route), "examplebucket.s3.amazonaws.com:80:127.0.0.1:%d", srv.port);
    connect_to = curl_slist_append(NULL, route);
    curl_easy_setopt(easy, CURLOPT_CONNECT_TO, connect_to);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *null = fopen("/dev/null", "we");
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, null);
    assert_int_equal(curl_easy_perform(easy), CURLE_OK);
    fclose(null);
    srv_stop(&srv);
    curl_easy_cleanup(easy);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(connect_to);
    fetch_store_free(s);

    const char *req = srv.requests[0];
    assert_int_equal(strncmp(req, "GET /test.txt HTTP/1.1\r\n", 24), 0);
    assert_string_equal(header(req, "Host", buf, sizeof(buf)), "examplebucket.s3.amazonaws.com");
    assert_string_equal(header(req, "x-amz-content-sha256", buf, sizeof(buf)),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_non_null(header(req, "Authorization", buf, sizeof(buf)));
    /* libcurl separates the fields with ", ", the documentation with "," */
    size_t o2 = 0;
    for (const char *p = buf; *p && o2 + 1 < sizeof(auth); p++) {
        if (*p == ' ' && p > buf && p[-1] == ',')
            continue;
        auth[o2++] = *p;
    }
    auth[o2] = '\0';
    assert_string_equal(auth, expected);
}

/* ---- stores against the scripted server ---- */

static void http_store_transfers(void **state)
{
    static const char listing[] =
        "[{\"name\":\"vm\",\"type\":\"directory\"},{\"name\":\"owner\",\"type\":\"file\"}]";
    char *r_root = responsef("403 Forbidden", "text/html", "<html>forbidden</html>");
    char *r_list = responsef("200 OK", "application/json", listing);
    char *r_get = responsef("200 OK", "application/octet-stream", "hello");
    char *r_404 = responsef("404 Not Found", "text/html", "<html>404</html>");
    char *r_big = responsef("200 OK", "application/octet-stream", "0123456789abcdef");
    const char *resp[] = {r_root, r_list, r_get, r_404, r_big};
    struct fetch_remote_options o = {0};
    struct fetch_store *s = NULL;
    struct fetch_dirent *d = NULL;
    fetch_error err = {""};
    char loc[128], auth_file[] = "/tmp/lazyimg-test-auth-XXXXXX", buf[256];
    void *data = NULL;
    size_t n = 0, len = 0;
    struct srv srv;
    int fd;
    (void)state;

    fd = mkstemp(auth_file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Bearer tok-123\n", 15), 15);
    close(fd);
    o.http_auth_file = auth_file;

    srv_start(&srv, 5, resp);
    snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/my%%20ds/", srv.port);
    /* a 403 on the root is a server without a directory index: usable */
    assert_int_equal(fetch_store_open(loc, &o, &s, &err), 0);
    assert_string_equal(s->ops->kind, "http");
    assert_int_equal(fetch_store_list(s, "vm", &d, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(has_entry(d, n, "vm", true));
    fetch_dirents_free(d, n);
    assert_int_equal(fetch_store_get(s, "vm/100/a b:c", 100, &data, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    free(data);
    assert_int_equal(fetch_store_get(s, "missing", 100, &data, &len, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "missing: not found"));
    assert_int_equal(fetch_store_get(s, "big", 10, &data, &len, &err), -EFBIG);
    fetch_store_free(s);
    srv_stop(&srv);
    unlink(auth_file);

    assert_int_equal(strncmp(srv.requests[0], "GET /my%20ds/ HTTP/1.1\r\n", 24), 0);
    assert_int_equal(strncmp(srv.requests[1], "GET /my%20ds/vm/ HTTP/1.1\r\n", 27), 0);
    assert_int_equal(strncmp(srv.requests[2], "GET /my%20ds/vm/100/a%20b%3Ac HTTP/1.1\r\n", 40), 0);
    assert_string_equal(header(srv.requests[2], "Authorization", buf, sizeof(buf)),
                        "Bearer tok-123");
    assert_non_null(header(srv.requests[2], "User-Agent", buf, sizeof(buf)));
    assert_int_equal(strncmp(buf, "lazyimg/", 8), 0);
    for (size_t i = 0; i < 5; i++)
        free((char *)resp[i]);
}

static void http_basic_auth_and_errors(void **state)
{
    char *r_ok = responsef("200 OK", "text/html", "<a href=\"x/\">x/</a>");
    char *r_401 = responsef("401 Unauthorized", "text/html", "no");
    const char *resp[] = {r_ok, r_401};
    struct fetch_remote_options o = {0};
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    char loc[128], auth_file[] = "/tmp/lazyimg-test-auth-XXXXXX", buf[256];
    struct srv srv;
    int fd, port;
    (void)state;

    fd = mkstemp(auth_file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "user:pa:ss\n", 11), 11);
    close(fd);
    o.http_auth_file = auth_file;
    srv_start(&srv, 2, resp);
    snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/ds", srv.port);
    assert_int_equal(fetch_store_open(loc, &o, &s, &err), 0);
    fetch_store_free(s);
    s = NULL;
    /* 401 at open: a clear error, and never the password */
    assert_int_equal(fetch_store_open(loc, &o, &s, &err), -EACCES);
    assert_null(s);
    assert_null(strstr(err.msg, "pa:ss"));
    assert_int_equal(strncmp(err.msg, loc, strlen(loc)), 0);
    srv_stop(&srv);
    unlink(auth_file);
    /* "user:pa:ss" is user "user", password "pa:ss" */
    assert_string_equal(header(srv.requests[0], "Authorization", buf, sizeof(buf)),
                        "Basic dXNlcjpwYTpzcw==");

    /* a refused connection */
    fd = listen_any(&port);
    close(fd);
    snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/ds", port);
    assert_int_equal(fetch_store_open(loc, NULL, &s, &err), -ECONNREFUSED);
    {
        char want[160];
        snprintf(want, sizeof(want), "http://127.0.0.1:%d/ds: connection refused", port);
        assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
    }
    /* bad inputs */
    assert_int_equal(fetch_store_open("http://", NULL, &s, &err), -EINVAL);
    assert_int_equal(fetch_store_open("http://h/ds?x=1", NULL, &s, &err), -EINVAL);
    assert_int_equal(fetch_store_open("ftp://host/x", NULL, &s, &err), -EINVAL);
    o.http_auth_file = "/nonexistent/auth";
    assert_int_equal(fetch_store_open(loc, &o, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/auth"));
    free(r_ok);
    free(r_401);
}

static void s3_store_transfers(void **state)
{
    static const char top[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                              "<CommonPrefixes><Prefix>ds/.chunks/</Prefix></CommonPrefixes>"
                              "<CommonPrefixes><Prefix>ds/.cnt/</Prefix></CommonPrefixes>"
                              "</ListBucketResult>";
    static const char root1[] =
        "<ListBucketResult><IsTruncated>true</IsTruncated>"
        "<CommonPrefixes><Prefix>ds/.cnt/ns/</Prefix></CommonPrefixes>"
        "<NextContinuationToken>t/1+=</NextContinuationToken></ListBucketResult>";
    static const char root2[] =
        "<ListBucketResult><IsTruncated>false</IsTruncated>"
        "<CommonPrefixes><Prefix>ds/.cnt/vm/</Prefix></CommonPrefixes></ListBucketResult>";
    char *r_top = responsef("200 OK", "application/xml", top);
    char *r_root1 = responsef("200 OK", "application/xml", root1);
    char *r_root2 = responsef("200 OK", "application/xml", root2);
    char *r_obj = responsef("200 OK", "binary/octet-stream", "DATA");
    char *r_chunk = responsef("200 OK", "binary/octet-stream", "CHUNK");
    const char *resp[] = {r_top, r_root1, r_root2, r_obj, r_chunk};
    struct fetch_remote_options o = {.s3_region = "eu-central-1"};
    struct fetch_store *s = NULL;
    struct fetch_dirent *d = NULL;
    fetch_error err = {""};
    char endpoint[64], buf[512];
    void *data = NULL;
    size_t n = 0, len = 0;
    struct srv srv;
    (void)state;

    s3_env();
    setenv("AWS_SESSION_TOKEN", "session/tok", 1);
    srv_start(&srv, 5, resp);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", srv.port);
    o.s3_endpoint = endpoint;
    assert_int_equal(fetch_store_open("s3://bucket/ds/", &o, &s, &err), 0);
    assert_string_equal(s->location, "s3://bucket/ds");
    assert_int_equal(fetch_store_list(s, "", &d, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(has_entry(d, n, ".chunks", true));
    assert_true(has_entry(d, n, "ns", true));
    assert_true(has_entry(d, n, "vm", true));
    fetch_dirents_free(d, n);
    assert_int_equal(fetch_store_get(s, "vm/1/index.json.blob", 100, &data, &len, &err), 0);
    assert_memory_equal(data, "DATA", 4);
    free(data);
    assert_int_equal(fetch_store_get(s, ".chunks/abcd/abcdef", 100, &data, &len, &err), 0);
    assert_memory_equal(data, "CHUNK", 5);
    free(data);
    fetch_store_free(s);
    srv_stop(&srv);
    unsetenv("AWS_SESSION_TOKEN");

    /* path style (IP endpoint), canonical query order, layout mapping */
    assert_string_prefix(srv.requests[0],
                         "GET /bucket?delimiter=%2F&encoding-type=url&list-type=2&prefix=ds%2F "
                         "HTTP/1.1");
    assert_string_prefix(srv.requests[1], "GET /bucket?delimiter=%2F&encoding-type=url&list-type=2"
                                          "&prefix=ds%2F.cnt%2F HTTP");
    assert_string_prefix(srv.requests[2],
                         "GET /bucket?continuation-token=t%2F1%2B%3D&delimiter=%2F"
                         "&encoding-type=url&list-type=2&prefix=ds%2F.cnt%2F HTTP");
    assert_int_equal(strncmp(srv.requests[3], "GET /bucket/ds/.cnt/vm/1/index.json.blob HTTP", 45),
                     0);
    assert_int_equal(strncmp(srv.requests[4], "GET /bucket/ds/.chunks/abcd/abcdef HTTP", 39), 0);
    assert_string_equal(header(srv.requests[3], "x-amz-security-token", buf, sizeof(buf)),
                        "session/tok");
    assert_non_null(header(srv.requests[3], "Authorization", buf, sizeof(buf)));
    assert_non_null(strstr(buf, "/eu-central-1/s3/aws4_request"));
    assert_non_null(strstr(buf, "x-amz-security-token"));
    for (size_t i = 0; i < 5; i++)
        free((char *)resp[i]);
}

static void s3_open_errors(void **state)
{
    static const char denied[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
                                 "<Code>InvalidAccessKeyId</Code><Message>The AWS Access Key "
                                 "Id you provided does not exist in our records.</Message>"
                                 "</Error>";
    char *r_denied = responsef("403 Forbidden", "application/xml", denied);
    const char *resp[] = {r_denied};
    struct fetch_remote_options o = {0};
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    char endpoint[64];
    struct srv srv;
    (void)state;

    s3_env();
    srv_start(&srv, 1, resp);
    snprintf(endpoint, sizeof(endpoint), "http://localhost:%d", srv.port);
    o.s3_endpoint = endpoint;
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EACCES);
    assert_string_equal(err.msg, "s3://b: S3 rejected the access key (InvalidAccessKeyId)");
    srv_stop(&srv);
    /* localhost: path style too */
    assert_int_equal(strncmp(srv.requests[0], "GET /b?delimiter", 16), 0);
    free(r_denied);

    /* no credentials anywhere */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/nonexistent", 1);
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));
    if (home) {
        setenv("HOME", home, 1);
        free(home);
    }
    /* the credentials file option */
    o.s3_credentials_file = "/nonexistent/credentials";
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/credentials"));
    /* malformed locations */
    s3_env();
    o.s3_credentials_file = NULL;
    assert_int_equal(fetch_store_open("s3://", &o, &s, &err), -EINVAL);
    assert_int_equal(fetch_store_open("s3://b/../x", &o, &s, &err), -EINVAL);
    assert_int_equal(fetch_store_open("s3://b@d", &o, &s, &err), -EINVAL);
    o.s3_endpoint = "ftp://x";
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EINVAL);
    /* an endpoint refused for its user name, or malformed, is named in the
     * message with its password masked */
    o.s3_endpoint = "https://user:TOPSECRET@127.0.0.1:1/";
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "takes no query or user name"));
    assert_non_null(strstr(err.msg, "127.0.0.1:1"));
    assert_null(strstr(err.msg, "TOPSECRET"));
    o.s3_endpoint = "ftp://user:TOPSECRET@x/";
    assert_int_equal(fetch_store_open("s3://b", &o, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "invalid S3 endpoint"));
    assert_null(strstr(err.msg, "TOPSECRET"));
}

static void virtual_host_url(void **state)
{
    struct fetch_remote_options o = {.s3_region = "eu-west-3"};
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    CURL *easy = curl_easy_init();
    char *url = NULL;
    (void)state;

    s3_env();
    assert_int_equal(fetch_s3_open("s3://my-bucket/p", &o, false, &s, &err), 0);
    assert_int_equal(s->ops->setup_get(s, easy, ".chunks/0a0b/x y", &err), 0);
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    assert_string_equal(url, "https://my-bucket.s3.eu-west-3.amazonaws.com/p/.chunks/0a0b/x%20y");
    fetch_store_free(s);
    o.s3_path_style = true;
    assert_int_equal(fetch_s3_open("s3://my-bucket", &o, false, &s, &err), 0);
    curl_easy_reset(easy);
    assert_int_equal(s->ops->setup_get(s, easy, "a", &err), 0);
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    assert_string_equal(url, "https://s3.eu-west-3.amazonaws.com/my-bucket/a");
    fetch_store_free(s);
    curl_easy_cleanup(easy);
}

static void url_userinfo(void **state)
{
    char *r_ok = responsef("200 OK", "text/html", "<a href=\"x/\">x/</a>");
    const char *resp[] = {r_ok};
    struct fetch_store *s = NULL;
    fetch_error err = {""};
    char loc[160], buf[256], small[12];
    struct srv srv;
    (void)state;

    /* masking */
    fetch_location_mask("https://u:p%40ss@h:1/ds", "***", buf, sizeof(buf));
    assert_string_equal(buf, "https://u:***@h:1/ds");
    fetch_location_mask("https://u:p@ss@h/ds/a@b", NULL, buf, sizeof(buf));
    assert_string_equal(buf, "https://u@h/ds/a@b");
    fetch_location_mask("--mirror=http://a:b@h/x", "***", buf, sizeof(buf));
    assert_string_equal(buf, "--mirror=http://a:***@h/x");
    fetch_location_mask("http://user@h/x", "***", buf, sizeof(buf));
    assert_string_equal(buf, "http://user@h/x");
    fetch_location_mask("/srv/ds", "***", buf, sizeof(buf));
    assert_string_equal(buf, "/srv/ds");
    /* unencoded '/', '?', '#' in a password: never shown, a port is not a password */
    fetch_location_mask("https://u:p#ss@h/ds", "***", buf, sizeof(buf));
    assert_string_equal(buf, "https://u:***@h/ds");
    fetch_location_mask("https://u:p?x@h/ds", "***", buf, sizeof(buf));
    assert_string_equal(buf, "https://u:***@h/ds");
    fetch_location_mask("https://u:p/ss@h/ds", "***", buf, sizeof(buf));
    assert_string_equal(buf, "https://u:***@h/ds");
    fetch_location_mask("http://h:8080/a@b", "***", buf, sizeof(buf));
    assert_string_equal(buf, "http://h:8080/a@b");
    assert_int_equal(fetch_location_mask("http://a:secret@h", "***", small, sizeof(small)),
                     strlen("http://a:***@h"));
    assert_string_equal(small, "http://a:**");

    /* the userinfo is basic authentication, and no message shows the password */
    srv_start(&srv, 1, resp);
    snprintf(loc, sizeof(loc), "http://us%%65r:pa%%3As%%40s@127.0.0.1:%d/ds/", srv.port);
    assert_int_equal(fetch_store_open(loc, NULL, &s, &err), 0);
    snprintf(buf, sizeof(buf), "http://us%%65r:***@127.0.0.1:%d/ds", srv.port);
    assert_string_equal(s->location, buf);
    fetch_store_free(s);
    srv_stop(&srv);
    /* "user:pa:s@s" */
    assert_string_equal(header(srv.requests[0], "Authorization", buf, sizeof(buf)),
                        "Basic dXNlcjpwYTpzQHM=");
    assert_int_equal(fetch_store_open("http://u:Secret1@[bad/x", NULL, &s, &err), -EINVAL);
    assert_null(strstr(err.msg, "Secret1"));
    assert_int_equal(fetch_store_open("s3://AKIA:Secret1@bucket/x", NULL, &s, &err), -EINVAL);
    assert_null(strstr(err.msg, "Secret1"));
    /* an AWS secret with a '/' ends the authority before its '@' */
    assert_int_equal(fetch_store_open("s3://AKIA:Sec/ret1@bucket/x", NULL, &s, &err), -EINVAL);
    assert_null(strstr(err.msg, "Sec"));
    assert_non_null(strstr(err.msg, "takes no credentials"));
    free(r_ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(percent_encoding),
        cmocka_unit_test(nginx_json),
        cmocka_unit_test(listing_bounded),
        cmocka_unit_test(nginx_html),
        cmocka_unit_test(apache_html),
        cmocka_unit_test(absolute_html),
        cmocka_unit_test(s3_list_pages),
        cmocka_unit_test(s3_list_url_encoded),
        cmocka_unit_test(s3_errors),
        cmocka_unit_test(s3_credentials),
        cmocka_unit_test(s3_key_mapping),
        cmocka_unit_test(store_outage),
        cmocka_unit_test(result_mapping),
        cmocka_unit_test(sigv4_aws_example),
        cmocka_unit_test(http_store_transfers),
        cmocka_unit_test(http_basic_auth_and_errors),
        cmocka_unit_test(url_userinfo),
        cmocka_unit_test(s3_store_transfers),
        cmocka_unit_test(s3_open_errors),
        cmocka_unit_test(virtual_host_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
