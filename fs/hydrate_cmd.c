/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg hydrate`: has the daemon of a mount fetch whole images into its disk cache. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch/repo.h"
#include "cli.h"
#include "control.h"
#include "log.h"

static const char hydrate_usage[] =
    "Usage: lazyimg hydrate [--progress] [--bandwidth RATE] PATH...\n"
    "\n"
    "Has the daemon serving the lazyimg mount that holds each image file PATH\n"
    "fetch every non-zero chunk of the image into its disk cache, at the lowest\n"
    "priority (reads of the mount always go first), and waits until all images\n"
    "are done. Chunks already in the cache are not fetched again: an interrupted\n"
    "hydration resumes where it stopped when run again. The daemon hydrates one\n"
    "image at a time; asking for an image already being hydrated joins that job.\n"
    "Needs the disk cache (not for mounts made with --no-cache).\n"
    "\n"
    "Options:\n"
    "      --progress        show progress on stderr: a bar with bytes done, %,\n"
    "                        MB/s and time left on a terminal, a line every 2 s\n"
    "                        otherwise (without it: one summary line at the end)\n"
    "      --bandwidth RATE  fetch at most RATE bytes of chunks per second (e.g.\n"
    "                        50M; suffixes K, M, G, T; at least 4K)\n"
    "  -h, --help            show this help\n"
    "\n"
    "Interrupting it (Ctrl-C) stops the hydration in the daemon, unless others\n"
    "asked for the same image too (mount --hydrate, another lazyimg hydrate):\n"
    "then it goes on for them. What was fetched stays in the cache. Exit\n"
    "status: 0 when every chunk of every image is in the cache, 1 on any error\n"
    "(or chunks the cache could not keep), 2 for bad usage.\n";

#define POLL_NS 250000000L
#define PLAIN_EVERY_S 2.0
#define RATE_SAMPLES 24 /* the speed is measured over the last ~6 s */

struct target {
    const char *path;
    dev_t dev;
    uint64_t job;
    bool finished, failed, cancelled;
    bool dup; /* the same job as an earlier target (the image given twice) */
    uint64_t total, done, fetched, errors, uncached, uncached_chunks;
    double elapsed;
    char error[512];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

static uint64_t u64(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends @request about @t; *ret gets the reply, or NULL with t->error set. */
static int ask(struct target *t, const char *request, json_object **ret)
{
    json_object *o = NULL, *e;
    char err[512];
    int r = fs_control_request(t->dev, request, &o, err, sizeof(err));
    if (r < 0) {
        snprintf(t->error, sizeof(t->error), "%s", err);
        return r;
    }
    if (json_object_object_get_ex(o, "error", &e) && !json_object_object_get_ex(o, "job", NULL)) {
        /* (NULL for a JSON null) */
        snprintf(t->error, sizeof(t->error), "%s",
                 json_object_get_string(e) ? json_object_get_string(e) : "error");
        json_object_put(o);
        return -EINVAL;
    }
    *ret = o;
    return 0;
}

static int start(struct target *t, uint64_t bandwidth)
{
    char req[FS_CONTROL_MAX_REQUEST];
    json_object *o;
    struct stat st;

    if (stat(t->path, &st) < 0) {
        snprintf(t->error, sizeof(t->error), "%s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(t->error, sizeof(t->error), "not an image (%s)",
                 S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
        return -1;
    }
    t->dev = st.st_dev;
    t->total = (uint64_t)st.st_size;
    snprintf(req, sizeof(req), "hydrate %llu %llu", (unsigned long long)st.st_ino,
             (unsigned long long)bandwidth);
    if (ask(t, req, &o) < 0)
        return -1;
    t->job = u64(o, "job");
    json_object_put(o);
    return 0;
}

static void poll_one(struct target *t)
{
    char req[FS_CONTROL_MAX_REQUEST];
    json_object *o, *v;

    snprintf(req, sizeof(req), "progress %llu", (unsigned long long)t->job);
    if (ask(t, req, &o) < 0) {
        char why[400];
        snprintf(why, sizeof(why), "%.399s", t->error);
        snprintf(t->error, sizeof(t->error), "lost the daemon's hydration job (unmounted?): %s",
                 why);
        t->finished = t->failed = true;
        return;
    }
    t->total = u64(o, "total");
    t->done = u64(o, "done");
    t->fetched = u64(o, "fetched");
    t->errors = u64(o, "errors");
    t->uncached = u64(o, "uncached");
    t->uncached_chunks = u64(o, "uncached_chunks");
    t->elapsed = json_object_object_get_ex(o, "elapsed_s", &v) ? json_object_get_double(v) : 0;
    t->cancelled = json_object_object_get_ex(o, "cancelled", &v) && json_object_get_boolean(v);
    if (json_object_object_get_ex(o, "error", &v) && json_object_get_string(v))
        snprintf(t->error, sizeof(t->error), "%s", json_object_get_string(v));
    t->finished = json_object_object_get_ex(o, "finished", &v) && json_object_get_boolean(v);
    if (t->finished && (t->errors || t->uncached || t->cancelled || t->error[0]))
        t->failed = true;
    json_object_put(o);
}

static void format_eta(double s, char *buf, size_t len)
{
    unsigned long v = s > 0 && s < 360000 ? (unsigned long)(s + 0.5) : 0;
    if (s <= 0 || s >= 360000)
        snprintf(buf, len, "--:--");
    else if (v >= 3600)
        snprintf(buf, len, "%lu:%02lu:%02lu", v / 3600, v / 60 % 60, v % 60);
    else
        snprintf(buf, len, "%lu:%02lu", v / 60, v % 60);
}

/* @final: the last line, with no time left (0:00 when complete, else none). */
static void draw(bool tty, uint64_t done, uint64_t total, double mbps, bool final)
{
    char a[32], b[32], eta[32], bar[33];
    double frac = total ? (double)done / (double)total : (final ? 1.0 : 0.0);
    size_t filled = (size_t)(frac * 30 + 0.5);

    fetch_format_size(done, a, sizeof(a));
    fetch_format_size(total, b, sizeof(b));
    if (final)
        snprintf(eta, sizeof(eta), "%s", done >= total ? "0:00" : "--:--");
    else
        format_eta(mbps > 0 ? (double)(total - done) / (mbps * 1e6) : 0, eta, sizeof(eta));
    if (tty) {
        if (filled > 30)
            filled = 30;
        memset(bar, '#', filled);
        memset(bar + filled, '-', 30 - filled);
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %s / %s %3.0f%% %7.2f MB/s ETA %s\033[K", bar, a, b, frac * 100,
                mbps, eta);
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "hydrate: %s / %s (%.0f%%), %.2f MB/s, ETA %s\n", a, b, frac * 100, mbps,
                eta);
    }
    fflush(stderr);
}

static void cancel_all(struct target *ts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char req[FS_CONTROL_MAX_REQUEST];
        json_object *o;
        if (!ts[i].job || ts[i].finished)
            continue;
        snprintf(req, sizeof(req), "cancel %llu", (unsigned long long)ts[i].job);
        if (ask(&ts[i], req, &o) == 0)
            json_object_put(o);
    }
}

int fs_cmd_hydrate(int argc, char **argv)
{
    enum { OPT_PROGRESS = 256, OPT_BANDWIDTH };
    static const struct option opts[] = {
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"bandwidth", required_argument, NULL, OPT_BANDWIDTH},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct {
        double t;
        uint64_t fetched;
    } samples[RATE_SAMPLES] = {{0}};
    size_t nsamples = 0, n;
    struct target *ts;
    struct sigaction sa = {.sa_handler = on_signal};
    bool progress = false, tty, all_done = false;
    uint64_t bandwidth = 0, total = 0, done = 0, fetched = 0;
    double started, last_plain = 0, mbps = 0;
    int c, status = 0;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PROGRESS:
            progress = true;
            break;
        case OPT_BANDWIDTH:
            if (fs_parse_size(optarg, &bandwidth) < 0 || bandwidth < 4096) {
                fs_err("--bandwidth: invalid rate '%s' (bytes per second, e.g. 50M; at least "
                       "4K)",
                       optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(hydrate_usage, stdout);
            return 0;
        default:
            fputs(hydrate_usage, stderr);
            return 2;
        }
    }
    n = (size_t)(argc - optind);
    if (n == 0) {
        fs_err("hydrate: expected at least one PATH (see lazyimg hydrate --help)");
        return 2;
    }
    if (!(ts = calloc(n, sizeof(*ts)))) {
        fs_err("out of memory");
        return 1;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    started = now_s();
    for (size_t i = 0; i < n; i++) {
        ts[i].path = argv[optind + (int)i];
        if (start(&ts[i], bandwidth) < 0) {
            fs_err("%s: %s", ts[i].path, ts[i].error);
            /* nothing half-started on a wrong argument */
            cancel_all(ts, i);
            free(ts);
            return 1;
        }
        for (size_t j = 0; j < i; j++)
            if (ts[j].dev == ts[i].dev && ts[j].job == ts[i].job)
                ts[i].dup = ts[i].finished = true;
    }

    tty = progress && isatty(STDERR_FILENO);
    while (!all_done) {
        struct timespec nap = {0, POLL_NS};
        double now;
        if (interrupted) {
            if (tty)
                fputc('\n', stderr);
            cancel_all(ts, n);
            fs_err("hydrate: interrupted; the daemon stops hydrating (what was fetched stays "
                   "cached)");
            free(ts);
            return 128 + interrupted;
        }
        all_done = true;
        total = done = fetched = 0;
        for (size_t i = 0; i < n; i++) {
            if (ts[i].dup)
                continue;
            if (!ts[i].finished)
                poll_one(&ts[i]);
            all_done &= ts[i].finished;
            total += ts[i].total;
            done += ts[i].done;
            fetched += ts[i].fetched;
        }
        now = now_s();
        if (nsamples == RATE_SAMPLES) {
            memmove(samples, samples + 1, sizeof(samples[0]) * (RATE_SAMPLES - 1));
            nsamples--;
        }
        samples[nsamples].t = now;
        samples[nsamples].fetched = fetched;
        nsamples++;
        if (nsamples > 1 && now > samples[0].t)
            mbps = (double)(fetched - samples[0].fetched) / (now - samples[0].t) / 1e6;
        if (all_done)
            break;
        if (tty) {
            draw(true, done, total, mbps, false);
        } else if (progress && now - last_plain >= PLAIN_EVERY_S) {
            draw(false, done, total, mbps, false);
            last_plain = now;
        }
        nanosleep(&nap, NULL);
    }

    {
        double secs = now_s() - started;
        char a[32], b[32];
        if (progress)
            draw(tty, done, total, secs > 0 ? (double)fetched / secs / 1e6 : 0, true);
        for (size_t i = 0; i < n; i++) {
            struct target *t = &ts[i];
            if (t->error[0])
                fs_err("%s: %s", t->path, t->error);
            else if (t->uncached)
                fs_err("%s: %llu chunks (%llu bytes) are not in the disk cache (a budget too "
                       "small, a full filesystem or a failing disk: the daemon's log and lazyimg "
                       "status say which)",
                       t->path, (unsigned long long)t->uncached_chunks,
                       (unsigned long long)t->uncached);
            else if (t->cancelled)
                fs_err("%s: hydration was stopped", t->path);
            if (t->failed)
                status = 1;
        }
        size_t images = 0;
        uint64_t uncached = 0;
        for (size_t i = 0; i < n; i++) {
            images += !ts[i].dup;
            uncached += ts[i].dup ? 0 : ts[i].uncached;
        }
        /* what is in the cache, not what went through the daemon */
        fetch_format_size(done > uncached ? done - uncached : 0, a, sizeof(a));
        fetch_format_size(fetched, b, sizeof(b));
        printf("%s %zu image%s: %s of data cached, %s fetched in %.1f s (%.2f MB/s)\n",
               status ? "hydrate incomplete:" : "hydrated", images, images == 1 ? "" : "s", a, b,
               secs, secs > 0 ? (double)fetched / secs / 1e6 : 0);
    }
    free(ts);
    return status;
}
