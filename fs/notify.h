/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * systemd's service notification protocol (sd_notify(3)) without libsystemd:
 * when $NOTIFY_SOCKET names a unix datagram socket (a path, or "@name" in
 * the abstract namespace), each state is sent to it as one datagram of
 * "KEY=VALUE" lines. A service of Type=notify is "started" at READY=1.
 */
#pragma once

/* Sends @state ("READY=1\nSTATUS=..."). 0, also without $NOTIFY_SOCKET;
 * -errno when the socket is named but cannot be written. */
int fs_notify(const char *state);
