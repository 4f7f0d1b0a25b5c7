/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `lazyimg umount`: unmounts a lazyimg mount and waits for its daemon to
 * exit, so that what the daemon still does after the mount is gone (flushing
 * the disk cache) is over when the command returns.
 *
 * The daemon is found before the unmount, without touching the mount (which
 * could hang if the daemon is stuck): its major:minor from
 * /proc/self/mountinfo names its control socket (control.h), and the socket's
 * SO_PEERCRED gives the pid of the process that listens on it, the daemon
 * itself (it forks before it creates the socket). A pidfd taken while the
 * connection is still open (so the pid cannot have been reused) becomes
 * readable when the daemon exits; without pidfd support /proc/<pid> is
 * polled instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "log.h"
#include "mountinfo.h"

extern char **environ;

#define DEFAULT_WAIT_S 30

static const char umount_usage[] =
    "Usage: lazyimg umount [-z|--lazy] [--timeout SECONDS] MOUNTPOINT\n"
    "\n"
    "Unmounts a lazyimg mount, then waits until its daemon has exited (it\n"
    "flushes the disk cache after the mount is gone), so that the cache\n"
    "directory is no longer in use when this returns. If the daemon is still\n"
    "running after SECONDS, says so and exits with status 1. A mount that is\n"
    "busy (a file or directory in it open, a process's working directory in\n"
    "it) is tried again for 2 s, then left mounted with an error.\n"
    "  -z, --lazy         detach now even if busy; the daemon exits once the\n"
    "                     last file in the mount is closed, so this does not\n"
    "                     wait for it unless --timeout is given\n"
    "      --timeout SECONDS  how long to wait for the daemon (default 30;\n"
    "                     0: do not wait)\n"
    "  -h, --help         show this help\n";

/*
 * The absolute path of @arg as mountinfo spells it, without stat()ing the
 * mount itself (a stuck daemon would hang us): the parent directory is
 * resolved, the last component kept. With @full, the whole path is resolved
 * (for a symlink to a mountpoint).
 */
static int mount_path(const char *arg, bool full, char *buf, size_t len)
{
    char tmp[PATH_MAX], parent[PATH_MAX];
    const char *base;
    char *slash;
    size_t n = strlen(arg);
    int w;

    if (full)
        return realpath(arg, buf) && strlen(buf) < len ? 0 : -errno;
    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, arg, n + 1);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    slash = strrchr(tmp, '/');
    base = slash ? slash + 1 : tmp;
    if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(tmp, "/"))
        return realpath(arg, buf) && strlen(buf) < len ? 0 : -errno;
    if (slash == tmp)
        snprintf(parent, sizeof(parent), "/");
    else if (slash) {
        *slash = '\0';
        if (!realpath(tmp, parent))
            return -errno;
    } else if (!realpath(".", parent)) {
        return -errno;
    }
    w = snprintf(buf, len, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", base);
    return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/*
 * The daemon serving the mount with device @dev: its pid and, where the
 * kernel has them, a pidfd (else -1). 0, or -errno (-ENOENT/-ECONNREFUSED: no
 * daemon listens) with a message in @err.
 */
static int find_daemon(dev_t dev, pid_t *ret_pid, int *ret_pidfd, char *err, size_t err_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct ucred cred;
    struct pollfd p;
    int fd, pidfd, r;

    r = fs_control_socket_path(dev, addr.sun_path, sizeof(addr.sun_path), err, err_len);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* non-blocking: a full backlog (a busy daemon) is EAGAIN, not a wait */
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        r = -errno;
        snprintf(err, err_len, "%s: %s", addr.sun_path, strerror(-r));
        close(fd);
        return r;
    }
    /* the daemon of the mount's owner, not whoever a swapped-in symlink names */
    if ((r = fs_control_check_peer(fd, dev, addr.sun_path, &cred, err, err_len)) < 0) {
        close(fd);
        return r;
    }
    if (cred.pid <= 0) { /* a daemon in another pid namespace */
        snprintf(err, err_len, "%s: the daemon's pid is not visible here", addr.sun_path);
        close(fd);
        return -ENXIO;
    }
    pidfd = pidfd_open_compat(cred.pid);
    /* the listener was alive after the pidfd was taken: it is that process */
    p = (struct pollfd){fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
        if (pidfd >= 0)
            close(pidfd);
        close(fd);
        snprintf(err, err_len, "the daemon (pid %d) has just exited", (int)cred.pid);
        return -ESRCH;
    }
    close(fd);
    *ret_pid = cred.pid;
    *ret_pidfd = pidfd;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether process @pid is gone (or a zombie), from /proc. */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[512], *paren;
    ssize_t n;
    int fd;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT || errno == ESRCH;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

/* Waits up to @timeout_ms for the daemon to exit. true when it has. */
static bool wait_exit(pid_t pid, int pidfd, unsigned timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    bool use_pidfd = pidfd >= 0;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (use_pidfd) {
            struct pollfd p = {pidfd, POLLIN, 0};
            int r = poll(&p, 1, left > 0 ? (int)(left > INT_MAX ? INT_MAX : left) : 0);
            if (r > 0)
                return true;
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                return false;
            use_pidfd = false; /* poll failed otherwise: look at /proc instead */
            continue;
        }
        if (pid_gone(pid))
            return true;
        if (left <= 0)
            return false;
        usleep(20 * 1000);
    }
}

/*
 * One fusermount3 -u [-z] PATH, its stderr collected in @msg (which says why
 * it failed). 0, 1 when it failed, -ENOENT when there is no fusermount3, or
 * another -errno.
 */
static int run_fusermount(const char *path, bool lazy, char *msg, size_t msg_len)
{
    char *child_argv[5];
    posix_spawn_file_actions_t fa;
    size_t got = 0;
    pid_t pid;
    int c, status, pfd[2], n = 0;

    msg[0] = '\0';
    child_argv[n++] = (char *)"fusermount3";
    child_argv[n++] = (char *)(lazy ? "-uz" : "-u");
    child_argv[n++] = (char *)"--";
    child_argv[n++] = (char *)path;
    child_argv[n] = NULL;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    c = posix_spawn_file_actions_init(&fa);
    if (c == 0)
        c = posix_spawn_file_actions_adddup2(&fa, pfd[1], STDERR_FILENO);
    if (c == 0)
        c = posix_spawnp(&pid, "fusermount3", &fa, NULL, child_argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (c != 0) {
        close(pfd[0]);
        return -c;
    }
    for (;;) {
        ssize_t k = read(pfd[0], msg + got, msg_len - 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
        if (got == msg_len - 1) { /* keep the start; drain the rest */
            char sink[256];
            ssize_t d;
            while ((d = read(pfd[0], sink, sizeof(sink))) > 0 || (d < 0 && errno == EINTR))
                ;
            break;
        }
    }
    msg[got] = '\0';
    while (got > 0 && msg[got - 1] == '\n')
        msg[--got] = '\0';
    close(pfd[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/*
 * How long a mount that is busy is tried again. Busy for a moment is common:
 * any path lookup that passes through the mountpoint (a `lazyimg status`, a
 * shell's prompt, a file manager's stat()) holds the mount while it runs, and
 * the kernel refuses the unmount in that instant.
 */
#define BUSY_RETRY_MS 2000
#define BUSY_STEP_MS 50

/*
 * Root's unmount of the mount with ID @id at @path (canonical), which must
 * stay that mount: the parent directory is held open, the last name looked
 * up in it without following a symlink, and its mount ID compared (without
 * asking the daemon, which may be stuck) before each try. Otherwise a user
 * who owns a directory on the path could swap it for a symlink to another
 * place between the check and the unmount, and root would unmount whatever
 * is mounted there under that name. 0 or -1 (told).
 */
static int unmount_pinned(const char *path, uint64_t id, bool lazy)
{
    int64_t deadline = now_ms() + BUSY_RETRY_MS;
    char parent[PATH_MAX];
    const char *base = strrchr(path, '/');
    int pfd, cwd, r = -1;

    if (!base || !base[1] || (size_t)(base - path) >= sizeof(parent)) {
        fs_err("umount %s: not a path to a mount", path);
        return -1;
    }
    memcpy(parent, path, (size_t)(base - path));
    parent[base - path] = '\0';
    base++;
    if ((pfd = open(parent[0] ? parent : "/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fs_err("umount %s: %s", path, strerror(errno));
        if (pfd >= 0)
            close(pfd);
        return -1;
    }
    for (;;) {
        struct statx sx;
        /* nothing asked of the file system: the mount ID comes from the VFS,
         * and FUSE answers even root for another user's mount (without
         * allow_other it refuses any attribute, and asks no daemon) */
        if (statx(pfd, base, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC, 0, &sx) <
                0 ||
            !(sx.stx_mask & STATX_MNT_ID) || sx.stx_mnt_id != id) {
            fs_err("umount %s: the path no longer leads to the lazyimg mount that was checked "
                   "(a directory on it was replaced?); not unmounting",
                   path);
            break;
        }
        if (fchdir(pfd) < 0) {
            fs_err("umount %s: %s", path, strerror(errno));
            break;
        }
        r = umount2(base, (lazy ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW);
        int e = errno;
        if (fchdir(cwd) < 0)
            fs_warn("umount: cannot return to the working directory: %s", strerror(errno));
        if (r == 0)
            break;
        if (e != EBUSY || now_ms() >= deadline) {
            fs_err("umount %s: %s", path, strerror(e));
            break;
        }
        usleep(BUSY_STEP_MS * 1000);
    }
    close(cwd);
    close(pfd);
    return r == 0 ? 0 : -1;
}

/*
 * fusermount3 -u [-z] PATH, tried again while the mount is busy for at most
 * BUSY_RETRY_MS (fusermount3 refuses mounts that are not the caller's);
 * umount2 where there is no fusermount3. 0 or -1 (told).
 */
static int do_unmount(const char *path, bool lazy)
{
    int64_t deadline = now_ms() + BUSY_RETRY_MS;
    char msg[1024];
    const char *busy = strerror(EBUSY);
    int r;

    for (;;) {
        r = run_fusermount(path, lazy, msg, sizeof(msg));
        if (r == -ENOENT) {
            /* no fusermount3: root can unmount directly */
            while (umount2(path, lazy ? MNT_DETACH : 0) < 0) {
                if (errno != EBUSY || now_ms() >= deadline) {
                    fs_err("umount %s: %s", path, strerror(errno));
                    return -1;
                }
                usleep(BUSY_STEP_MS * 1000);
            }
            return 0;
        }
        if (r < 0) {
            fs_err("umount %s: cannot run fusermount3: %s", path, strerror(-r));
            return -1;
        }
        if (r == 0)
            return 0;
        if (!strstr(msg, busy) || now_ms() >= deadline)
            break;
        usleep(BUSY_STEP_MS * 1000);
    }
    if (msg[0])
        fprintf(stderr, "%s\n", msg);
    else
        fs_err("umount %s: fusermount3 failed", path);
    return -1;
}

int fs_cmd_umount(int argc, char **argv)
{
    enum { OPT_TIMEOUT = 256 };
    static const struct option opts[] = {
        {"lazy", no_argument, NULL, 'z'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    char path[PATH_MAX], err[PATH_MAX + 128] = "";
    struct fs_mount_entry me;
    unsigned wait_s = DEFAULT_WAIT_S;
    bool wait_given = false;
    pid_t pid = 0;
    int pidfd = -1;
    bool lazy = false, have_daemon = false;
    const char *arg;
    int c, r;

    while ((c = getopt_long(argc, argv, "zh", opts, NULL)) != -1) {
        if (c == 'z') {
            lazy = true;
        } else if (c == OPT_TIMEOUT) {
            uint64_t v;
            if (fs_parse_size(optarg, &v) < 0 || v > 86400) {
                fs_err("--timeout: expected 0 to 86400 seconds, got '%s'", optarg);
                return 2;
            }
            wait_s = (unsigned)v;
            wait_given = true;
        } else if (c == 'h') {
            fputs(umount_usage, stdout);
            return 0;
        } else {
            fputs(umount_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fs_err("umount: expected one MOUNTPOINT (see lazyimg umount --help)");
        return 2;
    }
    arg = argv[optind];
    if (lazy && !wait_given)
        wait_s = 0; /* a busy mount's daemon lives on, rightly */
    r = mount_path(arg, false, path, sizeof(path));
    if (r == 0)
        r = fs_mountinfo_find(path, &me);
    if (r == 0 && mount_path(arg, true, path, sizeof(path)) == 0)
        r = fs_mountinfo_find(path, &me); /* a symlink to the mountpoint */
    if (r < 0) {
        fs_err("umount %s: %s", arg, strerror(-r));
        return 1;
    }
    if (r == 0) {
        fs_err("umount %s: not mounted", arg);
        return 1;
    }
    if (strcmp(me.fstype, "fuse.lazyimg") != 0) {
        fs_err("umount %s: not a lazyimg mount (a %s mount)", arg,
               me.fstype[0] ? me.fstype : "unknown");
        return 1;
    }
    r = find_daemon(me.dev, &pid, &pidfd, err, sizeof(err));
    if (r == 0)
        have_daemon = true;
    else if (r != -ENOENT && r != -ECONNREFUSED && r != -ESRCH)
        fs_warn("umount %s: cannot find its daemon (%s); not waiting for it to exit", arg, err);

    if ((geteuid() == 0 ? unmount_pinned(path, me.id, lazy) : do_unmount(path, lazy)) < 0) {
        if (pidfd >= 0)
            close(pidfd);
        return 1;
    }
    if (!have_daemon || wait_s == 0) {
        if (pidfd >= 0)
            close(pidfd);
        return 0;
    }
    if (!wait_exit(pid, pidfd, wait_s * 1000u)) {
        fs_err("umount %s: unmounted, but its daemon (pid %d) is still running after %u s%s", arg,
               (int)pid, wait_s,
               lazy ? " (files in the detached mount are still open?)"
                    : " (it may still be writing its disk cache)");
        if (pidfd >= 0)
            close(pidfd);
        return 1;
    }
    if (pidfd >= 0)
        close(pidfd);
    return 0;
}
