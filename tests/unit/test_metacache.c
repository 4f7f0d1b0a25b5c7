/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cache/metacache: round trips, store keys without credentials, damaged and
 * foreign files read as misses, identical puts do not rewrite, bounds. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/metacache.h"

struct fixture {
    char dir[128];
    char entries[256]; /* dir/meta/<store key> */
    struct cache_meta *m;
};

#define LOC "http://user:secret@example.org:8080/store/"

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char key[CACHE_META_STORE_KEY_LEN + 1], msg[256];
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/lazyimg-test-metacache.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(cache_meta_store_key(LOC, key), 0);
    snprintf(f->entries, sizeof(f->entries), "%s/meta/%s", f->dir, key);
    assert_int_equal(cache_meta_open(f->dir, LOC, &f->m, msg, sizeof(msg)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];
    cache_meta_free(f->m);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The file of the only entry below the store's directory. */
static void only_entry(struct fixture *f, char *buf, size_t len)
{
    char cmd[PATH_MAX + 64];
    FILE *p;
    snprintf(cmd, sizeof(cmd), "find '%s' -type f", f->entries);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(buf, (int)len, p));
    buf[strcspn(buf, "\n")] = '\0';
    assert_null(fgets(cmd, sizeof(cmd), p)); /* exactly one */
    pclose(p);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    const char data[] = "manifest \0with a NUL inside";
    void *got = NULL;
    size_t len = 0;
    int64_t mtime = 0;

    assert_int_equal(cache_meta_get(f->m, "get:vm/100/x", 1 << 20, &got, &len, NULL), -ENOENT);
    assert_int_equal(cache_meta_put(f->m, "get:vm/100/x", data, sizeof(data)), 0);
    assert_int_equal(cache_meta_get(f->m, "get:vm/100/x", 1 << 20, &got, &len, &mtime), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    assert_int_equal(((char *)got)[len], '\0');
    /* the file's time (the kernel's coarse clock) may be a second ahead of time() */
    assert_true(mtime > 0 && mtime <= (int64_t)time(NULL) + 1);
    free(got);
    /* another key is another entry; an empty value is a value */
    assert_int_equal(cache_meta_get(f->m, "get:vm/100/y", 1 << 20, &got, &len, NULL), -ENOENT);
    assert_int_equal(cache_meta_put(f->m, "list:", "", 0), 0);
    assert_int_equal(cache_meta_get(f->m, "list:", 1 << 20, &got, &len, NULL), 0);
    assert_int_equal(len, 0);
    free(got);
    /* a changed object replaces the old one */
    assert_int_equal(cache_meta_put(f->m, "get:vm/100/x", "new", 3), 0);
    assert_int_equal(cache_meta_get(f->m, "get:vm/100/x", 1 << 20, &got, &len, NULL), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "new", 3);
    free(got);
    /* removal */
    assert_int_equal(cache_meta_remove(f->m, "get:vm/100/x"), 0);
    assert_int_equal(cache_meta_get(f->m, "get:vm/100/x", 1 << 20, &got, &len, NULL), -ENOENT);
    assert_int_equal(cache_meta_remove(f->m, "get:vm/100/x"), -ENOENT);
}

static void test_identical_put_does_not_write(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    struct stat a, b;
    assert_int_equal(cache_meta_put(f->m, "get:a", "same bytes", 10), 0);
    only_entry(f, path, sizeof(path));
    assert_int_equal(stat(path, &a), 0);
    assert_int_equal(cache_meta_put(f->m, "get:a", "same bytes", 10), 0);
    assert_int_equal(stat(path, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino); /* not replaced by a rename */
    assert_int_equal(a.st_mode & 0777, 0600);
    /* no temporary file is left behind */
    only_entry(f, path, sizeof(path));
}

static void test_bounds(void **state)
{
    struct fixture *f = *state;
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(cache_meta_put(f->m, "get:big", "0123456789", 10), 0);
    assert_int_equal(cache_meta_get(f->m, "get:big", 9, &got, &len, NULL), -EFBIG);
    assert_int_equal(cache_meta_get(f->m, "get:big", 10, &got, &len, NULL), 0);
    free(got);
    assert_int_equal(cache_meta_put(f->m, "", "x", 1), -EINVAL);
    assert_int_equal(cache_meta_put(f->m, "get:huge", "x", (size_t)CACHE_META_ENTRY_MAX + 1),
                     -EFBIG);
}

/* Rewrites the entry file with @edit applied; the next get must miss. */
static void damage(struct fixture *f, const char *key, void (*edit)(char *path))
{
    char path[PATH_MAX];
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(cache_meta_put(f->m, key, "0123456789abcdef", 16), 0);
    only_entry(f, path, sizeof(path));
    edit(path);
    assert_int_equal(cache_meta_get(f->m, key, 1 << 20, &got, &len, NULL), -EBADMSG);
    assert_null(got);
    /* removed: the next put writes a good copy */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(cache_meta_put(f->m, key, "0123456789abcdef", 16), 0);
    assert_int_equal(cache_meta_get(f->m, key, 1 << 20, &got, &len, NULL), 0);
    assert_memory_equal(got, "0123456789abcdef", 16);
    free(got);
    assert_int_equal(cache_meta_remove(f->m, key), 0);
}

static void flip_last_byte(char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    char c;
    off_t end = lseek(fd, 0, SEEK_END);
    assert_true(pread(fd, &c, 1, end - 1) == 1);
    c ^= 1;
    assert_true(pwrite(fd, &c, 1, end - 1) == 1);
    close(fd);
}

static void truncate_body(char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 3), 0);
}

static void truncate_header(char *path)
{
    assert_int_equal(truncate(path, 20), 0);
}

static void bad_magic(char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(pwrite(fd, "X", 1, 0) == 1);
    close(fd);
}

static void test_damaged_files_miss(void **state)
{
    struct fixture *f = *state;
    damage(f, "get:a", flip_last_byte);
    damage(f, "get:a", truncate_body);
    damage(f, "get:a", truncate_header);
    damage(f, "get:a", bad_magic);
}

static void test_symlink_not_followed(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX], target[PATH_MAX];
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(cache_meta_put(f->m, "get:s", "good", 4), 0);
    only_entry(f, path, sizeof(path));
    /* a copy of the very same entry, reached through a symlink */
    snprintf(target, sizeof(target), "%s/../copy", f->entries);
    char cmd[5 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && ln -sf '%s' '%s'", path, target, target, path);
    assert_int_equal(system(cmd), 0);
    assert_true(cache_meta_get(f->m, "get:s", 1 << 20, &got, &len, NULL) < 0);
    assert_null(got);
}

/* Directories others may write, and entries of another user, are not trusted. */
static void test_trust(void **state)
{
    struct fixture *f = *state;
    struct cache_meta *m = NULL;
    char path[PATH_MAX], meta[PATH_MAX], msg[512];
    void *got = NULL;
    size_t len = 0;

    snprintf(meta, sizeof(meta), "%s/meta", f->dir);
    assert_int_equal(chmod(meta, 0777), 0);
    assert_int_equal(cache_meta_open(f->dir, LOC, &m, msg, sizeof(msg)), -EPERM);
    assert_non_null(strstr(msg, "writable by group or others"));
    assert_int_equal(chmod(meta, 0700), 0);
    assert_int_equal(chmod(f->entries, 0770), 0);
    assert_int_equal(cache_meta_open(f->dir, LOC, &m, msg, sizeof(msg)), -EPERM);
    assert_int_equal(chmod(f->entries, 0700), 0);
    assert_int_equal(cache_meta_open(f->dir, LOC, &m, msg, sizeof(msg)), 0);
    cache_meta_free(m);

    if (geteuid() != 0)
        return; /* chown to another user needs root */
    assert_int_equal(cache_meta_put(f->m, "get:o", "good", 4), 0);
    only_entry(f, path, sizeof(path));
    assert_int_equal(chown(path, 65534, 65534), 0);
    assert_true(cache_meta_get(f->m, "get:o", 1 << 20, &got, &len, NULL) < 0);
    assert_null(got);
}

static void test_store_key(void **state)
{
    /* pairs of locations, and whether they name one store */
    static const struct {
        const char *one, *other;
        bool same;
    } pairs[] = {
        /* credentials and trailing slashes do not change the key */
        {"http://u:p@h.example/x/", "http://h.example/x", true},
        {"http://u:p@h.example/x/", "http://other:pw@h.example/x//", true},
        /* scheme and host in any case, the scheme's default port (or an
         * empty one) written out: the same store */
        {"http://h.example/x", "HTTP://H.Example:80/x", true},
        {"http://h.example/x", "http://u@h.example:/x", true},
        {"https://h.example:443/x", "https://h.example/x", true},
        {"http://[::1]:80/x", "http://[::1]/x", true},
        /* another port, or one of the other scheme, or a path in other case */
        {"http://h.example/x", "http://h.example:8080/x", false},
        {"http://h.example/x", "http://h.example:443/x", false},
        {"http://h.example/x", "http://h.example/X", false},
        {"http://[::1]/x", "http://[::1]:8080/x", false},
        /* an S3 bucket's name is not lowered (legacy names have case) */
        {"s3://Bucket/x", "s3://bucket/x", false},
        /* an '@' in the path is not userinfo */
        {"http://h.example/x", "http://h.example/x@y", false},
        /* other host, other scheme */
        {"http://h.example/x", "http://h2.example/x", false},
        {"http://h.example/x", "https://h.example/x", false},
    };
    char a[CACHE_META_STORE_KEY_LEN + 1], c[CACHE_META_STORE_KEY_LEN + 1];
    (void)state;
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        assert_int_equal(cache_meta_store_key(pairs[i].one, a), 0);
        assert_int_equal(cache_meta_store_key(pairs[i].other, c), 0);
        if ((strcmp(a, c) == 0) != pairs[i].same)
            fail_msg("%s and %s: %s keys", pairs[i].one, pairs[i].other,
                     pairs[i].same ? "different" : "the same");
    }
    assert_int_equal(cache_meta_store_key("/srv/store", c), 0);
    assert_int_equal(strlen(c), CACHE_META_STORE_KEY_LEN);
    assert_int_equal(cache_meta_store_key("", c), -EINVAL);
}

static void test_no_credentials_on_disk(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 64];
    assert_int_equal(cache_meta_put(f->m, "get:vm/100/x", "data", 4), 0);
    snprintf(cmd, sizeof(cmd), "grep -rqs secret '%s'", f->dir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "find '%s' | grep -q secret", f->dir);
    assert_int_not_equal(system(cmd), 0);
    struct stat st;
    assert_int_equal(stat(f->entries, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

struct hammer {
    struct cache_meta *m;
    int id, bad;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    char val[64];
    for (int i = 0; i < 200; i++) {
        void *got = NULL;
        size_t len = 0;
        /* one value per thread and round: each read sees one of them whole */
        int n = snprintf(val, sizeof(val), "value %d/%d of the shared key", h->id, i);
        if (cache_meta_put(h->m, "get:shared", val, (size_t)n) < 0)
            h->bad++;
        if (cache_meta_get(h->m, "get:shared", 1 << 20, &got, &len, NULL) == 0) {
            if (len < 6 || memcmp(got, "value ", 6) || strlen(got) != len)
                h->bad++;
            free(got);
        } else {
            h->bad++;
        }
    }
    return NULL;
}

static void test_concurrent_puts(void **state)
{
    struct fixture *f = *state;
    struct hammer h[4];
    pthread_t t[4];
    char path[PATH_MAX];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){.m = f->m, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].bad, 0);
    }
    only_entry(f, path, sizeof(path)); /* one entry, no temporary files left */
}

static void write_aged(const char *dir, const char *name, int age_s)
{
    char path[PATH_MAX];
    struct timespec ts[2];
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "partial", 7), 7);
    close(fd);
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static bool exists_in(const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* A put that a crash interrupted leaves a temp file: the next open removes
 * it once its process is gone and it is a minute old, and no other. */
static void test_stale_tmp_swept(void **state)
{
    struct fixture *f = *state;
    char stale[64], fresh[64], mine[64], msg[256];
    pid_t gone = fork();
    assert_true(gone >= 0);
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, NULL, 0), gone);
    snprintf(stale, sizeof(stale), ".tmp.%d.0", (int)gone);
    snprintf(fresh, sizeof(fresh), ".tmp.%d.1", (int)gone);
    snprintf(mine, sizeof(mine), ".tmp.%d.2", (int)getpid());
    write_aged(f->entries, stale, 120);
    write_aged(f->entries, fresh, 0);
    write_aged(f->entries, ".tmp.1.3", 120); /* init: alive */
    write_aged(f->entries, mine, 120);
    cache_meta_free(f->m);
    assert_int_equal(cache_meta_open(f->dir, LOC, &f->m, msg, sizeof(msg)), 0);
    assert_false(exists_in(f->entries, stale));
    assert_true(exists_in(f->entries, fresh));
    assert_true(exists_in(f->entries, ".tmp.1.3"));
    assert_true(exists_in(f->entries, mine));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identical_put_does_not_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_files_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust, setup, teardown),
        cmocka_unit_test(test_store_key),
        cmocka_unit_test_setup_teardown(test_no_credentials_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmp_swept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
