/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Messages for the user. Before the daemon detaches they go to stderr as
 * "lazyimg: ..."; afterwards to syslog (or stderr with -f). Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum fs_log_level { FS_LOG_ERR, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG };

/* Messages above @max are dropped (default FS_LOG_INFO). */
void fs_log_set_level(enum fs_log_level max);
/* Switches output to syslog (after daemonizing). */
void fs_log_use_syslog(bool on);

/*
 * Copies @s into @buf (@size bytes, always NUL-terminated when @size > 0,
 * truncated to fit) with every byte that could act on a terminal or split a
 * log line written as \xNN: C0 controls (tab, CR and LF included), DEL, C1
 * controls (U+0080..U+009F) and bytes that are not valid UTF-8. Printable
 * ASCII and valid UTF-8 text pass unchanged; a backslash stays as it is.
 * Returns the length of the whole escaped string (like snprintf), so a
 * result >= @size means it was truncated. For names from a store (and any
 * other text not ours) in tables and messages; fs_log() escapes every
 * message with it.
 */
size_t fs_escape(const char *s, char *buf, size_t size);

/*
 * The length of the well-formed UTF-8 sequence of two to four bytes at @s
 * (@n bytes available), or 0 if none starts there (ASCII included): no
 * overlong forms, no surrogates, nothing above U+10FFFF (Unicode §3.9,
 * table 3-7). C1 controls are well-formed; callers that print to a
 * terminal treat them apart.
 */
size_t fs_utf8_len(const unsigned char *s, size_t n);

/* Whether the sequence of @len bytes at @s (from fs_utf8_len()) is a C1
 * control (U+0080..U+009F, C2 80..C2 9F), which some terminals obey like
 * ESC [. */
bool fs_utf8_is_c1(const unsigned char *s, size_t len);

/* Formats and writes one message; the formatted text is passed through
 * fs_escape(), so arguments cannot inject control sequences or lines. */
__attribute__((format(printf, 2, 3))) void fs_log(enum fs_log_level level, const char *fmt, ...);

#define fs_err(...) fs_log(FS_LOG_ERR, __VA_ARGS__)
#define fs_warn(...) fs_log(FS_LOG_WARN, __VA_ARGS__)
#define fs_info(...) fs_log(FS_LOG_INFO, __VA_ARGS__)
#define fs_debug(...) fs_log(FS_LOG_DEBUG, __VA_ARGS__)
