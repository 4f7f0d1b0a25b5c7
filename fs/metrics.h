/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Prometheus metrics of a mount (`lazyimg mount --metrics-listen ADDR`).
 *
 * A tiny HTTP/1.x server on one thread: it accepts one connection at a time,
 * reads one request (at most FS_METRICS_MAX_REQUEST bytes of request line and
 * headers, within FS_METRICS_TIMEOUT_MS for request and reply together),
 * answers and closes. GET /metrics (a query string is ignored) is answered
 * 200 with the exposition below; another path 404, another method 405, a
 * malformed or oversized request 400.
 *
 * The exposition is rendered from the status object of fs/status.h, the one
 * `lazyimg status --json` shows (built by the same function, with a rate
 * sample of this thread's own), so that the two cannot disagree. It is the
 * Prometheus text format 0.0.4; fs_metrics_render documents the names.
 *
 * ADDR is HOST:PORT (an IPv4 address, [IPv6 address] or a host name; every
 * address the name resolves to is listened on, none other: there is no
 * wildcard default) or unix:PATH (absolute; a Unix stream socket of mode
 * 0600, removed when the server stops; a stale socket left by a crash is
 * replaced, one another process listens on is not).
 *
 * Lifecycle: fs_metrics_listen before the daemon detaches (a bad address or a
 * port in use is an error of the mount command, before anything is mounted;
 * the sockets survive the fork), fs_metrics_start once the daemon runs,
 * fs_metrics_stop before anything the status reads is stopped or freed
 * (fs/daemon.h), fs_metrics_free last.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define FS_METRICS_MAX_REQUEST 8192
#define FS_METRICS_TIMEOUT_MS 5000
#define FS_METRICS_MAX_LISTEN 4 /* addresses a host name may resolve to */

struct fs_ctx;
struct fs_hydrator;
struct fs_metrics;

/* ADDR split into its parts (no name resolution). */
struct fs_metrics_addr {
    char host[256]; /* "" for a Unix socket; an IPv6 address without brackets */
    char port[6];   /* decimal, 1 to 65535 */
    char path[108]; /* the Unix socket's path, or "" */
};

/*
 * Parses ADDR as above. 0, or -EINVAL with the reason in @err (no port, port
 * out of range, empty host, unbalanced brackets, a relative or too long
 * Unix socket path).
 */
int fs_metrics_parse_addr(const char *addr, struct fs_metrics_addr *ret, char *err, size_t err_len);

/*
 * Binds and listens on ADDR (SOCK_CLOEXEC). @mountpoint (canonical) is the
 * mount's: a Unix socket below it is refused (the daemon never touches its
 * own mount). 0, or -errno with one line for the user in @err ("ADDR: ...").
 * No thread runs yet.
 */
int fs_metrics_listen(const char *addr, const char *mountpoint, struct fs_metrics **ret, char *err,
                      size_t err_len);

/*
 * Starts the server thread. @ctx and @hyd (may be NULL: no hydration
 * figures) are borrowed until fs_metrics_stop. 0 or -errno.
 */
int fs_metrics_start(struct fs_metrics *m, struct fs_ctx *ctx, struct fs_hydrator *hyd);

/*
 * Ends the thread (a connection being served is cut short), closes the
 * listening sockets and removes the Unix socket (if it is still the one we
 * made). NULL-safe, idempotent; also for a server never started.
 */
void fs_metrics_stop(struct fs_metrics *m);

/* Stops (as above) and frees @m. NULL-safe. */
void fs_metrics_free(struct fs_metrics *m);

/*
 * The exposition of @status (an object of fs/status.h), as a NUL-terminated
 * string the caller frees, its length in *ret_len; NULL when out of memory.
 * Members missing from @status leave their metrics out. Names (all prefixed
 * lazyimg_; counters since the mount):
 *   store_active{store}                        gauge, 1 for the store in use
 *   offline                                    gauge
 *   reads_total, read_bytes_total              image file reads (status "reads")
 *   read_waits_total, read_wait_seconds_total  those that waited for a chunk, and how long
 *   fetch_inflight, fetch_decoding             gauges
 *   fetch_queued{class=demand|readahead|hydrate} gauge
 *   fetch_requests_total, fetch_retries_total, fetch_failovers_total,
 *   fetch_failures_total, fetch_received_bytes_total
 *   fetch_latency_seconds                      histogram (_bucket{le}, _sum, _count)
 *   chunk_loads_total, chunk_load_bytes_total, chunk_load_failures_total
 *   memory_cache_hits_total, _misses_total, _evictions_total,
 *   memory_cache_entries, memory_cache_size_bytes
 *   disk_cache_hits_total, _misses_total, _evictions_total, _inserts_total,
 *   _insert_skipped_total, _loads_total, disk_cache_entries,
 *   disk_cache_size_bytes, disk_cache_apparent_bytes, disk_cache_budget_bytes
 *                                              (with a disk cache)
 *   resident_memory_bytes, resident_memory_peak_bytes   the daemon's VmRSS, VmHWM
 *   chunk_buffers_in_use, chunk_buffers_kept_bytes      fetch/buf.h slots
 *   image_indexes_bytes, image_indexes_unused_bytes,
 *   image_index_loads_total, image_index_evictions_total   fs/tree.h
 *   errors_total{kind=read|fetch|chunk_load|disk_cache_bad_entry|
 *                disk_cache_read|disk_cache_enospc|disk_cache_not_handed_over}
 *   images_loaded, images_data_bytes, images_cached_bytes   over the images
 *                                              whose index is in memory
 *   image_size_bytes{image}, image_data_bytes{image}, image_cached_bytes{image}
 *   image_hydration_done_bytes{image}, image_hydration_total_bytes{image},
 *   image_hydration_running{image}             (images with a hydration job)
 * Label values are escaped as the format says (backslash, double quote,
 * newline).
 */
char *fs_metrics_render(json_object *status, size_t *ret_len);
