/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon's control socket, and the client side used by `lazyimg status`
 * and `lazyimg hydrate`.
 *
 * Where: one Unix stream socket per mount, named after the mount's device
 * number (the st_dev of every file in it), so that a client finds the daemon
 * of any path by stat()ing it:
 *   <dir>/<major>:<minor>.sock
 * <dir> is /run/lazyimg for root, else $XDG_RUNTIME_DIR/lazyimg, else
 * /tmp/lazyimg-<uid>; it must be a directory owned by the caller and not
 * writable by group or others (daemon and client both refuse another). The
 * socket is mode 0600, and the daemon serves only peers of its own uid or
 * root (SO_PEERCRED).
 *
 * Protocol: the client sends one request line (at most FS_CONTROL_MAX_REQUEST
 * bytes with its '\n') and reads one JSON object until the daemon closes the
 * connection. Numbers are decimal, without sign or leading spaces.
 *   status                  the mount's status (fs/status.h)
 *   hydrate <ino> <bw>      starts hydrating the image with FUSE inode <ino>,
 *                           <bw> bytes per second (0: no cap) -> {"job":N}
 *   progress <job>          -> the job's progress (fs/hydrate.h)
 *   cancel <job>            stops a job -> {"ok":true}
 * A refused or failed request is answered {"error":"message"}.
 * One thread serves clients one at a time; each gets FS_CONTROL_TIMEOUT_MS
 * to send its request and take its reply, so a stuck client cannot block the
 * others for long.
 *
 * The daemon never touches its own mountpoint here (a stat() of it from the
 * daemon could deadlock): the device number comes from /proc/self/mountinfo.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define FS_CONTROL_MAX_REQUEST 128
#define FS_CONTROL_TIMEOUT_MS 5000

struct fs_ctx;
struct fs_control;
struct fs_hydrator;

/*
 * Starts serving the control socket of the mount at @mountpoint (absolute,
 * canonical), after the FUSE session is mounted and before its loop runs.
 * @ctx and @hyd (NULL: hydration requests are refused) are borrowed and must
 * outlive the control's thread (until fs_control_stop). Returns 0 or -errno
 * (-ENOENT: @mountpoint is not in /proc/self/mountinfo; -EPERM: an unsafe
 * socket directory); the reason is also logged.
 */
int fs_control_start(struct fs_ctx *ctx, struct fs_hydrator *hyd, const char *mountpoint,
                     struct fs_control **ret);

/*
 * Stops serving: ends the thread (no request is served any more, so none can
 * start hydration) and removes the socket. NULL-safe; a second call does
 * nothing.
 */
void fs_control_stop(struct fs_control *c);

/* Stops (as above) and frees @c. NULL-safe. */
void fs_control_free(struct fs_control *c);

enum fs_control_verb {
    FS_CONTROL_STATUS,
    FS_CONTROL_HYDRATE,
    FS_CONTROL_PROGRESS,
    FS_CONTROL_CANCEL
};

/* A parsed request line. */
struct fs_control_req {
    enum fs_control_verb verb;
    uint64_t args[2]; /* hydrate: inode, bandwidth; progress, cancel: job */
};

/*
 * Parses one request line (without its '\n') exactly as the protocol above
 * spells it: one space before each number, decimal without sign or leading
 * zeros, nothing after. 0, or -EINVAL.
 */
int fs_control_parse(const char *line, struct fs_control_req *ret);

/*
 * Client side. The socket directory for the calling user into @buf; with
 * @create it is made (0700) if missing. 0, -ENAMETOOLONG, -EPERM (not a
 * directory, not ours, or writable by others; @err says which) or -errno.
 */
int fs_control_dir(char *buf, size_t len, int create, char *err, size_t err_len);

/* The socket path of the mount with device @dev into @buf. 0 or -errno as
 * above. For root, a mount made by another user (its user_id= in
 * mountinfo) has its socket with that user: /run/user/UID/lazyimg or
 * /tmp/lazyimg-UID, owned by UID; -ENOENT with the places looked at in @err
 * if neither has it. */
int fs_control_socket_path(dev_t dev, char *buf, size_t len, char *err, size_t err_len);

/*
 * After a connect() to that path: whether the process that answers is the
 * mount's owner's (its SO_PEERCRED uid is the user_id= of the mount with
 * device @dev). The path is checked before the connect, and the user who owns
 * a socket directory could swap the socket for a symlink in between: root's
 * `lazyimg status` of that user's mount would then talk to a socket of the
 * user's choosing, root's own daemons' included. 0; -EPERM with a message
 * in @err (naming @path) when another uid answers; 0 when the mount's owner
 * is unknown (no user_id=). Stores the peer's credentials in *@ret_cred
 * (may be NULL).
 */
struct ucred;
int fs_control_check_peer(int fd, dev_t dev, const char *path, struct ucred *ret_cred, char *err,
                          size_t err_len);

/*
 * Sends @request (one line without the '\n') to the daemon serving the
 * filesystem with device @dev and parses its reply into *ret (the caller
 * puts it). 0, or -errno with a message in @err: -ENOENT or -ECONNREFUSED
 * when no daemon listens there ("not a lazyimg mount"), -ETIMEDOUT,
 * -EPROTO for a reply that is not a JSON object.
 */
int fs_control_request(dev_t dev, const char *request, json_object **ret, char *err,
                       size_t err_len);
