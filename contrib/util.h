/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers shared by the contrib tools (lazyimg-mkpbs, lazyimg-mkimage).
 * These are command-line programs: on any error they print one line on stderr,
 * prefixed by the program name, and exit with status 1.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Program name used as the prefix of every message; set once in main(). */
extern const char *util_progname;

/* Prints "<progname>: <message>\n" on stderr and exits with status 1. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);

/* Allocation that never returns NULL (dies instead). Sizes are overflow-checked. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t count, size_t size);
char *xstrdup(const char *s);

/* Writes all @len bytes (retrying short writes and EINTR). 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);
int pwrite_all(int fd, const void *buf, size_t len, off_t offset);

/*
 * Reads until @len bytes or end of file. Returns the number of bytes read
 * (less than @len only at end of file) or -errno.
 */
ssize_t read_full(int fd, void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, off_t offset);

/*
 * Parses a size: decimal digits with an optional binary suffix K, M, G or T
 * (case-insensitive, 1K = 1024). Returns false on syntax error or overflow.
 */
bool parse_size(const char *s, uint64_t *ret_size);

/* Parses a whole decimal unsigned number. Returns false on error or overflow. */
bool parse_u64(const char *s, uint64_t *ret_value);

/* Writes 2*@len lowercase hex digits and a NUL into @out (size >= 2*len+1). */
void hex_encode(const uint8_t *in, size_t len, char *out);

/* True if all @len bytes of @buf are zero. */
bool is_all_zero(const void *buf, size_t len);
