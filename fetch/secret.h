/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading small files that hold secrets (HTTP credentials, S3 credentials,
 * key files and their passwords): one reader, so that each of them is read
 * the same careful way.
 */
#pragma once

#include <stddef.h>

/*
 * Reads regular file @path, of at most @max bytes, into a new NUL-terminated
 * buffer (*ret, *ret_len bytes without the NUL). The file is opened without
 * following it into a terminal or blocking on a FIFO; on any failure the
 * bytes read so far are wiped. The caller wipes (explicit_bzero) and frees
 * the buffer. 0, or -ENOENT, -EACCES, -EINVAL (not a regular file), -EFBIG
 * (larger than @max), -ENOMEM, -errno.
 */
int fetch_secret_file_read(const char *path, size_t max, char **ret, size_t *ret_len);

/*
 * The same for a secret read once, at start (a key file's password): a
 * pipe or FIFO is read too (blocking until its writer ends it), so that
 * `--keyfile-password-file <(pass show …)` or /dev/stdin works; -EFBIG when
 * it says more than @max bytes.
 */
int fetch_secret_once_read(const char *path, size_t max, char **ret, size_t *ret_len);

/* Frees a buffer of fetch_secret_file_read after wiping it. NULL-safe. */
void fetch_secret_free(char *buf, size_t len);
