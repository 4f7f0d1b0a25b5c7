/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `lazyimg status`: what the daemon of a mount is doing, from its control socket. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_out.h"
#include "fetch/repo.h"
#include "cli.h"
#include "control.h"
#include "log.h"
#include "mountinfo.h"

static const char status_usage[] =
    "Usage: lazyimg status [--json] MOUNTPOINT\n"
    "\n"
    "Shows what the daemon serving MOUNTPOINT (or any path inside the mount) is\n"
    "doing: its store and mirrors (the one in use marked), image reads (requests,\n"
    "bytes answered, errors, and how many waited for a chunk and how long in\n"
    "all), chunk transfers in flight and queued per class (demand, readahead,\n"
    "hydrate), throughput since the previous status call (since the mount for\n"
    "the first), fetch latency, retries, failovers and errors, cache hit rate\n"
    "and disk cache use, the daemon's memory (resident now and at its peak,\n"
    "chunk buffers), and one line per image whose index the daemon holds in\n"
    "memory (images open, hydrating, or opened, stat()ed or hydrated lately;\n"
    "the others are not listed): bytes of data in the disk cache, share of\n"
    "zeros, hydration progress, read profile (recording; the replay of an\n"
    "earlier one: chunks fetched, found cached, then read by the reader).\n"
    "\n"
    "When the mount was made from cached metadata (--offline, or the store was\n"
    "unreachable at mount), a line \"mode: offline: REASON\" says so.\n"
    "\n"
    "  --json      print one JSON object instead (keys: stores, offline,\n"
    "              offline_reason, reads, fetch, cache, memory, indexes,\n"
    "              images, report: the status calls answered and the chunks\n"
    "              they looked up to count cached bytes)\n"
    "  -h, --help  show this help\n";

static uint64_t u64(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static double dbl(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static const char *str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : "";
}

/* A string of the reply as it may be printed (the daemon of another user,
 * or a store's names, must not drive root's terminal). */
static const char *safe(json_object *o, const char *key, char *buf, size_t len)
{
    fs_escape(str(o, key), buf, len);
    return buf;
}

static json_object *obj(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static void format_us(uint64_t us, char *buf, size_t len)
{
    if (us < 10000)
        snprintf(buf, len, "%llu us", (unsigned long long)us);
    else if (us < 10000000)
        snprintf(buf, len, "%llu ms", (unsigned long long)(us / 1000));
    else
        snprintf(buf, len, "%llu s", (unsigned long long)(us / 1000000));
}

/* The read profile of an image: "-", "recording 12 extents", "replaying 30 …". */
static void profile_text(json_object *p, char *buf, size_t len)
{
    char st[64];
    const char *state, *replay;
    int w;
    if (!p) {
        snprintf(buf, len, "-");
        return;
    }
    state = safe(p, "state", st, sizeof(st));
    if (!*state)
        state = "?";
    /* not a string (null, from a daemon of another user): none */
    replay = str(p, "replay");
    if (!*replay)
        replay = "none";
    w = snprintf(buf, len, "%s %llu extents", state, (unsigned long long)u64(p, "recorded"));
    if (w > 0 && (size_t)w < len && strcmp(replay, "none"))
        snprintf(buf + w, len - (size_t)w, "; %s: %llu fetched, %llu cached, %llu read",
                 !strcmp(replay, "replaying") ? "replaying" : "replayed",
                 (unsigned long long)u64(p, "replayed"), (unsigned long long)u64(p, "skipped"),
                 (unsigned long long)u64(p, "hits"));
}

static void hydration_text(json_object *h, char *buf, size_t len)
{
    const char *state = str(h, "state");
    uint64_t total = u64(h, "total"), done = u64(h, "done");
    if (!h) {
        snprintf(buf, len, "-");
    } else if (!strcmp(state, "queued")) {
        snprintf(buf, len, "queued");
    } else if (!strcmp(state, "running")) {
        snprintf(buf, len, "running %.0f%%", total ? 100.0 * (double)done / (double)total : 0.0);
    } else if (u64(h, "errors")) {
        snprintf(buf, len, "failed (%llu errors)", (unsigned long long)u64(h, "errors"));
    } else if (json_object_get_boolean(obj(h, "cancelled"))) {
        snprintf(buf, len, "stopped");
    } else if (u64(h, "uncached")) {
        snprintf(buf, len, "done, %llu chunks not cached",
                 (unsigned long long)u64(h, "uncached_chunks"));
    } else {
        snprintf(buf, len, "done");
    }
}

static void print_human(json_object *st)
{
    json_object *stores = obj(st, "stores"), *f = obj(st, "fetch"), *c = obj(st, "cache");
    json_object *q = obj(f, "queued"), *lat = obj(f, "latency_us"), *d = obj(c, "disk");
    json_object *sha = obj(f, "sha256"), *r = obj(st, "reads");
    json_object *images = obj(st, "images"), *m = obj(st, "memory"),
                *bufs = obj(m, "chunk_buffers");
    char a[32], b[32], text[4 * PATH_MAX];
    size_t n, width = 4;

    printf("stores:\n");
    n = json_object_is_type(stores, json_type_array) ? json_object_array_length(stores) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(stores, i);
        bool active = json_object_get_boolean(obj(s, "active"));
        printf("  %s %s%s\n", active ? "*" : " ", safe(s, "location", text, sizeof(text)),
               active ? " (active)" : "");
    }
    if (json_object_get_boolean(obj(st, "offline")))
        printf("mode:    offline: %s\n", safe(st, "offline_reason", text, sizeof(text)));
    fetch_format_size(u64(r, "bytes"), a, sizeof(a));
    format_us(u64(r, "wait_us"), b, sizeof(b));
    printf("reads:   %llu requests, %s answered, %llu errors; %llu waited for a chunk, %s in all\n",
           (unsigned long long)u64(r, "requests"), a, (unsigned long long)u64(r, "errors"),
           (unsigned long long)u64(r, "waits"), b);
    format_us(u64(lat, "p50"), a, sizeof(a));
    format_us(u64(lat, "p99"), b, sizeof(b));
    printf("fetch:   %llu in flight, queued %llu demand / %llu readahead / %llu hydrate, "
           "%llu decoding\n",
           (unsigned long long)u64(f, "inflight"), (unsigned long long)u64(q, "demand"),
           (unsigned long long)u64(q, "readahead"), (unsigned long long)u64(q, "hydrate"),
           (unsigned long long)u64(f, "decoding"));
    printf("         %.2f MB/s, %llu requests, latency p50 %s, p99 %s\n", dbl(f, "mb_per_s"),
           (unsigned long long)u64(f, "requests"), a, b);
    printf("         %llu retries, %llu failovers, %llu errors\n",
           (unsigned long long)u64(f, "retries"), (unsigned long long)u64(f, "failovers"),
           (unsigned long long)u64(f, "errors"));
    if (sha) {
        uint64_t paired = u64(sha, "blocks_paired"), alone = u64(sha, "blocks_alone");
        if (strcmp(safe(sha, "engine", text, sizeof(text)), "sha-ni") == 0)
            printf("         SHA-256 on the CPU's SHA extensions, %.0f%% of blocks two at a time\n",
                   paired + alone ? 100.0 * (double)paired / (double)(paired + alone) : 0.0);
        else
            printf("         SHA-256 by OpenSSL\n");
    }
    printf("cache:   hit rate %.1f%% (memory %llu, disk %llu, loaded from the store %llu)\n",
           100 * dbl(c, "hit_rate"), (unsigned long long)u64(c, "memory_hits"),
           (unsigned long long)u64(c, "disk_hits"), (unsigned long long)u64(c, "loads"));
    if (d) {
        fetch_format_size(u64(d, "bytes"), a, sizeof(a));
        fetch_format_size(u64(d, "budget"), b, sizeof(b));
        printf("         disk %s of %s, %llu entries\n", a, b,
               (unsigned long long)u64(d, "entries"));
    } else {
        printf("         no disk cache\n");
    }
    if (m) {
        char kept[32];
        fetch_format_size(u64(m, "rss_bytes"), a, sizeof(a));
        fetch_format_size(u64(m, "rss_peak_bytes"), b, sizeof(b));
        fetch_format_size(u64(bufs, "kept_bytes"), kept, sizeof(kept));
        printf("memory:  %s resident (peak %s); chunk buffers %llu in use, %llu kept (%s)\n", a, b,
               (unsigned long long)u64(bufs, "in_use"), (unsigned long long)u64(bufs, "kept"),
               kept);
    }

    n = json_object_is_type(images, json_type_array) ? json_object_array_length(images) : 0;
    if (n == 0) {
        printf("images:  none loaded yet (an image is listed once opened or stat()ed)\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(safe(json_object_array_get_idx(images, i), "path", text, sizeof(text)));
        if (l > width)
            width = l;
    }
    /* CACHED%: share of the data bytes in the disk cache; ZERO: share of the size */
    printf("images:\n  %-*s  %17s %7s %5s  %-24s %s\n", (int)width, "PATH", "CACHED / DATA",
           "CACHED%", "ZERO", "HYDRATION", "READ PROFILE");
    for (size_t i = 0; i < n; i++) {
        json_object *im = json_object_array_get_idx(images, i);
        uint64_t size = u64(im, "size"), zero = u64(im, "zero_bytes");
        char sz[80], hyd[96], prof[160];
        fetch_format_size(u64(im, "cached_bytes"), a, sizeof(a));
        fetch_format_size(u64(im, "data_bytes"), b, sizeof(b));
        snprintf(sz, sizeof(sz), "%s / %s", a, b);
        hydration_text(obj(im, "hydration"), hyd, sizeof(hyd));
        profile_text(obj(im, "profile"), prof, sizeof(prof));
        printf("  %-*s  %17s %6.1f%% %4.0f%%  %-24s %s\n", (int)width,
               safe(im, "path", text, sizeof(text)), sz, dbl(im, "hydrated_pct"),
               size ? 100.0 * (double)zero / (double)size : 0.0, hyd, prof);
    }
}

int fs_cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    bool json = false;
    json_object *st = NULL, *e;
    char err[512];
    struct stat sb;
    int c, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
        } else if (c == 'h') {
            fputs(status_usage, stdout);
            return 0;
        } else {
            fputs(status_usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fs_err("status: expected one MOUNTPOINT (see lazyimg status --help)");
        return 2;
    }
    if (stat(argv[optind], &sb) < 0) {
        /* root, on the mount of another user without allow_other: EACCES */
        int stat_errno = errno;
        if (stat_errno != EACCES || geteuid() != 0 ||
            fs_mountinfo_lookup(argv[optind], &sb.st_dev) < 0) {
            fs_err("%s: %s", argv[optind], strerror(stat_errno));
            return 1;
        }
    }
    r = fs_control_request(sb.st_dev, "status", &st, err, sizeof(err));
    if (r < 0) {
        fs_err("%s: %s", argv[optind], err);
        return 1;
    }
    if (json_object_object_get_ex(st, "error", &e)) {
        fs_err("%s: %s", argv[optind], str(st, "error"));
        json_object_put(st);
        return 1;
    }
    if (json)
        fs_json_write(stdout, st, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    else
        print_human(st);
    json_object_put(st);
    return 0;
}
