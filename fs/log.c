/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static enum fs_log_level max_level = FS_LOG_INFO;
static bool use_syslog;

void fs_log_set_level(enum fs_log_level max)
{
    max_level = max;
}

void fs_log_use_syslog(bool on)
{
    if (on && !use_syslog)
        openlog("lazyimg", LOG_PID, LOG_DAEMON);
    use_syslog = on;
}

void fs_log(enum fs_log_level level, const char *fmt, ...)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static const char *const tag[] = {"", "warning: ", "", "debug: "};
    char msg[1024];
    va_list ap;

    if (level > max_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (use_syslog)
        syslog(prio[level], "%s", msg);
    else
        fprintf(stderr, "lazyimg: %s%s\n", tag[level], msg);
}
