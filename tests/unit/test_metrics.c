/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: the metrics server's pure parts (fs/metrics.h): --metrics-listen
 * addresses (accepted and refused), and the exposition rendered from a status
 * object: label escaping (backslash, double quote, newline), the latency
 * histogram (cumulative buckets, +Inf, exact seconds), members that are
 * missing or null leaving their families out, one TYPE per family.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/metrics.h"

static void addr_accepted(void **state)
{
    (void)state;
    struct fs_metrics_addr a;
    char err[128];

    assert_int_equal(fs_metrics_parse_addr("127.0.0.1:9469", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_string_equal(a.port, "9469");
    assert_string_equal(a.path, "");
    assert_int_equal(fs_metrics_parse_addr("[::1]:1", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.port, "1");
    assert_int_equal(fs_metrics_parse_addr("localhost:65535", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "localhost");
    assert_string_equal(a.port, "65535");
    assert_int_equal(fs_metrics_parse_addr("unix:/run/lazyimg/m.sock", &a, err, sizeof(err)), 0);
    assert_string_equal(a.path, "/run/lazyimg/m.sock");
    assert_string_equal(a.host, "");
}

static void addr_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",        "127.0.0.1", ":9469", "127.0.0.1:", "127.0.0.1:0", "h:65536",
        "h:99999", "h:123456",  "h:12a", "h:-1",       "h:+80",       "h:0080",
        "::1:80",  "[::1]80",   "[::1",  "[]:80",      "unix:",       "unix:rel.sock",
    };
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fs_metrics_addr a;
        err[0] = '\0';
        if (fs_metrics_parse_addr(bad[i], &a, err, sizeof(err)) != -EINVAL)
            fail_msg("accepted: \"%s\"", bad[i]);
        if (!err[0])
            fail_msg("no reason for \"%s\"", bad[i]);
    }
    {
        /* one byte too long for sun_path */
        char path[200] = "unix:/";
        struct fs_metrics_addr a;
        memset(path + 6, 'x', 108);
        path[6 + 108] = '\0';
        assert_int_equal(fs_metrics_parse_addr(path, &a, err, sizeof(err)), -EINVAL);
    }
}

/* The exposition of the status object in @json_text. */
static char *render(const char *json_text)
{
    json_object *st = json_tokener_parse(json_text);
    size_t len = 0;
    char *text;
    assert_non_null(st);
    text = fs_metrics_render(st, &len);
    json_object_put(st);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
            return;
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static const char status_json[] =
    "{\"stores\":[{\"location\":\"http://a/\",\"active\":false},"
    "             {\"location\":\"/b\",\"active\":true}],"
    " \"offline\":false, \"offline_reason\":null,"
    " \"reads\":{\"requests\":7,\"bytes\":4096,\"errors\":1,\"waits\":5,\"wait_us\":2500010},"
    " \"fetch\":{\"inflight\":1,\"queued\":{\"demand\":2,\"readahead\":3,\"hydrate\":4},"
    "   \"decoding\":0,\"requests\":5,\"retries\":1,\"failovers\":0,\"errors\":2,"
    "   \"bytes\":999,\"mb_per_s\":1.5,"
    "   \"latency_us\":{\"p50\":4,\"p99\":64,\"count\":4,\"sum\":1500,"
    "                   \"histogram\":[[4,3],[64,1]]}},"
    " \"cache\":{\"memory_hits\":10,\"memory_misses\":11,\"memory_evictions\":12,"
    "   \"disk_hits\":13,\"disk_loads\":14,\"loads\":15,\"load_bytes\":16,\"load_errors\":17,"
    "   \"hit_rate\":0.5,\"memory_entries\":18,\"memory_bytes\":19,"
    "   \"disk\":{\"entries\":20,\"bytes\":21,\"bytes_apparent\":22,\"budget\":23,\"hits\":24,"
    "     \"misses\":25,\"inserts\":26,\"insert_skipped\":27,\"evictions\":28,\"bad_entries\":29,"
    "     "
    "\"enospc\":30,\"over_budget\":46,\"sqlite_writes\":31,\"direct_writes\":32,\"not_handed_"
    "over\":33}},"
    " \"memory\":{\"rss_bytes\":34,\"rss_peak_bytes\":35,"
    "   \"chunk_buffers\":{\"in_use\":36,\"kept\":37,\"kept_bytes\":38,\"slot_allocs\":39,"
    "     \"heap_allocs\":40,\"released\":41}},"
    " \"indexes\":{\"loaded\":3,\"loaded_bytes\":42,\"in_use\":1,\"unused\":2,"
    "   \"unused_bytes\":43,\"unused_max_bytes\":67108864,\"loads\":44,\"evictions\":45},"
    " \"images\":[{\"path\":\"vm/1/a\\\\b\\\"c\\nd.img\",\"size\":100,\"zero_bytes\":40,"
    "   \"data_bytes\":60,\"cached_bytes\":30,\"hydrated_pct\":50.0,"
    "   \"hydration\":{\"job\":1,\"state\":\"running\",\"total\":60,\"done\":30}},"
    "  {\"path\":\"vm/2/x.img\",\"size\":8,\"zero_bytes\":0,\"data_bytes\":8,\"cached_bytes\":8,"
    "   \"hydrated_pct\":100.0}]}";

/* A path that is not UTF-8 (a directory named with Latin-1 bytes, an S3
 * prefix) would make Prometheus refuse the whole scrape: each byte that is
 * not part of a well-formed sequence is U+FFFD, the others are kept. */
static void label_values_are_utf8(void **state)
{
    (void)state;
    char *text = render("{\"images\":[{\"path\":\"vm/\xff"
                        "a\xc3\xa9\xed\xa0\x80"
                        "b\xf0\x9f\x98\x80.img\",\"size\":1}]}");
    has_line(text, "lazyimg_image_size_bytes{image=\"vm/\xef\xbf\xbd"
                   "a\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                   "b\xf0\x9f\x98\x80.img\"} 1");
    free(text);
}

static void exposition(void **state)
{
    (void)state;
    char *text = render(status_json);

    has_line(text, "# TYPE lazyimg_reads_total counter");
    has_line(text, "lazyimg_reads_total 7");
    has_line(text, "lazyimg_read_bytes_total 4096");
    has_line(text, "# TYPE lazyimg_read_waits_total counter");
    has_line(text, "lazyimg_read_waits_total 5");
    has_line(text, "# TYPE lazyimg_read_wait_seconds_total counter");
    has_line(text, "lazyimg_read_wait_seconds_total 2.50001");
    has_line(text, "lazyimg_store_active{store=\"http://a/\"} 0");
    has_line(text, "lazyimg_store_active{store=\"/b\"} 1");
    has_line(text, "lazyimg_fetch_queued{class=\"readahead\"} 3");
    has_line(text, "lazyimg_fetch_failures_total 2");
    has_line(text, "lazyimg_chunk_loads_total 15");
    has_line(text, "lazyimg_chunk_load_failures_total 17");
    has_line(text, "lazyimg_memory_cache_misses_total 11");
    has_line(text, "lazyimg_disk_cache_hits_total 24");
    has_line(text, "lazyimg_disk_cache_budget_bytes 23");
    has_line(text, "lazyimg_disk_cache_over_budget_total 46");
    has_line(text, "lazyimg_resident_memory_bytes 34");
    has_line(text, "lazyimg_resident_memory_peak_bytes 35");
    has_line(text, "lazyimg_chunk_buffers_in_use 36");
    has_line(text, "lazyimg_chunk_buffers_kept_bytes 38");
    has_line(text, "lazyimg_image_indexes_bytes 42");
    has_line(text, "lazyimg_image_indexes_unused_bytes 43");
    has_line(text, "# TYPE lazyimg_image_index_loads_total counter");
    has_line(text, "lazyimg_image_index_loads_total 44");
    has_line(text, "lazyimg_image_index_evictions_total 45");
    has_line(text, "lazyimg_errors_total{kind=\"read\"} 1");
    has_line(text, "lazyimg_errors_total{kind=\"disk_cache_not_handed_over\"} 33");
    /* label values escaped: a\b"c<newline>d */
    has_line(text, "lazyimg_image_size_bytes{image=\"vm/1/a\\\\b\\\"c\\nd.img\"} 100");
    has_line(text, "lazyimg_image_hydration_running{image=\"vm/1/a\\\\b\\\"c\\nd.img\"} 1");
    has_line(text, "lazyimg_image_hydration_done_bytes{image=\"vm/1/a\\\\b\\\"c\\nd.img\"} 30");
    has_line(text, "lazyimg_image_cached_bytes{image=\"vm/2/x.img\"} 8");
    has_line(text, "lazyimg_images_loaded 2");
    has_line(text, "lazyimg_images_data_bytes 68");
    has_line(text, "lazyimg_images_cached_bytes 38");
    /* the image without a job has no hydration series */
    assert_null(strstr(text, "lazyimg_image_hydration_total_bytes{image=\"vm/2/x.img\"}"));
    /* histogram: bucket i of the pool is [2^i, 2^(i+1)) us, upper bound 2 << i */
    has_line(text, "# TYPE lazyimg_fetch_latency_seconds histogram");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"0.000002\"} 0");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"0.000004\"} 3");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"0.000032\"} 3");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"0.000064\"} 4");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"1.048576\"} 4");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"4294.967296\"} 4");
    has_line(text, "lazyimg_fetch_latency_seconds_bucket{le=\"+Inf\"} 4");
    has_line(text, "lazyimg_fetch_latency_seconds_sum 0.0015");
    has_line(text, "lazyimg_fetch_latency_seconds_count 4");
    /* every line a comment or a sample of ours, and one TYPE per family */
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* the text ends with a newline */
        if (strncmp(p, "# HELP lazyimg_", 15) && strncmp(p, "# TYPE lazyimg_", 15) &&
            strncmp(p, "lazyimg_", 8))
            fail_msg("stray line: %.*s", (int)(nl - p), p);
        if (!strncmp(p, "# TYPE ", 7)) {
            char type[128];
            const char *again;
            assert_true((size_t)(nl - p) < sizeof(type));
            memcpy(type, p, (size_t)(nl - p));
            type[nl - p] = '\0';
            again = strstr(nl, type);
            if (again && (again[strlen(type)] == '\n'))
                fail_msg("twice: %s", type);
        }
        p = nl + 1;
    }
    free(text);
}

static void without_disk_cache(void **state)
{
    (void)state;
    char *text = render("{\"cache\":{\"loads\":1,\"disk\":null},\"images\":[]}");
    has_line(text, "lazyimg_chunk_loads_total 1");
    has_line(text, "lazyimg_images_loaded 0");
    assert_null(strstr(text, "disk_cache"));
    assert_null(strstr(text, "lazyimg_fetch_latency_seconds"));
    assert_null(strstr(text, "lazyimg_image_size_bytes"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addr_accepted),      cmocka_unit_test(addr_refused),
        cmocka_unit_test(exposition),         cmocka_unit_test(label_values_are_utf8),
        cmocka_unit_test(without_disk_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
