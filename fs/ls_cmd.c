/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg ls`: what a repository holds (fetch/repo.h), in the columns of its
 * format, or as JSON. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "json_out.h"
#include "cli.h"
#include "fetch/repo.h"
#include "key_opts.h"
#include "log.h"
#include "remote_opts.h"

static const char ls_usage_head[] =
    "Usage: lazyimg ls [options] STORE\n"
    "\n"
    "Lists what a backup repository holds: the finished snapshots of a datastore\n"
    "and their archives, or the indexes of a chunk-index repository (each\n"
    "checked), with the path each one has below a mountpoint and whether the\n"
    "mount shows it. STORE is a directory, an http:// or https:// URL served by\n"
    "a web server with a directory index, or s3://BUCKET[/PREFIX].\n"
    "\n"
    "Options:\n"
    "      --json             print a JSON array instead of a table\n"
    "      --format NAME      what STORE holds, without probing it:\n";

static const char ls_usage_tail[] =
    FS_KEY_OPTIONS_HELP FS_REMOTE_OPTIONS_HELP "  -h, --help             show this help\n";

static void usage(FILE *out)
{
    size_t n;
    const struct fetch_repo_format *const *f = fetch_repo_formats(&n);
    fputs(ls_usage_head, out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "                           %-8s %s\n", f[i]->name, f[i]->label);
    fputs(ls_usage_tail, out);
}

struct table {
    const struct fetch_repo_format *format;
    size_t rows;
};

/* One row: every cell escaped for the terminal (names come from the store). */
static int print_row(void *arg, const char *const *cells)
{
    const struct table *t = arg;
    for (size_t i = 0; i < t->format->ncolumns; i++) {
        const struct fetch_list_column *c = &t->format->columns[i];
        char shown[2048];
        fs_escape(cells[i], shown, sizeof(shown));
        printf("%*s%*s", i ? c->gap : 0, "", c->right ? c->width : -c->width, shown);
    }
    putchar('\n');
    ((struct table *)arg)->rows++;
    return 0;
}

static int print_table(struct fetch_repo *repo)
{
    const struct fetch_repo_format *f = repo->format;
    const char *headers[16];
    struct table t = {f, 0};
    int r;

    for (size_t i = 0; i < f->ncolumns && i < 16; i++)
        headers[i] = f->columns[i].header;
    print_row(&t, headers);
    t.rows = 0;
    r = f->list_rows(repo, print_row, &t);
    if (r < 0) {
        fs_err("%s", strerror(-r));
        return -1;
    }
    if (t.rows == 0 && f->empty_list)
        printf("%s\n", f->empty_list);
    return 0;
}

static int print_json(struct fetch_repo *repo)
{
    json_object *arr = repo->format->list_json(repo);
    if (!arr) {
        fs_err("out of memory");
        return -1;
    }
    fs_json_write(stdout, arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    json_object_put(arr);
    return 0;
}

int fs_cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"format", required_argument, NULL, 'F'},
        FS_REMOTE_LONG_OPTIONS,           FS_KEY_LONG_OPTIONS,
        {"help", no_argument, NULL, 'h'}, {0},
    };
    struct fetch_remote_options ro = {0};
    struct fs_key_opts ko = {0};
    struct fetch_pbs_key *key = NULL;
    const struct fetch_repo_format *format = NULL;
    struct fetch_repo *repo = NULL;
    struct fetch_store *store = NULL;
    fetch_error err = {""};
    bool json = false;
    int c, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int handled = fs_remote_opt_parse(c, optarg, &ro);
        if (!handled)
            handled = fs_key_opt_parse(c, optarg, &ko);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'F':
            if (!(format = fetch_repo_format_by_name(optarg))) {
                fs_err("ls: --format %s: unknown (see lazyimg ls --help)", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fs_err("ls: expected one STORE argument (see lazyimg ls --help)");
        return 2;
    }
    if (fs_key_load(&ko, &key) < 0)
        return 1;
    if (format) {
        if (fetch_store_open(argv[optind], &ro, &store, &err) < 0)
            fs_err("%s", err.msg);
    } else {
        store = fs_open_store(argv[optind], &ro, &format);
    }
    if (!store) {
        fs_key_free(key);
        return 1;
    }
    r = fetch_repo_load(format, store, key, NULL, 0, false, &repo, &err);
    if (r < 0) {
        fs_err("%s: %s", store->location, err.msg);
        fetch_store_free(store);
        fs_key_free(key);
        return 1;
    }
    fs_repo_report(repo);
    r = json ? print_json(repo) : print_table(repo);
    fetch_repo_free(repo);
    fetch_store_free(store);
    fs_key_free(key);
    return r < 0 ? 1 : 0;
}
