/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "control.h"
#include "sockio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "fs.h"
#include "parts.h"
#include "hydrate.h"
#include "status.h"
#include "log.h"
#include "mountinfo.h"

/* A reply larger than this is refused by the client (a status of very many images). */
#define MAX_REPLY (64u << 20)
/* How long the client waits for a reply (a status looks up every chunk of
 * every loaded image in the disk cache). */
#define CLIENT_TIMEOUT_MS 120000

struct fs_control {
    struct fs_ctx *ctx;
    struct fs_hydrator *hyd; /* borrowed; NULL: hydration requests are refused */
    int listen_fd;
    int stop_fd; /* eventfd: readable once the thread must stop */
    pthread_t thread;
    bool stopped; /* fs_control_stop has run */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t sock_dev; /* the socket file we bound, removed only if still ours */
    ino_t sock_ino;
    struct fs_status_state status; /* control thread only */
};

/* ---- socket location ---------------------------------------------------- */

int fs_control_dir(char *buf, size_t len, int create, char *err, size_t err_len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    uid_t uid = geteuid();
    struct stat st;
    int w;

    if (uid == 0)
        w = snprintf(buf, len, "/run/lazyimg");
    else if (xdg && xdg[0] == '/')
        w = snprintf(buf, len, "%s/lazyimg", xdg);
    else
        w = snprintf(buf, len, "/tmp/lazyimg-%u", (unsigned)uid);
    if (w < 0 || (size_t)w >= len) {
        fs_sock_set_err(err, err_len, "control socket directory: path too long");
        return -ENAMETOOLONG;
    }
    if (create && mkdir(buf, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        fs_sock_set_err(err, err_len, "control socket directory %s: %s", buf, strerror(e));
        return -e;
    }
    if (lstat(buf, &st) < 0) {
        int e = errno;
        fs_sock_set_err(err, err_len, "control socket directory %s: %s", buf, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != uid || (st.st_mode & 022)) {
        fs_sock_set_err(err, err_len, "control socket directory %s: refusing it (%s)", buf,
                        !S_ISDIR(st.st_mode) ? "not a directory"
                        : st.st_uid != uid   ? "owned by another user"
                                             : "writable by group or others");
        return -EPERM;
    }
    return 0;
}

/*
 * The owner of the FUSE mount with device @dev: the user_id= option of its
 * /proc/self/mountinfo entry (FUSE sets it to the uid that mounted). -ENOENT
 * if no entry has that device or the entry has no user_id.
 */
static int mount_owner(dev_t dev, uid_t *ret_uid)
{
    struct fs_mount_entry e;
    int r = fs_mountinfo_find_dev(dev, &e);
    if (r < 0)
        return r;
    if (r == 0 || !e.has_user_id)
        return -ENOENT;
    *ret_uid = e.user_id;
    return 0;
}

/*
 * Root asking for the mount of another user: that user's daemon has its
 * socket in $XDG_RUNTIME_DIR/lazyimg (systemd: /run/user/UID) or in
 * /tmp/lazyimg-UID. A directory counts only if it is owned by that user and
 * not writable by others, and the socket only if it is that user's.
 */
static int owner_socket_path(dev_t dev, uid_t owner, char *buf, size_t len, char *err,
                             size_t err_len)
{
    char dirs[2][64];
    struct stat st;

    snprintf(dirs[0], sizeof(dirs[0]), "/run/user/%u/lazyimg", (unsigned)owner);
    snprintf(dirs[1], sizeof(dirs[1]), "/tmp/lazyimg-%u", (unsigned)owner);
    for (size_t i = 0; i < 2; i++) {
        int w = snprintf(buf, len, "%s/%u:%u.sock", dirs[i], major(dev), minor(dev));
        if (w < 0 || (size_t)w >= len)
            continue;
        if (lstat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != owner ||
            (st.st_mode & 022))
            continue;
        if (lstat(buf, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == owner)
            return 0;
    }
    fs_sock_set_err(err, err_len,
                    "mounted by uid %u, whose daemon keeps its control socket in that user's "
                    "$XDG_RUNTIME_DIR/lazyimg; there is no %u:%u.sock of that user in %s or %s "
                    "(run lazyimg status as uid %u)",
                    (unsigned)owner, major(dev), minor(dev), dirs[0], dirs[1], (unsigned)owner);
    return -ENOENT;
}

int fs_control_socket_path(dev_t dev, char *buf, size_t len, char *err, size_t err_len)
{
    char dir[PATH_MAX];
    uid_t me = geteuid(), owner = me;
    bool known = mount_owner(dev, &owner) == 0;
    struct stat st;
    int r, w;

    if (known && owner != me) {
        if (me == 0)
            return owner_socket_path(dev, owner, buf, len, err, err_len);
        fs_sock_set_err(err, err_len,
                        "mounted by uid %u: only that user or root can ask its daemon",
                        (unsigned)owner);
        return -EACCES;
    }
    r = fs_control_dir(dir, sizeof(dir), 0, err, err_len);
    if (r == 0) {
        w = snprintf(buf, len, "%s/%u:%u.sock", dir, major(dev), minor(dev));
        if (w < 0 || (size_t)w >= len) {
            fs_sock_set_err(err, err_len, "control socket path too long");
            return -ENAMETOOLONG;
        }
        if (me == 0 || (lstat(buf, &st) == 0 && S_ISSOCK(st.st_mode)))
            return 0;
    }
    /* a daemon started with another $XDG_RUNTIME_DIR than this shell's (a
     * login session's, where an ssh or cron one has none): the places such a
     * daemon uses, before the error (or the path) this environment implies */
    if (me != 0 && known) {
        char alt[sizeof(((struct sockaddr_un *)0)->sun_path)];
        if (owner_socket_path(dev, me, alt, sizeof(alt), NULL, 0) == 0 && strlen(alt) < len) {
            memcpy(buf, alt, strlen(alt) + 1);
            return 0;
        }
    }
    return r;
}

/* ---- requests ----------------------------------------------------------- */

static json_object *error_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *error_reply(const char *fmt, ...)
{
    json_object *o = json_object_new_object();
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (o)
        json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

/* A decimal number without sign, spaces or leading zeros, ending at a space
 * or the end of the string; *s moves past it. */
static int parse_u64(const char **s, uint64_t *ret)
{
    const char *p = *s;
    uint64_t v = 0;
    size_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++, n++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (n == 0 || (n > 1 && **s == '0') || (*p != ' ' && *p != '\0'))
        return -EINVAL;
    *s = p;
    *ret = v;
    return 0;
}

/* Parses "@verb N[ N]" exactly: @count numbers. */
static bool parse_args(const char *line, const char *verb, uint64_t *nums, int count)
{
    size_t vl = strlen(verb);
    const char *p = line;
    if (strncmp(p, verb, vl) != 0)
        return false;
    p += vl;
    for (int i = 0; i < count; i++) {
        if (*p++ != ' ' || parse_u64(&p, &nums[i]) < 0)
            return false;
    }
    return *p == '\0';
}

int fs_control_parse(const char *line, struct fs_control_req *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!strcmp(line, "status"))
        ret->verb = FS_CONTROL_STATUS;
    else if (parse_args(line, "hydrate", ret->args, 2))
        ret->verb = FS_CONTROL_HYDRATE;
    else if (parse_args(line, "progress", ret->args, 1))
        ret->verb = FS_CONTROL_PROGRESS;
    else if (parse_args(line, "cancel", ret->args, 1))
        ret->verb = FS_CONTROL_CANCEL;
    else
        return -EINVAL;
    return 0;
}

static json_object *handle(struct fs_control *c, const char *line)
{
    struct fs_control_req q;
    const uint64_t *a = q.args;
    json_object *o;

    if (fs_control_parse(line, &q) < 0)
        return error_reply("unknown request (expected: status, hydrate INO BW, progress JOB, "
                           "cancel JOB)");
    switch (q.verb) {
    case FS_CONTROL_STATUS:
        return fs_status_json(c->ctx, c->hyd, &c->status);
    case FS_CONTROL_HYDRATE: {
        struct fs_node *n = fs_tree_get(c->ctx->tree, a[0]);
        const char *msg = "";
        uint64_t job;
        if (fs_parts_ino(a[0]))
            return error_reply("a partition or volume file: hydrate its image (the file beside "
                               "the .parts directory) instead");
        if (fs_archive_ino(a[0]))
            return error_reply("a file inside an archive: hydration takes disk images only");
        if (!n)
            return error_reply("no such inode %llu in this mount", (unsigned long long)a[0]);
        if (n->kind != FS_NODE_IMAGE)
            return error_reply("not an image");
        if (a[1] && a[1] < 4096)
            return error_reply("bandwidth below 4K bytes per second");
        if (!c->hyd)
            return error_reply("hydration is not available in this mount");
        if (fs_hydrator_add(c->hyd, n, a[1], &job, &msg) < 0)
            return error_reply("%s", msg);
        if ((o = json_object_new_object()))
            json_object_object_add(o, "job", json_object_new_uint64(job));
        return o;
    }
    case FS_CONTROL_PROGRESS: {
        struct fs_hydrate_progress p;
        if (!c->hyd || fs_hydrator_progress(c->hyd, a[0], &p) < 0)
            return error_reply("no hydration job %llu", (unsigned long long)a[0]);
        return fs_hydrate_progress_json(&p);
    }
    case FS_CONTROL_CANCEL:
        if (!c->hyd || fs_hydrator_cancel(c->hyd, a[0]) < 0)
            return error_reply("no hydration job %llu", (unsigned long long)a[0]);
        if ((o = json_object_new_object()))
            json_object_object_add(o, "ok", json_object_new_boolean(true));
        return o;
    }
    return error_reply("unknown request");
}

/* Reads one request line into @buf (without its '\n'). */
static int read_request(int fd, char *buf, size_t cap, int stop_fd, int64_t deadline)
{
    size_t len = 0;
    for (;;) {
        ssize_t n;
        char *nl;
        int r = fs_sock_wait(fd, POLLIN, stop_fd, deadline);
        if (r < 0)
            return r;
        n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        len += (size_t)n;
        if ((nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            for (const char *p = buf; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                    return -EINVAL;
            if ((size_t)(nl - buf) != strlen(buf))
                return -EINVAL; /* a NUL inside */
            return 0;
        }
        if (len == cap)
            return -E2BIG;
    }
}

static void serve(struct fs_control *c, int fd)
{
    int64_t deadline = fs_sock_now_ms() + FS_CONTROL_TIMEOUT_MS;
    char line[FS_CONTROL_MAX_REQUEST];
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    json_object *reply;
    const char *text;
    int r;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        fs_debug("control: refusing a client of uid %u", (unsigned)cred.uid);
        return;
    }
    r = read_request(fd, line, sizeof(line), c->stop_fd, deadline);
    if (r == -ECANCELED || r == -EPIPE || r == -ETIMEDOUT)
        return;
    if (r == -E2BIG || r == -EINVAL)
        reply = error_reply("bad request (one line of printable text, at most %d bytes)",
                            FS_CONTROL_MAX_REQUEST - 1);
    else if (r < 0)
        return;
    else
        reply = handle(c, line);
    text = reply ? json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN)
                 : "{\"error\":\"out of memory\"}";
    /* the client's time to take the reply starts now: a status of many
     * images can take longer to build than the whole deadline */
    deadline = fs_sock_now_ms() + FS_CONTROL_TIMEOUT_MS;
    if (fs_sock_send_all(fd, text, strlen(text), c->stop_fd, deadline) == 0 &&
        fs_sock_send_all(fd, "\n", 1, c->stop_fd, deadline) == 0 && r < 0)
        fs_sock_drain(fd, c->stop_fd);
    json_object_put(reply);
}

static void *control_thread(void *arg)
{
    struct fs_control *c = arg;
    for (;;) {
        struct pollfd p[2] = {{c->listen_fd, POLLIN, 0}, {c->stop_fd, POLLIN, 0}};
        int fd;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fs_err("control socket: poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        if (!p[0].revents)
            continue;
        fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                fs_debug("control socket: accept: %s", strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(100 * 1000); /* don't spin on a full fd table */
            continue;
        }
        serve(c, fd);
        close(fd);
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int bind_socket(struct fs_control *c, unsigned maj, unsigned min)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char dir[PATH_MAX], err[PATH_MAX + 128];
    struct stat st;
    int r, w;

    r = fs_control_dir(dir, sizeof(dir), 1, err, sizeof(err));
    if (r < 0) {
        fs_err("%s", err);
        return r;
    }
    w = snprintf(c->path, sizeof(c->path), "%s/%u:%u.sock", dir, maj, min);
    if (w < 0 || (size_t)w >= sizeof(c->path)) {
        fs_err("control socket %s/%u:%u.sock: path too long", dir, maj, min);
        c->path[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, c->path, (size_t)w + 1);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->listen_fd < 0)
        return -errno;
    /* no live daemon can own this name (device numbers are unique among
     * mounts): whatever is there is left over from one that died */
    if (lstat(c->path, &st) == 0 && !S_ISDIR(st.st_mode) && unlink(c->path) < 0)
        fs_debug("control socket %s: %s", c->path, strerror(errno));
    if (bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        r = -errno;
        fs_err("control socket %s: %s", c->path, strerror(-r));
        c->path[0] = '\0';
        return r;
    }
    if (chmod(c->path, 0600) < 0 || lstat(c->path, &st) < 0 || listen(c->listen_fd, 16) < 0) {
        r = -errno;
        fs_err("control socket %s: %s", c->path, strerror(-r));
        return r;
    }
    c->sock_dev = st.st_dev;
    c->sock_ino = st.st_ino;
    return 0;
}

static void remove_socket(struct fs_control *c)
{
    struct stat st;
    if (c->path[0] && lstat(c->path, &st) == 0 && st.st_dev == c->sock_dev &&
        st.st_ino == c->sock_ino)
        unlink(c->path);
}

int fs_control_start(struct fs_ctx *ctx, struct fs_hydrator *hyd, const char *mountpoint,
                     struct fs_control **ret)
{
    struct fs_control *c;
    unsigned maj, min;
    dev_t dev;
    int r;

    r = fs_mountinfo_dev(mountpoint, &dev);
    if (r < 0) {
        fs_err("control socket: %s not found in /proc/self/mountinfo: %s", mountpoint,
               strerror(-r));
        return r;
    }
    maj = major(dev);
    min = minor(dev);
    if (!(c = calloc(1, sizeof(*c))))
        return -ENOMEM;
    c->ctx = ctx;
    c->hyd = hyd;
    c->listen_fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &c->status.prev_time);
    c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->stop_fd < 0) {
        r = -errno;
        goto fail;
    }
    if ((r = bind_socket(c, maj, min)) < 0)
        goto fail;
    if ((r = -pthread_create(&c->thread, NULL, control_thread, c)) < 0)
        goto fail;
    (void)pthread_setname_np(c->thread, "lz-control"); /* top -H, tests */
    fs_debug("control socket %s", c->path);
    *ret = c;
    return 0;
fail:
    remove_socket(c);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->stop_fd >= 0)
        close(c->stop_fd);
    free(c);
    return r;
}

void fs_control_stop(struct fs_control *c)
{
    uint64_t one = 1;
    if (!c || c->stopped)
        return;
    c->stopped = true;
    /* the thread waits for nothing but its socket and @stop_fd: it ends soon */
    if (write(c->stop_fd, &one, sizeof(one)) != sizeof(one))
        fs_err("control socket: cannot stop its thread: %s", strerror(errno));
    pthread_join(c->thread, NULL);
    remove_socket(c);
    close(c->listen_fd);
    c->listen_fd = -1;
}

void fs_control_free(struct fs_control *c)
{
    if (!c)
        return;
    fs_control_stop(c);
    close(c->stop_fd);
    fs_status_state_release(&c->status);
    free(c);
}

/* ---- client ------------------------------------------------------------- */

int fs_control_check_peer(int fd, dev_t dev, const char *path, struct ucred *ret_cred, char *err,
                          size_t err_len)
{
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    uid_t owner;
    int r;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        r = -errno;
        fs_sock_set_err(err, err_len, "control socket %s: %s", path, strerror(-r));
        return r;
    }
    if (mount_owner(dev, &owner) == 0 && cred.uid != owner) {
        fs_sock_set_err(err, err_len,
                        "control socket %s is answered by a process of uid %u, not by the daemon "
                        "of uid %u that mounted it (was the socket replaced?)",
                        path, (unsigned)cred.uid, (unsigned)owner);
        return -EPERM;
    }
    if (ret_cred)
        *ret_cred = cred;
    return 0;
}

int fs_control_request(dev_t dev, const char *request, json_object **ret, char *err, size_t err_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int64_t deadline = fs_sock_now_ms() + CLIENT_TIMEOUT_MS;
    char path[sizeof(addr.sun_path)];
    size_t len = 0, cap = 0;
    char *buf = NULL;
    json_object *o;
    json_tokener *tok;
    int fd, r;

    r = fs_control_socket_path(dev, path, sizeof(path), err, err_len);
    if (r < 0)
        return r;
    if (strlen(request) + 1 >= FS_CONTROL_MAX_REQUEST || strchr(request, '\n')) {
        fs_sock_set_err(err, err_len, "request too long");
        return -EINVAL;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        fs_sock_set_err(err, err_len, "socket: %s", strerror(-r));
        return r;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        r = -errno;
        struct fs_mount_entry e;
        if ((r == -ENOENT || r == -ECONNREFUSED) && fs_mountinfo_find_dev(dev, &e) == 1 &&
            !strcmp(e.fstype, "fuse.lazyimg"))
            fs_sock_set_err(err, err_len,
                            "its daemon does not answer (no control socket %s%s): it was "
                            "killed or started without one; lazyimg umount unmounts it",
                            path, r == -ECONNREFUSED ? ": nobody listens" : "");
        else if (r == -ENOENT || r == -ECONNREFUSED)
            fs_sock_set_err(err, err_len, "not a lazyimg mount (no control socket %s%s)", path,
                            r == -ECONNREFUSED ? ": nobody listens" : "");
        else
            fs_sock_set_err(err, err_len, "control socket %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    if ((r = fs_control_check_peer(fd, dev, path, NULL, err, err_len)) < 0) {
        close(fd);
        return r;
    }
    if ((r = fs_sock_send_all(fd, request, strlen(request), -1, deadline)) < 0 ||
        (r = fs_sock_send_all(fd, "\n", 1, -1, deadline)) < 0) {
        fs_sock_set_err(err, err_len, "control socket %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    for (;;) {
        ssize_t n;
        if (cap - len < 4096) {
            char *nb;
            if (cap >= MAX_REPLY) {
                r = -EPROTO;
                fs_sock_set_err(err, err_len, "reply of the daemon too large");
                break;
            }
            if (!(nb = realloc(buf, cap ? cap * 2 : 16384))) {
                r = -ENOMEM;
                fs_sock_set_err(err, err_len, "out of memory");
                break;
            }
            buf = nb;
            cap = cap ? cap * 2 : 16384;
        }
        if ((r = fs_sock_wait(fd, POLLIN, -1, deadline)) < 0) {
            fs_sock_set_err(err, err_len, "no reply from the daemon (%s)", strerror(-r));
            break;
        }
        n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            r = -errno;
            fs_sock_set_err(err, err_len, "control socket %s: %s", path, strerror(-r));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (r < 0) {
        free(buf);
        return r;
    }
    r = -EPROTO;
    if (len && (tok = json_tokener_new())) {
        o = json_tokener_parse_ex(tok, buf, (int)len);
        if (o && json_object_is_type(o, json_type_object)) {
            *ret = o;
            r = 0;
        } else {
            json_object_put(o);
        }
        json_tokener_free(tok);
    }
    free(buf);
    if (r < 0)
        fs_sock_set_err(err, err_len, "the daemon sent no valid reply");
    return r;
}
