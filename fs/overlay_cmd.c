/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `lazyimg overlay IMAGE OVERLAY.qcow2`: a qcow2 overlay whose backing file is
 * a mounted image by its snapshot's own path. `qemu-img create -b
 * MNT/vm/100/latest/…` records the `latest` symlink, so after a later backup
 * and a remount the overlay would sit on another base without a word; this
 * resolves the path first, checks that it is an image of a lazyimg mount, and
 * has qemu-img write the overlay (raw backing format).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "mountinfo.h"

extern char **environ;

static const char overlay_usage[] =
    "Usage: lazyimg overlay [--force] IMAGE OVERLAY.qcow2\n"
    "\n"
    "Writes a qcow2 overlay whose backing file is IMAGE, a disk image in a\n"
    "lazyimg mount, named by its snapshot's path: a path through a `latest`\n"
    "link is resolved first (qemu-img would record the link, and after a later\n"
    "backup and a remount the overlay would sit on another snapshot). The guest's\n"
    "writes go to the overlay; the backup is never changed. Boot with e.g.\n"
    "  qemu-system-x86_64 -drive file=OVERLAY.qcow2,format=qcow2,if=virtio …\n"
    "Needs qemu-img (Debian: qemu-utils).\n"
    "\n"
    "Options:\n"
    "      --force            replace OVERLAY.qcow2 if it exists\n"
    "  -h, --help             show this help\n";

/* Whether @path (absolute) is a regular file in a lazyimg mount. */
static int check_image(const char *path)
{
    struct fs_mount_entry m;
    struct stat st;
    int r;

    if (stat(path, &st) < 0) {
        fs_err("overlay: %s: %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        fs_err("overlay: %s is not a disk image", path);
        return -EINVAL;
    }
    r = fs_mountinfo_find_dev(st.st_dev, &m);
    if (r <= 0 || strcmp(m.fstype, "fuse.lazyimg")) {
        fs_err("overlay: %s is not in a lazyimg mount", path);
        return -EINVAL;
    }
    return 0;
}

int fs_cmd_overlay(int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    char image[PATH_MAX];
    char *qargv[] = {"qemu-img", "create", "-q",  "-f", "qcow2", "-b",
                     image,      "-F",     "raw", NULL, NULL};
    bool force = false;
    const char *out;
    pid_t pid;
    int c, status, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'F':
            force = true;
            break;
        case 'h':
            fputs(overlay_usage, stdout);
            return 0;
        default:
            fputs(overlay_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fs_err("overlay: expected IMAGE and OVERLAY.qcow2 (see lazyimg overlay --help)");
        return 2;
    }
    out = argv[optind + 1];
    if (!realpath(argv[optind], image)) {
        fs_err("overlay: %s: %s", argv[optind], strerror(errno));
        return 1;
    }
    if (check_image(image) < 0)
        return 1;
    if (!force && access(out, F_OK) == 0) {
        fs_err("overlay: %s exists (--force replaces it)", out);
        return 1;
    }
    qargv[9] = (char *)out;
    r = posix_spawnp(&pid, "qemu-img", NULL, NULL, qargv, environ);
    if (r != 0) {
        fs_err("overlay: cannot run qemu-img: %s%s", strerror(r),
               r == ENOENT ? " (install qemu-utils)" : "");
        return 1;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fs_err("overlay: waiting for qemu-img: %s", strerror(errno));
            return 1;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fs_err("overlay: qemu-img create failed (see above)");
        return 1;
    }
    printf("%s: qcow2 overlay on %s (raw)\n", out, image);
    return 0;
}
