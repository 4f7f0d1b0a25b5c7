/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bounded socket I/O, and error text, for the daemon's small servers (the
 * control socket, fs/control.c, and the metrics server, fs/metrics.c): every
 * wait has a deadline and ends early when the server's stop pipe becomes
 * readable.
 */
#pragma once

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

/* Formats a message for the caller into @err (@len bytes, always
 * NUL-terminated); nothing when @err is NULL or @len 0. */
__attribute__((format(printf, 3, 4))) void fs_sock_set_err(char *err, size_t len, const char *fmt,
                                                           ...);

/* CLOCK_MONOTONIC in milliseconds: the clock of the deadlines below. */
int64_t fs_sock_now_ms(void);

/* Waits until @fd is ready for @events: 0, -ETIMEDOUT at @deadline,
 * -ECANCELED when @stop_fd (if >= 0) becomes readable, or -errno. */
int fs_sock_wait(int fd, short events, int stop_fd, int64_t deadline);

/* Sends all of @buf (MSG_NOSIGNAL): 0 or as fs_sock_wait / send(2). */
int fs_sock_send_all(int fd, const char *buf, size_t len, int stop_fd, int64_t deadline);

/*
 * After an error reply to a request that was not read whole: closing with
 * bytes unread would reset the connection before the client read the reply.
 * Ends our side and reads (at most 64 KiB, for 0.5 s) until the client closes.
 */
void fs_sock_drain(int fd, int stop_fd);
