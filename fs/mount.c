/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg mount`: checks, FUSE session setup, daemonizing, kernel readahead. */
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cache/diskcache.h"
#include "cache/metacache.h"
#include "cli.h"
#include "daemon.h"
#include "fetch/repo.h"
#include "fetch/pool.h"
#include "fetch/remote.h"
#include "fs.h"
#include "log.h"
#include "metrics.h"
#include "read.h"
#include "conf_file.h"
#include "mountinfo.h"
#include "notify.h"
#include "offline_store.h"
#include "key_opts.h"
#include "remote_opts.h"

/* Our readahead may use all of it but two 4 MiB units (fs/read.c): 24 MiB for
 * one reader, 6 of --readahead's 8 units. 40M (all 8) read as fast by
 * hand (medians of 5 pairs: HTTP cache filling 1027 against 1109 MB/s,
 * local --no-cache 1806 against 1748) while a cold casync read's peak RSS
 * went from 87-89 to 95-101 MiB. The kernel's 16 MiB readahead
 * (--page-cache) fits: each chunk of a cold read is loaded once. */
#define DEFAULT_MEM_CACHE (32ull << 20)
#define FUSE_THREADS 16
#define DEFAULT_READAHEAD_KB 16384
#define DEFAULT_READAHEAD 8
#define DEFAULT_CONCURRENCY 16
#define DEFAULT_CONCURRENCY_SMALL 64
#define DEFAULT_RETRIES 4
#define DEFAULT_STUCK_AFTER 30
#define MAX_MIRRORS 8
#define MAX_SNAPSHOTS 64
/* At unmount, how long hydration may take to stop (it waits for nothing but
 * the completions of its chunks, which the stopped pool cancels, unless it is
 * inside a blocking store request such as loading a remote image index). */
#define TEARDOWN_HYDRATE_MS 2000

static const char mount_usage[] =
    "Usage: lazyimg mount [options] STORE MOUNTPOINT\n"
    "\n"
    "Mounts the backups in STORE read-only at MOUNTPOINT. STORE is a directory,\n"
    "an http:// or https:// URL served by a web server (with a directory index,\n"
    "or use --snapshot), or s3://BUCKET[/PREFIX]. It is either\n"
    "a Proxmox Backup Server datastore (it has .chunks/): every finished snapshot,\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/<time>/<archive>.img   disk images\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/<time>/<name>.conf     decoded config blobs\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/latest                 -> newest snapshot\n"
    "  MOUNTPOINT/[ns/<name>/...]<type>/<id>/<time>/<name>.pxar/    file archives as trees\n"
    "and beside each image <image>.parts/: its partitions p1, p2, ... (MBR, GPT),\n"
    "by-name/<GPT name> links and lvm/<vg>/<lv> (LVM2 linear, striped and zero volumes),\n"
    "each a file read through the image\n"
    "or a casync/desync repository: *.caibx blob indexes at any depth, with their\n"
    "chunks in default.castr/ at the top of STORE or in --chunk-store:\n"
    "  MOUNTPOINT/<dir>/<name>        the image of <dir>/<name>.caibx\n"
    "  MOUNTPOINT/<dir>/<name>/       the file tree of <dir>/<name>.caidx\n"
    "Returns once the mount is in place; the daemon runs until unmounted\n"
    "(lazyimg umount MOUNTPOINT, fusermount3 -u MOUNTPOINT, SIGTERM or SIGINT);\n"
    "SIGHUP reads the stores' credentials files again and forgets the chunks\n"
    "found missing in the last 30 s (a repaired store). Under systemd\n"
    "(Type=notify, $NOTIFY_SOCKET) it reports READY=1 once the mount is live and\n"
    "STOPPING=1 when it unmounts. mount(8) and /etc/fstab reach it as file system\n"
    "type fuse.lazyimg: mount -t fuse.lazyimg STORE MOUNTPOINT -o cache-size=20G,...\n"
    "(each -o option is the long option of the same name).\n"
    "\n"
    "Options:\n"
    "      --config FILE      read options from FILE first: one per line, the long\n"
    "                         options without their dashes (cache-size = 20G),\n"
    "                         store = STORE and mountpoint = MOUNTPOINT standing\n"
    "                         for the arguments; the command line wins. Without\n"
    "                         it, " FS_CONFIG_DEFAULT " is read if it exists\n"
    "                         ($LAZYIMG_CONFIG names another file, which must\n"
    "                         exist; empty: none)\n"
    "  -f, --foreground       stay in the foreground, log to stderr\n"
    "  -d, --debug            log debug messages (implies --foreground)\n"
    "      --log-level LEVEL  error, warning, info (the default) or debug\n"
    "      --stuck-after SECONDS  log each read that has waited longer than this\n"
    "                         for its chunks, naming them (default 30, 0: never).\n"
    "                         A reader interrupted by a signal while it waits\n"
    "                         gets EINTR at once\n"
    "      --cache-dir DIR    persistent chunk cache (default: $LAZYIMG_CACHE_DIR,\n"
    "                         else /var/cache/lazyimg as root, else\n"
    "                         $XDG_CACHE_HOME/lazyimg or ~/.cache/lazyimg)\n"
    "      --cache-size SIZE  disk space the cache may take (default 10G)\n"
    "      --no-cache         read every chunk from the store (no disk cache)\n"
    "      --mem-cache SIZE   decoded chunks kept in memory (default 32M); the\n"
    "                         readahead of the sequential readers of the moment\n"
    "                         shares it, less 4 MiB for the chunk each one is in,\n"
    "                         4 MiB more and the chunks read that the disk\n"
    "                         cache's writer still holds\n"
    "      --index-memory SIZE  image indexes (48 bytes a chunk) that nothing uses\n"
    "                         kept in memory for a later open (default 64M, or\n"
    "                         $LAZYIMG_INDEX_KEEP; 0: none); beyond it the least\n"
    "                         recently used are loaded again when next opened\n"
    "      --threads N        chunk decode threads (default: number of CPUs)\n"
    "      --fetch-concurrency N  chunk transfers in flight (default 16, or\n"
    "                         $LAZYIMG_FETCH_CONCURRENCY; without either, 64 of\n"
    "                         small chunks (1 MiB or less as stored: casync's) from\n"
    "                         a store whose quickest answers start 10 ms late)\n"
    "      --retries N        extra attempts per chunk and store after a server\n"
    "                         error, timeout, reset or damaged transfer (default 4)\n"
    "      --mirror STORE     another copy of STORE, tried in the order given when\n"
    "                         STORE fails (repeatable; chunks from --chunk-store\n"
    "                         or a local default.castr come from there only)\n"
    "      --snapshot PATH    mount just this snapshot, [ns/NS/]TYPE/ID/TIME, or\n"
    "                         casync index, DIR/NAME.caibx, without listing the\n"
    "                         store (repeatable)\n"
    "      --chunk-store LOCATION  casync: the chunk store (a directory, URL or\n"
    "                         s3:// location holding <4 hex>/<id>.cacnk), when it\n"
    "                         is not STORE/default.castr\n"
    "      --readahead N      how far a sequential reader is prefetched ahead, per\n"
    "                         stream, in units of 4 MiB (default 8, 0 disables;\n"
    "                         at most what --mem-cache leaves it: 6 at 32M)\n"
    "      --page-cache       let the kernel keep image bytes in its page cache,\n"
    "                         as for ordinary files. Without it (the default)\n"
    "                         image reads go straight to the daemon, which holds\n"
    "                         the chunks in memory and on disk: faster for\n"
    "                         streaming reads, but an image cannot be mapped\n"
    "                         with mmap(MAP_SHARED) (ENODEV; MAP_PRIVATE works)\n"
    "      --readahead-kb N   kernel readahead window of the mount, in KiB, with\n"
    "                         --page-cache (default 16384; needs root, 0 keeps\n"
    "                         the kernel's)\n"
    "      --no-boot-profile  do not record or replay read profiles: what is read\n"
    "                         first from an image (a VM's boot) is recorded for\n"
    "                         --profile-window seconds after its first open and\n"
    "                         fetched ahead of the reader when an image of the\n"
    "                         same name (this or a later snapshot) is opened again\n"
    "                         (needs the disk cache; lazyimg profile manages them)\n"
    "      --profile-window SECONDS  how long reads are recorded (default 60)\n"
    "      --no-parts         no <image>.parts directories (their tables are read\n"
    "                         when a directory is first listed: a find or updatedb\n"
    "                         walking the mount reads every image's first chunks)\n"
    "      --hydrate          fetch every chunk of every image into the cache in\n"
    "                         the background (lowest priority)\n"
    "      --bandwidth RATE   cap for --hydrate, bytes per second (e.g. 50M; at\n"
    "                         least 4K)\n"
    "      --offline          do not contact STORE: mount from the listings,\n"
    "                         manifests and indexes an earlier mount cached (in\n"
    "                         the cache directory); reads of chunks that are not\n"
    "                         in the cache fail with EIO at once. Without it, a\n"
    "                         STORE that cannot be reached is mounted that way\n"
    "                         too, with a warning, and fetches chunks again once\n"
    "                         it answers. Needs the disk cache (not --no-cache)\n"
    "      --metrics-listen ADDR  serve Prometheus metrics (the figures of\n"
    "                         lazyimg status) at http://ADDR/metrics; ADDR is\n"
    "                         HOST:PORT (127.0.0.1:9469, [::1]:9469,\n"
    "                         localhost:9469: only that address is listened on)\n"
    "                         or unix:/PATH (a socket of mode 0600, removed at\n"
    "                         unmount)\n"
    "      --allow-other      let other users access the mount (needs\n"
    "                         user_allow_other in /etc/fuse.conf unless "
    "root)\n" FS_KEY_OPTIONS_HELP FS_REMOTE_OPTIONS_HELP
    "  -h, --help             show this help\n";

static void config_reload(void *arg);

struct mount_opts {
    bool foreground, debug, allow_other, no_cache, offline, page_cache;
    uint64_t mem_cache, cache_size;
    uint64_t index_keep; /* bytes of unused image indexes kept (--index-memory) */
    const char *cache_dir;
    unsigned threads, concurrency, retries, readahead;
    bool concurrency_given; /* --fetch-concurrency or its variable */
    unsigned readahead_kb;
    bool hydrate, no_profile, no_parts;
    unsigned profile_window;
    unsigned stuck_after; /* seconds */
    uint64_t bandwidth;
    const char *mirrors[MAX_MIRRORS];
    size_t nmirrors;
    const char *snapshots[MAX_SNAPSHOTS];
    size_t nsnapshots;
    const char *chunk_store;
    const char *metrics_listen;             /* --metrics-listen ADDR, or NULL */
    const struct fetch_repo_format *format; /* what STORE holds, once known */
    struct fetch_remote_options remote;
    struct fs_key_opts key_opts;
    struct fetch_pbs_key *key; /* loaded by prepare_daemon, then the daemon's */
    const char *store, *mountpoint;
    /* STORE as shown everywhere (fsname, messages, cache): without a password */
    char store_shown[PATH_MAX];
    /* set by open_stores: the cache directory for the metadata cache (NULL
     * with --no-cache), how STORE was opened and, when it was unreachable, why */
    const char *meta_dir;
    enum fs_offline_mode store_mode;
    char store_down[sizeof(((fetch_error *)0)->msg)];
};

static int parse_count(const char *opt, const char *arg, unsigned lo, unsigned hi, unsigned *ret)
{
    uint64_t v;
    /* a plain number: a count takes no K/M/G suffix */
    if (arg[strspn(arg, "0123456789")] != '\0' || fs_parse_size(arg, &v) < 0 || v < lo || v > hi) {
        fs_err("%s: expected %u to %u, got '%s'", opt, lo, hi, arg);
        return -1;
    }
    *ret = (unsigned)v;
    return 0;
}

/* Size @arg of option @opt, at least @min (@min_text): 0, or -1 with a
 * message saying which of the two it failed. */
static int parse_min_size(const char *opt, const char *arg, uint64_t min, const char *min_text,
                          uint64_t *ret)
{
    int r = fs_parse_size(arg, ret);
    if (r < 0) {
        fs_err("%s: '%s' is %s", opt, arg,
               r == -ERANGE ? "too large" : "not a size (a number, with K, M, G or T: 64M)");
        return -1;
    }
    if (*ret < min) {
        fs_err("%s: %s is less than the least, %s", opt, arg, min_text);
        return -1;
    }
    return 0;
}

enum {
    OPT_MEM = 256,
    OPT_THREADS,
    OPT_RA,
    OPT_ALLOW_OTHER,
    OPT_CACHE_DIR,
    OPT_CACHE_SIZE,
    OPT_NO_CACHE,
    OPT_CONC,
    OPT_RETRIES,
    OPT_MIRROR,
    OPT_SNAPSHOT,
    OPT_READAHEAD,
    OPT_HYDRATE,
    OPT_BANDWIDTH,
    OPT_CHUNK_STORE,
    OPT_OFFLINE,
    OPT_PAGE_CACHE,
    OPT_NO_PROFILE,
    OPT_PROFILE_WINDOW,
    OPT_LOG_LEVEL,
    OPT_STUCK_AFTER,
    OPT_METRICS_LISTEN,
    OPT_NO_PARTS,
    OPT_INDEX_MEMORY,
    OPT_CONFIG
};
static const struct option mount_opts[] = {
    {"foreground", no_argument, NULL, 'f'},
    {"debug", no_argument, NULL, 'd'},
    {"mem-cache", required_argument, NULL, OPT_MEM},
    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
    {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
    {"no-cache", no_argument, NULL, OPT_NO_CACHE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"readahead-kb", required_argument, NULL, OPT_RA},
    {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
    {"fetch-concurrency", required_argument, NULL, OPT_CONC},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"mirror", required_argument, NULL, OPT_MIRROR},
    {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
    {"readahead", required_argument, NULL, OPT_READAHEAD},
    {"hydrate", no_argument, NULL, OPT_HYDRATE},
    {"bandwidth", required_argument, NULL, OPT_BANDWIDTH},
    {"chunk-store", required_argument, NULL, OPT_CHUNK_STORE},
    {"offline", no_argument, NULL, OPT_OFFLINE},
    {"page-cache", no_argument, NULL, OPT_PAGE_CACHE},
    {"no-boot-profile", no_argument, NULL, OPT_NO_PROFILE},
    {"profile-window", required_argument, NULL, OPT_PROFILE_WINDOW},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"stuck-after", required_argument, NULL, OPT_STUCK_AFTER},
    {"no-parts", no_argument, NULL, OPT_NO_PARTS},
    {"index-memory", required_argument, NULL, OPT_INDEX_MEMORY},
    /* read by fs_config_expand before this (here only beside --help) */
    {"config", required_argument, NULL, OPT_CONFIG},
    {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
    FS_REMOTE_LONG_OPTIONS,
    FS_KEY_LONG_OPTIONS,
    {"help", no_argument, NULL, 'h'},
    {0},
};

int fs_mount_opt_has_arg(const char *name)
{
    for (const struct option *op = mount_opts; op->name; op++) {
        if (!strcmp(op->name, name))
            return op->has_arg;
    }
    return -1;
}

static int parse_mount_opts(int argc, char **argv, struct mount_opts *o)
{
    static const char *const levels[] = {[FS_LOG_ERR] = "error",
                                         [FS_LOG_WARN] = "warning",
                                         [FS_LOG_INFO] = "info",
                                         [FS_LOG_DEBUG] = "debug"};
    const char *env_conc = getenv("LAZYIMG_FETCH_CONCURRENCY");
    const char *env_keep = getenv("LAZYIMG_INDEX_KEEP");
    const char *cfg_store, *cfg_mnt;
    uint64_t v;
    int c;

    if ((c = fs_config_expand(argc, argv, &argc, &argv, &cfg_store, &cfg_mnt)))
        return c;
    *o = (struct mount_opts){
        .mem_cache = DEFAULT_MEM_CACHE,
        .readahead_kb = DEFAULT_READAHEAD_KB,
        .readahead = DEFAULT_READAHEAD,
        .concurrency = DEFAULT_CONCURRENCY,
        .retries = DEFAULT_RETRIES,
        .cache_size = FS_DEFAULT_CACHE_SIZE,
        .stuck_after = DEFAULT_STUCK_AFTER,
        .index_keep = FS_INDEX_KEEP,
    };
    for (int li = -1; (c = getopt_long(argc, argv, "fdh", mount_opts, &li)) != -1; li = -1) {
        int handled;
        /* "--cache-dir --hydrate": a setting without its value (a bare
         * line of a --config file, a bare -o option) took the next option */
        if (li >= 0 && mount_opts[li].has_arg == required_argument && optarg && optind > 1 &&
            optarg == argv[optind - 1] && !strncmp(optarg, "--", 2)) {
            fs_err("--%s: expected a value, found the option %s (in a --config file or an -o "
                   "list, write %s=VALUE)",
                   mount_opts[li].name, optarg, mount_opts[li].name);
            return 2;
        }
        handled = fs_remote_opt_parse(c, optarg, &o->remote);
        if (!handled)
            handled = fs_key_opt_parse(c, optarg, &o->key_opts);
        if (handled < 0)
            return 2;
        if (handled)
            continue;
        switch (c) {
        case 'f':
            o->foreground = true;
            break;
        case 'd':
            o->debug = o->foreground = true;
            break;
        case OPT_MEM:
            if (parse_min_size("--mem-cache", optarg, 4u << 20, "4M", &o->mem_cache) < 0)
                return 2;
            break;
        case OPT_THREADS:
            if (parse_count("--threads", optarg, 1, 256, &o->threads) < 0)
                return 2;
            break;
        case OPT_CONC:
            if (parse_count("--fetch-concurrency", optarg, 1, 256, &o->concurrency) < 0)
                return 2;
            o->concurrency_given = true;
            env_conc = NULL; /* the option wins */
            break;
        case OPT_INDEX_MEMORY:
            if (parse_min_size("--index-memory", optarg, 0, "0", &o->index_keep) < 0)
                return 2;
            env_keep = NULL; /* the option wins */
            break;
        case OPT_RETRIES:
            if (parse_count("--retries", optarg, 0, 20, &o->retries) < 0)
                return 2;
            break;
        case OPT_READAHEAD:
            if (parse_count("--readahead", optarg, 0, 1024, &o->readahead) < 0)
                return 2;
            break;
        case OPT_MIRROR:
            if (o->nmirrors == MAX_MIRRORS) {
                fs_err("--mirror: at most %d mirrors", MAX_MIRRORS);
                return 2;
            }
            o->mirrors[o->nmirrors++] = optarg;
            break;
        case OPT_SNAPSHOT: {
            size_t k = 0;
            while (k < o->nsnapshots && strcmp(o->snapshots[k], optarg))
                k++;
            if (k < o->nsnapshots)
                break; /* given twice (a --config file and the command line) */
            if (o->nsnapshots == MAX_SNAPSHOTS) {
                fs_err("--snapshot: at most %d snapshots", MAX_SNAPSHOTS);
                return 2;
            }
            o->snapshots[o->nsnapshots++] = optarg;
            break;
        }
        case OPT_HYDRATE:
            o->hydrate = true;
            break;
        case OPT_CHUNK_STORE:
            o->chunk_store = optarg;
            break;
        case OPT_BANDWIDTH:
            if (parse_min_size("--bandwidth", optarg, 4096, "4K (bytes per second)",
                               &o->bandwidth) < 0)
                return 2;
            break;
        case OPT_RA:
            /* KiB already: "1M" would be 1 GiB */
            if (parse_count("--readahead-kb", optarg, 0, 1024 * 1024, &o->readahead_kb) < 0)
                return 2;
            break;
        case OPT_ALLOW_OTHER:
            o->allow_other = true;
            break;
        case OPT_CACHE_DIR:
            o->cache_dir = optarg;
            break;
        case OPT_CACHE_SIZE:
            if (parse_min_size("--cache-size", optarg, 16u << 20, "16M", &o->cache_size) < 0)
                return 2;
            break;
        case OPT_NO_CACHE:
            o->no_cache = true;
            break;
        case OPT_PAGE_CACHE:
            o->page_cache = true;
            break;
        case OPT_NO_PROFILE:
            o->no_profile = true;
            break;
        case OPT_PROFILE_WINDOW:
            if (parse_count("--profile-window", optarg, 1, 3600, &o->profile_window) < 0)
                return 2;
            break;
        case OPT_OFFLINE:
            o->offline = true;
            break;
        case OPT_METRICS_LISTEN:
            o->metrics_listen = optarg;
            break;
        case OPT_CONFIG:
            /* the file was read before, where --config is spelled out: an
             * abbreviation getopt accepts would be ignored */
            fs_err("--config: write the option in full (--config FILE or --config=FILE)");
            return 2;
        case OPT_NO_PARTS:
            o->no_parts = true;
            break;
        case OPT_STUCK_AFTER:
            if (parse_count("--stuck-after", optarg, 0, 86400, &o->stuck_after) < 0)
                return 2;
            break;
        case OPT_LOG_LEVEL:
            for (v = 0; v < sizeof(levels) / sizeof(levels[0]) && strcmp(optarg, levels[v]); v++)
                ;
            if (v == sizeof(levels) / sizeof(levels[0])) {
                fs_err("--log-level: expected error, warning, info or debug, got '%s'", optarg);
                return 2;
            }
            fs_log_set_level((enum fs_log_level)v);
            break;
        case 'h':
            fputs(mount_usage, stdout);
            return -1;
        default:
            fputs(mount_usage, stderr);
            return 2;
        }
    }
    if (env_conc && *env_conc) {
        if (parse_count("LAZYIMG_FETCH_CONCURRENCY", env_conc, 1, 256, &o->concurrency) < 0)
            return 2;
        o->concurrency_given = true;
    }
    if (env_keep && *env_keep &&
        parse_min_size("LAZYIMG_INDEX_KEEP", env_keep, 0, "0", &o->index_keep) < 0)
        return 2;
    if (argc - optind == 0 && cfg_store && cfg_mnt) {
        o->store = cfg_store;
        o->mountpoint = cfg_mnt;
    } else if (argc - optind != 2) {
        fs_err("mount: expected STORE and MOUNTPOINT (see lazyimg mount --help)");
        return 2;
    } else {
        o->store = argv[optind];
        o->mountpoint = argv[optind + 1];
    }
    fetch_location_mask(o->store, "***", o->store_shown, sizeof(o->store_shown));
    if (o->offline && o->no_cache) {
        fs_err("--offline: everything comes from the cache directory; not with --no-cache");
        return 2;
    }
    /* what STORE holds, when the options say it; else open_stores() looks */
    for (size_t i = 0; i < o->nsnapshots; i++) {
        const struct fetch_repo_format *f = fetch_repo_format_for_path(o->snapshots[i]);
        if (o->format && f != o->format) {
            fs_err("--snapshot: give either %s (%s) or %s (%s), not both", o->format->items,
                   o->format->snapshot_hint, f->items, f->snapshot_hint);
            return 2;
        }
        o->format = f;
    }
    if (o->chunk_store) {
        const struct fetch_repo_format *f = fetch_repo_format_with_chunk_dir();
        if (o->format && o->format != f) {
            fs_err("--snapshot: with --chunk-store, name %s as %s", f->items, f->snapshot_hint);
            return 2;
        }
        o->format = f;
    }
    return 0;
}

/* Whether @path (absolute, canonical) is a mountpoint, from /proc/self/mountinfo. */
/* Whether @path leads to the directory held by @fd. */
static bool leads_to(const char *path, int fd)
{
    struct stat now, pin;
    return stat(path, &now) == 0 && fstat(fd, &pin) == 0 && now.st_dev == pin.st_dev &&
           now.st_ino == pin.st_ino;
}

/*
 * A lazyimg mount at @mnt whose daemon is gone (the kernel answers
 * ENOTCONN): removed as `lazyimg umount` removes it, so that mounting again
 * (a restart by systemd's Restart=on-failure, say) needs no hand. 0 when
 * it was; a mount of another kind is left (umount says which it is).
 */
/* Whether the FUSE mount on top at @path lost its daemon: the kernel answers
 * a forced getattr with ENOTCONN (a live lazyimg daemon answers it from
 * memory). */
static bool daemon_gone(const char *path)
{
    struct statx stx;
    return statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC, STATX_TYPE, &stx) < 0 && errno == ENOTCONN;
}

static int clear_dead_mount(const char *mnt)
{
    char *argv[] = {(char *)"umount", (char *)"--", (char *)mnt, NULL};
    fs_warn("mountpoint %s: the mount there does not answer (its daemon is gone): unmounting "
            "it first, if it is lazyimg's",
            mnt);
    optind = 0; /* umount parses its own arguments (0: getopt starts afresh) */
    return fs_cmd_umount(3, argv) == 0 ? 0 : -1;
}

/*
 * Checks the mountpoint @mnt (a directory, empty, not mounted on) and
 * returns its canonical path in @abs and in *ret_fd an O_PATH descriptor of
 * the directory checked: the store may take seconds to open, and a
 * directory on the path replaced meanwhile (a symlink to another place)
 * must not move the mount there (see pinned_mount_target).
 */
static int check_mountpoint(const char *mnt, char *abs, size_t abs_len, int *ret_fd)
{
    struct fs_mount_entry me;
    struct stat pin;
    struct dirent *de;
    DIR *d;
    char resolved[PATH_MAX];
    bool cleared = false;
    int fd, dfd, e;

    if (!strncmp(mnt, "/dev/fd/", 8)) {
        /* mount.fuse3's drop_privileges: it mounted already and hands over
         * the session's descriptor */
        fs_err("mountpoint %s: a FUSE descriptor (mount.fuse3's drop_privileges option), which "
               "lazyimg does not take: remove drop_privileges, and unmount what mount.fuse3 "
               "mounted",
               mnt);
        return -1;
    }
again:
    if (!realpath(mnt, resolved) || (fd = open(resolved, O_PATH | O_CLOEXEC)) < 0) {
        e = errno;
        if (e == ENOTCONN && !cleared && clear_dead_mount(mnt) == 0) {
            cleared = true;
            goto again;
        }
        fs_err("mountpoint %s: %s%s", mnt, strerror(e),
               e == ENOTCONN ? " (a mount whose daemon is gone: lazyimg umount removes it)" : "");
        return -1;
    }
    if (fstat(fd, &pin) < 0) {
        fs_err("mountpoint %s: %s", mnt, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(pin.st_mode)) {
        fs_err("mountpoint %s: not a directory", mnt);
        goto fail;
    }
    if (!leads_to(resolved, fd)) {
        fs_err("mountpoint %s: changed while it was checked", mnt);
        goto fail;
    }
    if (fs_mountinfo_find(resolved, &me) == 1) {
        bool ours = !strcmp(me.fstype, "fuse.lazyimg");
        close(fd); /* it holds the mount's root: a dead mount would be busy */
        if (ours && !cleared && daemon_gone(resolved)) {
            cleared = true;
            if (clear_dead_mount(mnt) == 0)
                goto again;
        }
        if (ours)
            fs_err("mountpoint %s: already mounted (unmount it first: lazyimg umount %s)", mnt,
                   mnt);
        else
            fs_err("mountpoint %s: a %s is mounted there (unmount it first)", mnt, me.fstype);
        return -1;
    }
    if ((dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || !(d = fdopendir(dfd))) {
        fs_err("mountpoint %s: %s", mnt, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto fail;
    }
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            closedir(d);
            fs_err("mountpoint %s: not empty", mnt);
            goto fail;
        }
    }
    closedir(d);
    snprintf(abs, abs_len, "%s", resolved);
    *ret_fd = fd;
    return 0;
fail:
    close(fd);
    return -1;
}

/*
 * Where to mount: the directory checked by check_mountpoint (@fd, canonical
 * path @mnt). The path must still lead to it (else -1: a directory on it was
 * replaced since). As root, whose mount(2) libfuse calls in this process, the
 * target is the descriptor itself (/proc/self/fd/N, which the kernel follows
 * to that very directory, and through which libfuse unmounts it too): no
 * later change of the path can move the mount. fusermount3, for other
 * users, resolves the path itself.
 */
static int pinned_mount_target(const char *mnt, int fd, char *buf, size_t len)
{
    if (!leads_to(mnt, fd)) {
        fs_err("mountpoint %s: no longer the directory that was checked (a directory on its "
               "path was replaced); not mounting",
               mnt);
        return -1;
    }
    if (geteuid() == 0)
        snprintf(buf, len, "/proc/self/fd/%d", fd);
    else
        snprintf(buf, len, "%s", mnt);
    return 0;
}

static int check_dev_fuse(void)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fs_err("cannot open /dev/fuse: %s%s", strerror(e),
               e == EACCES || e == EPERM
                   ? " (this user may not read and write it: see its mode and group)"
                   : " (is the fuse module loaded and fuse3 installed?)");
        return -1;
    }
    close(fd);
    return 0;
}

struct readahead_job {
    char mountpoint[PATH_MAX];
    dev_t dev; /* the mount's, from mountinfo */
    unsigned kb;
};

/*
 * The kernel lowers the bdi readahead to what INIT negotiated, so the window
 * can only be raised once INIT is done: stat() of the mountpoint returns only
 * then. The bdi written is the mount's own device (from mountinfo), and only
 * if the path still leads to it: never the filesystem under the mountpoint
 * (the pinned /proc/self/fd path leads there) or another one a changed path
 * leads to. This runs on its own thread, never on a FUSE worker.
 */
static void *raise_readahead(void *arg)
{
    struct readahead_job *job = arg;
    char path[128], val[32];
    struct stat st;
    int fd;

    if (stat(job->mountpoint, &st) < 0) {
        fs_debug("kernel readahead not raised: %s: %s", job->mountpoint, strerror(errno));
    } else if (st.st_dev != job->dev) {
        fs_debug("kernel readahead not raised: %s no longer leads to the mount", job->mountpoint);
    } else {
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

/*
 * Whether the kernel readahead of the mount at @mountpoint (mounted, its
 * session not yet answering) can be set to @kb: that takes writing the
 * mount's read_ahead_kb in sysfs, which only root may do. If not, says so
 * once, on the terminal of `lazyimg mount`, with the window the mount keeps.
 * *@ret_dev: the mount's device, when it can.
 */
static bool readahead_settable(const char *mountpoint, unsigned kb, dev_t *ret_dev)
{
    char path[128], cur[32] = "";
    dev_t dev;
    ssize_t n;
    int fd;

    if (kb == 0)
        return false;
    if (fs_mountinfo_dev(mountpoint, &dev) < 0) {
        fs_debug("kernel readahead not raised: %s is not in mountinfo", mountpoint);
        return false;
    }
    *ret_dev = dev;
    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(dev), minor(dev));
    if (access(path, W_OK) == 0)
        return true;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? read(fd, cur, sizeof(cur) - 1) : -1;
    if (fd >= 0)
        close(fd);
    cur[n > 0 ? n : 0] = '\0';
    cur[strcspn(cur, "\n")] = '\0';
    if (strtoul(cur, NULL, 10) == kb)
        return false;
    fs_warn("kernel readahead of %s stays at %s%s, not the %u KiB of --readahead-kb: only "
            "root can change it (lazyimg's own --readahead still works)",
            mountpoint, *cur ? cur : "the kernel's default", *cur ? " KiB" : "", kb);
    return false;
}

static void start_readahead_thread(const char *mountpoint, dev_t dev, unsigned kb)
{
    struct readahead_job *job;
    pthread_t t;
    if (kb == 0 || !(job = calloc(1, sizeof(*job))))
        return;
    snprintf(job->mountpoint, sizeof(job->mountpoint), "%s", mountpoint);
    job->dev = dev;
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

/*
 * Open disk-cache entries keep their file open, so that a chunk looked up
 * by readahead is read without another index query. A readahead window of
 * small casync chunks holds hundreds of them: the soft descriptor limit is
 * raised to the hard one (at most 65536) and half of it, minus room for the
 * rest of the daemon, goes to cache entries (512 to 8192).
 */
static unsigned cache_open_files(unsigned concurrency)
{
    struct rlimit rl;
    rlim_t want;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = want;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* the rest: FUSE, SQLite, logs, a connection or two per transfer */
    rlim_t rest = 512 + 2 * (rlim_t)concurrency;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 2 * 8192 + rest)
        return 8192;
    return rl.rlim_cur < 2 * 512 + rest ? 512 : (unsigned)((rl.rlim_cur - rest) / 2);
}

/* ---- offline: stores that remember their metadata (fs/offline_store.h) ---- */

/*
 * How the caches name a store: a directory by where it is, not by how it was
 * typed ("."): its real path, or (gone, --offline) its absolute path; a URL
 * without its password; an s3:// URL with the service it is at when that is
 * not AWS (--s3-endpoint): a bucket of one name at two services is two
 * stores, and one's cached catalog must never answer for the other.
 */
static void canonical_location(const char *loc, const struct fetch_remote_options *ro, char *buf,
                               size_t size)
{
    char real[PATH_MAX], cwd[PATH_MAX];
    size_t n;
    if (!fetch_location_is_remote(loc)) {
        if (realpath(loc, real) && snprintf(buf, size, "%s", real) < (int)size)
            return;
        if (loc[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
            snprintf(buf, size, "%s/%s", cwd, loc) < (int)size)
            return;
    }
    n = fetch_location_mask(loc, "***", buf, size);
    if (!strncmp(loc, "s3://", 5) && ro->s3_endpoint && ro->s3_endpoint[0] && n < size) {
        char ep[PATH_MAX];
        size_t len = fetch_location_mask(ro->s3_endpoint, "***", ep, sizeof(ep));
        if (len >= sizeof(ep))
            len = sizeof(ep) - 1;
        /* the scheme and host in lower case, no trailing '/' */
        for (size_t i = 0, slashes = 0; i < len && slashes < 3; i++) {
            slashes += ep[i] == '/';
            ep[i] = (char)tolower((unsigned char)ep[i]);
        }
        while (len > 0 && ep[len - 1] == '/')
            ep[--len] = '\0';
        snprintf(buf + n, size - n, " at %.*s", (int)(size - n > 5 ? size - n - 5 : 0), ep);
    }
}

/*
 * Opens the store at @loc as a store whose listings and small objects are
 * kept in the metadata cache below o->meta_dir (none with --no-cache). With
 * --offline the store is not contacted; when STORE (@primary) cannot be
 * reached now, it is opened without the reachability check and answers from
 * the cache until it is back (the caller warns). @ret_kind (may be NULL) gets
 * what it holds. Prints a one-line error and returns -1 on failure.
 */
static int open_offline_aware(struct mount_opts *o, const char *loc, bool primary,
                              struct fetch_store **ret, const struct fetch_repo_format **ret_kind)
{
    enum fs_offline_mode mode = o->offline ? FS_OFFLINE_FORCED : FS_OFFLINE_NO;
    struct fetch_store *inner = NULL;
    struct cache_meta *meta = NULL;
    fetch_error err = {""};
    char msg[PATH_MAX + 128] = "", shown[PATH_MAX];
    int r;

    /* @loc may hold a password: only @shown is printed or kept */
    fetch_location_mask(loc, "***", shown, sizeof(shown));

    if (!o->meta_dir) {
        if (ret_kind)
            return (*ret = fs_open_store(loc, &o->remote, ret_kind)) ? 0 : -1;
        if (fetch_store_open(loc, &o->remote, ret, &err) < 0) {
            fs_err("%s", err.msg);
            return -1;
        }
        return 0;
    }
    if (mode == FS_OFFLINE_NO && ret_kind && !fetch_location_is_remote(loc)) {
        /* a directory is there or not: no network to fall back from */
        if (!(inner = fs_open_store(loc, &o->remote, ret_kind)))
            return -1;
        ret_kind = NULL;
    } else if (mode == FS_OFFLINE_NO) {
        r = fetch_store_open(loc, &o->remote, &inner, &err);
        if (r < 0 && (!primary || !fs_offline_error_is_network(r))) {
            fs_err("%s", err.msg);
            return -1;
        }
        if (r < 0) {
            /* "LOCATION: connection refused": the warning names the location */
            size_t ll = strlen(shown);
            const char *why = !strncmp(err.msg, shown, ll) && !strncmp(err.msg + ll, ": ", 2)
                                  ? err.msg + ll + 2
                                  : err.msg;
            snprintf(o->store_down, sizeof(o->store_down), "%s", why);
            mode = FS_OFFLINE_DOWN;
            if (fetch_store_open_unchecked(loc, &o->remote, &inner, &err) < 0) {
                fs_err("%s", err.msg);
                return -1;
            }
        }
    }
    char key[PATH_MAX];
    canonical_location(loc, &o->remote, key, sizeof(key));
    r = cache_meta_open(o->meta_dir, key, &meta, msg, sizeof(msg));
    if (r < 0 && mode == FS_OFFLINE_NO) {
        fs_warn("%s (%s will not be mountable while it is unreachable)", msg, shown);
        *ret = inner;
    } else if (r < 0) {
        fs_err("%s", msg);
        fetch_store_free(inner);
        return -1;
    } else if (fs_offline_store_new(shown, inner, meta, mode, ret) < 0) {
        fs_err("out of memory");
        return -1;
    }
    if (primary)
        o->store_mode = mode;
    if (ret_kind && mode != FS_OFFLINE_NO) {
        /* the store's error, unless it is only the cache's miss (which
         * repeated the location), then what to do */
        err.msg[0] = '\0';
        r = fetch_repo_probe(*ret, ret_kind, &err);
        if (r < 0 && r != -ENETDOWN)
            fs_err("%s: %s", shown, err.msg);
        if (r < 0) {
            fs_err("%s: no cached listing of the store in %s/meta (mount it once while it is "
                   "reachable)",
                   shown, o->meta_dir);
            return -1;
        }
    } else if (ret_kind && fs_store_kind(*ret, ret_kind) < 0) {
        return -1;
    }
    return 0;
}

/*
 * Opens STORE and its mirrors. With --snapshot or --chunk-store nothing is
 * listed, so a server without a directory index works; otherwise STORE says
 * what it holds (its repository format) and the mirrors must hold the same. A mirror that cannot be
 * opened now is an error: failover targets are checked before they are needed (STORE itself may be
 * mounted from cached metadata, see open_offline_aware).
 */
static int open_stores(struct mount_opts *o, struct fetch_store **stores)
{
    bool given = o->format != NULL; /* by the options: nothing is probed */
    for (size_t i = 0; i <= o->nmirrors; i++) {
        const char *loc = i ? o->mirrors[i - 1] : o->store;
        const struct fetch_repo_format *kind = NULL;
        if (open_offline_aware(o, loc, i == 0, &stores[i], given ? NULL : &kind) < 0)
            return -1;
        if (given)
            continue;
        if (i == 0) {
            o->format = kind;
        } else if (kind != o->format) {
            fs_err("%s: not the same kind of store as %s", stores[i]->location,
                   stores[0]->location);
            return -1;
        }
    }
    return 0;
}

/* The catalog from the first store that gives one. */
static int load_catalog(const struct mount_opts *o, struct fetch_store **stores,
                        struct fetch_repo **ret, size_t *ret_from)
{
    for (size_t i = 0; i <= o->nmirrors; i++) {
        fetch_error err = {""};
        int r = fetch_repo_load(o->format, stores[i], o->key, o->snapshots, o->nsnapshots, true,
                                ret, &err);
        if (r == 0) {
            *ret_from = i;
            return 0;
        }
        fs_err("%s: %s", stores[i]->location, err.msg);
        if (r == -ENOMEM || r == -EINVAL || r == -EMEDIUMTYPE)
            break;
    }
    return -1;
}

/* Builds the tree of the catalog (owned by the tree now); tells what was skipped. */
static int build_tree(struct fetch_repo *repo, bool parts, struct fs_tree **ret)
{
    int r;
    fs_repo_report(repo);
    r = fs_tree_new(repo, parts, ret);
    if (r < 0)
        fs_err("cannot build the tree of the mount: %s", strerror(-r));
    return r;
}

/*
 * Chunks of a format that keeps them in a directory of their own (its
 * chunk_dir, e.g. default.castr/) come from --chunk-store (opened into
 * @ret_chunk_store) or from that directory in STORE and its mirrors;
 * @ret_prefix says which. A local chunk directory is opened as a store of its
 * own (it may be a symlink, which paths inside a store may not cross); one
 * that does not exist is an error now rather than EIO at every read. Other
 * formats' chunks are found from the store's root: prefix "".
 */
static int open_chunk_store(const struct mount_opts *o, struct fetch_store **ret_chunk_store,
                            char *ret_prefix, size_t prefix_len)
{
    const char *dir = o->format->chunk_dir;
    fetch_error err = {""};
    struct stat st;
    char path[PATH_MAX];

    ret_prefix[0] = '\0';
    if (!dir)
        return 0;
    if (o->chunk_store && o->store_mode == FS_OFFLINE_FORCED) {
        /* --offline: chunks come from the chunk cache only; the location
         * is shown (status, read errors), so without a password */
        fetch_location_mask(o->chunk_store, "***", path, sizeof(path));
        if (!(*ret_chunk_store = fs_offline_null_store_new(path))) {
            fs_err("out of memory");
            return -1;
        }
        return 0;
    }
    if (o->chunk_store) {
        int r = fetch_store_open(o->chunk_store, &o->remote, ret_chunk_store, &err);
        if (r < 0 && o->store_mode == FS_OFFLINE_DOWN && fs_offline_error_is_network(r)) {
            /* like STORE: chunks are fetched again once it answers */
            fs_warn("--chunk-store: %s; uncached chunks will fail with EIO until it answers",
                    err.msg);
            r = fetch_store_open_unchecked(o->chunk_store, &o->remote, ret_chunk_store, &err);
        }
        if (r < 0) {
            fs_err("--chunk-store: %s", err.msg);
            return -1;
        }
        return 0;
    }
    snprintf(ret_prefix, prefix_len, "%s/", dir);
    if (!fetch_location_is_remote(o->store)) {
        snprintf(path, sizeof(path), "%s/%s", o->store, dir);
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            fs_err("%s: no chunk store (%s is missing); name it with --chunk-store LOCATION",
                   o->store_shown, path);
            return -1;
        }
        if (fetch_store_open_local(path, ret_chunk_store, &err) < 0) {
            fs_err("%s", err.msg);
            return -1;
        }
        ret_prefix[0] = '\0';
    }
    return 0;
}

/*
 * After the catalog was loaded from @s: when any of it came from the metadata
 * cache, says so once (a warning, or a notice with --offline), describes the
 * state in @desc for `lazyimg status` and returns true.
 */
static bool offline_notice(const struct mount_opts *o, struct fetch_store *s, size_t count,
                           char *desc, size_t desc_len)
{
    const char *what = o->format->items;
    char when[32] = "an earlier mount";
    uint64_t served = 0;
    int64_t oldest = 0;
    struct tm tm;

    if (fs_is_offline_store(s))
        fs_offline_store_stats(s, &served, &oldest);
    if (o->store_mode == FS_OFFLINE_NO && !served)
        return false;
    time_t t = (time_t)oldest;
    if (oldest && localtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
    if (o->store_mode == FS_OFFLINE_FORCED) {
        snprintf(desc, desc_len, "--offline: the store is not contacted; catalog cached %s", when);
        fs_info("%s: --offline: mounting from the cached catalog of %s (%zu %s); chunks not "
                "in the cache fail with EIO",
                o->store_shown, when, count, what);
    } else if (o->store_mode == FS_OFFLINE_DOWN) {
        snprintf(desc, desc_len, "the store was unreachable at mount (%s); catalog cached %s",
                 o->store_down, when);
        fs_warn("store %s unreachable (%s); mounting from the cached catalog of %s (%zu %s); "
                "uncached chunks will fail with EIO until it answers again",
                o->store_shown, o->store_down, when, count, what);
    } else {
        snprintf(desc, desc_len,
                 "the store failed during the mount; %llu listings or "
                 "objects came from the cache of %s",
                 (unsigned long long)served, when);
        fs_warn("%s did not answer every request of the catalog: %llu listings or objects "
                "came from the cached catalog of %s (%zu %s)",
                o->store_shown, (unsigned long long)served, when, count, what);
    }
    return true;
}

/*
 * The FUSE loop joins its worker threads before it returns, and a worker may
 * be inside a blocking store request (an index load from a stalled server,
 * up to --fetch-timeout x attempts). As soon as the session is told to end
 * (a signal, or the unmount), every such request is cancelled, so that the
 * loop returns at once.
 */
struct exit_watch {
    struct fuse_session *se;
    atomic_bool done;
    pthread_t thread;
};

static void *watch_exit(void *arg)
{
    struct exit_watch *w = arg;
    const struct timespec step = {.tv_nsec = 50 * 1000000L};
    while (!atomic_load(&w->done)) {
        if (fuse_session_exited(w->se)) {
            fetch_remote_abort_all();
            break;
        }
        nanosleep(&step, NULL);
    }
    return NULL;
}

/*
 * Everything before the FUSE session: the cache directory (the metadata
 * cache may stand in for STORE), the stores, the catalog, the tree and the
 * chunk store, handed to a new daemon. @mounted gets the line to log once
 * mounted. 0 or -1 (told).
 */
static int prepare_daemon(struct mount_opts *o, const char *mnt, struct fs_daemon **ret,
                          char *mounted, size_t mounted_len)
{
    struct fetch_store *stores[MAX_MIRRORS + 1] = {0}, *chunk_store = NULL;
    struct fs_daemon_config cfg = {0};
    struct cache_disk_options copts = {0};
    struct cache_disk *disk = NULL;
    struct fetch_repo *repo = NULL;
    struct fs_tree *tree = NULL;
    char cache_dir[PATH_MAX] = "", store_abs[PATH_MAX], offline_desc[512], chunk_prefix[256];
    size_t cat_from = 0;

    if (fs_key_load(&o->key_opts, &o->key) < 0)
        return -1;
    if (!o->no_cache) {
        /* open once now for a clear error; the daemon reopens it after the fork */
        if (fs_prepare_cache_dir(o->cache_dir, mnt, cache_dir, sizeof(cache_dir)) < 0)
            goto fail;
        copts.dir = cache_dir;
        copts.budget = o->cache_size;
        copts.max_open =
            cache_open_files(o->concurrency_given ? o->concurrency : DEFAULT_CONCURRENCY_SMALL);
        /* chunks waiting for the disk writer are memory entries too: half of
         * --mem-cache for them (loaders wait beyond); readahead windows
         * shrink by those of them already read (fs/read.c), so that neither
         * evicts the other's */
        copts.queue_bytes = o->mem_cache / 2;
        /* hits and misses are counted per store the chunks come from */
        canonical_location(o->chunk_store ? o->chunk_store : o->store, &o->remote, store_abs,
                           sizeof(store_abs));
        copts.store = store_abs;
        if (fs_open_cache(&copts, &disk) < 0)
            goto fail;
        cache_disk_close(disk);
        o->meta_dir = cache_dir;
    }
    if (open_stores(o, stores) < 0)
        goto fail;
    if (load_catalog(o, stores, &repo, &cat_from) < 0) {
        if (o->store_mode != FS_OFFLINE_NO)
            fs_err("%s: no cached catalog of the store in %s/meta (mount it once while it is "
                   "reachable)",
                   o->store_shown, cache_dir);
        goto fail;
    }
    if (fs_is_offline_store(stores[cat_from]) && o->store_mode == FS_OFFLINE_NO)
        fs_offline_store_sync(stores[cat_from]); /* the catalog survives a crash */
    if (offline_notice(o, stores[cat_from], repo->items, offline_desc, sizeof(offline_desc)))
        cfg.offline = offline_desc;
    /* the catalog is owned by the tree now (freed on failure) */
    if (build_tree(repo, !o->no_parts, &tree) < 0 ||
        open_chunk_store(o, &chunk_store, chunk_prefix, sizeof(chunk_prefix)) < 0)
        goto fail;
    /* (a message: cut short if it must be) */
    if ((!o->format->chunk_dir
             ? snprintf(mounted, mounted_len, "mounted %s at %s (%zu %s)", o->store_shown, mnt,
                        tree->repo->items, o->format->items)
             : snprintf(mounted, mounted_len,
                        "mounted %s at %s (%zu %s, %zu images, chunks from %s%s%s)", o->store_shown,
                        mnt, tree->repo->items, o->format->items, tree->image_count,
                        chunk_store ? chunk_store->location : o->store_shown,
                        chunk_store ? "" : "/", chunk_store ? "" : o->format->chunk_dir)) < 0)
        mounted[0] = '\0';
    fs_tree_set_index_keep(tree, o->index_keep);
    cfg.tree = tree;
    cfg.stores = stores;
    cfg.nstores = o->nmirrors + 1;
    cfg.active_store = cat_from;
    cfg.chunk_store = chunk_store;
    cfg.chunk_prefix = chunk_prefix;
    cfg.key = o->key;
    o->key = NULL; /* the daemon's (freed with it, also on failure) */
    cfg.cache = o->no_cache ? NULL : &copts;
    cfg.mem_cache = (size_t)o->mem_cache;
    cfg.readahead = o->readahead;
    cfg.direct_io = !o->page_cache;
    cfg.pool = (struct fetch_pool_config){
        .concurrency = o->concurrency,
        /* small chunks (casync's) need more requests in flight to fill the
         * link to a far store; a number given applies to every transfer (a
         * server that takes few connections at once) */
        .concurrency_small = o->concurrency_given ? o->concurrency : DEFAULT_CONCURRENCY_SMALL,
        .workers = o->threads,
        /* a local datastore's chunk files read while the workers verify */
        .readers = 2,
        .retries = o->retries,
        /* a store unavailable is waited for as long as one that stalls */
        .outage_ms = (unsigned)(o->remote.timeout_ms > 0 ? o->remote.timeout_ms
                                                         : FETCH_REMOTE_DEFAULT_TIMEOUT_MS)};
    cfg.hydrate = o->hydrate;
    cfg.profile = !o->no_profile;
    cfg.profile_window_s = o->profile_window;
    cfg.bandwidth = o->bandwidth;
    cfg.stop_hydrate_ms = TEARDOWN_HYDRATE_MS;
    cfg.stuck_after_s = o->stuck_after;
    cfg.on_reload = config_reload;
    o->meta_dir = NULL; /* @cache_dir ends here */
    if (fs_daemon_new(&cfg, ret) < 0) {
        fs_err("out of memory");
        return -1;
    }
    return 0;
fail:
    o->meta_dir = NULL;
    fs_tree_free(tree);
    fs_key_free(o->key);
    o->key = NULL;
    for (size_t i = 0; i <= MAX_MIRRORS; i++)
        fetch_store_free(stores[i]);
    fetch_store_free(chunk_store);
    return -1;
}

/* --metrics-listen: bound now, so that a bad address or a port in use fails
 * the mount command before anything is mounted. 0 or -1 (told). */
static int listen_metrics(const struct mount_opts *o, const char *mnt, struct fs_metrics **ret)
{
    char err[512];
    if (o->metrics_listen && fs_metrics_listen(o->metrics_listen, mnt, ret, err, sizeof(err)) < 0) {
        fs_err("--metrics-listen %s", err);
        return -1;
    }
    return 0;
}

static void on_sighup(int sig)
{
    (void)sig;
    fs_daemon_ask_reload();
}

static void config_reload(void *arg)
{
    (void)arg;
    fs_config_check_reload();
}

/* The FUSE session (read-only, our fsname and max_read) with signal handlers. */
static struct fuse_session *session_new(const struct mount_opts *o, struct fs_daemon *d)
{
    char fsname[PATH_MAX + 16], optstr[PATH_MAX + 128];
    char *fuse_argv[] = {(char *)"lazyimg", (char *)"-o", optstr, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
    struct fuse_session *se;

    snprintf(fsname, sizeof(fsname), "lazyimg:%s", o->store_shown);
    /* commas would split the option string: keep fsname free of them */
    for (char *p = fsname; *p; p++)
        if (*p == ',')
            *p = '_';
    snprintf(optstr, sizeof(optstr),
             "ro,default_permissions,subtype=lazyimg,fsname=%s,max_read=%u%s", fsname, FS_MAX_READ,
             o->allow_other ? ",allow_other" : "");
    /* libfuse's own request trace is too much for -d: ours only */
    se = fuse_session_new(&args, fs_ops(), sizeof(struct fuse_lowlevel_ops), fs_daemon_ctx(d));
    fuse_opt_free_args(&args);
    if (!se) {
        fs_err("cannot create the FUSE session");
        return NULL;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        fs_err("cannot install signal handlers");
        fuse_session_destroy(se);
        return NULL;
    }
    /* SIGHUP reloads the credentials files; SIGTERM and SIGINT unmount */
    {
        struct sigaction sa = {.sa_handler = on_sighup, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGHUP, &sa, NULL);
    }
    return se;
}

/* Runs the FUSE loop until unmounted or signalled. The exit status. */
static int run_loop(struct fuse_session *se, const char *mnt)
{
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    struct exit_watch w = {.se = se};
    bool watching;
    int r;

    if (!cfg) {
        fs_err("out of memory");
        return 1;
    }
    fuse_loop_cfg_set_max_threads(cfg, FUSE_THREADS);
    fuse_loop_cfg_set_idle_threads(cfg, FUSE_THREADS);
    watching = pthread_create(&w.thread, NULL, watch_exit, &w) == 0;
    r = fuse_session_loop_mt(se, cfg);
    atomic_store(&w.done, true);
    if (watching)
        pthread_join(w.thread, NULL);
    /* and hydration's own index loads */
    fetch_remote_abort_all();
    fuse_loop_cfg_destroy(cfg);
    /* > 0: the signal (SIGTERM, SIGINT) that asked us to stop */
    if (r < 0)
        fs_err("FUSE session ended with an error: %s", strerror(-r));
    else
        fs_info("unmounting %s%s", mnt, r > 0 ? " (signal)" : "");
    return r < 0 ? 1 : 0;
}

/*
 * Detaches from the terminal as fuse_daemonize() does (fork, setsid, chdir
 * "/"; in the foreground only the chdir), except that the parent returns
 * only when the daemon says it is ready (its control socket is there, so a
 * `lazyimg umount` or `status` right after `lazyimg mount` finds it) or has
 * died: exit status 0 or 1. Until then the daemon keeps the terminal's
 * stderr, so what fails while it starts is said there. Sets *@ready_fd (the
 * daemon's end of the pipe) in the daemon; -1 in the foreground. 0 or
 * -errno (in the caller: nothing forked).
 */
static int detach_begin(bool foreground, int *ready_fd)
{
    int pfd[2];
    pid_t pid;

    *ready_fd = -1;
    if (foreground)
        return chdir("/") < 0 ? -errno : 0; /* as fuse_daemonize() does */
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    if ((pid = fork()) < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return -e;
    }
    if (pid > 0) {
        char c = 1;
        ssize_t n;
        close(pfd[1]);
        do
            n = read(pfd[0], &c, 1);
        while (n < 0 && errno == EINTR);
        /* EOF: the daemon exited before it was ready (it said why) */
        _exit(n == 1 && c == 0 ? 0 : 1);
    }
    close(pfd[0]);
    if (setsid() < 0 || chdir("/") < 0) {
        int e = errno;
        close(pfd[1]);
        return -e;
    }
    *ready_fd = pfd[1];
    return 0;
}

/* The daemon is ready: stdio goes to /dev/null, and the waiting parent exits
 * with status 0. No-op in the foreground. */
static void detach_ready(int *ready_fd)
{
    const char c = 0;
    int nul;
    if (*ready_fd < 0)
        return;
    if ((nul = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
        (void)dup2(nul, STDIN_FILENO);
        (void)dup2(nul, STDOUT_FILENO);
        (void)dup2(nul, STDERR_FILENO);
        if (nul > STDERR_FILENO)
            close(nul);
    }
    while (write(*ready_fd, &c, 1) < 0 && errno == EINTR)
        ;
    close(*ready_fd);
    *ready_fd = -1;
}

/* Tells the service manager (systemd, Type=notify) that the mount is live,
 * or that it is going away. */
static void notify_state(const char *mounted, bool ready)
{
    char state[2 * PATH_MAX + 320];
    int r;

    if (ready)
        snprintf(state, sizeof(state), "READY=1\nMAINPID=%ld\nSTATUS=%s", (long)getpid(), mounted);
    else
        snprintf(state, sizeof(state), "STOPPING=1\nSTATUS=unmounting");
    if ((r = fs_notify(state)) < 0)
        fs_warn("cannot notify the service manager at $NOTIFY_SOCKET: %s", strerror(-r));
}

int fs_cmd_mount(int argc, char **argv)
{
    struct mount_opts o;
    struct fs_daemon *d = NULL;
    struct fuse_session *se = NULL;
    struct fs_metrics *metrics = NULL;
    char mnt[PATH_MAX], target[PATH_MAX], mounted[2 * PATH_MAX + 256];
    bool set_readahead, loop_ran = false;
    dev_t mnt_dev = 0;
    int r, status = 1, ready_fd = -1, mnt_fd = -1;

    if ((r = parse_mount_opts(argc, argv, &o)))
        return r < 0 ? 0 : r;
    if (o.debug)
        fs_log_set_level(FS_LOG_DEBUG);
    tune_malloc();
    fs_read_init();
    if (check_mountpoint(o.mountpoint, mnt, sizeof(mnt), &mnt_fd) < 0 || check_dev_fuse() < 0 ||
        listen_metrics(&o, mnt, &metrics) < 0 ||
        prepare_daemon(&o, mnt, &d, mounted, sizeof(mounted)) < 0)
        goto out;
    fs_daemon_set_metrics(d, metrics);
    metrics = NULL; /* the daemon's */
    if (!(se = session_new(&o, d)))
        goto out;
    if (pinned_mount_target(mnt, mnt_fd, target, sizeof(target)) < 0)
        goto out_handlers;
    if (fuse_session_mount(se, target) != 0) {
        fs_err("cannot mount at %s (see the message above)", mnt);
        goto out_handlers;
    }
    set_readahead = o.page_cache && readahead_settable(mnt, o.readahead_kb, &mnt_dev);
    if ((r = detach_begin(o.foreground, &ready_fd)) < 0) {
        fs_err("cannot detach from the terminal: %s", strerror(-r));
        goto out_unmount;
    }
    if (fs_daemon_start(d, mnt) < 0)
        goto out_unmount;
    if (!o.foreground)
        fs_log_use_syslog(true);
    detach_ready(&ready_fd);
    fs_info("%s", mounted);
    notify_state(mounted, true);
    if (set_readahead)
        start_readahead_thread(mnt, mnt_dev, o.readahead_kb);
    status = run_loop(se, mnt);
    loop_ran = true;
    notify_state(NULL, false);
out_unmount:
    if (ready_fd >= 0)
        close(ready_fd); /* never ready: the parent exits with status 1 */
    r = fs_daemon_stop(d);
    fuse_session_unmount(se); /* the mount goes before the disk cache is flushed */
    if (loop_ran)
        fs_daemon_report(d);
    if (r < 0) {
        /* a stuck thread may use anything: sync the cache and exit */
        fs_daemon_sync(d);
        fuse_remove_signal_handlers(se);
        fflush(NULL);
        _exit(status);
    }
out_handlers:
    fuse_remove_signal_handlers(se);
out:
    if (se)
        fuse_session_destroy(se);
    if (mnt_fd >= 0)
        close(mnt_fd); /* after the unmount through it */
    fs_daemon_free(d);
    fs_metrics_free(metrics);
    return status;
}
