/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Command-line helpers shared by the subcommands. */
#pragma once

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

#include "fetch/remote.h"

/* Subcommands: argv[0] is the subcommand name. Return the process exit status. */
int fs_cmd_mount(int argc, char **argv);
int fs_cmd_ls(int argc, char **argv);
int fs_cmd_find(int argc, char **argv);
int fs_cmd_umount(int argc, char **argv);
int fs_cmd_cache(int argc, char **argv);
int fs_cmd_profile(int argc, char **argv);
int fs_cmd_overlay(int argc, char **argv);
int fs_cmd_status(int argc, char **argv);
int fs_cmd_hydrate(int argc, char **argv);
/* mount(8)'s helper conventions (fs/mount_helper.c): `mount.fuse.lazyimg
 * STORE MOUNTPOINT [-o OPTIONS]`, and `lazyimg STORE MOUNTPOINT [-o
 * OPTIONS]` as libfuse's mount.fuse3 runs it (fs_mount_helper_form). */
int fs_cmd_mount_helper(int argc, char **argv);
bool fs_mount_helper_form(int argc, char **argv);
/* Whether `lazyimg mount --NAME` takes a value: required_argument or
 * no_argument (getopt.h), -1 when mount has no such option. */
int fs_mount_opt_has_arg(const char *name);

#define FS_DEFAULT_CACHE_SIZE (10ull << 30)

struct cache_disk;
struct cache_disk_options;

/*
 * The cache directory: @opt if given, else $LAZYIMG_CACHE_DIR, else
 * /var/cache/lazyimg for root, else $XDG_CACHE_HOME/lazyimg or
 * ~/.cache/lazyimg. Resolved to an absolute path in @buf. For a mount
 * (@mountpoint, absolute) created (0700) if missing, and refused at or
 * below @mountpoint: the daemon must never use paths under its own mount.
 * Without @mountpoint (the cache's own commands) it must be a cache already
 * (a mistyped path is not made into an empty one). Prints a one-line error
 * and returns -1 on failure.
 */
int fs_prepare_cache_dir(const char *opt, const char *mountpoint, char *buf, size_t len);

/* cache_disk_open with a one-line error on failure; 0 or -1. */
int fs_open_cache(const struct cache_disk_options *o, struct cache_disk **ret);

/* "64M", "1G", "4096": binary suffixes K, M, G, T. 0 or -EINVAL/-ERANGE. */
int fs_parse_size(const char *s, uint64_t *ret);
/* Sizes are printed with fetch_format_size() (fetch/repo.h). */

struct fetch_repo_format;

/*
 * Opens the store at @location (a directory, http(s):// URL or s3:// bucket;
 * @ro may be NULL for defaults) and tells which repository format it holds
 * (fetch_repo_probe). Prints a one-line error and returns NULL when the store
 * cannot be opened or probed.
 */
struct fetch_store *fs_open_store(const char *location, const struct fetch_remote_options *ro,
                                  const struct fetch_repo_format **ret_format);

/*
 * What the open store @s holds (see fs_open_store). Prints a one-line error
 * and returns -1 when it cannot be probed.
 */
int fs_store_kind(struct fetch_store *s, const struct fetch_repo_format **ret_format);

/* Prints a repository's notes: warnings as warnings, the rest as information. */
struct fetch_repo;
void fs_repo_report(const struct fetch_repo *repo);
