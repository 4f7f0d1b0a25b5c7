/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Messages for the user. Before the daemon detaches they go to stderr as
 * "lazyimg: ..."; afterwards to syslog (or stderr with -f). Thread-safe.
 */
#pragma once

#include <stdbool.h>

enum fs_log_level { FS_LOG_ERR, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG };

/* Messages above @max are dropped (default FS_LOG_INFO). */
void fs_log_set_level(enum fs_log_level max);
/* Switches output to syslog (after daemonizing). */
void fs_log_use_syslog(bool on);

__attribute__((format(printf, 2, 3))) void fs_log(enum fs_log_level level, const char *fmt, ...);

#define fs_err(...) fs_log(FS_LOG_ERR, __VA_ARGS__)
#define fs_warn(...) fs_log(FS_LOG_WARN, __VA_ARGS__)
#define fs_info(...) fs_log(FS_LOG_INFO, __VA_ARGS__)
#define fs_debug(...) fs_log(FS_LOG_DEBUG, __VA_ARGS__)
