/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* S3's XML: ListObjectsV2 pages (ListBucketResult) and error documents. */
#include "remote_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static bool node_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static const xmlNode *child(const xmlNode *n, const char *name)
{
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (node_is(c, name))
            return c;
    }
    return NULL;
}

/* The text of @n as a malloc()ed string; NULL on ENOMEM. */
static char *text_of(const xmlNode *n)
{
    xmlChar *t = xmlNodeGetContent(n);
    char *s;
    if (!t)
        return strdup("");
    s = strdup((const char *)t);
    xmlFree(t);
    return s;
}

static void xml_silent(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void xml_silent_structured(void *ctx, xmlErrorPtr e)
{
    (void)ctx;
    (void)e;
}

static int parse_xml(const char *xml, size_t len, xmlDoc **ret, fetch_error *err)
{
    xmlDoc *doc;
    if (len > INT_MAX)
        return fetch_error_set(err, -EFBIG, "S3 answer too large");
    /* Library code never prints: libxml2 reports some errors (encoding
     * conversion) to stderr despite XML_PARSE_NOERROR. These handlers are
     * per thread; lazyimg has no other libxml2 user. */
    xmlSetGenericErrorFunc(NULL, xml_silent);
    xmlSetStructuredErrorFunc(NULL, xml_silent_structured);
    doc = xmlReadMemory(xml, (int)len, "s3.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc || !xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        return fetch_error_set(err, -EBADMSG, "malformed XML in the S3 answer");
    }
    if (doc->intSubset || doc->extSubset) { /* no entity games */
        xmlFreeDoc(doc);
        return fetch_error_set(err, -EBADMSG, "S3 answer has a DTD");
    }
    *ret = doc;
    return 0;
}

/* Copies server text for a message: printable ASCII only, bounded. */
static void clean_copy(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (; src && *src && o + 1 < cap; src++)
        dst[o++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
    dst[o] = '\0';
}

static int add_entry(struct fetch_dirvec *d, const char *full, const char *prefix, bool is_dir)
{
    size_t pl = strlen(prefix), l;
    const char *name;
    if (strncmp(full, prefix, pl))
        return 0;
    name = full + pl;
    l = strlen(name);
    if (is_dir && l && name[l - 1] == '/')
        l--;
    return fetch_dirvec_add(d, name, l, is_dir);
}

/* A key as encoding-type=url sends it ('+' for a space, %XX for the
 * rest), decoded; NULL when malformed (or ENOMEM). */
static char *url_decode(const char *s)
{
    char *t = strdup(s), *out;
    if (!t)
        return NULL;
    for (char *p = t; *p; p++)
        if (*p == '+')
            *p = ' ';
    out = fetch_percent_decode(t, strlen(t));
    free(t);
    return out;
}

int fetch_s3_parse_list(const char *xml, size_t len, const char *prefix, struct fetch_dirvec *d,
                        char **ret_token, fetch_error *err)
{
    const xmlNode *root;
    char *token = NULL;
    bool truncated = false, encoded = false;
    xmlDoc *doc;
    int r;

    r = parse_xml(xml, len, &doc, err);
    if (r < 0)
        return r;
    root = xmlDocGetRootElement(doc);
    if (!node_is(root, "ListBucketResult")) {
        char name[64];
        clean_copy(name, sizeof(name), (const char *)root->name);
        xmlFreeDoc(doc);
        return fetch_error_set(err, -EBADMSG, "S3 listing: unexpected <%s> document", name);
    }
    /* keys URL-encoded when the request asked and the server did it (one
     * that ignores encoding-type sends them as they are) */
    for (const xmlNode *c = root->children; c; c = c->next) {
        char *t;
        if (!node_is(c, "EncodingType"))
            continue;
        if (!(t = text_of(c))) {
            xmlFreeDoc(doc);
            return fetch_error_set(err, -ENOMEM, "out of memory");
        }
        encoded = !strcmp(t, "url");
        free(t);
    }
    for (const xmlNode *c = root->children; c && r == 0; c = c->next) {
        const xmlNode *k;
        char *t;
        if (node_is(c, "Contents") || node_is(c, "CommonPrefixes")) {
            bool is_dir = node_is(c, "CommonPrefixes");
            if (!(k = child(c, is_dir ? "Prefix" : "Key")))
                continue;
            if (!(t = text_of(k))) {
                r = -ENOMEM;
                break;
            }
            if (encoded) {
                /* one key that does not decode (an encoded NUL, a bad escape
                 * from a server of its own) is left out, not the listing */
                char *plain = url_decode(t);
                free(t);
                if (!plain)
                    continue;
                t = plain;
            }
            r = add_entry(d, t, prefix, is_dir);
            free(t);
        } else if (node_is(c, "IsTruncated")) {
            if (!(t = text_of(c))) {
                r = -ENOMEM;
                break;
            }
            truncated = !strcmp(t, "true");
            free(t);
        } else if (node_is(c, "NextContinuationToken")) {
            free(token);
            if (!(token = text_of(c)))
                r = -ENOMEM;
        }
    }
    xmlFreeDoc(doc);
    if (r < 0) {
        free(token);
        return fetch_error_set(err, r, "out of memory");
    }
    if (!truncated) {
        free(token);
        token = NULL;
    } else if (!token || !*token) {
        free(token);
        return fetch_error_set(err, -EBADMSG, "S3 listing truncated without a continuation token");
    }
    *ret_token = token;
    return 0;
}

/* The text of the first <@tag>…</@tag> in @xml (@len bytes, not parsed: the
 * start of an answer cut short), cleaned into @dst; "" if there is none. */
static void cut_tag_text(const char *xml, size_t len, const char *tag, char *dst, size_t cap)
{
    char open[32], close[32], text[256];
    const char *a, *b;
    size_t ol = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
    size_t cl = (size_t)snprintf(close, sizeof(close), "</%s>", tag);

    dst[0] = '\0';
    if (!(a = memmem(xml, len, open, ol)))
        return;
    a += ol;
    if (!(b = memmem(a, len - (size_t)(a - xml), close, cl)) || (size_t)(b - a) >= sizeof(text))
        return;
    memcpy(text, a, (size_t)(b - a));
    text[b - a] = '\0';
    clean_copy(dst, cap, text);
}

/* fetch_s3_error(); *@coded (unless NULL): whether the body named an S3 error code */
static int s3_error(long status, const char *xml, size_t len, const char *what, fetch_error *err,
                    bool *coded)
{
    static const char *const tags[] = {"Code", "Message", "Region", "Endpoint"};
    char code[64] = "", msg[128] = "", region[64] = "", endpoint[128] = "";
    char *dst[] = {code, msg, region, endpoint};
    const size_t caps[] = {sizeof(code), sizeof(msg), sizeof(region), sizeof(endpoint)};
    xmlDoc *doc = NULL;

    if (coded)
        *coded = false;
    if (status >= 200 && status < 300)
        return 0;
    if (xml && len && parse_xml(xml, len, &doc, NULL) == 0) {
        const xmlNode *root = xmlDocGetRootElement(doc), *n;
        for (size_t i = 0; node_is(root, "Error") && i < sizeof(tags) / sizeof(tags[0]); i++) {
            xmlChar *t;
            if (!(n = child(root, tags[i])) || !(t = xmlNodeGetContent(n)))
                continue;
            clean_copy(dst[i], caps[i], (const char *)t);
            xmlFree(t);
        }
        xmlFreeDoc(doc);
    } else if (xml && len && memmem(xml, len, "<Error>", 7)) {
        /* cut short (a caller keeps the start of a long answer) */
        for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
            cut_tag_text(xml, len, tags[i], dst[i], caps[i]);
    }
    if (!*code)
        return fetch_remote_result(CURLE_OK, status, NULL, what, err);
    if (coded)
        *coded = true;

    if (!strcmp(code, "NoSuchKey"))
        return fetch_error_set(err, -ENOENT, "%s: not found (NoSuchKey)", what);
    if (!strcmp(code, "NoSuchBucket"))
        return fetch_error_set(err, -ENOENT, "%s: the S3 bucket does not exist (NoSuchBucket)",
                               what);
    if (!strcmp(code, "InvalidAccessKeyId"))
        return fetch_error_set(err, -EACCES, "%s: S3 rejected the access key (InvalidAccessKeyId)",
                               what);
    if (!strcmp(code, "SignatureDoesNotMatch"))
        return fetch_error_set(err, -EACCES,
                               "%s: S3 rejected the request signature, check the secret key "
                               "(SignatureDoesNotMatch)",
                               what);
    if (!strcmp(code, "AccessDenied") || !strcmp(code, "AllAccessDisabled"))
        return fetch_error_set(err, -EACCES, "%s: S3 denied access (%s)", what, code);
    if (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
        !strcmp(code, "TokenRefreshRequired"))
        return fetch_error_set(err, -EACCES, "%s: S3 rejected the session token (%s)", what, code);
    if (!strcmp(code, "RequestTimeTooSkewed"))
        return fetch_error_set(err, -EACCES,
                               "%s: S3 rejected the request time, check the system clock "
                               "(RequestTimeTooSkewed)",
                               what);
    if (!strcmp(code, "AuthorizationHeaderMalformed") && *region)
        return fetch_error_set(err, -EACCES,
                               "%s: the bucket is in region %s (see --s3-region) (%s)", what,
                               region, code);
    if (!strcmp(code, "PermanentRedirect") || !strcmp(code, "TemporaryRedirect") ||
        !strcmp(code, "IllegalLocationConstraintException"))
        return fetch_error_set(err, -EIO,
                               "%s: the bucket is served by another endpoint%s%s (see "
                               "--s3-endpoint, --s3-region) (%s)",
                               what, *endpoint ? " " : "", endpoint, code);
    if (!strcmp(code, "SlowDown") || !strcmp(code, "InternalError") ||
        !strcmp(code, "ServiceUnavailable") || !strcmp(code, "RequestTimeout"))
        return fetch_error_set(err, -EAGAIN, "%s: S3 is busy or failing (%s)", what, code);

    int r = fetch_remote_result(CURLE_OK, status, NULL, what, NULL);
    if (r == 0)
        r = -EIO;
    if (*msg)
        return fetch_error_set(err, r, "%s: S3 error %s (HTTP %ld): %s", what, code, status, msg);
    return fetch_error_set(err, r, "%s: S3 error %s (HTTP %ld)", what, code, status);
}

int fetch_s3_error(long status, const char *xml, size_t len, const char *what, fetch_error *err)
{
    return s3_error(status, xml, len, what, err, NULL);
}

int fetch_s3_explain(long status, const char *xml, size_t len, const char *what, fetch_error *err)
{
    fetch_error mine = {""};
    bool coded;
    (void)s3_error(status, xml, len, what, &mine, &coded);
    if (!coded)
        return 0;
    if (err)
        *err = mine;
    return 1;
}
