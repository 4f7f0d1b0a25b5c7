/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mount options from a file, so that a service, an fstab line or a habit can
 * name a file instead of spelling every option. One setting per line, the
 * long options of `lazyimg mount` without their dashes:
 *
 *     # /etc/lazyimg/backups.conf
 *     store = https://pbs.example.org/datastore
 *     mountpoint = /mnt/backups
 *     http-auth-file = /etc/lazyimg/backups.auth
 *     cache-size = 20G
 *     mirror = /srv/replica          (repeatable options repeat)
 *     no-boot-profile                (an option without a value)
 *
 * Blank lines and lines starting with '#' are ignored; a value may be in
 * double quotes (kept as written, without them). `store` and `mountpoint`
 * stand for the two arguments. The file's options come before the command
 * line's, so the command line wins where an option takes one value.
 */
#pragma once

#include <stdbool.h>

/* The file read when no --config is given and it exists ($LAZYIMG_CONFIG
 * replaces this path; empty: none). */
#define FS_CONFIG_DEFAULT "/etc/lazyimg/lazyimg.conf"

/*
 * Expands `lazyimg mount` arguments @argc/@argv (argv[0] is "mount"): a
 * "--config FILE" or "--config=FILE" is taken out and the file's options are
 * put right after argv[0]; without one, the file $LAZYIMG_CONFIG names
 * (which must exist; set and empty: none), else FS_CONFIG_DEFAULT if it
 * exists. The file's `store` and `mountpoint` go to *@store and
 * *@mountpoint (else NULL): the caller uses them when the command line gives
 * neither. The new vector (and its strings) live until the process exits.
 * 0, or 2 (usage: a message logged, naming FILE:LINE) or 1 (the file could
 * not be read, or out of memory).
 */
int fs_config_expand(int argc, char **argv, int *ret_argc, char ***ret_argv, const char **store,
                     const char **mountpoint);

/* On SIGHUP: reads the file the mount read (if any) again and says when its
 * mirrors changed, which only a remount applies. */
void fs_config_check_reload(void);
