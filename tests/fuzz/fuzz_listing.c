/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the parsers of remote listings and answers (directory indexes
 * as JSON and HTML, S3 ListObjectsV2 pages, S3 error bodies). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/remote_internal.h"
#include "fuzz.h"

static void check_names(const struct fetch_dirent *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *s = d[i].name;
        if (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."))
            __builtin_trap();
        if (i > 0 && strcmp(d[i - 1].name, s) >= 0) /* sorted, no duplicates */
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* NUL-terminated copy: the transfer layer always terminates bodies */
    char *body = malloc(size + 1);
    struct fetch_dirent *d = NULL;
    struct fetch_dirvec v = {0};
    fetch_error err;
    char *token = NULL;
    size_t n = 0;

    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';

    if (fetch_http_parse_index(body, size, "text/html", "/pbs/ds/", &d, &n, &err) == 0) {
        check_names(d, n);
        fetch_dirents_free(d, n);
    }
    d = NULL;
    n = 0;
    if (fetch_http_parse_index(body, size, "application/json", NULL, &d, &n, &err) == 0) {
        check_names(d, n);
        fetch_dirents_free(d, n);
    }
    if (fetch_s3_parse_list(body, size, "p/", &v, &token, &err) == 0) {
        fetch_dirvec_finish(&v);
        check_names(v.v, v.n);
        free(token);
    }
    fetch_dirvec_release(&v);
    if (fetch_s3_error(403, body, size, "x", &err) >= 0)
        __builtin_trap();
    free(body);
    return 0;
}
