/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg mount`: checks, FUSE session setup, daemonizing, kernel readahead. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cache/diskcache.h"
#include "cli.h"
#include "fs.h"
#include "log.h"

#define DEFAULT_MEM_CACHE (24ull << 20)
#define DEFAULT_THREADS 16
#define DEFAULT_READAHEAD_KB 16384

static const char mount_usage[] =
    "Usage: lazyimg mount [options] STORE MOUNTPOINT\n"
    "\n"
    "Mounts every finished snapshot of the Proxmox Backup Server datastore\n"
    "directory STORE read-only at MOUNTPOINT:\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/<time>/<archive>.img   disk images\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/<time>/<name>.conf     decoded config blobs\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/latest                 -> newest snapshot\n"
    "Returns once the mount is in place; the daemon runs until unmounted\n"
    "(lazyimg umount MOUNTPOINT or fusermount3 -u MOUNTPOINT).\n"
    "\n"
    "Options:\n"
    "  -f, --foreground       stay in the foreground, log to stderr\n"
    "  -d, --debug            log debug messages (implies --foreground)\n"
    "      --cache-dir DIR    persistent chunk cache (default: $LAZYIMG_CACHE_DIR,\n"
    "                         else /var/cache/lazyimg as root, else\n"
    "                         $XDG_CACHE_HOME/lazyimg or ~/.cache/lazyimg)\n"
    "      --cache-size SIZE  disk space the cache may take (default 10G)\n"
    "      --no-cache         read every chunk from the store (no disk cache)\n"
    "      --mem-cache SIZE   decoded chunks kept in memory (default 24M)\n"
    "      --threads N        FUSE worker threads (default 16)\n"
    "      --readahead-kb N   kernel readahead window of the mount, in KiB\n"
    "                         (default 16384; needs root, 0 keeps the kernel's)\n"
    "      --allow-other      let other users access the mount (needs\n"
    "                         user_allow_other in /etc/fuse.conf unless root)\n"
    "  -h, --help             show this help\n";

struct mount_opts {
    bool foreground, debug, allow_other, no_cache;
    uint64_t mem_cache, cache_size;
    const char *cache_dir;
    unsigned threads;
    unsigned readahead_kb;
    const char *store, *mountpoint;
};

static int parse_mount_opts(int argc, char **argv, struct mount_opts *o)
{
    enum { OPT_MEM = 256, OPT_THREADS, OPT_RA, OPT_ALLOW_OTHER, OPT_CACHE_DIR, OPT_CACHE_SIZE,
           OPT_NO_CACHE };
    static const struct option opts[] = {
        {"foreground", no_argument, NULL, 'f'},
        {"debug", no_argument, NULL, 'd'},
        {"mem-cache", required_argument, NULL, OPT_MEM},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
        {"no-cache", no_argument, NULL, OPT_NO_CACHE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"readahead-kb", required_argument, NULL, OPT_RA},
        {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    uint64_t v;
    int c;

    *o = (struct mount_opts){
        .mem_cache = DEFAULT_MEM_CACHE,
        .threads = DEFAULT_THREADS,
        .readahead_kb = DEFAULT_READAHEAD_KB,
        .cache_size = FS_DEFAULT_CACHE_SIZE,
    };
    while ((c = getopt_long(argc, argv, "fdh", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o->foreground = true;
            break;
        case 'd':
            o->debug = o->foreground = true;
            break;
        case OPT_MEM:
            if (fs_parse_size(optarg, &o->mem_cache) < 0 || o->mem_cache < (4u << 20)) {
                fs_err("--mem-cache: invalid size '%s' (at least 4M)", optarg);
                return 2;
            }
            break;
        case OPT_THREADS:
            if (fs_parse_size(optarg, &v) < 0 || v < 1 || v > 256) {
                fs_err("--threads: expected 1 to 256, got '%s'", optarg);
                return 2;
            }
            o->threads = (unsigned)v;
            break;
        case OPT_RA:
            if (fs_parse_size(optarg, &v) < 0 || v > 1024 * 1024) {
                fs_err("--readahead-kb: expected 0 to 1048576, got '%s'", optarg);
                return 2;
            }
            o->readahead_kb = (unsigned)v;
            break;
        case OPT_ALLOW_OTHER:
            o->allow_other = true;
            break;
        case OPT_CACHE_DIR:
            o->cache_dir = optarg;
            break;
        case OPT_CACHE_SIZE:
            if (fs_parse_size(optarg, &o->cache_size) < 0 || o->cache_size < (16u << 20)) {
                fs_err("--cache-size: invalid size '%s' (at least 16M)", optarg);
                return 2;
            }
            break;
        case OPT_NO_CACHE:
            o->no_cache = true;
            break;
        case 'h':
            fputs(mount_usage, stdout);
            return -1;
        default:
            fputs(mount_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fs_err("mount: expected STORE and MOUNTPOINT (see lazyimg mount --help)");
        return 2;
    }
    o->store = argv[optind];
    o->mountpoint = argv[optind + 1];
    return 0;
}

/* Whether @path (absolute, canonical) is a mountpoint, from /proc/self/mountinfo. */
static bool is_mounted(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    if (!f)
        return false;
    while (!found && getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mountpoint ... ; mountpoint octal-escapes spaces */
        char mnt[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1) {
            char unescaped[PATH_MAX];
            size_t j = 0;
            for (size_t i = 0; mnt[i] && j + 1 < sizeof(unescaped); i++) {
                if (mnt[i] == '\\' && mnt[i + 1] >= '0' && mnt[i + 1] <= '3' && mnt[i + 2] &&
                    mnt[i + 3]) {
                    unescaped[j++] = (char)((mnt[i + 1] - '0') * 64 + (mnt[i + 2] - '0') * 8 +
                                            (mnt[i + 3] - '0'));
                    i += 3;
                } else {
                    unescaped[j++] = mnt[i];
                }
            }
            unescaped[j] = '\0';
            found = !strcmp(unescaped, path);
        }
    }
    free(line);
    fclose(f);
    return found;
}

static int check_mountpoint(const char *mnt, char *abs, size_t abs_len)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    char resolved[PATH_MAX];

    if (stat(mnt, &st) < 0) {
        fs_err("mountpoint %s: %s", mnt, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fs_err("mountpoint %s: not a directory", mnt);
        return -1;
    }
    if (!realpath(mnt, resolved)) {
        fs_err("mountpoint %s: %s", mnt, strerror(errno));
        return -1;
    }
    if (is_mounted(resolved)) {
        fs_err("mountpoint %s: already mounted (unmount it first: lazyimg umount %s)", mnt, mnt);
        return -1;
    }
    d = opendir(resolved);
    if (!d) {
        fs_err("mountpoint %s: %s", mnt, strerror(errno));
        return -1;
    }
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            closedir(d);
            fs_err("mountpoint %s: not empty", mnt);
            return -1;
        }
    }
    closedir(d);
    snprintf(abs, abs_len, "%s", resolved);
    return 0;
}

static int check_dev_fuse(void)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fs_err("cannot open /dev/fuse: %s (is the fuse module loaded and fuse3 installed?)",
               strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

struct readahead_job {
    char mountpoint[PATH_MAX];
    unsigned kb;
};

/*
 * The kernel lowers the bdi readahead to what INIT negotiated, so the window
 * can only be raised once INIT is done: stat() of the mountpoint returns only
 * then. This runs on its own thread, never on a FUSE worker.
 */
static void *raise_readahead(void *arg)
{
    struct readahead_job *job = arg;
    char path[128], val[32];
    struct stat st;
    int fd;

    if (stat(job->mountpoint, &st) == 0) {
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
                 minor(st.st_dev));
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            int n = snprintf(val, sizeof(val), "%u\n", job->kb);
            if (write(fd, val, (size_t)n) != n)
                fs_debug("%s: %s", path, strerror(errno));
            else
                fs_debug("kernel readahead of the mount set to %u KiB", job->kb);
            close(fd);
        } else {
            fs_debug("cannot raise kernel readahead (%s: %s)", path, strerror(errno));
        }
    }
    free(job);
    return NULL;
}

static void start_readahead_thread(const char *mountpoint, unsigned kb)
{
    struct readahead_job *job;
    pthread_t t;
    if (kb == 0 || !(job = calloc(1, sizeof(*job))))
        return;
    snprintf(job->mountpoint, sizeof(job->mountpoint), "%s", mountpoint);
    job->kb = kb;
    if (pthread_create(&t, NULL, raise_readahead, job) != 0) {
        free(job);
        return;
    }
    pthread_detach(t);
}

/*
 * Chunk buffers are megabytes each and short-lived. Per-thread arenas and the
 * adaptive mmap threshold let freed buffers pile up in many arenas (RSS more
 * than doubled in measurements); two arenas, heap allocation for them and a
 * high trim threshold keep RSS near the working set without page-fault churn.
 */
static void tune_malloc(void)
{
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int fs_cmd_mount(int argc, char **argv)
{
    struct mount_opts o;
    struct fetch_store *store = NULL;
    struct fetch_pbs_catalog *cat = NULL;
    struct fs_ctx ctx = {0};
    struct fuse_session *se = NULL;
    struct fuse_loop_config *loop_cfg = NULL;
    fetch_error err = {""};
    char mnt[PATH_MAX], fsname[PATH_MAX + 16], optstr[PATH_MAX + 128];
    char *fuse_argv[4];
    struct fuse_args args;
    struct cache_disk *disk = NULL;
    struct cache_disk_options copts = {0};
    char cache_dir[PATH_MAX], store_abs[PATH_MAX];
    int r, status = 1;

    r = parse_mount_opts(argc, argv, &o);
    if (r)
        return r < 0 ? 0 : r;
    if (o.debug)
        fs_log_set_level(FS_LOG_DEBUG);

    tune_malloc();
    store = fs_open_store(o.store);
    if (!store)
        return 1;
    if (check_mountpoint(o.mountpoint, mnt, sizeof(mnt)) < 0 || check_dev_fuse() < 0)
        goto out;
    if (!o.no_cache) {
        /* open once now for a clear error; the daemon reopens it after the fork */
        if (fs_prepare_cache_dir(o.cache_dir, mnt, cache_dir, sizeof(cache_dir)) < 0)
            goto out;
        copts.dir = cache_dir;
        copts.budget = o.cache_size;
        copts.store = realpath(o.store, store_abs) ? store_abs : o.store;
        if (fs_open_cache(&copts, &disk) < 0)
            goto out;
        cache_disk_close(disk);
        disk = NULL;
    }
    r = fetch_pbs_catalog_load(store, &cat, &err);
    if (r < 0) {
        fs_err("%s: %s", o.store, err.msg);
        goto out;
    }
    for (size_t i = 0; i < cat->warning_count; i++)
        fs_warn("%s", cat->warnings[i]);
    if (cat->count == 0)
        fs_warn("%s: no finished snapshots; the mount will be empty", o.store);
    r = fs_tree_new(store, cat, &ctx.tree);
    cat = NULL; /* owned by the tree now; fs_tree_new frees it on failure */
    if (r < 0) {
        fs_err("cannot build the snapshot tree: %s",
               r == -EEXIST ? "two archives of one snapshot share a name" : strerror(-r));
        goto out;
    }

    snprintf(fsname, sizeof(fsname), "lazyimg:%s", o.store);
    /* commas would split the option string: keep fsname free of them */
    for (char *p = fsname; *p; p++)
        if (*p == ',')
            *p = '_';
    snprintf(optstr, sizeof(optstr),
             "ro,default_permissions,subtype=lazyimg,fsname=%s,max_read=%u%s", fsname,
             FS_MAX_READ, o.allow_other ? ",allow_other" : "");
    fuse_argv[0] = (char *)"lazyimg";
    fuse_argv[1] = (char *)"-o";
    fuse_argv[2] = optstr;
    fuse_argv[3] = NULL;
    args = (struct fuse_args)FUSE_ARGS_INIT(3, fuse_argv);
    if (o.debug) {
        /* libfuse's own request trace is too much for -d; keep ours */
    }
    se = fuse_session_new(&args, fs_ops(), sizeof(struct fuse_lowlevel_ops), &ctx);
    fuse_opt_free_args(&args);
    if (!se) {
        fs_err("cannot create the FUSE session");
        goto out;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        fs_err("cannot install signal handlers");
        goto out;
    }
    if (fuse_session_mount(se, mnt) != 0) {
        fs_err("cannot mount at %s (see the message above)", mnt);
        goto out_handlers;
    }
    if (fuse_daemonize(o.foreground) != 0) {
        fs_err("cannot detach from the terminal");
        goto out_unmount;
    }
    if (!o.foreground)
        fs_log_use_syslog(true);
    fs_info("mounted %s at %s (%zu snapshots)", o.store, mnt, ctx.tree->catalog->count);
    if (!o.no_cache && fs_open_cache(&copts, &disk) < 0)
        fs_warn("continuing without the disk cache");
    ctx.has_disk_cache = disk != NULL;
    ctx.chunks = fs_chunks_new(store, (size_t)o.mem_cache, disk);
    if (!ctx.chunks) {
        fs_err("out of memory");
        goto out_unmount;
    }

    start_readahead_thread(mnt, o.readahead_kb);
    loop_cfg = fuse_loop_cfg_create();
    if (!loop_cfg) {
        fs_err("out of memory");
        goto out_unmount;
    }
    fuse_loop_cfg_set_max_threads(loop_cfg, o.threads);
    fuse_loop_cfg_set_idle_threads(loop_cfg, o.threads);
    r = fuse_session_loop_mt(se, loop_cfg);
    /* > 0: the signal (SIGTERM, SIGINT, SIGHUP) that asked us to stop */
    status = r < 0 ? 1 : 0;
    if (r < 0)
        fs_err("FUSE session ended with an error: %s", strerror(-r));
    else
        fs_info("unmounting %s%s", mnt, r > 0 ? " (signal)" : "");
    fuse_loop_cfg_destroy(loop_cfg);
    {
        struct fs_chunks_stats st;
        fs_chunks_get_stats(ctx.chunks, &st);
        fs_info("chunks loaded from the store %llu (%llu MiB), failed %llu; disk cache hits %llu, "
                "bad %llu; memory hits %llu, waits %llu, evictions %llu",
                (unsigned long long)st.loads, (unsigned long long)(st.load_bytes >> 20),
                (unsigned long long)st.load_errors, (unsigned long long)st.disk_hits,
                (unsigned long long)st.disk_bad, (unsigned long long)st.mem.hits,
                (unsigned long long)st.mem.waits, (unsigned long long)st.mem.evictions);
        if (disk) {
            struct cache_disk_stats ds;
            cache_disk_sync(disk);
            cache_disk_get_stats(disk, &ds);
            fs_info("disk cache %s: %llu inserted, %llu not inserted (%llu for lack of space), "
                    "%llu evicted, %llu entries, %llu SQLite write transactions",
                    cache_dir, (unsigned long long)ds.inserts,
                    (unsigned long long)ds.insert_skipped, (unsigned long long)ds.enospc,
                    (unsigned long long)ds.evictions, (unsigned long long)ds.entries,
                    (unsigned long long)ds.sqlite_writes);
        }
    }
out_unmount:
    fuse_session_unmount(se);
out_handlers:
    fuse_remove_signal_handlers(se);
out:
    if (se)
        fuse_session_destroy(se);
    /* first: its writer still holds decoded chunks of ctx.chunks */
    cache_disk_close(disk);
    fs_chunks_free(ctx.chunks);
    fs_tree_free(ctx.tree);
    fetch_pbs_catalog_free(cat);
    fetch_store_free(store);
    return status;
}
