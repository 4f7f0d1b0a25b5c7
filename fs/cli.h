/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Command-line helpers shared by the subcommands. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Subcommands: argv[0] is the subcommand name. Return the process exit status. */
int fs_cmd_mount(int argc, char **argv);
int fs_cmd_ls(int argc, char **argv);
int fs_cmd_umount(int argc, char **argv);

/* "64M", "1G", "4096": binary suffixes K, M, G, T. 0 or -EINVAL/-ERANGE. */
int fs_parse_size(const char *s, uint64_t *ret);
/* "1.5G", "512K", "17B" into @buf. */
void fs_format_size(uint64_t v, char *buf, size_t len);

/* Opens the store at @location and checks that it is a datastore; prints a
 * one-line error and returns NULL otherwise. */
struct fetch_store *fs_open_store(const char *location);
