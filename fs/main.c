/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lazyimg: subcommand dispatch, help and version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "fetch/remote.h"
#include "log.h"

static const char usage[] =
    "Usage: lazyimg COMMAND [options] ...\n"
    "\n"
    "Exposes backup snapshots as lazily read, read-only sparse image files.\n"
    "\n"
    "Commands:\n"
    "  mount STORE MOUNTPOINT   mount the backups of a Proxmox Backup Server\n"
    "                           datastore or a casync/desync repository: a\n"
    "                           directory, http(s):// URL or s3:// bucket\n"
    "                           (lazyimg mount --help)\n"
    "  ls STORE                 list what STORE holds and what the mount shows\n"
    "                           (--json)\n"
    "  find STORE PATTERN       which snapshots hold a file: searches the file\n"
    "                           archives' metadata (lazyimg find --help)\n"
    "  umount MOUNTPOINT        unmount, and wait for the daemon to exit\n"
    "  cache stats|verify|gc|clear\n"
    "                           the persistent chunk cache (lazyimg cache --help)\n"
    "  profile ls|show|clear    read (boot) profiles kept in the cache (lazyimg profile --help)\n"
    "  overlay IMAGE OUT.qcow2  a qcow2 overlay on a mounted image, by its snapshot's\n"
    "                           path (not `latest`), to boot a VM from the mount\n"
    "  status MOUNTPOINT        what the daemon of a mount is doing (--json)\n"
    "  hydrate PATH...          fetch whole images of a mount into its disk cache\n"
    "                           (lazyimg hydrate --help)\n"
    "\n"
    "  -h, --help               show this help\n"
    "  -V, --version            show the version\n";

/*
 * A password in a URL argument ("https://user:secret@host/ds") would stay in
 * /proc/PID/cmdline, which every local user can read (ps): the commands run
 * on private copies of the arguments, and the process's own argument area is
 * rewritten with every such password left out (the rest moved up, the tail
 * zeroed). Returns the copies (argv itself when there is nothing to hide),
 * or NULL on ENOMEM.
 */
static char **conceal_url_passwords(int argc, char **argv)
{
    char **copy, *area, *end;
    bool secret = false, contiguous = true;

    for (int i = 1; i < argc; i++)
        secret |= fetch_location_mask(argv[i], NULL, NULL, 0) != strlen(argv[i]);
    if (!secret)
        return argv;
    if (!(copy = calloc((size_t)argc + 1, sizeof(*copy))))
        return NULL;
    for (int i = 0; i < argc; i++) {
        if (!(copy[i] = strdup(argv[i])))
            return NULL; /* the process exits */
        if (i + 1 < argc && argv[i + 1] != argv[i] + strlen(argv[i]) + 1)
            contiguous = false;
    }
    if (contiguous) {
        area = argv[1];
        end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
        for (int i = 1; i < argc; i++)
            area += fetch_location_mask(copy[i], NULL, area, (size_t)(end - area)) + 1;
        memset(area, 0, (size_t)(end - area));
    } else {
        for (int i = 1; i < argc; i++) {
            size_t n = strlen(argv[i]) + 1;
            size_t m = fetch_location_mask(copy[i], NULL, argv[i], n) + 1;
            memset(argv[i] + m, 0, n - m);
        }
    }
    return copy;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {
        {"mount", fs_cmd_mount},     {"ls", fs_cmd_ls},         {"umount", fs_cmd_umount},
        {"find", fs_cmd_find},       {"cache", fs_cmd_cache},   {"profile", fs_cmd_profile},
        {"overlay", fs_cmd_overlay}, {"status", fs_cmd_status}, {"hydrate", fs_cmd_hydrate},
        {"unmount", fs_cmd_umount},
    };

    const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

    if (!strcmp(self, "mount.fuse.lazyimg") || !strcmp(self, "mount.lazyimg")) {
        if (!(argv = conceal_url_passwords(argc, argv)))
            return 1;
        return fs_cmd_mount_helper(argc, argv);
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("lazyimg %s\n", LAZYIMG_VERSION);
        return 0;
    }
    if (!(argv = conceal_url_passwords(argc, argv))) {
        fs_err("out of memory");
        return 1;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    }
    if (fs_mount_helper_form(argc, argv))
        return fs_cmd_mount_helper(argc, argv);
    fs_err("unknown command '%s' (see lazyimg --help)", argv[1]);
    return 2;
}
