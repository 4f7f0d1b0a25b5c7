/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Mount options from a file (see config.h). */
#include "conf_file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define MAX_LINE 4096
#define MAX_SETTINGS 256

struct expand {
    char **argv;
    int argc, cap;
};

static int push(struct expand *x, char *s)
{
    if (!s)
        return -ENOMEM;
    if (x->argc + 1 >= x->cap) {
        int ncap = x->cap ? x->cap * 2 : 32;
        char **nv = realloc(x->argv, (size_t)ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        x->argv = nv;
        x->cap = ncap;
    }
    x->argv[x->argc++] = s;
    x->argv[x->argc] = NULL;
    return 0;
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static bool valid_key(const char *k)
{
    if (!*k || *k == '-')
        return false;
    for (; *k; k++)
        if (!islower((unsigned char)*k) && !isdigit((unsigned char)*k) && *k != '-')
            return false;
    return true;
}

/* Reads @path into @x: 0, 1 (cannot read), 2 (a line the file should not
 * have), or -ENOMEM. */
static int read_file(const char *path, struct expand *x, const char **store,
                     const char **mountpoint)
{
    char line[MAX_LINE];
    unsigned lineno = 0, settings = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

    if (!f) {
        fs_err("--config %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *s, *eq, *key, *val = NULL, *opt;
        size_t len = strlen(line);
        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            fs_err("%s:%u: line longer than %d bytes", path, lineno, MAX_LINE - 2);
            goto usage;
        }
        s = trim(line);
        if (!*s || *s == '#')
            continue;
        if ((eq = strchr(s, '='))) {
            *eq = '\0';
            val = trim(eq + 1);
            len = strlen(val);
            if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
                val[len - 1] = '\0';
                val++;
            }
        }
        key = trim(s);
        if (!valid_key(key) || !strcmp(key, "config")) {
            fs_err("%s:%u: '%s' is not a setting (the long options of lazyimg mount, without "
                   "their dashes, or store or mountpoint)",
                   path, lineno, key);
            goto usage;
        }
        if (++settings > MAX_SETTINGS) {
            fs_err("%s:%u: more than %d settings", path, lineno, MAX_SETTINGS);
            goto usage;
        }
        if (!strcmp(key, "store") || !strcmp(key, "mountpoint")) {
            char *v;
            if (!val || !*val) {
                fs_err("%s:%u: %s needs a value", path, lineno, key);
                goto usage;
            }
            const char **slot = !strcmp(key, "store") ? store : mountpoint;
            if (!(v = strdup(val)))
                goto nomem;
            free((char *)*slot); /* given twice: the last one counts */
            *slot = v;
            continue;
        }
        if (!val && fs_mount_opt_has_arg(key) == required_argument) {
            /* "--key" would take the command line's next word as its value */
            fs_err("%s:%u: %s needs a value (%s = VALUE)", path, lineno, key, key);
            goto usage;
        }
        if (val && asprintf(&opt, "--%s=%s", key, val) < 0)
            goto nomem;
        if (!val && asprintf(&opt, "--%s", key) < 0)
            goto nomem;
        if (push(x, opt) < 0) {
            free(opt);
            goto nomem;
        }
    }
    if (ferror(f)) {
        fs_err("--config %s: %s", path, strerror(errno));
        fclose(f);
        return 1;
    }
    fclose(f);
    return 0;
usage:
    fclose(f);
    return 2;
nomem:
    fclose(f);
    return -ENOMEM;
}

/* the file the mount read, and the mirrors it named then ("\n"-joined) */
static char *used_path, *used_mirrors;
/* the expanded arguments: they live until the process exits (kept here,
 * where they stay reachable) */
static struct expand kept;
static const char *kept_store, *kept_mountpoint;

/* Frees what @x holds but argv[0] (borrowed), and the store and mountpoint. */
static void expand_free(struct expand *x, const char **store, const char **mountpoint)
{
    for (int i = 1; i < x->argc; i++)
        free(x->argv[i]);
    free(x->argv);
    *x = (struct expand){0};
    free((char *)*store);
    free((char *)*mountpoint);
    *store = *mountpoint = NULL;
}

/* The mirror settings of @x's options, "\n"-joined (malloc()ed), or NULL. */
static char *mirrors_of(const struct expand *x)
{
    size_t len = 1, at = 0;
    char *s;
    for (int i = 0; i < x->argc; i++)
        if (!strncmp(x->argv[i], "--mirror=", 9))
            len += strlen(x->argv[i]) - 9 + 1;
    if (!(s = calloc(1, len)))
        return NULL;
    for (int i = 0; i < x->argc; i++)
        if (!strncmp(x->argv[i], "--mirror=", 9)) {
            size_t n = strlen(x->argv[i]) - 9;
            memcpy(s + at, x->argv[i] + 9, n); /* sized above */
            s[at + n] = '\n';
            at += n + 1;
        }
    return s;
}

void fs_config_check_reload(void)
{
    struct expand x = {0};
    const char *store = NULL, *mnt = NULL;
    char *now;
    int r;

    if (!used_path)
        return;
    r = read_file(used_path, &x, &store, &mnt);
    if (r != 0) {
        fs_warn("%s: not read again (see above); the mount keeps its settings", used_path);
    } else if ((now = mirrors_of(&x))) {
        if (strcmp(now, used_mirrors ? used_mirrors : ""))
            fs_warn("%s: its mirrors changed: a remount applies them (SIGHUP reads the "
                    "credentials files again, nothing else)",
                    used_path);
        free(now);
    }
    for (int i = 0; i < x.argc; i++)
        free(x.argv[i]);
    free(x.argv);
    free((char *)store);
    free((char *)mnt);
}

int fs_config_expand(int argc, char **argv, int *ret_argc, char ***ret_argv, const char **store,
                     const char **mountpoint)
{
    struct expand x = {0};
    const char *path = NULL, *env = getenv("LAZYIMG_CONFIG");
    int r, given = -1, owned = 1;

    *store = *mountpoint = NULL;
    /* the file named on the command line (the last --config wins); --help
     * works whatever the files say */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *ret_argc = argc;
            *ret_argv = argv;
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fs_err("--config: expected FILE");
                return 2;
            }
            path = argv[i + 1];
            given = i;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
            given = i;
        }
    }
    if (!path) {
        /* the default file is read when there; one named by the
         * environment must be there, as one named by --config */
        path = env ? env : FS_CONFIG_DEFAULT; /* set and empty: no file */
        if (!*path || (!env && access(path, F_OK) != 0)) {
            *ret_argc = argc;
            *ret_argv = argv;
            return 0;
        }
    }
    if (push(&x, argv[0]) < 0)
        goto nomem;
    if ((r = read_file(path, &x, store, mountpoint)) != 0) {
        expand_free(&x, store, mountpoint);
        if (r < 0)
            fs_err("out of memory");
        return r < 0 ? 1 : r;
    }
    /* absolute: a reload on SIGHUP comes after the daemon's chdir("/") */
    if (!(used_path = realpath(path, NULL)))
        used_path = strdup(path);
    used_mirrors = mirrors_of(&x);
    owned = x.argc; /* the file's options; the command line's are borrowed */
    for (int i = 1, dd = 0; i < argc; i++) {
        if (!dd && !strcmp(argv[i], "--config") && given >= 0) {
            i++; /* and its FILE */
            continue;
        }
        if (!dd && !strncmp(argv[i], "--config=", 9))
            continue;
        dd |= !strcmp(argv[i], "--");
        if (push(&x, argv[i]) < 0)
            goto nomem;
    }
    kept = x;
    kept_store = *store;
    kept_mountpoint = *mountpoint;
    *ret_argc = x.argc;
    *ret_argv = x.argv;
    return 0;
nomem:
    x.argc = owned;
    expand_free(&x, store, mountpoint);
    fs_err("out of memory");
    return 1;
}
