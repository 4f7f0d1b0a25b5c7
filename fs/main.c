/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lazyimg: subcommand dispatch, help and version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"

static const char usage[] =
    "Usage: lazyimg COMMAND [options] ...\n"
    "\n"
    "Exposes backup snapshots as lazily read, read-only sparse image files.\n"
    "\n"
    "Commands:\n"
    "  mount STORE MOUNTPOINT   mount the snapshots of a Proxmox Backup Server\n"
    "                           datastore directory (lazyimg mount --help)\n"
    "  ls STORE                 list snapshots and archives (--json)\n"
    "  umount MOUNTPOINT        unmount, and wait for the daemon to exit\n"
    "  cache stats|verify|gc|clear\n"
    "                           the persistent chunk cache (lazyimg cache --help)\n"
    "  status MOUNTPOINT        what the daemon of a mount is doing (--json)\n"
    "  hydrate PATH...          fetch whole images of a mount into its disk cache\n"
    "                           (lazyimg hydrate --help)\n"
    "\n"
    "  -h, --help               show this help\n"
    "  -V, --version            show the version\n";

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {
        {"mount", fs_cmd_mount},
        {"ls", fs_cmd_ls},
        {"umount", fs_cmd_umount},
        {"cache", fs_cmd_cache},
        {"status", fs_cmd_status},
        {"hydrate", fs_cmd_hydrate},
        {"unmount", fs_cmd_umount},
    };

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
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    }
    fs_err("unknown command '%s' (see lazyimg --help)", argv[1]);
    return 2;
}
