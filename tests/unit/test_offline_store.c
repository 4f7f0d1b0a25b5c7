/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fs/offline_store: which answers come from the real store and which from the
 * metadata cache, in each mode; "not found" is remembered, network errors are
 * covered, other errors are not; --offline never calls the store. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/metacache.h"
#include "fs/offline_store.h"

/* A scripted store: every call returns @result (data @data when 0). */
struct fake {
    struct fetch_store base;
    int result;
    const char *data;
    unsigned calls;
};

static int fake_list(struct fetch_store *s, const char *dir, struct fetch_dirent **ret,
                     size_t *ret_n, fetch_error *err)
{
    struct fake *f = (struct fake *)s;
    f->calls++;
    if (f->result < 0)
        return fetch_error_set(err, f->result, "%s: scripted failure", dir);
    /* "d<name>,f<name>,..." from @data */
    struct fetch_dirent *d = calloc(8, sizeof(*d));
    size_t n = 0;
    for (const char *t = f->data; *t && n < 8;) {
        size_t l = strcspn(t, ",");
        d[n].is_dir = t[0] == 'd';
        d[n++].name = strndup(t + 1, l - 1);
        t += l + (t[l] == ',');
    }
    *ret = d;
    *ret_n = n;
    return 0;
}

static int fake_get(struct fetch_store *s, const char *path, size_t max, void **ret,
                    size_t *ret_len, fetch_error *err)
{
    struct fake *f = (struct fake *)s;
    f->calls++;
    if (f->result < 0)
        return fetch_error_set(err, f->result, "%s: scripted failure", path);
    if (strlen(f->data) > max)
        return fetch_error_set(err, -EFBIG, "too big");
    *ret = strdup(f->data);
    *ret_len = strlen(f->data);
    return 0;
}

static unsigned fake_freed;

static void fake_free(struct fetch_store *s)
{
    fake_freed++;
    free(s);
}

static const struct fetch_store_ops fake_ops = {
    .kind = "fake", .list = fake_list, .get = fake_get, .free = fake_free};

struct fixture {
    char dir[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lazyimg-test-offline.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A wrapper around a new fake store (returned in *ret_fake, NULL when forced). */
static struct fetch_store *wrap(struct fixture *fx, enum fs_offline_mode mode,
                                struct fake **ret_fake)
{
    struct cache_meta *meta;
    struct fetch_store *s;
    struct fake *fk = NULL;
    if (mode != FS_OFFLINE_FORCED) {
        fk = calloc(1, sizeof(*fk));
        fk->base.ops = &fake_ops;
        fk->base.location = (char *)"http://h/store";
    }
    assert_int_equal(cache_meta_open(fx->dir, "http://h/store", &meta, NULL, 0), 0);
    assert_int_equal(fs_offline_store_new("http://h/store", fk ? &fk->base : NULL, meta, mode, &s),
                     0);
    assert_true(fs_is_offline_store(s));
    if (ret_fake)
        *ret_fake = fk;
    return s;
}

static int get_str(struct fetch_store *s, const char *path, char **ret, fetch_error *err)
{
    void *buf = NULL;
    size_t len = 0;
    int r = fetch_store_get(s, path, 1 << 20, &buf, &len, err);
    if (r == 0) {
        *ret = strndup(buf, len);
        free(buf);
    }
    return r;
}

static void expect_get(struct fetch_store *s, const char *path, const char *want)
{
    fetch_error err = {""};
    char *got = NULL;
    assert_int_equal(get_str(s, path, &got, &err), 0);
    assert_string_equal(got, want);
    free(got);
}

static void test_online_covers_network_errors_only(void **state)
{
    struct fixture *fx = *state;
    struct fake *fk;
    struct fetch_store *s = wrap(fx, FS_OFFLINE_NO, &fk);
    fetch_error err = {""};
    char *got = NULL;
    uint64_t served;
    int64_t oldest;

    fk->data = "manifest v1";
    expect_get(s, "vm/100/t/index.json.blob", "manifest v1");
    fs_offline_store_stats(s, &served, &oldest);
    assert_int_equal(served, 0);
    /* the store is asked first, every time */
    fk->data = "manifest v2";
    expect_get(s, "vm/100/t/index.json.blob", "manifest v2");
    assert_int_equal(fk->calls, 2);
    /* a network error: the last answer, from the cache */
    const int network[] = {-ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EAGAIN, -ECONNRESET};
    for (size_t i = 0; i < sizeof(network) / sizeof(network[0]); i++) {
        fk->result = network[i];
        expect_get(s, "vm/100/t/index.json.blob", "manifest v2");
    }
    fs_offline_store_stats(s, &served, &oldest);
    assert_int_equal(served, 5);
    assert_true(oldest > 0);
    /* not for an object never seen */
    fk->result = -ECONNREFUSED;
    assert_int_equal(get_str(s, "vm/100/t/other.blob", &got, &err), -ECONNREFUSED);
    assert_non_null(strstr(err.msg, "scripted failure"));
    /* other errors are the store's answer, never covered */
    fk->result = -EACCES;
    assert_int_equal(get_str(s, "vm/100/t/index.json.blob", &got, &err), -EACCES);
    fk->result = -EPROTO;
    assert_int_equal(get_str(s, "vm/100/t/index.json.blob", &got, &err), -EPROTO);
    /* "not found" replaces the cached copy: a later network error says not found */
    fk->result = -ENOENT;
    assert_int_equal(get_str(s, "vm/100/t/index.json.blob", &got, &err), -ENOENT);
    fk->result = -ECONNREFUSED;
    assert_int_equal(get_str(s, "vm/100/t/index.json.blob", &got, &err), -ENOENT);
    fetch_store_free(s);
}

static void test_listings(void **state)
{
    struct fixture *fx = *state;
    struct fake *fk;
    struct fetch_store *s = wrap(fx, FS_OFFLINE_NO, &fk);
    struct fetch_dirent *d = NULL;
    size_t n = 0;
    fetch_error err = {""};

    fk->data = "dvm,dct,f.lock,d.chunks";
    assert_int_equal(fetch_store_list(s, "", &d, &n, &err), 0);
    assert_int_equal(n, 4);
    fetch_dirents_free(d, n);
    fk->result = -ENOENT;
    assert_int_equal(fetch_store_list(s, "host", &d, &n, &err), -ENOENT);
    fetch_store_free(s);

    /* down at mount: from the cache without asking the store */
    s = wrap(fx, FS_OFFLINE_DOWN, &fk);
    fk->result = -ECONNREFUSED;
    assert_int_equal(fetch_store_list(s, "", &d, &n, &err), 0);
    assert_int_equal(fk->calls, 0);
    assert_int_equal(n, 4);
    const char *names[] = {"vm", "ct", ".lock", ".chunks"};
    const bool dirs[] = {true, true, false, true};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(d[i].name, names[i]);
        assert_int_equal(d[i].is_dir, dirs[i]);
    }
    fetch_dirents_free(d, n);
    /* the remembered "not found" */
    assert_int_equal(fetch_store_list(s, "host", &d, &n, &err), -ENOENT);
    assert_int_equal(fk->calls, 0);
    /* not cached: the store is asked (it may be back), its error returned */
    assert_int_equal(fetch_store_list(s, "vm", &d, &n, &err), -ECONNREFUSED);
    assert_int_equal(fk->calls, 1);
    fk->result = 0;
    fk->data = "d100";
    assert_int_equal(fetch_store_list(s, "vm", &d, &n, &err), 0);
    assert_int_equal(n, 1);
    fetch_dirents_free(d, n);
    fetch_store_free(s);
}

static void test_forced_never_asks(void **state)
{
    struct fixture *fx = *state;
    struct fake *fk;
    struct fetch_store *s = wrap(fx, FS_OFFLINE_NO, &fk);
    fetch_error err = {""};
    char *got = NULL;
    void *buf = NULL;
    size_t len = 0;

    fk->data = "index bytes";
    expect_get(s, "vm/100/t/drive.img.fidx", "index bytes");
    fetch_store_free(s);

    s = wrap(fx, FS_OFFLINE_FORCED, NULL);
    expect_get(s, "vm/100/t/drive.img.fidx", "index bytes");
    assert_int_equal(get_str(s, "vm/100/t/other.fidx", &got, &err), -ENETDOWN);
    assert_non_null(strstr(err.msg, "--offline"));
    /* its inner store (the pool's, for chunks) fails at once */
    struct fetch_store *inner = fs_offline_store_inner(s);
    assert_non_null(inner);
    assert_null(inner->ops->setup_get);
    assert_int_equal(fetch_store_get(inner, ".chunks/abcd/abcd", 1 << 20, &buf, &len, &err),
                     -ENETDOWN);
    assert_false(fs_offline_error_is_network(-ENOENT));
    assert_false(fs_offline_error_is_network(-EACCES));
    assert_true(fs_offline_error_is_network(-ECONNREFUSED));
    fetch_store_free(s);
}

static void test_inner_freed(void **state)
{
    struct fixture *fx = *state;
    unsigned before = fake_freed;
    struct fetch_store *s = wrap(fx, FS_OFFLINE_DOWN, NULL);
    fetch_store_free(s);
    assert_int_equal(fake_freed, before + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_online_covers_network_errors_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forced_never_asks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inner_freed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
