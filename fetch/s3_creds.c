/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S3 credentials: the AWS shared credentials file format (profiles, keys,
 * session token), read with fetch/secret.h, and where they come from.
 */
#include "remote_internal.h"
#include "secret.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CREDS_FILE_MAX (1u << 20)

void fetch_s3_creds_release(struct fetch_s3_creds *c)
{
    char **f[] = {&c->key_id, &c->secret, &c->token};
    for (size_t i = 0; i < 3; i++) {
        if (*f[i]) {
            explicit_bzero(*f[i], strlen(*f[i]));
            free(*f[i]);
            *f[i] = NULL;
        }
    }
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

int fetch_s3_parse_credentials(const char *text, size_t len, const char *profile,
                               struct fetch_s3_creds *ret, fetch_error *err)
{
    struct fetch_s3_creds c = {0};
    const char *p = text, *end = text + len;
    bool in_section = false, seen_section = false;
    size_t pl = strlen(profile);

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *ls = p, *le = nl ? nl : end;
        p = nl ? nl + 1 : end;
        trim(&ls, &le);
        if (ls == le || *ls == '#' || *ls == ';')
            continue;
        if (*ls == '[') {
            const char *ns = ls + 1, *ne = le;
            if (ne[-1] != ']')
                continue;
            ne--;
            trim(&ns, &ne);
            if ((size_t)(ne - ns) > 8 && !strncmp(ns, "profile", 7) &&
                isspace((unsigned char)ns[7])) {
                ns += 8;
                trim(&ns, &ne);
            }
            in_section = (size_t)(ne - ns) == pl && !strncmp(ns, profile, pl);
            seen_section |= in_section;
            continue;
        }
        if (!in_section)
            continue;
        const char *eq = memchr(ls, '=', (size_t)(le - ls));
        if (!eq)
            continue;
        const char *ks = ls, *ke = eq, *vs = eq + 1, *ve = le;
        char **dst = NULL;
        trim(&ks, &ke);
        trim(&vs, &ve);
        if ((size_t)(ke - ks) == 17 && !strncasecmp(ks, "aws_access_key_id", 17))
            dst = &c.key_id;
        else if ((size_t)(ke - ks) == 21 && !strncasecmp(ks, "aws_secret_access_key", 21))
            dst = &c.secret;
        else if ((size_t)(ke - ks) == 17 && !strncasecmp(ks, "aws_session_token", 17))
            dst = &c.token;
        if (!dst || ve == vs)
            continue;
        if (*dst) {
            explicit_bzero(*dst, strlen(*dst));
            free(*dst);
        }
        if (!(*dst = strndup(vs, (size_t)(ve - vs)))) {
            fetch_s3_creds_release(&c);
            return fetch_error_set(err, -ENOMEM, "out of memory");
        }
    }
    if (!seen_section) {
        fetch_s3_creds_release(&c);
        return fetch_error_set(err, -ENOENT, "no [%s] section", profile);
    }
    if (!c.key_id || !c.secret) {
        fetch_s3_creds_release(&c);
        return fetch_error_set(
            err, -ENOENT, "section [%s] lacks aws_access_key_id or aws_secret_access_key", profile);
    }
    *ret = c;
    return 0;
}

static int creds_from_file(const char *file, struct fetch_s3_creds *ret, char **ret_file,
                           fetch_error *err)
{
    const char *profile = getenv("AWS_PROFILE");
    char *text = NULL;
    size_t len = 0;
    int r;

    if (!profile || !*profile)
        profile = "default";
    r = fetch_secret_file_read(file, CREDS_FILE_MAX, &text, &len);
    if (r < 0)
        return fetch_error_set(err, r == -ENOMEM ? r : -EINVAL,
                               "%s: cannot read the S3 credentials file: %s", file,
                               r == -EINVAL ? "not a regular file" : strerror(-r));
    r = fetch_s3_parse_credentials(text, len, profile, ret, err);
    fetch_secret_free(text, len);
    if (r < 0)
        return fetch_error_prefix(err, r == -ENOMEM ? r : -EINVAL, "%s", file);
    if (ret_file && !(*ret_file = fetch_remote_abs_path(file))) {
        fetch_s3_creds_release(ret);
        return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/*
 * Credentials, in order: the file given in the options; $AWS_ACCESS_KEY_ID
 * and $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN); the default shared
 * credentials file ($AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials).
 */
int fetch_s3_load_creds(const struct fetch_remote_options *o, struct fetch_s3_creds *ret,
                        char **ret_file, fetch_error *err)
{
    const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN"), *file, *home;
    char buf[PATH_MAX];

    if (ret_file)
        *ret_file = NULL;
    if (o && o->s3_credentials_file)
        return creds_from_file(o->s3_credentials_file, ret, ret_file, err);
    if (id && *id && secret && *secret) {
        struct fetch_s3_creds c = {0};
        if (!(c.key_id = strdup(id)) || !(c.secret = strdup(secret)) ||
            (token && *token && !(c.token = strdup(token)))) {
            fetch_s3_creds_release(&c);
            return fetch_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = c;
        return 0;
    }
    file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    if ((!file || !*file) && (home = getenv("HOME")) && *home) {
        if (snprintf(buf, sizeof(buf), "%s/.aws/credentials", home) < (int)sizeof(buf))
            file = buf;
    }
    if (file && *file && access(file, F_OK) == 0)
        return creds_from_file(file, ret, ret_file, err);
    return fetch_error_set(err, -EINVAL,
                           "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                           "(and AWS_SESSION_TOKEN), or give an AWS credentials file with "
                           "--s3-credentials-file (profile [default] or $AWS_PROFILE; "
                           "~/.aws/credentials is read if present)");
}
