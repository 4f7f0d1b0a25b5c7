/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "metrics.h"
#include "sockio.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
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
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fetch/pool.h"
#include "log.h"
#include "status.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct fs_metrics {
    int fds[FS_METRICS_MAX_LISTEN];
    size_t nfds;
    int stop_fd; /* eventfd: readable once the thread must stop */
    pthread_t thread;
    bool running; /* the thread was started and not joined */
    struct fs_ctx *ctx;
    struct fs_hydrator *hyd;
    struct fs_status_state status;                          /* server thread only */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* Unix socket, or "" */
    dev_t sock_dev; /* the socket file we bound: removed only if still ours */
    ino_t sock_ino;
};

/* ---- address ------------------------------------------------------------ */

int fs_metrics_parse_addr(const char *addr, struct fs_metrics_addr *ret, char *err, size_t err_len)
{
    struct fs_metrics_addr a;
    const char *host, *colon, *port;
    size_t host_len;
    unsigned long v = 0;

    memset(&a, 0, sizeof(a));

    if (!strncmp(addr, "unix:", 5)) {
        const char *path = addr + 5;
        if (path[0] != '/') {
            fs_sock_set_err(err, err_len, "unix: needs an absolute socket path");
            return -EINVAL;
        }
        if (strlen(path) >= sizeof(a.path)) {
            fs_sock_set_err(err, err_len, "socket path longer than %zu bytes", sizeof(a.path) - 1);
            return -EINVAL;
        }
        memcpy(a.path, path, strlen(path) + 1);
        *ret = a;
        return 0;
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':') {
            fs_sock_set_err(err, err_len, "expected [IPv6 address]:PORT");
            return -EINVAL;
        }
        host = addr + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        if (!(colon = strrchr(addr, ':'))) {
            fs_sock_set_err(err, err_len, "expected HOST:PORT or unix:PATH");
            return -EINVAL;
        }
        host = addr;
        host_len = (size_t)(colon - addr);
        if (memchr(host, ':', host_len)) {
            fs_sock_set_err(err, err_len, "an IPv6 address goes in brackets: [ADDRESS]:PORT");
            return -EINVAL;
        }
    }
    if (host_len == 0) {
        fs_sock_set_err(err, err_len,
                        "no host (give the address to listen on, e.g. 127.0.0.1:9469)");
        return -EINVAL;
    }
    if (host_len >= sizeof(a.host)) {
        fs_sock_set_err(err, err_len, "host name too long");
        return -EINVAL;
    }
    port = colon + 1;
    if (!*port || strlen(port) > 5 || port[0] == '0') {
        fs_sock_set_err(err, err_len, "expected a port from 1 to 65535");
        return -EINVAL;
    }
    for (const char *p = port; *p; p++) {
        if (*p < '0' || *p > '9') {
            fs_sock_set_err(err, err_len, "expected a port from 1 to 65535");
            return -EINVAL;
        }
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < 1 || v > 65535) {
        fs_sock_set_err(err, err_len, "expected a port from 1 to 65535");
        return -EINVAL;
    }
    memcpy(a.host, host, host_len);
    a.host[host_len] = '\0';
    memcpy(a.port, port, strlen(port) + 1);
    *ret = a;
    return 0;
}

/* ---- listening ---------------------------------------------------------- */

static struct fs_metrics *metrics_alloc(void)
{
    struct fs_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->stop_fd < 0) {
        free(m);
        return NULL;
    }
    return m;
}

/* Someone listens on the Unix socket at @path (else it is stale). */
static bool unix_socket_alive(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;
    if (fd < 0)
        return true; /* cannot tell: do not remove it */
    alive = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno != ECONNREFUSED;
    close(fd);
    return alive;
}

/* @path is @mountpoint or below it. */
static bool below_mountpoint(const char *path, const char *mountpoint)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = strlen(mountpoint);

    if (!slash || (size_t)(slash - path) >= sizeof(dir))
        return false;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (!realpath(dir[0] ? dir : "/", real))
        return false; /* bind says why */
    return !strcmp(mountpoint, "/") ||
           (!strncmp(real, mountpoint, n) && (real[n] == '\0' || real[n] == '/'));
}

static int listen_unix(struct fs_metrics *m, const char *path, const char *mountpoint, char *err,
                       size_t err_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old_mask;
    int fd, r;

    if (mountpoint && below_mountpoint(path, mountpoint)) {
        fs_sock_set_err(err, err_len, "the socket cannot be inside the mount %s", mountpoint);
        return -EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        r = -errno;
        fs_sock_set_err(err, err_len, "socket: %s", strerror(-r));
        return r;
    }
    /* mode 0600 from the start (no thread runs yet: the umask is ours) */
    old_mask = umask(0177);
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    if (r == -EADDRINUSE && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        !unix_socket_alive(&sa)) {
        /* left by a daemon that did not stop cleanly */
        unlink(path);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    }
    umask(old_mask);
    if (r == 0 && lstat(path, &st) < 0)
        r = -errno;
    if (r == 0) {
        m->sock_dev = st.st_dev;
        m->sock_ino = st.st_ino;
        memcpy(m->path, path, strlen(path) + 1);
        if (listen(fd, 16) < 0)
            r = -errno;
    }
    if (r < 0) {
        fs_sock_set_err(err, err_len, "cannot listen: %s", strerror(-r));
        close(fd);
        return r;
    }
    m->fds[m->nfds++] = fd;
    return 0;
}

static int listen_inet(struct fs_metrics *m, const struct fs_metrics_addr *a, char *err,
                       size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *res, *ai;
    int r, first_err = 0;

    if ((r = getaddrinfo(a->host, a->port, &hints, &res)) != 0) {
        /* without AI_ADDRCONFIG: loopback names on a host with no other address */
        hints.ai_flags = 0;
        if ((r = getaddrinfo(a->host, a->port, &hints, &res)) != 0) {
            fs_sock_set_err(err, err_len, "cannot resolve %s: %s", a->host, gai_strerror(r));
            return -EINVAL;
        }
    }
    for (ai = res; ai && m->nfds < FS_METRICS_MAX_LISTEN; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol), one = 1;
        r = 0;
        if (fd < 0) {
            r = -errno;
        } else {
            /* a restart within TIME_WAIT; another listener still makes bind fail */
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (ai->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0)
                r = -errno;
        }
        if (r < 0) {
            if (fd >= 0)
                close(fd);
            /* an address of the name this host cannot have (no IPv6): the others do */
            if (r == -EAFNOSUPPORT || r == -EADDRNOTAVAIL) {
                if (!first_err)
                    first_err = r;
                continue;
            }
            fs_sock_set_err(err, err_len, "cannot listen: %s", strerror(-r));
            freeaddrinfo(res);
            return r;
        }
        m->fds[m->nfds++] = fd;
    }
    freeaddrinfo(res);
    if (!m->nfds) {
        r = first_err ? first_err : -EADDRNOTAVAIL;
        fs_sock_set_err(err, err_len, "cannot listen: %s", strerror(-r));
        return r;
    }
    return 0;
}

int fs_metrics_listen(const char *addr, const char *mountpoint, struct fs_metrics **ret, char *err,
                      size_t err_len)
{
    struct fs_metrics_addr a;
    struct fs_metrics *m;
    char why[256] = "";
    int r;

    if ((r = fs_metrics_parse_addr(addr, &a, why, sizeof(why))) < 0) {
        fs_sock_set_err(err, err_len, "%s: %s", addr, why);
        return r;
    }
    if (!(m = metrics_alloc())) {
        fs_sock_set_err(err, err_len, "%s: out of memory", addr);
        return -ENOMEM;
    }
    r = a.path[0] ? listen_unix(m, a.path, mountpoint, why, sizeof(why))
                  : listen_inet(m, &a, why, sizeof(why));
    if (r < 0) {
        fs_sock_set_err(err, err_len, "%s: %s", addr, why);
        fs_metrics_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

/* ---- rendering ---------------------------------------------------------- */

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

/* A number member as uint64 (false if missing or not a number). */
static bool get_u64(json_object *o, const char *key, uint64_t *ret)
{
    json_object *v = member(o, key);
    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        *ret = d > 0 ? (uint64_t)d : 0;
    } else {
        *ret = json_object_get_uint64(v);
    }
    return true;
}

/* A label value as the format wants it: \\, \" and \n escaped, and valid
 * UTF-8 (Prometheus refuses the whole scrape for one label that is not): a
 * byte of a path that is not is shown as U+FFFD. */
static void put_label_value(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (*p) {
        size_t n = *p < 0x80 ? 1 : fs_utf8_len(p, (size_t)(end - p));
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '"')
            fputs("\\\"", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (!n)
            fputs("\xef\xbf\xbd", f);
        else
            fwrite(p, 1, n, f);
        p += n ? n : 1;
    }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP lazyimg_%s %s\n# TYPE lazyimg_%s %s\n", name, help, name, type);
}

/* One sample, with at most one label (@label NULL: none). */
static void sample(FILE *f, const char *name, const char *label, const char *value, uint64_t v)
{
    fprintf(f, "lazyimg_%s", name);
    if (label) {
        fprintf(f, "{%s=\"", label);
        put_label_value(f, value);
        fputs("\"}", f);
    }
    fprintf(f, " %llu\n", (unsigned long long)v);
}

/* A family of one sample from @o's @key, if there. */
static void simple(FILE *f, json_object *o, const char *key, const char *name, const char *type,
                   const char *help)
{
    uint64_t v;
    if (!get_u64(o, key, &v))
        return;
    family(f, name, type, help);
    sample(f, name, NULL, NULL, v);
}

/* Microseconds as seconds, exactly ("0.000002", "4294.967296", "1"). */
static void put_seconds(FILE *f, uint64_t us)
{
    char frac[8];
    int n;
    snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(us % 1000000));
    for (n = 6; n > 0 && frac[n - 1] == '0'; n--)
        ;
    fprintf(f, "%llu", (unsigned long long)(us / 1000000));
    if (n)
        fprintf(f, ".%.*s", n, frac);
}

static void latency_histogram(FILE *f, json_object *lat)
{
    json_object *hist = member(lat, "histogram");
    uint64_t count, sum, cum = 0;
    size_t n;

    if (!hist || !json_object_is_type(hist, json_type_array) || !get_u64(lat, "count", &count) ||
        !get_u64(lat, "sum", &sum))
        return;
    n = json_object_array_length(hist);
    family(
        f, "fetch_latency_seconds", "histogram",
        "Time from the start of a store request to its end (retries are requests of their own).");
    /* the pool's buckets: i counts [2^i, 2^(i+1)) us, listed when not empty */
    for (unsigned i = 0; i < FETCH_LAT_BUCKETS; i++) {
        uint64_t bound = 2ull << i;
        cum = 0;
        for (size_t k = 0; k < n; k++) {
            json_object *pair = json_object_array_get_idx(hist, k);
            if (!pair || !json_object_is_type(pair, json_type_array) ||
                json_object_array_length(pair) != 2)
                continue;
            if ((uint64_t)json_object_get_uint64(json_object_array_get_idx(pair, 0)) <= bound)
                cum += (uint64_t)json_object_get_uint64(json_object_array_get_idx(pair, 1));
        }
        fputs("lazyimg_fetch_latency_seconds_bucket{le=\"", f);
        put_seconds(f, bound);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
    fprintf(f, "lazyimg_fetch_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)count);
    fputs("lazyimg_fetch_latency_seconds_sum ", f);
    put_seconds(f, sum);
    fprintf(f, "\nlazyimg_fetch_latency_seconds_count %llu\n", (unsigned long long)count);
}

/* One family over every image that has @key (in @sub of the image, if given). */
static void per_image(FILE *f, json_object *images, const char *sub, const char *key,
                      const char *name, const char *type, const char *help)
{
    size_t n = images ? json_object_array_length(images) : 0;
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        json_object *img = json_object_array_get_idx(images, i), *from = img, *path;
        uint64_t v;
        if (sub)
            from = member(img, sub);
        path = member(img, "path");
        if (!path || !json_object_is_type(path, json_type_string) || !get_u64(from, key, &v))
            continue;
        if (!any)
            family(f, name, type, help);
        any = true;
        sample(f, name, "image", json_object_get_string(path), v);
    }
}

static void images_metrics(FILE *f, json_object *images)
{
    uint64_t data = 0, cached = 0, v;
    size_t n;

    if (!images || !json_object_is_type(images, json_type_array))
        return;
    n = json_object_array_length(images);
    for (size_t i = 0; i < n; i++) {
        json_object *img = json_object_array_get_idx(images, i);
        if (get_u64(img, "data_bytes", &v))
            data += v;
        if (get_u64(img, "cached_bytes", &v))
            cached += v;
    }
    family(f, "images_loaded", "gauge",
           "Images whose index is in memory (open, being hydrated, or opened or stat()ed "
           "lately; the others' series are left out until then).");
    sample(f, "images_loaded", NULL, NULL, n);
    family(f, "images_data_bytes", "gauge", "Data (non-zero) bytes of the loaded images.");
    sample(f, "images_data_bytes", NULL, NULL, data);
    family(f, "images_cached_bytes", "gauge",
           "Data bytes of the loaded images that are in the disk cache.");
    sample(f, "images_cached_bytes", NULL, NULL, cached);
    per_image(f, images, NULL, "size", "image_size_bytes", "gauge", "Size of the image.");
    per_image(f, images, NULL, "data_bytes", "image_data_bytes", "gauge",
              "Data (non-zero) bytes of the image.");
    per_image(f, images, NULL, "cached_bytes", "image_cached_bytes", "gauge",
              "Data bytes of the image that are in the disk cache.");
    per_image(f, images, "hydration", "done", "image_hydration_done_bytes", "gauge",
              "Data bytes the image's newest hydration job found cached or fetched.");
    per_image(f, images, "hydration", "total", "image_hydration_total_bytes", "gauge",
              "Data bytes the image's newest hydration job covers.");
    /* running: 1, queued or done: 0 */
    {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            json_object *img = json_object_array_get_idx(images, i);
            json_object *h = member(img, "hydration"), *st = member(h, "state"),
                        *path = member(img, "path");
            if (!st || !path || !json_object_is_type(path, json_type_string))
                continue;
            if (!any)
                family(f, "image_hydration_running", "gauge",
                       "1 while a hydration job of the image runs.");
            any = true;
            sample(f, "image_hydration_running", "image", json_object_get_string(path),
                   !strcmp(json_object_get_string(st), "running"));
        }
    }
}

static void errors_metrics(FILE *f, json_object *st)
{
    json_object *fetch = member(st, "fetch"), *cache = member(st, "cache"),
                *disk = member(cache, "disk");
    static const struct {
        const char *kind, *part, *key;
    } kinds[] = {
        {"read", "reads", "errors"},
        {"fetch", "fetch", "errors"},
        {"chunk_load", "cache", "load_errors"},
        {"disk_cache_bad_entry", "disk", "bad_entries"},
        {"disk_cache_read", "disk", "read_errors"},
        {"disk_cache_enospc", "disk", "enospc"},
        {"disk_cache_not_handed_over", "disk", "not_handed_over"},
    };
    bool any = false;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_object *from = !strcmp(kinds[i].part, "reads")   ? member(st, "reads")
                            : !strcmp(kinds[i].part, "fetch") ? fetch
                            : !strcmp(kinds[i].part, "cache") ? cache
                                                              : disk;
        uint64_t v;
        if (!get_u64(from, kinds[i].key, &v))
            continue;
        if (!any)
            family(f, "errors_total", "counter",
                   "Errors by kind: read (reads answered with an error), fetch (store "
                   "requests that failed for good), chunk_load (chunks missing or corrupt), "
                   "disk_cache_bad_entry, disk_cache_read (reads of cached chunks that failed; "
                   "fetched from the store instead), disk_cache_enospc, "
                   "disk_cache_not_handed_over "
                   "(loaded chunks the disk cache's writer did not take).");
        any = true;
        sample(f, "errors_total", "kind", kinds[i].kind, v);
    }
}

char *fs_metrics_render(json_object *st, size_t *ret_len)
{
    json_object *stores = member(st, "stores"), *reads = member(st, "reads"),
                *fetch = member(st, "fetch"), *cache = member(st, "cache"),
                *disk = member(cache, "disk"), *queued = member(fetch, "queued"), *off, *mem, *idx;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bool failed;

    if (!f)
        return NULL;
    if (stores && json_object_is_type(stores, json_type_array)) {
        size_t n = json_object_array_length(stores);
        family(f, "store_active", "gauge",
               "1 for the store chunks are fetched from first, 0 for its mirrors.");
        for (size_t i = 0; i < n; i++) {
            json_object *s = json_object_array_get_idx(stores, i), *loc = member(s, "location"),
                        *act = member(s, "active");
            if (loc && json_object_is_type(loc, json_type_string))
                sample(f, "store_active", "store", json_object_get_string(loc),
                       act && json_object_get_boolean(act));
        }
    }
    if ((off = member(st, "offline"))) {
        family(f, "offline", "gauge", "1 when the mount serves metadata from the cache.");
        sample(f, "offline", NULL, NULL, json_object_get_boolean(off));
    }

    simple(f, reads, "requests", "reads_total", "counter", "Read requests of image files.");
    simple(f, reads, "bytes", "read_bytes_total", "counter", "Bytes answered to image reads.");
    simple(f, reads, "waits", "read_waits_total", "counter",
           "Image reads that waited for a chunk to be fetched or loaded from the disk cache.");
    {
        uint64_t us;
        if (get_u64(reads, "wait_us", &us)) {
            family(f, "read_wait_seconds_total", "counter",
                   "Time those reads waited for their chunks, summed.");
            fputs("lazyimg_read_wait_seconds_total ", f);
            put_seconds(f, us);
            fputc('\n', f);
        }
    }

    simple(f, fetch, "inflight", "fetch_inflight", "gauge",
           "Store requests running or waiting for a retry.");
    if (queued) {
        static const char *const classes[] = {"demand", "readahead", "hydrate"};
        family(f, "fetch_queued", "gauge", "Chunk fetches waiting for a transfer slot, by class.");
        for (size_t i = 0; i < 3; i++) {
            uint64_t v;
            if (get_u64(queued, classes[i], &v))
                sample(f, "fetch_queued", "class", classes[i], v);
        }
    }
    simple(f, fetch, "decoding", "fetch_decoding", "gauge", "Fetched chunks being decoded.");
    simple(f, fetch, "requests", "fetch_requests_total", "counter",
           "Store requests for chunks, retries included.");
    simple(f, fetch, "retries", "fetch_retries_total", "counter", "Store requests retried.");
    simple(f, fetch, "failovers", "fetch_failovers_total", "counter",
           "Moves of chunk fetches to another store (mirror).");
    simple(f, fetch, "errors", "fetch_failures_total", "counter",
           "Chunk fetches that failed for good.");
    simple(f, fetch, "bytes", "fetch_received_bytes_total", "counter",
           "Bytes received from the stores (compressed, as stored).");
    latency_histogram(f, member(fetch, "latency_us"));

    simple(f, cache, "loads", "chunk_loads_total", "counter",
           "Chunks loaded from the store and verified.");
    simple(f, cache, "load_bytes", "chunk_load_bytes_total", "counter",
           "Plaintext bytes of the chunks loaded from the store.");
    simple(f, cache, "load_errors", "chunk_load_failures_total", "counter",
           "Chunk loads that failed (missing or corrupt).");
    simple(f, cache, "memory_hits", "memory_cache_hits_total", "counter",
           "Chunk lookups answered from memory.");
    simple(f, cache, "memory_misses", "memory_cache_misses_total", "counter",
           "Chunk lookups not in memory.");
    simple(f, cache, "memory_evictions", "memory_cache_evictions_total", "counter",
           "Chunks evicted from memory.");
    simple(f, cache, "memory_entries", "memory_cache_entries", "gauge", "Chunks in memory.");
    simple(f, cache, "memory_bytes", "memory_cache_size_bytes", "gauge",
           "Bytes of decoded chunks in memory.");
    if (disk && json_object_is_type(disk, json_type_object)) {
        simple(f, disk, "hits", "disk_cache_hits_total", "counter",
               "Disk cache lookups that found the chunk.");
        simple(f, disk, "misses", "disk_cache_misses_total", "counter",
               "Disk cache lookups that did not.");
        simple(f, cache, "disk_loads", "disk_cache_loads_total", "counter",
               "Chunks read ahead from the disk cache into memory.");
        simple(f, disk, "inserts", "disk_cache_inserts_total", "counter",
               "Chunks written to the disk cache.");
        simple(f, disk, "insert_skipped", "disk_cache_insert_skipped_total", "counter",
               "Chunks not written to the disk cache.");
        simple(f, disk, "over_budget", "disk_cache_over_budget_total", "counter",
               "Chunks not written to the disk cache for want of room within its budget.");
        simple(f, disk, "evictions", "disk_cache_evictions_total", "counter",
               "Chunks evicted from the disk cache.");
        simple(f, disk, "entries", "disk_cache_entries", "gauge", "Chunks in the disk cache.");
        simple(f, disk, "bytes", "disk_cache_size_bytes", "gauge",
               "Disk space the disk cache takes.");
        simple(f, disk, "bytes_apparent", "disk_cache_apparent_bytes", "gauge",
               "Bytes of the chunks in the disk cache.");
        simple(f, disk, "budget", "disk_cache_budget_bytes", "gauge",
               "Disk space the disk cache may take (--cache-size).");
    }
    if ((mem = member(st, "memory"))) {
        json_object *bufs = member(mem, "chunk_buffers");
        simple(f, mem, "rss_bytes", "resident_memory_bytes", "gauge",
               "Resident memory of the daemon (VmRSS).");
        simple(f, mem, "rss_peak_bytes", "resident_memory_peak_bytes", "gauge",
               "Highest resident memory of the daemon since it started (VmHWM).");
        simple(f, bufs, "in_use", "chunk_buffers_in_use", "gauge",
               "Chunk buffer slots holding a chunk or a transfer.");
        simple(f, bufs, "kept_bytes", "chunk_buffers_kept_bytes", "gauge",
               "Memory of free chunk buffer slots kept for reuse.");
    }
    if ((idx = member(st, "indexes"))) {
        simple(f, idx, "loaded_bytes", "image_indexes_bytes", "gauge",
               "Memory of the image indexes in memory (48 bytes per chunk).");
        simple(f, idx, "unused_bytes", "image_indexes_unused_bytes", "gauge",
               "Memory of the indexes nothing uses, kept for a later open.");
        simple(f, idx, "loads", "image_index_loads_total", "counter",
               "Image indexes loaded since the mount, loads again after eviction included.");
        simple(f, idx, "evictions", "image_index_evictions_total", "counter",
               "Unused image indexes let go beyond --index-memory.");
    }
    errors_metrics(f, st);
    images_metrics(f, member(st, "images"));

    failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    *ret_len = len;
    return text;
}

/* ---- serving ------------------------------------------------------------ */

/* Where the request head ends (after its blank line) in @buf, or NULL. */
static const char *head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n')
            return buf + i + 2;
        if (i + 3 < len && !memcmp(buf + i, "\r\n\r\n", 4))
            return buf + i + 4;
    }
    return NULL;
}

/* Reads the request head (request line and headers) into @buf, NUL-terminated. */
static int read_head(int fd, char *buf, size_t cap, int stop_fd, int64_t deadline)
{
    size_t len = 0;
    for (;;) {
        ssize_t n;
        int r = fs_sock_wait(fd, POLLIN, stop_fd, deadline);
        if (r < 0)
            return r;
        n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        len += (size_t)n;
        buf[len] = '\0';
        if (head_end(buf, len))
            return 0;
        if (len == cap - 1)
            return -E2BIG;
    }
}

static int reply(int fd, int stop_fd, int64_t deadline, const char *status, const char *type,
                 const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, type, len, extra ? extra : "");
    int r;
    if (n < 0 || (size_t)n >= sizeof(head))
        return -EOVERFLOW;
    if ((r = fs_sock_send_all(fd, head, (size_t)n, stop_fd, deadline)) < 0)
        return r;
    return fs_sock_send_all(fd, body, len, stop_fd, deadline);
}

static int reply_text(int fd, int stop_fd, int64_t deadline, const char *status, const char *extra,
                      const char *text)
{
    return reply(fd, stop_fd, deadline, status, "text/plain; charset=utf-8", extra, text,
                 strlen(text));
}

/* The request line's method and target, checked: "GET /metrics HTTP/1.1". */
static int parse_request_line(char *head, const char **ret_method, const char **ret_target)
{
    char *eol = strpbrk(head, "\r\n"), *sp1, *sp2;
    if (!eol)
        return -EINVAL;
    *eol = '\0';
    if (!(sp1 = strchr(head, ' ')) || !(sp2 = strchr(sp1 + 1, ' ')) || strchr(sp2 + 1, ' '))
        return -EINVAL;
    *sp1 = *sp2 = '\0';
    if (strncmp(sp2 + 1, "HTTP/1.", 7) || !sp2[8] || sp2[9] || sp1 == head || sp1[1] != '/')
        return -EINVAL;
    *ret_method = head;
    *ret_target = sp1 + 1;
    return 0;
}

static void serve(struct fs_metrics *m, int fd)
{
    int64_t deadline = fs_sock_now_ms() + FS_METRICS_TIMEOUT_MS;
    struct timeval tv = {FS_METRICS_TIMEOUT_MS / 1000, 0};
    char *head = malloc(FS_METRICS_MAX_REQUEST);
    const char *method, *target;
    size_t path_len;
    int r;

    if (!head)
        return;
    /* poll bounds every wait; these bound anything that would not */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    r = read_head(fd, head, FS_METRICS_MAX_REQUEST, m->stop_fd, deadline);
    if (r == -ECANCELED || r == -EPIPE || r == -ETIMEDOUT || (r < 0 && r != -E2BIG))
        goto out;
    if (r == -E2BIG || parse_request_line(head, &method, &target) < 0) {
        if (reply_text(fd, m->stop_fd, deadline, "400 Bad Request", NULL, "bad request\n") == 0)
            fs_sock_drain(fd, m->stop_fd);
        goto out;
    }
    path_len = strcspn(target, "?");
    if (path_len != 8 || strncmp(target, "/metrics", 8)) {
        reply_text(fd, m->stop_fd, deadline, "404 Not Found", NULL,
                   "not found: the metrics are at /metrics\n");
    } else if (strcmp(method, "GET")) {
        reply_text(fd, m->stop_fd, deadline, "405 Method Not Allowed", "Allow: GET\r\n",
                   "method not allowed\n");
    } else {
        json_object *st = fs_status_json(m->ctx, m->hyd, &m->status);
        size_t len = 0;
        char *text = st ? fs_metrics_render(st, &len) : NULL;
        json_object_put(st);
        /* the scraper's time to take the reply starts once it is built */
        deadline = fs_sock_now_ms() + FS_METRICS_TIMEOUT_MS;
        if (text)
            reply(fd, m->stop_fd, deadline, "200 OK", CONTENT_TYPE, NULL, text, len);
        else
            reply_text(fd, m->stop_fd, deadline, "500 Internal Server Error", NULL,
                       "out of memory\n");
        free(text);
    }
out:
    free(head);
}

static void *metrics_thread(void *arg)
{
    struct fs_metrics *m = arg;
    for (;;) {
        struct pollfd p[FS_METRICS_MAX_LISTEN + 1];
        size_t n = m->nfds;
        for (size_t i = 0; i < n; i++)
            p[i] = (struct pollfd){m->fds[i], POLLIN, 0};
        p[n] = (struct pollfd){m->stop_fd, POLLIN, 0};
        if (poll(p, n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            fs_warn("metrics: poll: %s; no more metrics", strerror(errno));
            return NULL;
        }
        if (p[n].revents)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            int fd;
            if (!p[i].revents)
                continue;
            fd = accept4(m->fds[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    struct timespec ts = {0, 100 * 1000000}; /* let fds be closed */
                    nanosleep(&ts, NULL);
                }
                continue;
            }
            serve(m, fd);
            close(fd);
        }
    }
}

int fs_metrics_start(struct fs_metrics *m, struct fs_ctx *ctx, struct fs_hydrator *hyd)
{
    int r;
    if (m->running)
        return -EALREADY;
    m->ctx = ctx;
    m->hyd = hyd;
    clock_gettime(CLOCK_MONOTONIC, &m->status.prev_time);
    if ((r = pthread_create(&m->thread, NULL, metrics_thread, m)) != 0)
        return -r;
    m->running = true;
    return 0;
}

void fs_metrics_stop(struct fs_metrics *m)
{
    struct stat st;
    if (!m)
        return;
    if (m->running) {
        uint64_t one = 1;
        if (write(m->stop_fd, &one, sizeof(one)) != sizeof(one))
            fs_warn("metrics: cannot stop its thread: %s", strerror(errno));
        pthread_join(m->thread, NULL);
        m->running = false;
    }
    for (size_t i = 0; i < m->nfds; i++)
        close(m->fds[i]);
    m->nfds = 0;
    if (m->path[0] && lstat(m->path, &st) == 0 && st.st_dev == m->sock_dev &&
        st.st_ino == m->sock_ino)
        unlink(m->path);
    m->path[0] = '\0';
}

void fs_metrics_free(struct fs_metrics *m)
{
    if (!m)
        return;
    fs_metrics_stop(m);
    close(m->stop_fd);
    fs_status_state_release(&m->status);
    free(m);
}
