/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mount(8) and /etc/fstab: file system type "fuse.lazyimg". mount(8) runs
 * either /sbin/mount.fuse.lazyimg (a link to lazyimg) as
 *     mount.fuse.lazyimg STORE MOUNTPOINT [-sfnvw] [-o OPTIONS] [-t TYPE]
 * or, without that link, libfuse's mount.fuse3, which runs
 *     lazyimg STORE MOUNTPOINT [-o OPTIONS]
 * Both become `lazyimg mount --OPTION[=VALUE]... STORE MOUNTPOINT`: each
 * comma-separated option is the long option of that name (underscores read
 * as dashes), except the generic ones of mount(8) and fstab, which do not
 * concern lazyimg (the mount is read-only whatever they say).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"

/* mount(8)/fstab options that are not lazyimg's: left out */
static const char *const generic[] = {
    "ro",
    "rw",
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "sync",
    "async",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "nolazytime",
    "loud",
    "silent",
    "nonempty",
    "default_permissions",
};

static bool is_generic(const char *opt)
{
    size_t n = strcspn(opt, "=");
    if (!strncmp(opt, "x-", 2) || !strncmp(opt, "comment=", 8) || !strncmp(opt, "subtype=", 8) ||
        !strncmp(opt, "fsname=", 7))
        return true;
    for (size_t i = 0; i < sizeof(generic) / sizeof(generic[0]); i++)
        if (strlen(generic[i]) == n && !strncmp(opt, generic[i], n))
            return true;
    return false;
}

/* Whether @opt (NAME[=VALUE]) would ask for the usage or the version: a
 * mount option must mount (mount(8) takes a 0 exit for a mount), and long
 * options may be abbreviated ("-o he" is --help). */
static bool asks_help(const char *opt)
{
    size_t n = strcspn(opt, "=");
    return n > 0 &&
           ((n <= 4 && !strncmp(opt, "help", n)) || (n <= 7 && !strncmp(opt, "version", n)));
}

bool fs_mount_helper_form(int argc, char **argv)
{
    /* lazyimg STORE MOUNTPOINT [-o OPTIONS], as mount.fuse3 runs it: a STORE
     * is a path or a URL (a mistyped command is neither) */
    return (argc == 3 || (argc == 5 && !strcmp(argv[3], "-o"))) && argv[1][0] != '-' &&
           strpbrk(argv[1], "/:") != NULL;
}

int fs_cmd_mount_helper(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL};
    char **nv, *opts = NULL;
    size_t npos = 0;
    int n = 0, r = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-o") || !strcmp(a, "-t") || !strcmp(a, "-N")) {
            if (i + 1 >= argc) {
                fs_err("%s: %s needs a value", argv[0], a);
                return 2;
            }
            if (a[1] == 'o') {
                /* several -o add up */
                size_t len = (opts ? strlen(opts) + 1 : 0) + strlen(argv[i + 1]) + 1;
                char *m = malloc(len);
                if (!m)
                    return 1;
                snprintf(m, len, "%s%s%s", opts ? opts : "", opts ? "," : "", argv[i + 1]);
                free(opts);
                opts = m;
            }
            i++;
        } else if (a[0] == '-' && a[1] && strspn(a + 1, "sfnvwr") == strlen(a + 1)) {
            continue; /* mount(8)'s -s -f -n -v -w -r: nothing for lazyimg */
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fs_err("%s: expected STORE MOUNTPOINT [-o OPTIONS], got '%s' too", argv[0], a);
            free(opts);
            return 2;
        }
    }
    if (npos != 2) {
        fs_err("%s: expected STORE MOUNTPOINT [-o OPTIONS]", argv[0]);
        free(opts);
        return 2;
    }
    /* "mount", an option per comma at most, the two arguments, NULL */
    nv = calloc((opts ? strlen(opts) + 1 : 0) + 4, sizeof(*nv));
    if (!nv) {
        free(opts);
        return 1;
    }
    nv[n++] = (char *)"mount";
    for (char *save = NULL, *o = opts ? strtok_r(opts, ",", &save) : NULL; o;
         o = strtok_r(NULL, ",", &save)) {
        char *arg;
        size_t name_len = strcspn(o, "=");
        if (is_generic(o))
            continue;
        if (asks_help(o)) {
            fs_err("%s: '%s' is not a mount option (see lazyimg mount --help)", argv[0], o);
            r = 2;
            break;
        }
        for (size_t k = 0; k < name_len; k++)
            if (o[k] == '_')
                o[k] = '-';
        if (!o[name_len] && fs_mount_opt_has_arg(o) == required_argument) {
            /* "--o" would take the mountpoint (or STORE) as its value */
            fs_err("%s: -o %s needs a value (%s=VALUE)", argv[0], o, o);
            r = 2;
            break;
        }
        if (asprintf(&arg, "--%s", o) < 0) {
            r = 1;
            break;
        }
        nv[n++] = arg;
    }
    if (r == 0) {
        nv[n] = (char *)pos[0];
        nv[n + 1] = (char *)pos[1];
        r = fs_cmd_mount(n + 2, nv);
    }
    for (int i = 1; i < n; i++)
        free(nv[i]);
    free(nv);
    free(opts);
    return r;
}
