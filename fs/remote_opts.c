/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "remote_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* "2", "0.5", "30s": positive seconds up to a day, into milliseconds. */
static int parse_seconds(const char *name, const char *arg, long *ret)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(arg, &end);
    if (end != arg && end[0] == 's' && end[1] == '\0')
        end++;
    if (errno || end == arg || *end || !isfinite(v) || v <= 0 || v > 86400) {
        fs_err("--%s: expected a number of seconds (0 < N <= 86400), got '%s'", name, arg);
        return -1;
    }
    *ret = (long)(v * 1000 + 0.5);
    if (*ret < 1)
        *ret = 1;
    return 1;
}

static int need_value(const char *name, const char *arg)
{
    if (!arg || !*arg) {
        fs_err("--%s: empty value", name);
        return -1;
    }
    return 1;
}

int fs_remote_opt_parse(int c, const char *arg, struct fetch_remote_options *o)
{
    switch (c) {
    case FS_OPT_CA_CERT:
        o->ca_cert = arg;
        return need_value("ca-cert", arg);
    case FS_OPT_INSECURE:
        o->insecure = true;
        return 1;
    case FS_OPT_HTTP_AUTH_FILE:
        o->http_auth_file = arg;
        return need_value("http-auth-file", arg);
    case FS_OPT_S3_ENDPOINT:
        if (need_value("s3-endpoint", arg) < 0)
            return -1;
        if (strncasecmp(arg, "http://", 7) && strncasecmp(arg, "https://", 8)) {
            char *shown = fetch_location_shown(arg);
            fs_err("--s3-endpoint: expected an http:// or https:// URL, got '%s'",
                   shown ? shown : "...");
            free(shown);
            return -1;
        }
        o->s3_endpoint = arg;
        return 1;
    case FS_OPT_S3_REGION:
        o->s3_region = arg;
        return need_value("s3-region", arg);
    case FS_OPT_S3_PATH_STYLE:
        o->s3_path_style = true;
        return 1;
    case FS_OPT_S3_CREDENTIALS_FILE:
        o->s3_credentials_file = arg;
        return need_value("s3-credentials-file", arg);
    case FS_OPT_CONNECT_TIMEOUT:
        return parse_seconds("connect-timeout", arg, &o->connect_timeout_ms);
    case FS_OPT_FETCH_TIMEOUT:
        return parse_seconds("fetch-timeout", arg, &o->timeout_ms);
    default:
        return 0;
    }
}
