/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The command-line options of remote stores (TLS, HTTP authentication, S3
 * endpoint and credentials, timeouts), shared by the subcommands that open a
 * store. Merge FS_REMOTE_LONG_OPTIONS into a getopt_long table, pass every
 * option to fs_remote_opt_parse() first, and append FS_REMOTE_OPTIONS_HELP to
 * the usage text. Option values are 0x200 and above, clear of characters
 * and of the subcommands' own enums (which start at 256).
 */
#pragma once

#include <getopt.h>

#include "fetch/remote.h"

enum {
    FS_OPT_CA_CERT = 0x200,
    FS_OPT_INSECURE,
    FS_OPT_HTTP_AUTH_FILE,
    FS_OPT_S3_ENDPOINT,
    FS_OPT_S3_REGION,
    FS_OPT_S3_PATH_STYLE,
    FS_OPT_S3_CREDENTIALS_FILE,
    FS_OPT_CONNECT_TIMEOUT,
    FS_OPT_FETCH_TIMEOUT,
};

#define FS_REMOTE_LONG_OPTIONS                                                                     \
    {"ca-cert", required_argument, NULL, FS_OPT_CA_CERT},                                          \
        {"insecure", no_argument, NULL, FS_OPT_INSECURE},                                          \
        {"http-auth-file", required_argument, NULL, FS_OPT_HTTP_AUTH_FILE},                        \
        {"s3-endpoint", required_argument, NULL, FS_OPT_S3_ENDPOINT},                              \
        {"s3-region", required_argument, NULL, FS_OPT_S3_REGION},                                  \
        {"s3-path-style", no_argument, NULL, FS_OPT_S3_PATH_STYLE},                                \
        {"s3-credentials-file", required_argument, NULL, FS_OPT_S3_CREDENTIALS_FILE},              \
        {"connect-timeout", required_argument, NULL, FS_OPT_CONNECT_TIMEOUT},                      \
    {                                                                                              \
        "fetch-timeout", required_argument, NULL, FS_OPT_FETCH_TIMEOUT                             \
    }

/* Usage lines, in the layout of the subcommands' help (a string literal). */
#define FS_REMOTE_OPTIONS_HELP                                                                     \
    "Remote stores (http://, https://, s3://):\n"                                                  \
    "      --ca-cert FILE     trust the CA certificates in FILE (PEM) for TLS\n"                   \
    "      --insecure         do not verify TLS certificates (testing only)\n"                     \
    "      --http-auth-file FILE  credentials for HTTP(S) stores: one line\n"                      \
    "                         \"user:password\" (basic) or \"Bearer TOKEN\"\n"                     \
    "      --s3-endpoint URL  S3 service URL (default\n"                                           \
    "                         https://s3.REGION.amazonaws.com)\n"                                  \
    "      --s3-region R      S3 region (default $AWS_REGION, $AWS_DEFAULT_REGION,\n"              \
    "                         else us-east-1)\n"                                                   \
    "      --s3-path-style    put the bucket in the URL path, not the host name\n"                 \
    "                         (automatic for IP addresses and localhost)\n"                        \
    "      --s3-credentials-file FILE  AWS credentials file, profile [default] or\n"               \
    "                         $AWS_PROFILE; otherwise $AWS_ACCESS_KEY_ID,\n"                       \
    "                         $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN, then\n"                  \
    "                         $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials\n"                \
    "      --connect-timeout SECONDS  per connection attempt (default 10)\n"                       \
    "      --fetch-timeout SECONDS    abandon (and retry) a request that moves\n"                  \
    "                         less than 1 KiB/s for this long (default 60); a\n"                   \
    "                         slow link's long transfers are not cut off\n"

/*
 * Handles option @c (with its argument @arg) if it is one of the above: 1
 * when handled, 0 when not ours, -1 on a bad value (a one-line error is
 * printed). @arg is kept by pointer (argv outlives the options).
 */
int fs_remote_opt_parse(int c, const char *arg, struct fetch_remote_options *o);
