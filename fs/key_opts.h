/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The options that give the key of encrypted Proxmox Backup Server archives,
 * shared by the subcommands that read them (mount, find, ls): --keyfile FILE
 * (the client's JSON key file) and, for a key protected by a password,
 * --keyfile-password-file FILE, else $LAZYIMG_KEY_PASSWORD, else a prompt on
 * the terminal. A password is never taken on the command line. Merge
 * FS_KEY_LONG_OPTIONS into a getopt_long table, pass every option to
 * fs_key_opt_parse(), and append FS_KEY_OPTIONS_HELP to the usage text.
 */
#pragma once

#include <getopt.h>

#include "fetch/pbs_key.h"

enum {
    FS_OPT_KEYFILE = 0x240,
    FS_OPT_KEYFILE_PASSWORD_FILE,
};

#define FS_KEY_LONG_OPTIONS                                                                        \
    {"keyfile", required_argument, NULL, FS_OPT_KEYFILE},                                          \
    {                                                                                              \
        "keyfile-password-file", required_argument, NULL, FS_OPT_KEYFILE_PASSWORD_FILE             \
    }

#define FS_KEY_OPTIONS_HELP                                                                        \
    "Encrypted Proxmox Backup Server archives:\n"                                                  \
    "      --keyfile FILE     the encryption key (the client's JSON key file);\n"                  \
    "                         without it encrypted archives refuse to open\n"                      \
    "      --keyfile-password-file FILE  the key's password (its first line);\n"                   \
    "                         else $LAZYIMG_KEY_PASSWORD, else a prompt\n"

struct fs_key_opts {
    const char *keyfile, *password_file;
};

/* Handles option @c if it is one of the above: 1 when handled, 0 when not
 * ours, -1 on a bad value (a one-line error is printed). */
int fs_key_opt_parse(int c, const char *arg, struct fs_key_opts *o);

/*
 * Loads the key the options name: 0 with *@ret NULL when there is no
 * --keyfile; 0 with a new key; -errno after printing a one-line error (the
 * file cannot be read, is not a key file, the password is wrong or missing).
 * The key is freed (and wiped) with fs_key_free().
 */
int fs_key_load(const struct fs_key_opts *o, struct fetch_pbs_key **ret);
void fs_key_free(struct fetch_pbs_key *k);
/* Locks @k's page in memory again (within RLIMIT_MEMLOCK; NULL-safe): in a
 * process forked after fs_key_load(), which does not inherit the lock. */
void fs_key_lock(struct fetch_pbs_key *k);
