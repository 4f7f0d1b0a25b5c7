/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * /proc/self/mountinfo, parsed in one place. Reading it never touches a
 * mountpoint, so a stuck FUSE daemon cannot hang the reader.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One line of mountinfo (fields unescaped: "\040" is a space). */
struct fs_mount_entry {
    uint64_t id; /* the mount ID (statx's stx_mnt_id) */
    dev_t dev;
    char mountpoint[PATH_MAX];
    char fstype[64];
    bool has_user_id; /* FUSE mounts: the uid that mounted (user_id=) */
    uid_t user_id;
};

/*
 * Calls @fn for every entry, oldest first (a later entry on the same
 * mountpoint is stacked on top of an earlier one); stops early when @fn
 * returns non-zero. 0, or -errno if mountinfo cannot be read.
 */
int fs_mountinfo_foreach(int (*fn)(const struct fs_mount_entry *e, void *arg), void *arg);

/* The newest entry whose mountpoint is exactly @path: 1 (and *ret), 0 if none, -errno. */
int fs_mountinfo_find(const char *path, struct fs_mount_entry *ret);

/* The newest entry with device @dev: 1 (and *ret), 0 if none, -errno. */
int fs_mountinfo_find_dev(dev_t dev, struct fs_mount_entry *ret);

/* The device number of the mount at @mountpoint (absolute, canonical; the
 * one on top) from /proc/self/mountinfo, without touching the mount: usable
 * before its FUSE session answers. 0 or -ENOENT, -errno. */
int fs_mountinfo_dev(const char *mountpoint, dev_t *ret);

/* The mount below which @path lies, found lexically in /proc/self/mountinfo
 * (for a path that cannot be stat()ed: root is refused by a FUSE mount of
 * another user without allow_other). 0 or -ENOENT, -ENAMETOOLONG, -errno. */
int fs_mountinfo_lookup(const char *path, dev_t *ret);
