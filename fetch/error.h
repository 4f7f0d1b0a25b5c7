/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Error text carried beside -errno returns. Library code (fetch/, cache/)
 * never prints; it fills a fetch_error that the caller may pass as NULL.
 */
#pragma once

#include <stddef.h>

typedef struct fetch_error {
    char msg[320];
} fetch_error;

/*
 * Formats the message into @e (if not NULL) and returns @err unchanged, so
 * that callers can write `return fetch_error_set(e, -EBADMSG, "...")`.
 * @err must be a negative errno.
 */
__attribute__((format(printf, 3, 4))) int fetch_error_set(fetch_error *e, int err, const char *fmt,
                                                          ...);

/* Prefixes the current message with "<prefix>: " (for context at module edges). */
__attribute__((format(printf, 3, 4))) int fetch_error_prefix(fetch_error *e, int err,
                                                             const char *fmt, ...);
