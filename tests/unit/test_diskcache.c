/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cache/diskcache: inserts, lookups and verified reads, dedup, persistence,
 * corruption, eviction, maintenance, two instances sharing a directory, and
 * failures injected with the linker's --wrap (write, fsync, renameat,
 * sqlite3_step). Ends with a micro-benchmark of warm reads (printed only).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "cache/diskcache.h"
#include "fixtures.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

/* ---- injected failures ---------------------------------------------------- */

static atomic_int fail_write_errno, fail_fsync_errno, fail_fsync_skip, fail_renameat_errno;
static atomic_int fail_pwrite_errno, fail_fdatasync_errno;
static atomic_bool pwrite_half_first;
static atomic_int fail_commit;
static atomic_int write_calls, fsync_calls, pwrite_calls;
/* while set, writes wait (the writer thread stalls: the queue fills up) */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_closed;
/* while set, fsync() waits (the committer stalls) */
static bool fsync_gate_closed;
/* O_DIRECT reads of the cache's files (cache_disk_load): the reopen of a
 * descriptor through /proc fails with fail_reopen_errno; the direct reads
 * act as direct_read_mode says (failing with direct_read_errno); reads
 * through the page cache of 64 KiB or more fail with fail_pc_read_errno */
enum { DR_NONE, DR_FAIL, DR_HALF_THEN_FAIL, DR_ZERO, DR_ODD };
static atomic_int fail_reopen_errno, direct_read_mode, direct_read_errno, fail_pc_read_errno;
static atomic_int reopen_calls, direct_read_calls;
/* transactions that deleted chunk rows, by their synchronous= level at
 * COMMIT: every one must be FULL (the teardown checks) */
#define DELETING_MAX 8
static pthread_mutex_t deleting_lock = PTHREAD_MUTEX_INITIALIZER;
static sqlite3 *deleting[DELETING_MAX];
static atomic_int durable_deletes, undurable_deletes;

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __real_sqlite3_step(sqlite3_stmt *st);
ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __real_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);
ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off);
int __wrap_sqlite3_step(sqlite3_stmt *st);

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    int e = atomic_load(&fail_write_errno);
    atomic_fetch_add(&write_calls, 1);
    pthread_mutex_lock(&gate_lock);
    while (gate_closed)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_write(fd, buf, n);
}

/* pwrite (pwrite64 with 64-bit offsets) and fdatasync: the appends to packs
 * and their syncs */
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    int e = atomic_load(&fail_pwrite_errno);
    atomic_fetch_add(&pwrite_calls, 1);
    if (e && atomic_load(&pwrite_half_first) && n >= 8192) {
        /* a disk that fills part way: half written, then the error */
        atomic_store(&pwrite_half_first, false);
        return __real_pwrite64(fd, buf, n / 2 & ~(size_t)4095, off);
    }
    if (e) {
        errno = e;
        return -1;
    }
    return __real_pwrite64(fd, buf, n, off);
}

int __wrap_open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    int e = atomic_load(&fail_reopen_errno);
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if ((flags & O_DIRECT) && strncmp(path, "/proc/", 6) == 0) {
        atomic_fetch_add(&reopen_calls, 1);
        if (e) {
            errno = e;
            return -1;
        }
    }
    return __real_open64(path, flags, mode);
}

ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off)
{
    int mode = atomic_load(&direct_read_mode), e = atomic_load(&direct_read_errno);
    int pc_e = atomic_load(&fail_pc_read_errno);
    int fl = mode != DR_NONE || pc_e ? fcntl(fd, F_GETFL) : 0;
    ssize_t got;

    if (fl >= 0 && (fl & O_DIRECT) && mode != DR_NONE) {
        int call = atomic_fetch_add(&direct_read_calls, 1);
        switch (mode) {
        case DR_HALF_THEN_FAIL:
            if (call == 0 && n >= 8192)
                return __real_pread64(fd, buf, n / 2 & ~(size_t)4095, off);
            errno = e;
            return -1;
        case DR_FAIL:
            errno = e;
            return -1;
        case DR_ZERO:
            return 0;
        case DR_ODD:
            /* fewer bytes than asked, and not whole pages: what a network
             * filesystem's direct read may return before the end */
            got = __real_pread64(fd, buf, 8192 < n ? 8192 : n, off);
            return got < 1000 ? got : 1000;
        }
    }
    if (fl >= 0 && !(fl & O_DIRECT) && pc_e && n >= 64 * KIB) {
        errno = pc_e;
        return -1;
    }
    return __real_pread64(fd, buf, n, off);
}

int __wrap_fdatasync(int fd)
{
    int e = atomic_load(&fail_fdatasync_errno);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_fdatasync(fd);
}

int __wrap_fsync(int fd)
{
    int e = atomic_load(&fail_fsync_errno);
    atomic_fetch_add(&fsync_calls, 1);
    pthread_mutex_lock(&gate_lock);
    while (fsync_gate_closed)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    if (e && atomic_fetch_sub(&fail_fsync_skip, 1) <= 0) {
        errno = e;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    int e = atomic_load(&fail_renameat_errno);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

/* The synchronous= level in force on @db (2: FULL). */
static int synchronous_level(sqlite3 *db)
{
    sqlite3_stmt *q = NULL;
    int level = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &q, NULL) == SQLITE_OK &&
        __real_sqlite3_step(q) == SQLITE_ROW)
        level = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return level;
}

int __wrap_sqlite3_step(sqlite3_stmt *st)
{
    const char *sql = sqlite3_sql(st);
    sqlite3 *db = sqlite3_db_handle(st);
    if (atomic_load(&fail_commit) && sql && !strcmp(sql, "COMMIT"))
        return SQLITE_IOERR; /* as a failed WAL write would; the transaction stays open */
    if (sql && !strncmp(sql, "DELETE FROM chunks", 18)) {
        /* a row deleted: its transaction must commit with synchronous=FULL,
         * durable before the files go (checked at its COMMIT) */
        pthread_mutex_lock(&deleting_lock);
        for (size_t i = 0; i < DELETING_MAX; i++) {
            if (deleting[i] == db)
                break;
            if (!deleting[i]) {
                deleting[i] = db;
                break;
            }
        }
        pthread_mutex_unlock(&deleting_lock);
    } else if (sql && (!strcmp(sql, "COMMIT") || !strcmp(sql, "ROLLBACK"))) {
        bool deleted = false;
        pthread_mutex_lock(&deleting_lock);
        for (size_t i = 0; i < DELETING_MAX; i++) {
            if (deleting[i] == db) {
                deleting[i] = NULL;
                deleted = true;
            }
        }
        pthread_mutex_unlock(&deleting_lock);
        if (deleted && sql[0] == 'C') /* a rolled back deletion deletes nothing */
            atomic_fetch_add(synchronous_level(db) == 2 ? &durable_deletes : &undurable_deletes, 1);
    }
    return __real_sqlite3_step(st);
}

static void set_gate(bool closed)
{
    pthread_mutex_lock(&gate_lock);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void set_fsync_gate(bool closed)
{
    pthread_mutex_lock(&gate_lock);
    fsync_gate_closed = closed;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void clear_failures(void)
{
    atomic_store(&fail_write_errno, 0);
    atomic_store(&fail_fsync_errno, 0);
    atomic_store(&fail_fsync_skip, 0);
    atomic_store(&fail_renameat_errno, 0);
    atomic_store(&fail_pwrite_errno, 0);
    atomic_store(&pwrite_half_first, false);
    atomic_store(&fail_fdatasync_errno, 0);
    atomic_store(&fail_commit, 0);
    atomic_store(&fail_reopen_errno, 0);
    atomic_store(&direct_read_mode, DR_NONE);
    atomic_store(&direct_read_errno, 0);
    atomic_store(&fail_pc_read_errno, 0);
    set_gate(false);
    set_fsync_gate(false);
}

/* ---- fixtures ------------------------------------------------------------- */

struct fx {
    char dir[256];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/lazyimg-dc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    clear_failures();
    atomic_store(&durable_deletes, 0);
    atomic_store(&undurable_deletes, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int undurable = atomic_load(&undurable_deletes);
    clear_failures();
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    /* rows deleted without synchronous=FULL could come back after a power
     * loss, naming files already gone */
    if (undurable)
        fprintf(stderr, "%d transactions deleted rows without synchronous=FULL\n", undurable);
    return undurable ? -1 : 0;
}

static struct cache_disk *open_cache(const char *dir, struct cache_disk_options *o)
{
    struct cache_disk_options d = {0};
    struct cache_disk *c = NULL;
    char err[256] = "";
    if (!o)
        o = &d;
    o->dir = dir;
    if (!o->flush_ms)
        o->flush_ms = 20;
    if (!o->store)
        o->store = "test";
    /* a file per chunk unless a test asks for packs (they have their own
     * tests below): these tests look at, damage and remove those files */
    if (!o->pack_below)
        o->pack_below = CACHE_DISK_PACK_OFF;
    if (cache_disk_open(o, &c, err, sizeof(err)) < 0)
        fail_msg("cache_disk_open: %s", err);
    return c;
}

/* A chunk: random bytes and their SHA-256 (or SHA-512/256). */
struct chunk {
    uint8_t *bytes;
    size_t len;
    uint8_t key[CACHE_KEY_LEN];
    enum cache_algo algo;
};

static struct chunk make_chunk(size_t len, uint64_t seed)
{
    struct chunk ch = {.len = len, .algo = CACHE_ALGO_SHA256};
    ch.bytes = fx_malloc(len);
    fx_fill_random(ch.bytes, len, seed);
    fx_sha256(ch.bytes, len, ch.key);
    return ch;
}

static atomic_int done_calls;
/* outcomes seen, by result + 200 (results are -errno .. 1) */
static atomic_int results[256];

static void free_done(void *owner, int result)
{
    if (result >= -200 && result < 56)
        atomic_fetch_add(&results[result + 200], 1);
    atomic_fetch_add(&done_calls, 1);
    free(owner);
}

static void clear_results(void)
{
    for (size_t i = 0; i < 256; i++)
        atomic_store(&results[i], 0);
    done_calls = 0;
}

static int results_of(int result)
{
    return atomic_load(&results[result + 200]);
}

/* Queues a copy of @ch (the cache owns the copy until done()). */
static void insert(struct cache_disk *c, const struct chunk *ch)
{
    uint8_t *copy = fx_memdup(ch->bytes, ch->len);
    cache_disk_insert(c, ch->algo, ch->key, copy, ch->len, copy, free_done);
}

/* Looks @ch up and checks its whole content; 1 if present and right, 0 if absent. */
static int check_chunk(struct cache_disk *c, const struct chunk *ch)
{
    struct cache_disk_handle *h = NULL;
    uint8_t *buf;
    int r = cache_disk_lookup(c, ch->algo, ch->key, &h);
    if (r <= 0)
        return r;
    assert_int_equal(cache_disk_handle_len(h), ch->len);
    buf = fx_malloc(ch->len);
    assert_int_equal(cache_disk_read(c, h, 0, ch->len, buf), 0);
    assert_memory_equal(buf, ch->bytes, ch->len);
    free(buf);
    cache_disk_release(c, h);
    return 1;
}

static struct cache_disk_stats stats(struct cache_disk *c)
{
    struct cache_disk_stats st;
    cache_disk_get_stats(c, &st);
    return st;
}

/* @a/@b into @out, which must be large enough. */
static void join(char *out, size_t out_len, const char *a, const char *b)
{
    int n = snprintf(out, out_len, "%s/%s", a, b);
    assert_true(n > 0 && (size_t)n < out_len);
}

/* Regular files under @dir/@sub (recursively). */
static int count_files(const char *dir, const char *sub)
{
    char path[1024];
    int n = 0;
    DIR *d;
    struct dirent *de;
    join(path, sizeof(path), dir, sub);
    if (!(d = opendir(path)))
        return 0;
    while ((de = readdir(d))) {
        char child[1024];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        join(child, sizeof(child), sub, de->d_name);
        join(path, sizeof(path), dir, child);
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            n += count_files(dir, child);
        else if (S_ISREG(st.st_mode))
            n++;
    }
    closedir(d);
    return n;
}

/* The data file of @ch (exactly one must exist). */
static void data_path(const char *dir, const struct chunk *ch, char *out, size_t out_len)
{
    char hex[2 * CACHE_KEY_LEN + 1], sub[512];
    struct dirent *de;
    DIR *d;
    int found = 0;

    fx_hex(ch->key, CACHE_KEY_LEN, hex);
    snprintf(sub, sizeof(sub), "%s/data/%s/%.2s", dir,
             ch->algo == CACHE_ALGO_SHA256         ? "sha256"
             : ch->algo == CACHE_ALGO_SHA256_KEYED ? "sha256_keyed"
                                                   : "sha512_256",
             hex);
    d = opendir(sub);
    assert_non_null(d);
    while ((de = readdir(d))) {
        if (!strncmp(de->d_name, hex, 64) && de->d_name[64] == '.') {
            join(out, out_len, sub, de->d_name);
            found++;
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    uint8_t b;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* Rows in the index, counted with SQLite directly. */
static int count_rows(const char *dir)
{
    char path[512];
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = -1;
    snprintf(path, sizeof(path), "%s/index.sqlite", dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM chunks", -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- basic operation ------------------------------------------------------ */

static void test_insert_lookup_read(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    /* three whole blocks and a short fourth */
    struct chunk ch = make_chunk(3 * CACHE_DISK_BLOCK + 1000, 1);
    struct cache_disk_handle *h = NULL;
    struct cache_disk_stats st;
    static const struct {
        uint64_t off;
        size_t len;
    } ranges[] = {
        {0, 3 * CACHE_DISK_BLOCK + 1000},                /* whole */
        {CACHE_DISK_BLOCK, CACHE_DISK_BLOCK},            /* one aligned block */
        {0, 2 * CACHE_DISK_BLOCK},                       /* aligned, two blocks */
        {100, 5000},                                     /* inside one block */
        {60000, 135000},                                 /* spanning three blocks */
        {CACHE_DISK_BLOCK - 1, 2},                       /* across a boundary */
        {3 * CACHE_DISK_BLOCK, 1000},                    /* the short last block */
        {3 * CACHE_DISK_BLOCK + 999, 1},                 /* its last byte */
        {2 * CACHE_DISK_BLOCK, CACHE_DISK_BLOCK + 1000}, /* aligned start, to the end */
        {5, 3 * CACHE_DISK_BLOCK + 995},                 /* unaligned start, to the end */
        {4096, 0},                                       /* empty */
    };
    uint8_t *buf = fx_malloc(ch.len);

    done_calls = 0;
    insert(c, &ch);
    cache_disk_sync(c);
    assert_int_equal(done_calls, 1);
    assert_int_equal(cache_disk_lookup(c, ch.algo, ch.key, &h), 1);
    assert_int_equal(cache_disk_handle_len(h), ch.len);
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        memset(buf, 0xee, ch.len);
        assert_int_equal(cache_disk_read(c, h, ranges[i].off, ranges[i].len, buf), 0);
        assert_memory_equal(buf, ch.bytes + ranges[i].off, ranges[i].len);
    }
    assert_int_equal(cache_disk_read(c, h, ch.len - 10, 11, buf), -EINVAL);
    assert_int_equal(cache_disk_read(c, h, ch.len + 1, 0, buf), -EINVAL);
    assert_int_equal(cache_disk_read(c, h, UINT64_MAX, 2, buf), -EINVAL);
    cache_disk_release(c, h);
    cache_disk_release(c, NULL);

    /* the other algorithm is another key */
    ch.algo = CACHE_ALGO_SHA512_256;
    assert_int_equal(cache_disk_lookup(c, ch.algo, ch.key, &h), 0);
    ch.algo = CACHE_ALGO_SHA256;

    st = stats(c);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.inserts, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.bytes_apparent, ch.len);
    assert_true(st.bytes_allocated >= ch.len);
    assert_int_equal(st.bad_entries, 0);
    assert_int_equal(st.last_insert_error, 0);
    assert_true(st.sqlite_writes >= 1);
    assert_int_equal(count_files(f->dir, "data"), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    free(buf);
    free(ch.bytes);
    cache_disk_close(c);
}

/* Pages of @path in the page cache, or -1 when they cannot be dropped (tmpfs). */
static long resident_pages(const char *path, bool drop_first)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    long page = sysconf(_SC_PAGESIZE), n = 0, pages;
    unsigned char *vec;
    void *map;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    if (drop_first)
        assert_int_equal(posix_fadvise(fd, 0, st.st_size, POSIX_FADV_DONTNEED), 0);
    pages = (long)((st.st_size + page - 1) / page);
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    vec = fx_malloc((size_t)pages);
    assert_int_equal(mincore(map, (size_t)st.st_size, vec), 0);
    for (long i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    munmap(map, (size_t)st.st_size);
    close(fd);
    return n;
}

/* A prefetched chunk's file is brought into the page cache before any read. */
static void test_prefetch(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk ch = make_chunk(4 * CACHE_DISK_BLOCK + 123, 21);
    struct cache_disk_handle *h = NULL;
    char path[512];
    long n = 0;
    uint8_t *buf = fx_malloc(ch.len);

    insert(c, &ch);
    cache_disk_sync(c);
    data_path(f->dir, &ch, path, sizeof(path));
    assert_int_equal(cache_disk_lookup(c, ch.algo, ch.key, &h), 1);
    if (resident_pages(path, true) == 0) {
        assert_true(cache_disk_prefetch(c, h, true)); /* under 1 MiB: hinted */
        /* the hint is asynchronous: give the disk up to five seconds */
        for (int i = 0; i < 500 && (n = resident_pages(path, false)) == 0; i++)
            sleep_ms(10);
        assert_true(n > 0);
    } else {
        cache_disk_prefetch(c, h, true); /* cannot be observed here: still harmless */
    }
    assert_int_equal(cache_disk_read(c, h, 0, ch.len, buf), 0);
    assert_memory_equal(buf, ch.bytes, ch.len);
    cache_disk_release(c, h);
    free(buf);
    free(ch.bytes);
    cache_disk_close(c);
}

static void test_dedup(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk ch = make_chunk(100 * KIB, 2);

    done_calls = 0;
    insert(c, &ch);
    insert(c, &ch); /* same batch */
    cache_disk_sync(c);
    insert(c, &ch); /* already committed */
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &ch), 1);
    insert(c, &ch); /* open handle: refused at once */
    cache_disk_sync(c);
    assert_int_equal(done_calls, 4);
    assert_int_equal(stats(c).entries, 1);
    assert_int_equal(stats(c).inserts, 1);
    assert_int_equal(count_rows(f->dir), 1);
    assert_int_equal(count_files(f->dir, "data"), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    free(ch.bytes);
    cache_disk_close(c);
}

static void test_miss_and_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct cache_disk_handle *h = NULL;
    uint8_t key[CACHE_KEY_LEN] = {1, 2, 3};
    uint8_t byte = 0;

    assert_int_equal(cache_disk_lookup(c, CACHE_ALGO_SHA256, key, &h), 0);
    assert_null(h);
    assert_int_equal(cache_disk_lookup(c, (enum cache_algo)7, key, &h), 0);
    assert_int_equal(stats(c).misses, 2);
    /* refused inserts hand their bytes back at once */
    done_calls = 0;
    cache_disk_insert(c, CACHE_ALGO_SHA256, key, &byte, 0, NULL, free_done);
    cache_disk_insert(c, (enum cache_algo)7, key, &byte, 1, NULL, free_done);
    cache_disk_insert(c, CACHE_ALGO_SHA256, key, &byte, CACHE_DISK_MAX_CHUNK + 1, NULL, free_done);
    assert_int_equal(done_calls, 3);
    cache_disk_sync(c);
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(stats(c).insert_skipped, 3);
    cache_disk_close(c);
    cache_disk_close(NULL);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {0};
    struct cache_disk *c = NULL;
    char path[512], err[256] = "";
    int fd;

    snprintf(path, sizeof(path), "%s/file", f->dir);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    o.dir = path;
    assert_int_equal(cache_disk_open(&o, &c, err, sizeof(err)), -ENOTDIR);
    assert_null(c);
    assert_true(strlen(err) > 0);
    o.dir = NULL;
    assert_int_equal(cache_disk_open(&o, &c, err, sizeof(err)), -EINVAL);
    /* a directory created on demand, with its parts */
    snprintf(path, sizeof(path), "%s/new", f->dir);
    c = open_cache(path, NULL);
    cache_disk_close(c);
    snprintf(path, sizeof(path), "%s/new/tmp", f->dir);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_reopen(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(CACHE_DISK_MAX_CHUNK, 3), b = make_chunk(1, 4);

    insert(c, &a);
    insert(c, &b);
    cache_disk_close(c); /* close writes what is queued */
    c = open_cache(f->dir, NULL);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(check_chunk(c, &b), 1);
    assert_int_equal(stats(c).entries, 2);
    assert_int_equal(stats(c).bytes_apparent, a.len + b.len);
    assert_int_equal(stats(c).inserts, 0); /* this process's, since open */
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

/* ---- integrity ---------------------------------------------------------------- */

/* Entries of @dir whose name starts with @prefix. */
static int count_named(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    assert_non_null(d);
    while ((de = readdir(d)))
        n += !strncmp(de->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

/* Overwrites the index's pages after the first with junk (the header, and
 * with it the schema version, stays). */
static void junk_pages(const char *dir)
{
    char path[512];
    struct stat st;
    uint8_t *junk;
    int fd;
    join(path, sizeof(path), dir, "index.sqlite");
    assert_int_equal(stat(path, &st), 0);
    junk = fx_malloc((size_t)st.st_size - 4096);
    for (off_t i = 0; i < st.st_size - 4096; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, (size_t)st.st_size - 4096, 4096), st.st_size - 4096);
    close(fd);
    free(junk);
}

/* A damaged index (garbage after its first page, cut in half, a header that
 * is not SQLite's) is moved aside and an empty one started: the open says
 * so, what it named is a miss (fetched again), and the next open is quiet. */
static void test_damaged_index(void **state)
{
    struct fx *f = *state;
    char path[512];
    join(path, sizeof(path), f->dir, "index.sqlite");
    for (int mode = 0; mode < 3; mode++) {
        struct cache_disk *c = open_cache(f->dir, NULL);
        struct chunk a = make_chunk(100000, 40 + (uint64_t)mode);
        struct stat st;
        int fd;

        insert(c, &a);
        cache_disk_close(c); /* the last connection: the WAL is checkpointed in */
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size >= 3 * 4096);
        if (mode == 0) {
            junk_pages(f->dir);
        } else {
            fd = open(path, O_RDWR | O_CLOEXEC);
            assert_true(fd >= 0);
            if (mode == 1)
                assert_int_equal(ftruncate(fd, st.st_size / 2 + 100), 0);
            else
                assert_int_equal(pwrite(fd, "not an SQLite database", 22, 0), 22);
            close(fd);
        }
        c = open_cache(f->dir, NULL);
        if (!strstr(cache_disk_open_note(c), "moved aside to"))
            fail_msg("damage %d: note '%s'", mode, cache_disk_open_note(c));
        assert_int_equal(check_chunk(c, &a), 0);
        assert_int_equal(stats(c).entries, 0);
        insert(c, &a); /* the new index works */
        cache_disk_close(c);
        /* each damaged index kept under a name of its own, in the same second too */
        assert_int_equal(count_named(f->dir, "index.sqlite.damaged-"), mode + 1);
        c = open_cache(f->dir, NULL);
        assert_string_equal(cache_disk_open_note(c), "");
        assert_int_equal(check_chunk(c, &a), 1);
        cache_disk_close(c);
        free(a.bytes);
    }
}

/* A damaged index that another handle (process) has open is not moved
 * aside: the open fails and says so; once that one is closed it is. One
 * whose header names a newer schema is refused as a newer lazyimg's. */
static void test_damaged_index_in_use(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {
        .dir = f->dir, .flush_ms = 20, .store = "test", .pack_below = CACHE_DISK_PACK_OFF};
    struct cache_disk *c = open_cache(f->dir, NULL), *other = NULL, *user;
    struct chunk a = make_chunk(100000, 50);
    char err[2048] = "", path[512];
    int fd;

    insert(c, &a);
    cache_disk_close(c);
    user = open_cache(f->dir, NULL); /* the other user */
    junk_pages(f->dir);
    assert_int_equal(cache_disk_open(&o, &other, err, sizeof(err)), -EIO);
    if (!strstr(err, "another process has this cache open"))
        fail_msg("in use: '%s'", err);
    assert_int_equal(count_named(f->dir, "index.sqlite.damaged-"), 0);
    cache_disk_close(user);
    c = open_cache(f->dir, NULL);
    assert_non_null(strstr(cache_disk_open_note(c), "moved aside to"));
    cache_disk_close(c);

    /* a newer lazyimg's index: never moved aside */
    c = open_cache(f->dir, NULL);
    insert(c, &a);
    cache_disk_close(c);
    junk_pages(f->dir);
    join(path, sizeof(path), f->dir, "index.sqlite");
    fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\0\0\0\x63", 4, 60), 4); /* user_version 99 */
    {
        /* and a schema this SQLite cannot read (as a newer one's may be) */
        uint8_t junk[4096 - 100];
        memset(junk, 0x5a, sizeof(junk));
        assert_int_equal(pwrite(fd, junk, sizeof(junk), 100), (ssize_t)sizeof(junk));
    }
    close(fd);
    err[0] = '\0';
    assert_int_equal(cache_disk_open(&o, &other, err, sizeof(err)), -EIO);
    if (!strstr(err, "schema version 99 is newer"))
        fail_msg("newer: '%s'", err);
    assert_int_equal(count_named(f->dir, "index.sqlite.damaged-"), 1);
    free(a.bytes);
}

/* ---- trust: nobody else may be able to change the cache ------------------- */

/* One integer from the index, read with SQLite directly. */
static int64_t db_int(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    join(path, sizeof(path), dir, "index.sqlite");
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Damage where an open does not look (the chunks table's root page): a
 * mount's open goes on, the cache commands' (check_index) find it and
 * replace the index. */
static void test_damaged_index_checked(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.check_index = true};
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(1000, 60);
    char path[512];
    uint8_t junk[4096];
    int64_t root;
    int fd;

    insert(c, &a);
    cache_disk_close(c);
    root = db_int(f->dir, "SELECT rootpage FROM sqlite_master WHERE name = 'chunks'");
    assert_true(root > 1);
    join(path, sizeof(path), f->dir, "index.sqlite");
    memset(junk, 0xa5, sizeof(junk));
    fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)(root - 1) * 4096), 4096);
    close(fd);
    c = open_cache(f->dir, NULL);
    assert_string_equal(cache_disk_open_note(c), "");
    cache_disk_close(c);
    c = open_cache(f->dir, &o);
    if (!strstr(cache_disk_open_note(c), "(PRAGMA quick_check); it was moved aside to"))
        fail_msg("checked: '%s'", cache_disk_open_note(c));
    assert_int_equal(stats(c).entries, 0);
    cache_disk_close(c);
    free(a.bytes);
}

/* cache_disk_open(@dir) fails with -EPERM and a message containing @needle. */
static void expect_refused(const char *dir, const char *needle)
{
    struct cache_disk_options o = {.dir = dir, .store = "test"};
    struct cache_disk *c = NULL;
    char err[512] = "";
    int r = cache_disk_open(&o, &c, err, sizeof(err));
    if (r != -EPERM || c || !strstr(err, needle))
        fail_msg("open %s: %d (expected -EPERM) with \"%s\" (expected \"%s\")", dir, r, err,
                 needle);
}

static void expect_opens(const char *dir)
{
    cache_disk_close(open_cache(dir, NULL));
}

static void test_trust_modes_links(void **state)
{
    struct fx *f = *state;
    char dir[512], path[600], path2[600], msg[1400];
    struct chunk a = make_chunk(CACHE_DISK_BLOCK, 40);
    struct cache_disk *c;
    char hex[2 * CACHE_KEY_LEN + 1];
    struct stat st;
    const char *made[] = {"", "/data", "/tmp", "/data/sha256"};

    join(dir, sizeof(dir), f->dir, "c");
    c = open_cache(dir, NULL);
    insert(c, &a);
    cache_disk_sync(c);
    cache_disk_close(c);
    /* what the cache creates passes its own checks */
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", dir, made[i]);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 077, 0);
        assert_int_equal(st.st_uid, geteuid());
    }
    expect_opens(dir);

    /* a directory others may write */
    assert_int_equal(chmod(dir, 0777), 0);
    snprintf(msg, sizeof(msg),
             "cache directory %s is writable by group or others (mode 0777); refusing to use it "
             "(chmod go-w %s, or choose another --cache-dir)",
             dir, dir);
    expect_refused(dir, msg);
    assert_int_equal(chmod(dir, 0770), 0);
    expect_refused(dir, "(mode 0770)");
    assert_int_equal(chmod(dir, 0755), 0); /* readable by others is fine */
    expect_opens(dir);

    /* data/, tmp/ and a fan-out directory */
    fx_hex(a.key, CACHE_KEY_LEN, hex);
    snprintf(path, sizeof(path), "%s/data/sha256/%.2s", dir, hex);
    assert_int_equal(chmod(path, 0777), 0);
    expect_refused(dir, path);
    assert_int_equal(chmod(path, 0700), 0);
    join(path, sizeof(path), dir, "data");
    assert_int_equal(chmod(path, 0757), 0);
    expect_refused(dir, "/data is writable by group or others (mode 0757)");
    assert_int_equal(chmod(path, 0700), 0);
    join(path, sizeof(path), dir, "tmp");
    assert_int_equal(chmod(path, 0702), 0);
    expect_refused(dir, "/tmp is writable by group or others");
    assert_int_equal(chmod(path, 0700), 0);
    expect_opens(dir);

    /* a symbolic link for index.sqlite (to a good index), for a fan-out
     * directory, for data/, and for the directory itself */
    join(path, sizeof(path), dir, "index.sqlite");
    join(path2, sizeof(path2), dir, "real.sqlite");
    assert_int_equal(rename(path, path2), 0);
    assert_int_equal(symlink("real.sqlite", path), 0);
    snprintf(msg, sizeof(msg), "cache file %s is a symbolic link; refusing to use it", path);
    expect_refused(dir, msg);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rename(path2, path), 0);
    expect_opens(dir);
    assert_int_equal(check_chunk(c = open_cache(dir, NULL), &a), 1);
    cache_disk_close(c);

    snprintf(path, sizeof(path), "%s/data/sha256/%.2s", dir, hex);
    snprintf(path2, sizeof(path2), "%s/elsewhere", f->dir);
    assert_int_equal(rename(path, path2), 0);
    assert_int_equal(symlink(path2, path), 0);
    expect_refused(dir, "is a symbolic link");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rename(path2, path), 0);

    join(path, sizeof(path), f->dir, "link");
    assert_int_equal(symlink(dir, path), 0);
    expect_refused(path, "is a symbolic link");
    assert_int_equal(unlink(path), 0);
    expect_opens(dir);
    free(a.bytes);
}

static void test_trust_parent(void **state)
{
    struct fx *f = *state;
    char parent[512], dir[600];

    join(parent, sizeof(parent), f->dir, "p");
    assert_int_equal(mkdir(parent, 0700), 0);
    join(dir, sizeof(dir), parent, "c");
    expect_opens(dir);
    /* others could rename the directory away and put theirs in its place */
    assert_int_equal(chmod(parent, 0777), 0);
    expect_refused(dir, "is writable by group or others and not sticky (mode 0777)");
    /* as in /tmp, the sticky bit forbids that */
    assert_int_equal(chmod(parent, 01777), 0);
    expect_opens(dir);
}

/* As root: files and directories of another user. */
static void test_trust_owner(void **state)
{
    struct fx *f = *state;
    const uid_t other = 65534;
    char dir[512], path[600], msg[1400];
    struct chunk a = make_chunk(CACHE_DISK_BLOCK, 41);
    struct cache_disk *c;
    int fd;

    if (geteuid() != 0) {
        skip();
        return;
    }
    join(dir, sizeof(dir), f->dir, "c");
    c = open_cache(dir, NULL);
    insert(c, &a);
    cache_disk_sync(c);
    cache_disk_close(c);

    assert_int_equal(chown(dir, other, other), 0);
    snprintf(msg, sizeof(msg),
             "cache directory %s is owned by uid 65534, not by this user (uid 0); refusing to "
             "use it",
             dir);
    expect_refused(dir, msg);
    assert_int_equal(chown(dir, 0, 0), 0);

    join(path, sizeof(path), dir, "index.sqlite");
    assert_int_equal(chown(path, other, other), 0);
    expect_refused(dir, "index.sqlite is owned by uid 65534");
    assert_int_equal(chown(path, 0, 0), 0);

    /* a -shm file planted by someone else */
    join(path, sizeof(path), dir, "index.sqlite-shm");
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chown(path, other, other), 0);
    expect_refused(dir, "index.sqlite-shm is owned by uid 65534");
    assert_int_equal(unlink(path), 0);

    join(path, sizeof(path), dir, "data");
    assert_int_equal(chown(path, other, other), 0);
    expect_refused(dir, "/data is owned by uid 65534");
    assert_int_equal(chown(path, 0, 0), 0);

    /* the parent: another user's directory (root's is fine) */
    join(path, sizeof(path), f->dir, "p");
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(chown(path, other, other), 0);
    join(dir, sizeof(dir), path, "c");
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_refused(dir, "is owned by uid 65534, not by this user or root");
    free(a.bytes);
}

/* A data file that is a symbolic link or another user's is never served. */
static void test_trust_data_files(void **state)
{
    struct fx *f = *state;
    struct chunk a = make_chunk(2 * CACHE_DISK_BLOCK, 42), b = make_chunk(CACHE_DISK_BLOCK, 43);
    struct cache_disk *c = open_cache(f->dir, NULL);
    char path[512], target[600];

    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);
    cache_disk_close(c);
    /* a: a link to a file with the right bytes, elsewhere */
    data_path(f->dir, &a, path, sizeof(path));
    join(target, sizeof(target), f->dir, "a.copy");
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    c = open_cache(f->dir, NULL);
    assert_int_equal(check_chunk(c, &a), 0);
    if (geteuid() == 0) {
        data_path(f->dir, &b, path, sizeof(path));
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(check_chunk(c, &b), 0);
    }
    cache_disk_sync(c);
    assert_int_equal(stats(c).bad_entries, geteuid() == 0 ? 2 : 1);
    assert_int_equal(count_rows(f->dir), geteuid() == 0 ? 0 : 1);
    cache_disk_close(c);
    free(a.bytes);
    free(b.bytes);
}

/* cache_disk_peek() finds entries without touching last_use or counters. */
static void test_peek_changes_nothing(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(3 * CACHE_DISK_BLOCK + 5, 44), b = make_chunk(1000, 45);
    const char *use_sql = "SELECT last_use FROM chunks";
    const char *hits_sql = "SELECT hits + misses FROM stores WHERE name = 'test'";
    struct cache_disk_handle *h = NULL;
    int64_t use0, counted0;
    uint64_t len = 0;

    insert(c, &a);
    cache_disk_sync(c);
    use0 = db_int(f->dir, use_sql);
    counted0 = db_int(f->dir, hits_sql);
    assert_true(use0 > 0);
    sleep_ms(5);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cache_disk_peek(c, a.algo, a.key, &len), 1);
        assert_int_equal(len, a.len);
        assert_int_equal(cache_disk_peek(c, b.algo, b.key, &len), 0);
    }
    assert_int_equal(cache_disk_peek(c, a.algo, a.key, NULL), 1);
    assert_int_equal(stats(c).hits, 0);
    assert_int_equal(stats(c).misses, 0);
    sleep_ms(50); /* past flush_ms: anything batched would be written */
    cache_disk_sync(c);
    assert_int_equal(db_int(f->dir, use_sql), use0);
    assert_int_equal(db_int(f->dir, hits_sql), counted0);

    /* the same check sees what a lookup does */
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    cache_disk_release(c, h);
    cache_disk_sync(c);
    assert_true(db_int(f->dir, use_sql) > use0);
    assert_int_equal(stats(c).hits, 1);
    cache_disk_close(c);
    assert_int_equal(db_int(f->dir, hits_sql), counted0 + 1);
    free(a.bytes);
    free(b.bytes);
}

static void test_corrupt_byte(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(4 * CACHE_DISK_BLOCK, 5), b = make_chunk(4 * CACHE_DISK_BLOCK, 6);
    struct cache_disk_handle *h = NULL, *h2 = NULL;
    char path[512];
    uint8_t *buf = fx_malloc(a.len);

    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);
    /* a: corrupted before any lookup; b: while its handle is open */
    data_path(f->dir, &a, path, sizeof(path));
    flip_byte(path, 2 * CACHE_DISK_BLOCK + 17);
    assert_int_equal(check_chunk(c, &b), 1);
    data_path(f->dir, &b, path, sizeof(path));
    flip_byte(path, 3);

    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    /* blocks that are intact still read */
    assert_int_equal(cache_disk_read(c, h, 0, 2 * CACHE_DISK_BLOCK, buf), 0);
    assert_memory_equal(buf, a.bytes, 2 * CACHE_DISK_BLOCK);
    /* the bad block, read partly, fails: no byte of it is returned */
    assert_int_equal(cache_disk_read(c, h, 2 * CACHE_DISK_BLOCK + 100, 10, buf), -EBADMSG);
    /* the handle stays usable by its holder, the entry is gone for everyone else */
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 0);
    cache_disk_release(c, h);

    /* two readers of b: the first to read it finds it bad (counted, dropped),
     * the other is told it was (-ESTALE), so it is counted once */
    assert_int_equal(cache_disk_lookup(c, b.algo, b.key, &h), 1);
    assert_int_equal(cache_disk_lookup(c, b.algo, b.key, &h2), 1);
    assert_ptr_equal(h, h2);
    assert_int_equal(cache_disk_read(c, h, 0, b.len, buf), -EBADMSG);
    assert_int_equal(cache_disk_read(c, h2, 0, b.len, buf), -ESTALE);
    cache_disk_release(c, h);
    cache_disk_release(c, h2);
    assert_int_equal(cache_disk_lookup(c, b.algo, b.key, &h), 0);

    cache_disk_sync(c);
    assert_int_equal(stats(c).bad_entries, 2);
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(count_rows(f->dir), 0);
    assert_int_equal(count_files(f->dir, "data"), 0);

    /* fetched again, it is cached again */
    insert(c, &a);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &a), 1);
    free(buf);
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

static void test_truncated_file(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(2 * CACHE_DISK_BLOCK + 10, 7);
    struct cache_disk_handle *h = NULL;
    char path[512];
    uint8_t *buf = fx_malloc(a.len);

    insert(c, &a);
    cache_disk_sync(c);
    data_path(f->dir, &a, path, sizeof(path));
    assert_int_equal(truncate(path, (off_t)a.len - 20), 0);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    assert_int_equal(cache_disk_read(c, h, 0, CACHE_DISK_BLOCK, buf), 0);
    assert_int_equal(cache_disk_read(c, h, a.len - 5, 5, buf), -EBADMSG);
    cache_disk_release(c, h);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 0);
    cache_disk_sync(c);
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(count_files(f->dir, "data"), 0);
    free(buf);
    free(a.bytes);
    cache_disk_close(c);
}

static void test_missing_file(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(1000, 8);
    struct cache_disk_handle *h = NULL;
    char path[512];

    insert(c, &a);
    cache_disk_sync(c);
    data_path(f->dir, &a, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 0);
    cache_disk_sync(c);
    assert_int_equal(count_rows(f->dir), 0);
    assert_int_equal(stats(c).entries, 0);
    free(a.bytes);
    cache_disk_close(c);
}

/* An entry evicted by another instance is a miss for this one. */
static void test_evicted_elsewhere(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c1 = open_cache(f->dir, NULL), *c2 = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(5000, 9);
    struct cache_disk_handle *h = NULL, *held = NULL;
    uint8_t buf[100];
    uint64_t evicted = 0;

    insert(c1, &a);
    cache_disk_sync(c1);
    assert_int_equal(check_chunk(c1, &a), 1); /* c1 keeps the handle open */
    assert_int_equal(cache_disk_lookup(c1, a.algo, a.key, &held), 1);
    assert_int_equal(cache_disk_gc(c2, 0, &evicted), 0);
    assert_int_equal(evicted, 1);
    assert_int_equal(cache_disk_lookup(c1, a.algo, a.key, &h), 0);
    /* a handle held across the eviction still reads the right bytes */
    assert_int_equal(cache_disk_read(c1, held, 100, sizeof(buf), buf), 0);
    assert_memory_equal(buf, a.bytes + 100, sizeof(buf));
    cache_disk_release(c1, held);
    /* and it can come back */
    insert(c2, &a);
    cache_disk_sync(c2);
    assert_int_equal(check_chunk(c1, &a), 1);
    free(a.bytes);
    cache_disk_close(c1);
    cache_disk_close(c2);
}

static struct cache_disk_gen gen_of(struct cache_disk *c)
{
    struct cache_disk_mark m;
    assert_int_equal(cache_disk_mark(c, 0, &m), 0);
    return m.gen;
}

/* The generation changes with every row added or removed, by this process
 * or another, and with a drop queued; not with lookups, peeks and touches. */
static void test_generation(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL), *other = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(4 * CACHE_DISK_BLOCK, 61), b = make_chunk(5000, 62);
    struct cache_disk_handle *h = NULL;
    struct cache_disk_gen g0 = gen_of(c), g;
    uint8_t *buf = fx_malloc(a.len);
    char path[512];
    uint64_t evicted = 0;

    assert_int_equal(g0.changes, 0);
    insert(c, &a);
    cache_disk_sync(c);
    g = gen_of(c);
    assert_false(cache_disk_gen_equal(&g, &g0));
    assert_int_equal(g.changes, 1);
    assert_int_equal(g.entries, 1);

    /* reading changes nothing, though last_use is written */
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(cache_disk_peek(c, a.algo, a.key, NULL), 1);
    sleep_ms(50);
    cache_disk_sync(c);
    g0 = gen_of(c);
    assert_true(cache_disk_gen_equal(&g, &g0));

    /* another process's insert and eviction */
    insert(other, &b);
    cache_disk_sync(other);
    g = gen_of(c);
    assert_false(cache_disk_gen_equal(&g, &g0));
    assert_int_equal(g.changes, 2);
    assert_int_equal(cache_disk_gc(other, 0, &evicted), 0);
    assert_int_equal(evicted, 2);
    g0 = g;
    g = gen_of(c);
    assert_false(cache_disk_gen_equal(&g, &g0));
    assert_int_equal(g.changes, 4);
    assert_int_equal(g.entries, 0);

    /* a damaged entry: absent to peeks as soon as its drop is queued, and
     * the generation says so before the drop is written (a reader looks
     * first: a miss, then the insert) */
    assert_int_equal(check_chunk(c, &a), 0);
    insert(c, &a);
    cache_disk_sync(c);
    g0 = gen_of(c);
    data_path(f->dir, &a, path, sizeof(path));
    flip_byte(path, 5);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    assert_int_equal(cache_disk_read(c, h, 0, a.len, buf), -EBADMSG);
    cache_disk_release(c, h);
    g = gen_of(c);
    assert_false(cache_disk_gen_equal(&g, &g0));
    assert_int_equal(cache_disk_peek(c, a.algo, a.key, NULL), 0);
    cache_disk_sync(c);
    g0 = g;
    g = gen_of(c);
    assert_false(cache_disk_gen_equal(&g, &g0));
    assert_int_equal(g.changes, 6);

    /* a cache made before the count gets its row at the next open */
    cache_disk_close(other);
    cache_disk_close(c);
    {
        sqlite3 *db;
        join(path, sizeof(path), f->dir, "index.sqlite");
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(
            sqlite3_exec(db, "DELETE FROM meta WHERE key = 'changes'", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(db);
    }
    assert_int_equal(db_int(f->dir, "SELECT COUNT(*) FROM meta WHERE key = 'changes'"), 0);
    c = open_cache(f->dir, NULL);
    assert_int_equal(db_int(f->dir, "SELECT COUNT(*) FROM meta WHERE key = 'changes'"), 1);
    insert(c, &b);
    cache_disk_sync(c);
    assert_int_equal(gen_of(c).changes, 1);
    cache_disk_close(c);
    free(buf);
    free(a.bytes);
    free(b.bytes);
}

/* Runs @sql on the index directly (a write by another program). */
static void db_exec(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db;
    join(path, sizeof(path), dir, "index.sqlite");
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static struct cache_disk_mark mark_of(struct cache_disk *c)
{
    struct cache_disk_mark m;
    assert_int_equal(cache_disk_mark(c, 0, &m), 0);
    return m;
}

/* Whether @rows (@n of them) hold @x with its length. */
static bool rows_have(const struct cache_disk_row *rows, size_t n, const struct chunk *x)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].algo == x->algo && !memcmp(rows[i].key, x->key, CACHE_KEY_LEN) &&
            rows[i].len == x->len)
            return true;
    return false;
}

/* cache_disk_added_since() from @then finds one row added, @x's; the mark
 * after it in *@now. */
static void expect_added_one(struct cache_disk *c, const struct cache_disk_mark *then, size_t max,
                             const struct chunk *x, struct cache_disk_mark *now)
{
    struct cache_disk_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(cache_disk_added_since(c, then, max, &rows, &n, now), 1);
    assert_int_equal(n, 1);
    assert_true(rows_have(rows, n, x));
    free(rows);
}

/* The rows added since a mark, by this process or another; "cannot tell"
 * once a row was removed, past the caller's limit, and where the rows
 * created since are not those counted (an inserter whose clock went back, a
 * lazyimg that does not count changes); rows committed late are found with
 * a window. */
static void test_added_since(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL), *other = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(4 * CACHE_DISK_BLOCK, 71), b = make_chunk(5000, 72),
                 d = make_chunk(3000, 73), e = make_chunk(2000, 74), g = make_chunk(1000, 75),
                 k = make_chunk(1500, 76);
    struct cache_disk_mark m0 = mark_of(c), m1, m2, now;
    struct cache_disk_row *rows = NULL;
    uint64_t evicted = 0;
    size_t n = 0;
    char sql[256];

    assert_int_equal(db_int(f->dir, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' "
                                    "AND name = 'chunks_created'"),
                     1);
    assert_int_equal(m0.newest, 0);
    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);
    assert_int_equal(cache_disk_added_since(c, &m0, 10, &rows, &n, &m1), 1);
    assert_int_equal(n, 2);
    assert_true(rows_have(rows, n, &a));
    assert_true(rows_have(rows, n, &b));
    assert_true(m1.newest > 0);
    assert_int_equal(m1.gen.entries, 2);
    free(rows);
    /* nothing since */
    assert_int_equal(cache_disk_added_since(c, &m1, 10, &rows, &n, &now), 1);
    assert_int_equal(n, 0);
    assert_null(rows);
    assert_true(cache_disk_gen_equal(&now.gen, &m1.gen));
    /* another process's insert; one row past the caller's limit */
    insert(other, &d);
    cache_disk_sync(other);
    expect_added_one(c, &m1, 1, &d, &m2);
    assert_int_equal(cache_disk_added_since(c, &m0, 2, &rows, &n, &now), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cache_disk_added_since(c, &m0, 3, &rows, &n, &now), 1);
    assert_int_equal(n, 3);
    free(rows);

    /* a row removed (another process's eviction): cannot tell */
    assert_int_equal(cache_disk_gc(other, 4000 + 2 * CACHE_DISK_BLOCK, &evicted), 0);
    assert_true(evicted >= 1);
    assert_int_equal(cache_disk_added_since(c, &m2, 10, &rows, &n, &now), 0);
    assert_null(rows);
    /* ... and from the mark after it, the additions again */
    m2 = mark_of(c);
    insert(c, &e);
    cache_disk_sync(c);
    expect_added_one(c, &m2, 10, &e, &now);

    /* a row whose creation time is not after the mark's newest (its
     * inserter's clock went back) */
    m2 = now;
    insert(c, &g);
    cache_disk_sync(c);
    snprintf(sql, sizeof(sql), "UPDATE chunks SET created = 1 WHERE len = %zu", g.len);
    db_exec(f->dir, sql);
    assert_int_equal(cache_disk_added_since(c, &m2, 10, &rows, &n, &now), CACHE_DISK_ADDED_LATE);
    /* another process's batch committed after the mark, its row created
     * before the mark's newest: late without a window, found with one (the
     * rows of the window's end come again) */
    assert_int_equal(cache_disk_mark(c, 10 * 1000000, &m2), 0);
    assert_int_equal(m2.window, 10 * 1000000);
    assert_true(m2.recent >= 1);
    m1 = mark_of(c);
    insert(c, &k);
    cache_disk_sync(c);
    snprintf(sql, sizeof(sql), "UPDATE chunks SET created = %lld WHERE len = %zu",
             (long long)(m2.newest - 1000), k.len);
    db_exec(f->dir, sql);
    assert_int_equal(cache_disk_added_since(c, &m1, 10, &rows, &n, &now), CACHE_DISK_ADDED_LATE);
    assert_int_equal(cache_disk_added_since(c, &m2, 10, &rows, &n, &now), 1);
    assert_int_equal(n, 1 + m2.recent);
    assert_true(rows_have(rows, n, &k));
    assert_int_equal(now.window, m2.window);
    free(rows);
    /* a lazyimg that does not count changes inserted a row */
    m2 = mark_of(c);
    db_exec(f->dir, "UPDATE meta SET value = value + 1 WHERE key = 'entries'");
    assert_int_equal(cache_disk_added_since(c, &m2, 10, &rows, &n, &now), 0);
    db_exec(f->dir, "UPDATE meta SET value = value - 1 WHERE key = 'entries'");

    /* an index made before chunks_created gets it at the next open */
    cache_disk_close(other);
    cache_disk_close(c);
    db_exec(f->dir, "DROP INDEX chunks_created");
    assert_int_equal(db_int(f->dir, "SELECT COUNT(*) FROM sqlite_master WHERE name = "
                                    "'chunks_created'"),
                     0);
    c = open_cache(f->dir, NULL);
    assert_int_equal(db_int(f->dir, "SELECT COUNT(*) FROM sqlite_master WHERE name = "
                                    "'chunks_created'"),
                     1);
    cache_disk_close(c);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    free(e.bytes);
    free(g.bytes);
    free(k.bytes);
}

/* Every row at once, with the mark of the same snapshot; none past the
 * caller's limit; a row whose drop is queued has length 0 (absent to a peek). */
static void test_rows(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(4 * CACHE_DISK_BLOCK, 81), b = make_chunk(5000, 82);
    struct cache_disk_mark m, now;
    struct cache_disk_row *rows = NULL;
    struct cache_disk_handle *h = NULL;
    uint8_t *buf = fx_malloc(a.len);
    char path[512];
    size_t n = 0;

    assert_int_equal(cache_disk_rows(c, 0, 0, &rows, &n, &m), 1);
    assert_int_equal(n, 0);
    assert_null(rows);
    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);
    assert_int_equal(cache_disk_rows(c, 1, 0, &rows, &n, &m), 0);
    assert_null(rows);
    assert_int_equal(m.gen.entries, 2);
    assert_int_equal(cache_disk_rows(c, 2, 0, &rows, &n, &m), 1);
    assert_int_equal(n, 2);
    assert_true(rows_have(rows, n, &a));
    assert_true(rows_have(rows, n, &b));
    free(rows);
    now = mark_of(c);
    assert_true(cache_disk_gen_equal(&now.gen, &m.gen));
    assert_int_equal(now.newest, m.newest);
    /* a damaged entry: its drop queued, not yet written */
    data_path(f->dir, &a, path, sizeof(path));
    flip_byte(path, 5);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    assert_int_equal(cache_disk_read(c, h, 0, a.len, buf), -EBADMSG);
    cache_disk_release(c, h);
    assert_int_equal(cache_disk_rows(c, 2, 0, &rows, &n, &m), 1);
    assert_false(rows_have(rows, n, &a));
    assert_true(rows_have(rows, n, &b));
    free(rows);
    cache_disk_close(c);
    free(buf);
    free(a.bytes);
    free(b.bytes);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_max_open(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.max_open = 3};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk ch[10];
    int fds;

    for (int i = 0; i < 10; i++) {
        ch[i] = make_chunk(3000, 100 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &ch[0]), 1);
    fds = count_fds();
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++)
            assert_int_equal(check_chunk(c, &ch[i]), 1);
    }
    /* at most max_open handles stay open (the pool may add read connections) */
    assert_true(count_fds() <= fds + 3);
    cache_disk_sync(c);
    for (int i = 0; i < 10; i++)
        free(ch[i].bytes);
    cache_disk_close(c);
}

/* ---- eviction ------------------------------------------------------------- */

/* Allocated bytes of one chunk of @len on this filesystem. */
static uint64_t alloc_of(const char *dir, size_t len)
{
    char sub[512];
    struct cache_disk *c;
    struct chunk ch = make_chunk(len, 999);
    uint64_t a;
    snprintf(sub, sizeof(sub), "%s/probe", dir);
    c = open_cache(sub, NULL);
    insert(c, &ch);
    cache_disk_sync(c);
    a = stats(c).bytes_allocated;
    cache_disk_close(c);
    free(ch.bytes);
    assert_true(a > 0);
    return a;
}

static void test_eviction_lru(void **state)
{
    struct fx *f = *state;
    const size_t len = 64 * KIB;
    uint64_t a = alloc_of(f->dir, len);
    /* high watermark 9.5 chunks, low 9 */
    struct cache_disk_options o = {.budget = 10 * a, .min_age_sec = 1};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk ch[11];
    struct cache_disk_stats st;

    for (int i = 0; i < 11; i++)
        ch[i] = make_chunk(len, 200 + (uint64_t)i);
    /* 0..8, each used after the previous one */
    for (int i = 0; i < 9; i++) {
        insert(c, &ch[i]);
        cache_disk_sync(c);
        sleep_ms(5);
    }
    assert_int_equal(stats(c).entries, 9);
    /* 0 becomes the most recently used */
    assert_int_equal(check_chunk(c, &ch[0]), 1);
    cache_disk_sync(c);
    sleep_ms(1100); /* all older than the minimum age */
    insert(c, &ch[9]);
    insert(c, &ch[10]);
    cache_disk_sync(c);

    st = stats(c);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.entries, 9);
    assert_true(st.bytes_allocated <= o.budget * 90 / 100);
    assert_int_equal(check_chunk(c, &ch[1]), 0);
    assert_int_equal(check_chunk(c, &ch[2]), 0);
    assert_int_equal(check_chunk(c, &ch[0]), 1);
    for (int i = 3; i < 11; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    assert_int_equal(count_files(f->dir, "data"), 9);
    /* the evictions' deletions were durable before the files went */
    assert_true(atomic_load(&durable_deletes) >= 1);
    assert_int_equal(atomic_load(&undurable_deletes), 0);
    for (int i = 0; i < 11; i++)
        free(ch[i].bytes);
    cache_disk_close(c);
}

/* A burst does not evict itself: entries younger than min_age stay. */
static void test_min_age(void **state)
{
    struct fx *f = *state;
    const size_t len = 64 * KIB;
    uint64_t a = alloc_of(f->dir, len);
    struct cache_disk_options o = {.budget = 2 * a}; /* default minimum age: 60 s */
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk ch[5];

    for (int i = 0; i < 5; i++) {
        ch[i] = make_chunk(len, 300 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    cache_disk_sync(c);
    /* the first two fill the budget; the rest of the burst is not cached
     * rather than evicting it (or overrunning the budget) */
    assert_int_equal(stats(c).evictions, 0);
    assert_int_equal(stats(c).entries, 2);
    assert_int_equal(stats(c).insert_skipped, 3);
    assert_int_equal(stats(c).over_budget, 3); /* the reason, for the exit line */
    assert_int_equal(stats(c).enospc, 0);
    assert_true(stats(c).bytes_allocated <= o.budget);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), i < 2 ? 1 : 0);
        free(ch[i].bytes);
    }
    cache_disk_close(c);
}

/* The budget holds while more than it is written through the cache. */
static void test_budget_under_stream(void **state)
{
    struct fx *f = *state;
    const size_t len = 128 * KIB;
    uint64_t a = alloc_of(f->dir, len);
    struct cache_disk_options o = {.budget = 8 * a, .min_age_sec = 1};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk ch[31];

    for (int i = 0; i < 31; i++)
        ch[i] = make_chunk(len, 400 + (uint64_t)i);
    for (int i = 0; i < 30; i++) {
        insert(c, &ch[i]);
        cache_disk_sync(c);
        /* a hard cap: never above the budget, at any point of the stream */
        assert_true(stats(c).bytes_allocated <= o.budget);
        if (i == 9)
            sleep_ms(1100); /* the eight cached so far become evictable */
    }
    /* the old ones made room for newer ones */
    assert_true(stats(c).evictions >= 8);
    for (int i = 0; i < 10; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 0);
    sleep_ms(1100);
    insert(c, &ch[30]);
    cache_disk_sync(c);
    assert_true(stats(c).bytes_allocated <= o.budget * 90 / 100);
    assert_int_equal(check_chunk(c, &ch[30]), 1);
    assert_int_equal(count_files(f->dir, "data"), (int)stats(c).entries);
    for (int i = 0; i < 31; i++)
        free(ch[i].bytes);
    cache_disk_close(c);
}

/* A writer that keeps up with a trickle of inserts still commits them in one
 * transaction per flush interval, not one per chunk (each commit costs a
 * directory fsync and a WAL write). */
static void test_batched_commits(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.flush_ms = 1500};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk ch[20];
    uint64_t before;

    for (int i = 0; i < 20; i++)
        ch[i] = make_chunk(64 * KIB, 900 + (uint64_t)i);
    before = stats(c).sqlite_writes;
    done_calls = 0;
    for (int i = 0; i < 20; i++) {
        insert(c, &ch[i]);
        sleep_ms(20); /* the queue runs empty after every insert */
    }
    /* the bytes are handed back once written, before the commit */
    for (int i = 0; i < 500 && done_calls < 20; i++)
        sleep_ms(10);
    assert_int_equal(done_calls, 20);
    cache_disk_sync(c);
    assert_int_equal(stats(c).inserts, 20);
    assert_true(stats(c).sqlite_writes - before <= 2);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), 1);
        free(ch[i].bytes);
    }
    cache_disk_close(c);
}

/* Whether files in @dir can be written with O_DIRECT, and whether such
 * writes bypass the page cache there (ext4, XFS, btrfs do; tmpfs copies). */
static bool direct_supported(const char *dir, bool *bypasses)
{
    char path[512];
    struct statfs sfs;
    int fd;
    snprintf(path, sizeof(path), "%s/direct-probe", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    unlink(path);
    assert_int_equal(statfs(dir, &sfs), 0);
    *bypasses = fd >= 0 && (sfs.f_type == 0xEF53 /* ext2/3/4 */ || sfs.f_type == 0x58465342 ||
                            sfs.f_type == 0x9123683E /* btrfs */);
    return fd >= 0;
}

/*
 * Files are written with O_DIRECT where the filesystem allows: whole pages
 * directly (from a page-aligned or an unaligned buffer), a partial last page
 * through the page cache, a chunk shorter than a page through the page cache
 * only; every byte reads back. With inserts queued behind the one being
 * written beyond direct_backlog, the writer stops waiting for the disk.
 */
static void test_direct_writes(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.direct_backlog = 1};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk page = make_chunk(64 * KIB, 1300), odd = make_chunk(3 * 4096 + 17, 1301);
    struct chunk tiny = make_chunk(100, 1302), q[4];
    bool bypasses, direct = direct_supported(f->dir, &bypasses);
    void *aligned = NULL;
    char path[512];
    uint64_t before;
    int calls;

    /* from a page-aligned buffer, no bounce */
    assert_int_equal(posix_memalign(&aligned, 4096, page.len), 0);
    memcpy(aligned, page.bytes, page.len);
    cache_disk_insert(c, page.algo, page.key, aligned, page.len, aligned, free_done);
    cache_disk_sync(c); /* one at a time: nothing queued behind */
    insert(c, &odd);    /* fx_memdup: not page-aligned */
    cache_disk_sync(c);
    insert(c, &tiny); /* no whole page */
    cache_disk_sync(c);
    assert_int_equal(stats(c).direct_inserts, direct ? 2 : 0);
    if (bypasses) {
        /* written around the page cache (before anything reads them): only
         * the partial last page is there */
        data_path(f->dir, &page, path, sizeof(path));
        assert_int_equal(resident_pages(path, false), 0);
        data_path(f->dir, &odd, path, sizeof(path));
        assert_true(resident_pages(path, false) <= 1);
    }
    assert_int_equal(check_chunk(c, &page), 1);
    assert_int_equal(check_chunk(c, &odd), 1);
    assert_int_equal(check_chunk(c, &tiny), 1);

    /* a backlog: the first insert stalls in write() with nothing queued
     * (direct), three queue up behind it; the next two then find 2 and 1
     * inserts behind them (page cache), the last none (direct) */
    for (int i = 0; i < 4; i++)
        q[i] = make_chunk(64 * KIB, 1310 + (uint64_t)i);
    before = stats(c).direct_inserts;
    set_gate(true);
    calls = atomic_load(&write_calls);
    insert(c, &q[0]);
    while (atomic_load(&write_calls) == calls)
        sleep_ms(1);
    for (int i = 1; i < 4; i++)
        insert(c, &q[i]);
    set_gate(false);
    cache_disk_sync(c);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(check_chunk(c, &q[i]), 1);
        free(q[i].bytes);
    }
    assert_int_equal(stats(c).direct_inserts - before, direct ? 2 : 0);
    free(page.bytes);
    free(odd.bytes);
    free(tiny.bytes);
    cache_disk_close(c);
}

/* Writes @path's dirty pages and drops all of them from the page cache. */
static void evict(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
}

/* Loads @ch (looked up) into @buf: cache_disk_load()'s result. */
static int load(struct cache_disk *c, const struct chunk *ch, uint8_t *buf)
{
    struct cache_disk_handle *h = NULL;
    int r;
    assert_int_equal(cache_disk_lookup(c, ch->algo, ch->key, &h), 1);
    r = cache_disk_load(c, h, buf);
    cache_disk_release(c, h);
    return r;
}

/* What direct_reads should count for one load that could use O_DIRECT:
 * exactly one where the filesystem bypasses the page cache, none where it
 * has no O_DIRECT; elsewhere (tmpfs, whose pages are always resident, or a
 * filesystem not known here) at most one. */
static void expect_direct(struct cache_disk *c, uint64_t before, bool direct, bool bypasses)
{
    uint64_t n = stats(c).direct_reads - before;
    if (bypasses)
        assert_int_equal(n, 1);
    else if (!direct)
        assert_int_equal(n, 0);
    else
        assert_true(n <= 1);
}

/*
 * A large chunk whose pages are not in the page cache is loaded with
 * O_DIRECT where the filesystem allows (and, being loaded, not hinted into
 * the page cache first): its bytes arrive checked, its file's pages stay out
 * of the page cache but the partial last one, and a corrupt block is refused
 * as on the page cache path. A chunk all in the page cache, a buffer not on
 * a page and a chunk under 1 MiB go through the page cache.
 */
static void test_direct_loads(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk big = make_chunk(2 * MIB + 4096 + 100, 1400), bad = make_chunk(MIB, 1401);
    struct chunk small = make_chunk(MIB - 4096, 1402);
    bool bypasses, direct = direct_supported(f->dir, &bypasses);
    struct cache_disk_handle *h = NULL;
    void *mem = NULL;
    uint8_t *buf;
    char path[512];
    uint64_t before;

    assert_int_equal(posix_memalign(&mem, 4096, big.len + 4096), 0);
    buf = mem;
    insert(c, &big);
    insert(c, &bad);
    insert(c, &small);
    cache_disk_sync(c);

    data_path(f->dir, &big, path, sizeof(path));
    evict(path);
    if (bypasses)
        assert_int_equal(resident_pages(path, false), 0);
    assert_int_equal(load(c, &big, buf), 0);
    assert_memory_equal(buf, big.bytes, big.len);
    expect_direct(c, 0, direct, bypasses);
    if (bypasses)
        assert_true(resident_pages(path, false) <= 1);
    /* a hint for a chunk a load reads with O_DIRECT is refused; one the
     * reader will read (the loaders' queue full) is given */
    assert_int_equal(cache_disk_lookup(c, big.algo, big.key, &h), 1);
    assert_int_equal(cache_disk_prefetch(c, h, true), !direct);
    assert_true(cache_disk_prefetch(c, h, false));
    cache_disk_release(c, h);

    /* all its pages in the page cache (read by someone else): from there */
    assert_int_equal(check_chunk(c, &big), 1);
    if (bypasses)
        assert_int_equal(resident_pages(path, false), (long)((big.len + 4095) / 4096));
    before = stats(c).direct_reads;
    memset(buf, 0, big.len);
    assert_int_equal(load(c, &big, buf), 0);
    assert_memory_equal(buf, big.bytes, big.len);
    /* a buffer not on a page: the page cache too */
    evict(path);
    assert_int_equal(load(c, &big, buf + 1), 0);
    assert_memory_equal(buf + 1, big.bytes, big.len);
    data_path(f->dir, &small, path, sizeof(path));
    evict(path);
    assert_int_equal(load(c, &small, buf), 0);
    assert_memory_equal(buf, small.bytes, small.len);
    assert_int_equal(stats(c).direct_reads, before);

    /* a flipped byte on disk: refused, counted and dropped, whichever path */
    data_path(f->dir, &bad, path, sizeof(path));
    flip_byte(path, 3 * CACHE_DISK_BLOCK + 5);
    evict(path);
    before = stats(c).direct_reads;
    assert_int_equal(load(c, &bad, buf), -EBADMSG);
    expect_direct(c, before, direct, bypasses);
    assert_int_equal(cache_disk_lookup(c, bad.algo, bad.key, &h), 0);
    cache_disk_sync(c);
    assert_int_equal(stats(c).bad_entries, 1);

    free(mem);
    free(big.bytes);
    free(bad.bytes);
    free(small.bytes);
    cache_disk_close(c);
}

/* Evicts @ch's file and loads it into @buf: the load's result; the bytes
 * must be the chunk's when it succeeds. */
static int load_evicted(struct fx *f, struct cache_disk *c, const struct chunk *ch, uint8_t *buf)
{
    char path[512];
    int r;
    data_path(f->dir, ch, path, sizeof(path));
    evict(path);
    memset(buf, 0xA5, ch->len);
    r = load(c, ch, buf);
    if (r == 0)
        assert_memory_equal(buf, ch->bytes, ch->len);
    return r;
}

/* Loads @a with a fault armed (*@armed set to @value): through the page
 * cache, not counted as direct, the fault's path taken once (*@calls) where
 * the filesystem bypasses the page cache; then, disarmed, @b loads with
 * O_DIRECT again. */
static void fault_once(struct fx *f, struct cache_disk *c, const struct chunk *a,
                       const struct chunk *b, uint8_t *buf, atomic_int *armed, int value,
                       atomic_int *calls)
{
    bool bypasses, direct = direct_supported(f->dir, &bypasses);
    uint64_t before = stats(c).direct_reads;
    atomic_store(calls, 0);
    atomic_store(armed, value);
    assert_int_equal(load_evicted(f, c, a, buf), 0);
    assert_int_equal(stats(c).direct_reads, before);
    if (bypasses)
        assert_int_equal(atomic_load(calls), 1);
    atomic_store(armed, 0);
    assert_int_equal(load_evicted(f, c, b, buf), 0);
    expect_direct(c, before, direct, bypasses);
}

/*
 * What O_DIRECT does not manage is read through the page cache, and costs
 * no entry: a reopen that fails for one file (a stale handle) or a first
 * direct read that fails other than with EINVAL leaves direct loads on for
 * the next chunk; a direct read that comes up short (nothing, or not whole
 * pages) or fails part way is finished through the page cache; an error
 * there too is the load's -errno, and the entry stays. Only EINVAL (no
 * O_DIRECT here) turns direct loads off.
 */
static void test_direct_faults(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(2 * MIB + 4096 + 100, 1410), b = make_chunk(2 * MIB, 1411);
    bool bypasses, direct = direct_supported(f->dir, &bypasses);
    struct cache_disk_handle *h = NULL;
    void *mem = NULL;
    uint8_t *buf;
    uint64_t before;

    assert_int_equal(posix_memalign(&mem, 4096, a.len + 4096), 0);
    buf = mem;
    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);

    /* a reopen refused for this file only; a first direct read that fails
     * other than with EINVAL */
    fault_once(f, c, &a, &b, buf, &fail_reopen_errno, ESTALE, &reopen_calls);
    atomic_store(&direct_read_errno, EOPNOTSUPP);
    fault_once(f, c, &a, &b, buf, &direct_read_mode, DR_FAIL, &direct_read_calls);

    /* half read, then an I/O error: the rest from the page cache */
    atomic_store(&direct_read_calls, 0);
    atomic_store(&direct_read_mode, DR_HALF_THEN_FAIL);
    atomic_store(&direct_read_errno, EIO);
    before = stats(c).direct_reads;
    assert_int_equal(load_evicted(f, c, &a, buf), 0);
    expect_direct(c, before, direct, bypasses);
    if (bypasses)
        assert_int_equal(atomic_load(&direct_read_calls), 2);

    /* nothing, or less than a page, before the end of the file */
    atomic_store(&direct_read_mode, DR_ZERO);
    assert_int_equal(load_evicted(f, c, &a, buf), 0);
    atomic_store(&direct_read_mode, DR_ODD);
    before = stats(c).direct_reads;
    assert_int_equal(load_evicted(f, c, &b, buf), 0);
    expect_direct(c, before, direct, bypasses);

    /* the disk fails both ways: the error, and the entry stays */
    atomic_store(&direct_read_mode, DR_FAIL);
    atomic_store(&fail_pc_read_errno, EIO);
    assert_int_equal(load_evicted(f, c, &a, buf), -EIO);
    atomic_store(&direct_read_mode, DR_NONE);
    atomic_store(&fail_pc_read_errno, 0);
    assert_int_equal(cache_disk_lookup(c, a.algo, a.key, &h), 1);
    cache_disk_release(c, h);
    assert_int_equal(stats(c).bad_entries, 0);
    assert_int_equal(load_evicted(f, c, &a, buf), 0);

    /* EINVAL: no O_DIRECT on this filesystem, never again */
    atomic_store(&fail_reopen_errno, EINVAL);
    assert_int_equal(load_evicted(f, c, &a, buf), 0);
    atomic_store(&fail_reopen_errno, 0);
    atomic_store(&reopen_calls, 0);
    before = stats(c).direct_reads;
    assert_int_equal(load_evicted(f, c, &b, buf), 0);
    assert_int_equal(stats(c).direct_reads, before);
    assert_int_equal(atomic_load(&reopen_calls), 0);

    free(mem);
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

/* The writer goes on while the committer waits for the disk: batches queue
 * behind a commit whose fsync() stalls, and the writer's memory comes back;
 * the chunks written meanwhile are found and read before their commit. */
static void test_commits_queue(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL); /* flush_ms 20 */
    struct chunk ch[4];
    int fsyncs;

    for (int i = 0; i < 4; i++)
        ch[i] = make_chunk(64 * KIB, 1400 + (uint64_t)i);
    done_calls = 0;
    set_fsync_gate(true);
    fsyncs = atomic_load(&fsync_calls);
    insert(c, &ch[0]);
    while (atomic_load(&fsync_calls) == fsyncs) /* the committer is stuck in fsync() */
        sleep_ms(1);
    for (int i = 1; i < 4; i++) {
        insert(c, &ch[i]);
        sleep_ms(60); /* each in a batch of its own, handed over after 20 ms */
    }
    for (int i = 0; i < 200 && done_calls < 4; i++)
        sleep_ms(10);
    assert_int_equal(done_calls, 4);
    assert_int_equal(stats(c).inserts, 0); /* nothing committed yet */
    /* written, not committed: lookups find them and read them already */
    for (int i = 0; i < 4; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    assert_int_equal(count_rows(f->dir), 0);
    set_fsync_gate(false);
    cache_disk_sync(c);
    assert_int_equal(stats(c).inserts, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), 1);
        free(ch[i].bytes);
    }
    cache_disk_close(c);
}

/* A file written but not committed that fails its check is not handed out
 * again (it is forgotten and dropped; the chunk is a miss). */
static void test_pending_bad(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk ch = make_chunk(64 * KIB, 1500);
    struct cache_disk_handle *h = NULL;
    char path[1024];
    uint8_t *buf = fx_malloc(ch.len);
    struct dirent *de;
    DIR *d;
    int fd, fsyncs;

    set_fsync_gate(true);
    fsyncs = atomic_load(&fsync_calls);
    insert(c, &ch);
    while (atomic_load(&fsync_calls) == fsyncs) /* written; the commit is stuck */
        sleep_ms(1);
    snprintf(path, sizeof(path), "%s/tmp", f->dir);
    assert_non_null(d = opendir(path));
    while ((de = readdir(d)) && de->d_name[0] == '.')
        ;
    assert_non_null(de);
    snprintf(path, sizeof(path), "%s/tmp/%s", f->dir, de->d_name);
    closedir(d);
    assert_true((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0);
    assert_int_equal(pwrite(fd, "\xa5", 1, 1000), 1);
    close(fd);
    assert_int_equal(cache_disk_lookup(c, ch.algo, ch.key, &h), 1);
    assert_int_equal(cache_disk_read(c, h, 0, ch.len, buf), -EBADMSG);
    cache_disk_release(c, h);
    assert_int_equal(cache_disk_lookup(c, ch.algo, ch.key, &h), 0);
    set_fsync_gate(false);
    cache_disk_sync(c);
    free(buf);
    free(ch.bytes);
    cache_disk_close(c);
}

/* ---- maintenance ------------------------------------------------------------ */

static void test_gc_clear(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk ch[6];
    uint64_t a, evicted = 0;

    for (int i = 0; i < 6; i++) {
        ch[i] = make_chunk(64 * KIB, 600 + (uint64_t)i);
        insert(c, &ch[i]);
        cache_disk_sync(c);
        sleep_ms(3);
    }
    a = stats(c).bytes_allocated / 6;
    /* gc ignores the minimum age and evicts the least recently used */
    assert_int_equal(cache_disk_gc(c, 3 * a, &evicted), 0);
    assert_int_equal(evicted, 3);
    assert_int_equal(stats(c).entries, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 0);
    for (int i = 3; i < 6; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    assert_int_equal(cache_disk_gc(c, 100 * a, &evicted), 0);
    assert_int_equal(evicted, 0);

    assert_int_equal(cache_disk_clear(c), 0);
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(stats(c).bytes_allocated, 0);
    assert_int_equal(count_rows(f->dir), 0);
    assert_int_equal(count_files(f->dir, "data"), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), 0);
        free(ch[i].bytes);
    }
    cache_disk_close(c);
}

struct bad_report {
    int n;
    char keys[4][65];
    char why[4][160];
};

static void on_bad(const char *hex, const char *why, void *arg)
{
    struct bad_report *r = arg;
    if (r->n < 4) {
        snprintf(r->keys[r->n], sizeof(r->keys[0]), "%s", hex);
        snprintf(r->why[r->n], sizeof(r->why[0]), "%s", why);
    }
    r->n++;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void age_file(const char *path, int seconds)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= seconds;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* ---- packs ------------------------------------------------------------------ */

#define PACK_BELOW (256 * KIB)

static struct cache_disk *open_packed(const char *dir, struct cache_disk_options *o)
{
    struct cache_disk_options d = {0};
    if (!o)
        o = &d;
    o->pack_below = PACK_BELOW;
    return open_cache(dir, o);
}

/* The pack and offset of @ch in the index; 1 if it has a row. */
static int row_place(const char *dir, const struct chunk *ch, int64_t *pack, int64_t *off)
{
    char path[512];
    sqlite3 *db;
    sqlite3_stmt *st;
    int r = 0;
    snprintf(path, sizeof(path), "%s/index.sqlite", dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT pack, off FROM chunks WHERE algo = ?1 AND "
                                        "digest = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, (int)ch->algo);
    sqlite3_bind_blob(st, 2, ch->key, CACHE_KEY_LEN, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *pack = sqlite3_column_int64(st, 0);
        *off = sqlite3_column_int64(st, 1);
        r = 1;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

static void pack_file(const char *dir, int64_t pack, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/packs/%" PRId64, dir, pack);
    assert_true(n > 0 && (size_t)n < out_len);
}

static long long allocated_kib(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long long)st.st_blocks / 2;
}

/* Small chunks share one pack file, each on its own pages; large ones keep
 * a file each; everything reads back, from this process and the next. */
/* A packed chunk that another instance evicted (its pages punched out of a
 * pack that stays, being the first instance's) reads as a miss, not as a
 * damaged entry: "bad entries" are damage (a soak counted 11,216 false ones
 * in an hour of `cache gc` runs beside a reading daemon). */
static void test_pack_evicted_elsewhere(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c1 = open_packed(f->dir, NULL), *c2 = open_packed(f->dir, NULL);
    struct chunk a = make_chunk(5000, 3100);
    struct cache_disk_handle *h = NULL;
    uint8_t *buf = malloc(a.len);
    uint64_t evicted = 0;

    assert_non_null(buf);
    insert(c1, &a);
    cache_disk_sync(c1);
    assert_int_equal(check_chunk(c1, &a), 1); /* c1 keeps a handle on the pack */
    assert_int_equal(cache_disk_gc(c2, 0, &evicted), 0);
    assert_int_equal(evicted, 1);
    assert_int_equal(count_files(f->dir, "packs"), 1); /* c1's pack: still there */
    if (cache_disk_lookup(c1, a.algo, a.key, &h) == 1) {
        assert_int_not_equal(cache_disk_load(c1, h, buf), 0);
        cache_disk_release(c1, h);
    }
    assert_int_equal(stats(c1).bad_entries, 0);
    assert_int_equal(check_chunk(c1, &a), 0); /* a miss from now on */
    free(buf);
    free(a.bytes);
    cache_disk_close(c1);
    cache_disk_close(c2);
}

static void test_pack_layout(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    static const size_t lens[] = {1, 4096, 4097, 64 * KIB, 100000, PACK_BELOW - 1};
    enum { N = sizeof(lens) / sizeof(lens[0]) };
    struct chunk ch[N], big = make_chunk(PACK_BELOW, 2999);
    int64_t pack0 = 0;

    for (int i = 0; i < N; i++) {
        ch[i] = make_chunk(lens[i], 2900 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    insert(c, &big);
    cache_disk_sync(c);
    assert_int_equal(count_files(f->dir, "packs"), 1);
    assert_int_equal(count_files(f->dir, "data"), 1); /* the large one */
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    for (int i = 0; i < N; i++) {
        int64_t pack = 0, off = -1;
        assert_int_equal(check_chunk(c, &ch[i]), 1);
        assert_int_equal(row_place(f->dir, &ch[i], &pack, &off), 1);
        assert_true(pack > 0);
        assert_int_equal(off % 4096, 0);
        if (i == 0)
            pack0 = pack;
        assert_true(pack == pack0);
    }
    assert_int_equal(check_chunk(c, &big), 1);
    /* each packed chunk's pages count against the budget */
    assert_true(stats(c).bytes_allocated >= 4096 * N + big.len);
    cache_disk_close(c);

    c = open_packed(f->dir, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    /* a new process appends to a pack of its own */
    {
        struct chunk more = make_chunk(5000, 2998);
        insert(c, &more);
        cache_disk_sync(c);
        assert_int_equal(check_chunk(c, &more), 1);
        assert_int_equal(count_files(f->dir, "packs"), 2);
        free(more.bytes);
    }
    cache_disk_close(c);
    for (int i = 0; i < N; i++)
        free(ch[i].bytes);
    free(big.bytes);
}

/* Small chunks that come one by one, the queue running empty between them,
 * still go to the pack in whole stages, not a write each; a stage not full
 * is written soon (its chunks then complete) without a sync. */
static void test_pack_trickle(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    enum { N = 12 };
    struct chunk ch[N], last = make_chunk(3000, 3199);
    long before;

    clear_results();
    /* a pack exists before counting (its creation is not a stage write) */
    insert(c, &last);
    cache_disk_sync(c);
    before = atomic_load(&pwrite_calls);
    for (int i = 0; i < N; i++) {
        ch[i] = make_chunk(16 * KIB + (size_t)i, 3100 + (uint64_t)i);
        insert(c, &ch[i]);
        usleep(1000); /* the writer takes it and finds the queue empty */
    }
    /* done without a sync: the stage is written once it has lingered */
    for (int i = 0; i < 500 && atomic_load(&done_calls) < N + 1; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&done_calls), N + 1);
    assert_int_equal(results_of(1), N + 1);
    /* a write per STAGE_LINGER_MS (20) at most: one or two for the lot
     * (three if the machine paused the test), where each chunk had a write
     * of its own before */
    assert_true(atomic_load(&pwrite_calls) - before <= 3);
    cache_disk_sync(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), 1);
        free(ch[i].bytes);
    }
    cache_disk_close(c);
    free(last.bytes);
}

/* A damaged packed chunk is an error and dropped; its neighbours are not. */
static void test_pack_corrupt(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    struct chunk a = make_chunk(20000, 3000), b = make_chunk(70000, 3001);
    struct chunk d = make_chunk(3000, 3002);
    struct cache_disk_handle *h = NULL;
    char path[512];
    int64_t pack = 0, off = 0;
    uint8_t *buf = fx_malloc(b.len);
    struct bad_report rep = {0};
    uint64_t checked = 0;

    insert(c, &a);
    insert(c, &b);
    insert(c, &d);
    cache_disk_sync(c);
    assert_int_equal(row_place(f->dir, &b, &pack, &off), 1);
    pack_file(f->dir, pack, path, sizeof(path));
    flip_byte(path, off + 65536 + 10); /* b's second block */
    assert_int_equal(cache_disk_lookup(c, b.algo, b.key, &h), 1);
    assert_int_equal(cache_disk_read(c, h, 0, 100, buf), 0); /* the first block is fine */
    assert_int_equal(cache_disk_read(c, h, 0, b.len, buf), -EBADMSG);
    cache_disk_release(c, h);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(check_chunk(c, &d), 1);
    assert_int_equal(stats(c).bad_entries, 1);
    /* fetched again, it is appended anew */
    insert(c, &b);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &b), 1);

    /* verify re-hashes packed chunks too, and finds a damaged one */
    assert_int_equal(row_place(f->dir, &d, &pack, &off), 1);
    pack_file(f->dir, pack, path, sizeof(path));
    flip_byte(path, off + 2999);
    assert_int_equal(cache_disk_verify(c, &checked, on_bad, &rep), 1);
    assert_int_equal(checked, 3);
    assert_int_equal(rep.n, 1);
    assert_non_null(strstr(rep.why[0], "CRC"));
    assert_int_equal(check_chunk(c, &d), 0);
    assert_int_equal(check_chunk(c, &a), 1);
    free(buf);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    cache_disk_close(c);
}

/* verify reads large entries around the page cache where the filesystem
 * bypasses it (their pages stay out of it, the partial last one aside), and
 * finds a flipped byte there as anywhere. */
static void test_verify_direct(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(2 * MIB + 100, 1500), b = make_chunk(MIB, 1501);
    bool bypasses;
    struct bad_report rep = {0};
    char pa[512], pb[512];
    uint64_t checked = 0;

    direct_supported(f->dir, &bypasses);
    insert(c, &a);
    insert(c, &b);
    cache_disk_sync(c);
    data_path(f->dir, &a, pa, sizeof(pa));
    data_path(f->dir, &b, pb, sizeof(pb));
    flip_byte(pb, 5 * CACHE_DISK_BLOCK + 1);
    evict(pa);
    evict(pb);
    assert_int_equal(cache_disk_verify(c, &checked, on_bad, &rep), 1);
    assert_int_equal(checked, 2);
    assert_int_equal(rep.n, 1);
    assert_non_null(strstr(rep.why[0], "CRC mismatch in block 5"));
    if (bypasses)
        assert_true(resident_pages(pa, false) <= 1);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(check_chunk(c, &b), 0);
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

/* Eviction punches a packed chunk's pages; an empty pack is removed, but
 * not while its writer holds it. */
static void test_pack_evict(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    struct chunk ch[8];
    char path[512];
    int64_t pack = 0, off = 0;
    uint64_t evicted = 0;
    long long before;

    for (int i = 0; i < 8; i++) {
        ch[i] = make_chunk(128 * KIB, 3100 + (uint64_t)i);
        insert(c, &ch[i]);
        cache_disk_sync(c);
        sleep_ms(3);
    }
    assert_int_equal(row_place(f->dir, &ch[0], &pack, &off), 1);
    pack_file(f->dir, pack, path, sizeof(path));
    before = allocated_kib(path);
    if (before < 8 * 128)
        skip(); /* a filesystem that does not allocate as written */
    /* the least recently used half goes; their pages with them */
    assert_int_equal(cache_disk_gc(c, stats(c).bytes_allocated / 2, &evicted), 0);
    assert_int_equal(evicted, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 0);
    for (int i = 4; i < 8; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    assert_true(allocated_kib(path) <= before - 4 * 128);
    /* everything gone: the pack stays while this writer may append to it */
    assert_int_equal(cache_disk_clear(c), 0);
    assert_int_equal(count_rows(f->dir), 0);
    assert_int_equal(count_files(f->dir, "packs"), 1);
    assert_true(allocated_kib(path) < 128);
    cache_disk_close(c);
    /* ... and goes once nobody does */
    c = open_packed(f->dir, NULL);
    assert_int_equal(cache_disk_gc(c, 0, NULL), 0);
    assert_int_equal(count_files(f->dir, "packs"), 0);
    cache_disk_close(c);
    for (int i = 0; i < 8; i++)
        free(ch[i].bytes);
}

/* Two caches on one directory: neither removes the other's pack while it
 * writes to it; a pack left by a crash (no row names it) is removed by gc,
 * one still locked is not. */
/*
 * A batch of lookups is one read transaction: a chunk another cache commits
 * after the batch's first lookup is not seen until the batch ends (one
 * snapshot), and the lookups answer as without a batch otherwise.
 */
static void test_lookup_batch(void **state)
{
    struct fx *f = *state;
    struct cache_disk *a = open_cache(f->dir, NULL), *b = open_cache(f->dir, NULL);
    struct chunk x = make_chunk(5000, 71), y = make_chunk(7000, 72), z = make_chunk(3000, 73);
    uint64_t len = 0;

    insert(a, &x);
    cache_disk_sync(a);
    cache_disk_batch_begin(a);
    assert_int_equal(check_chunk(a, &x), 1);
    assert_int_equal(check_chunk(a, &z), 0);
    /* committed by the other cache now: not in this batch's snapshot */
    insert(b, &y);
    cache_disk_sync(b);
    assert_int_equal(check_chunk(b, &y), 1);
    assert_int_equal(check_chunk(a, &y), 0);
    assert_int_equal(cache_disk_peek(a, y.algo, y.key, &len), 0);
    /* nested: counted, the outer end closes it */
    cache_disk_batch_begin(a);
    cache_disk_batch_end(a);
    assert_int_equal(check_chunk(a, &y), 0);
    cache_disk_batch_end(a);
    assert_int_equal(check_chunk(a, &y), 1);
    assert_int_equal(cache_disk_peek(a, y.algo, y.key, &len), 1);
    assert_int_equal(len, y.len);
    /* an end without a begin does nothing */
    cache_disk_batch_end(a);
    assert_int_equal(check_chunk(a, &x), 1);
    cache_disk_close(b);
    cache_disk_close(a);
    free(x.bytes);
    free(y.bytes);
    free(z.bytes);
}

static void test_pack_sharing(void **state)
{
    struct fx *f = *state;
    struct cache_disk *a = open_packed(f->dir, NULL), *b = open_packed(f->dir, NULL);
    struct chunk x = make_chunk(9000, 3200), y = make_chunk(9000, 3201);
    char orphan[512], held[512];
    int fd;

    insert(a, &x);
    cache_disk_sync(a);
    assert_int_equal(check_chunk(b, &x), 1);
    /* b clears everything, a's pack included, but a still holds it */
    assert_int_equal(cache_disk_clear(b), 0);
    assert_int_equal(count_files(f->dir, "packs"), 1);
    insert(a, &y);
    cache_disk_sync(a);
    assert_int_equal(check_chunk(b, &y), 1);
    assert_int_equal(check_chunk(a, &y), 1);

    /* a crash's leftovers: a pack nobody names and nobody holds */
    snprintf(orphan, sizeof(orphan), "%s/packs/12345", f->dir);
    write_file(orphan, "leftover", 8);
    /* and one a live writer holds (its rows to come) */
    snprintf(held, sizeof(held), "%s/packs/12346", f->dir);
    write_file(held, "written", 7);
    fd = open(held, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    assert_int_equal(cache_disk_gc(b, UINT64_MAX, NULL), 0);
    assert_int_equal(access(orphan, F_OK), -1);
    assert_int_equal(access(held, F_OK), 0);
    close(fd);
    assert_int_equal(cache_disk_verify(b, NULL, NULL, NULL), 0);
    assert_int_equal(access(held, F_OK), -1);
    assert_int_equal(check_chunk(b, &y), 1); /* a's pack is in use */
    cache_disk_close(a);
    cache_disk_close(b);
    free(x.bytes);
    free(y.bytes);
}

/* A failed append or sync of a pack loses those inserts, never serves them;
 * the cache goes on. */
static void test_pack_write_fails(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    struct chunk a = make_chunk(5000, 3300), b = make_chunk(5000, 3301);
    struct chunk d = make_chunk(5000, 3302);

    insert(c, &a);
    cache_disk_sync(c);
    atomic_store(&fail_pwrite_errno, ENOSPC);
    clear_results();
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_pwrite_errno, 0);
    assert_int_equal(results_of(-ENOSPC), 1);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(stats(c).last_insert_error, -ENOSPC);
    atomic_store(&fail_fdatasync_errno, EIO);
    insert(c, &d);
    cache_disk_sync(c);
    atomic_store(&fail_fdatasync_errno, 0);
    assert_int_equal(check_chunk(c, &d), 0);
    assert_int_equal(count_rows(f->dir), 1);
    assert_int_equal(check_chunk(c, &a), 1);
    /* inserts paused after ENOSPC resume after a while; d is not refused */
    sleep_ms(5100);
    insert(c, &d);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &d), 1);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    cache_disk_close(c);
}

/* A pack whose sync failed takes no more chunks (a write-back error is
 * reported once, to whichever sync comes first): the next go to a new pack;
 * what the failed one held before stays readable. */
static void test_pack_sync_fails(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    struct chunk a = make_chunk(5000, 3330), b = make_chunk(5000, 3331);
    struct chunk d = make_chunk(5000, 3332);
    int64_t pack_a = 0, pack_d = 0, off = 0;

    insert(c, &a);
    cache_disk_sync(c);
    assert_int_equal(row_place(f->dir, &a, &pack_a, &off), 1);
    atomic_store(&fail_fdatasync_errno, EIO);
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_fdatasync_errno, 0);
    assert_int_equal(check_chunk(c, &b), 0);
    insert(c, &d);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &d), 1);
    assert_int_equal(row_place(f->dir, &d, &pack_d, &off), 1);
    assert_true(pack_d != pack_a);
    assert_int_equal(check_chunk(c, &a), 1);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    cache_disk_close(c);
}

/* A stage write that fails part way (the filesystem filled after some
 * blocks) leaves no allocated pages behind that no row names: on a full
 * filesystem nothing else would give them back. */
static void test_pack_write_fails_part_way(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_packed(f->dir, NULL);
    struct chunk a = make_chunk(5000, 3310), b[4];
    char path[512];
    int64_t pack = 0, off = 0;
    long long before;

    insert(c, &a);
    cache_disk_sync(c);
    assert_int_equal(row_place(f->dir, &a, &pack, &off), 1);
    pack_file(f->dir, pack, path, sizeof(path));
    before = allocated_kib(path);
    clear_results();
    atomic_store(&pwrite_half_first, true);
    atomic_store(&fail_pwrite_errno, ENOSPC);
    for (int i = 0; i < 4; i++) {
        b[i] = make_chunk(20000, 3311 + (uint64_t)i);
        insert(c, &b[i]);
    }
    cache_disk_sync(c);
    atomic_store(&fail_pwrite_errno, 0);
    assert_false(atomic_load(&pwrite_half_first)); /* half of the stage was written */
    assert_int_equal(results_of(-ENOSPC), 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(check_chunk(c, &b[i]), 0);
        free(b[i].bytes);
    }
    assert_int_equal(allocated_kib(path), before);
    assert_int_equal(check_chunk(c, &a), 1);
    free(a.bytes);
    cache_disk_close(c);
}

/* A chunk whose stage write failed (EIO) and that is inserted again in the
 * same batch is written again: the batch does not count it as held. */
static void test_pack_write_fails_retried(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.flush_ms = 10000};
    struct cache_disk *c = open_packed(f->dir, &o);
    struct chunk a = make_chunk(5000, 3320), b = make_chunk(6000, 3321);

    clear_results();
    atomic_store(&fail_pwrite_errno, EIO);
    insert(c, &a);
    /* the stage is written once it has lingered, the batch still open */
    for (int i = 0; i < 500 && results_of(-EIO) < 1; i++)
        sleep_ms(10);
    atomic_store(&fail_pwrite_errno, 0);
    assert_int_equal(results_of(-EIO), 1);
    insert(c, &b);
    insert(c, &a);
    cache_disk_sync(c);
    assert_int_equal(results_of(0), 0);
    assert_int_equal(results_of(1), 2);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(check_chunk(c, &b), 1);
    assert_int_equal(count_rows(f->dir), 2);
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

/* A chunk queued twice in one batch is written once, among many. */
static void test_dedup_batch(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.flush_ms = 10000};
    struct cache_disk *c = open_packed(f->dir, &o);
    enum { N = 300 };
    struct chunk *ch = calloc(N, sizeof(*ch));

    assert_non_null(ch);
    clear_results();
    for (int i = 0; i < N; i++) {
        ch[i] = make_chunk(4000 + (size_t)i, 3500 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    for (int i = N - 1; i >= 0; i--)
        insert(c, &ch[i]);
    cache_disk_sync(c);
    assert_int_equal(results_of(1), N);
    assert_int_equal(results_of(0), N);
    assert_int_equal(count_rows(f->dir), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(check_chunk(c, &ch[i]), 1);
        free(ch[i].bytes);
    }
    free(ch);
    cache_disk_close(c);
}

/* Full packs are closed and new ones started, within one batch too (more
 * than the writer keeps locks for: it then goes on past the size); every
 * chunk reads back, here and in the next process, and clearing the cache
 * removes every pack once nobody holds them. */
static void test_pack_rollover(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.flush_ms = 10000, .pack_bytes = 32 * KIB};
    struct cache_disk *c = open_packed(f->dir, &o);
    enum { N = 40 };
    struct chunk ch[N];
    int packs;

    for (int i = 0; i < N; i++) {
        ch[i] = make_chunk(10 * KIB, 3600 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    cache_disk_sync(c);
    packs = count_files(f->dir, "packs");
    /* 2 chunks of 12 KiB per 32 KiB pack, but a batch retires 8 packs at
     * most (their locks go with it): 9 packs, the last one past the size */
    assert_true(packs >= 9 && packs < N / 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    /* the next batch goes on from the last pack */
    {
        struct chunk more = make_chunk(10 * KIB, 3699);
        insert(c, &more);
        cache_disk_sync(c);
        assert_int_equal(check_chunk(c, &more), 1);
        assert_int_equal(count_files(f->dir, "packs"), packs + 1);
        free(more.bytes);
    }
    cache_disk_close(c);
    c = open_packed(f->dir, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1);
    assert_int_equal(cache_disk_verify(c, NULL, NULL, NULL), 0);
    assert_true(count_files(f->dir, "packs") >= packs);
    assert_int_equal(cache_disk_clear(c), 0);
    assert_int_equal(count_files(f->dir, "packs"), 0);
    cache_disk_close(c);
    for (int i = 0; i < N; i++)
        free(ch[i].bytes);
}

/* An index made before packs (schema 1) is upgraded in place. */
static void test_pack_upgrade(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk old = make_chunk(7000, 3400), fresh = make_chunk(7000, 3401);
    char path[512];
    sqlite3 *db;

    insert(c, &old);
    cache_disk_sync(c);
    cache_disk_close(c);
    snprintf(path, sizeof(path), "%s/index.sqlite", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP INDEX chunks_pack; ALTER TABLE chunks DROP COLUMN pack;"
                                  "ALTER TABLE chunks DROP COLUMN off; PRAGMA user_version = 1;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    c = open_packed(f->dir, NULL);
    assert_int_equal(check_chunk(c, &old), 1);
    insert(c, &fresh);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &fresh), 1);
    assert_int_equal(count_files(f->dir, "packs"), 1);
    cache_disk_close(c);
    free(old.bytes);
    free(fresh.bytes);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

/* What crashed processes left (a data file and a pack no row names, a stale
 * temp file of a dead process) is removed and counted by cache_disk_tidy();
 * entries, a fresh temp file and a live process's stay. */
static void test_tidy(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk good = make_chunk(3 * CACHE_DISK_BLOCK, 720), orphan = make_chunk(10, 721);
    struct cache_disk_tidy_stats st = {99, 99, 99};
    char path[512], hex[65];
    static uint8_t junk[8192];
    pid_t gone = dead_pid();

    insert(c, &good);
    cache_disk_sync(c);
    fx_hex(orphan.key, CACHE_KEY_LEN, hex);
    snprintf(path, sizeof(path), "%s/data/sha256/%.2s", f->dir, hex);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/data/sha256/%.2s/%s.12345", f->dir, hex, hex);
    write_file(path, orphan.bytes, orphan.len);
    snprintf(path, sizeof(path), "%s/packs", f->dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/packs/12345", f->dir);
    write_file(path, "leftover", 8);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.1", f->dir, (int)gone);
    write_file(path, junk, sizeof(junk));
    age_file(path, 120);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.2", f->dir, (int)gone); /* fresh */
    write_file(path, "x", 1);
    /* a live process that started before its file was written (init) */
    snprintf(path, sizeof(path), "%s/tmp/1.1.3", f->dir);
    write_file(path, "x", 1);
    age_file(path, 120);

    assert_int_equal(cache_disk_tidy(c, &st), 0);
    assert_int_equal(st.files, 3);
    assert_true(st.bytes >= 3 * 4096 + sizeof(junk) - 4096);
    /* the dead process's fresh file: a minute old in about 61 s */
    assert_true(st.again_sec >= 55 && st.again_sec <= 61);
    assert_int_equal(count_files(f->dir, "tmp"), 2);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.1", f->dir, (int)gone);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/packs/12345", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_files(f->dir, "data"), 1);
    assert_int_equal(stats(c).entries, 1);
    assert_int_equal(check_chunk(c, &good), 1);
    /* nothing left the second time */
    assert_int_equal(cache_disk_tidy(c, &st), 0);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.bytes, 0);
    /* a live process's fresh file is no reason to come again */
    snprintf(path, sizeof(path), "%s/tmp/%d.1.2", f->dir, (int)gone);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/tmp/%d.9.9", f->dir, (int)getpid());
    write_file(path, "x", 1);
    assert_int_equal(cache_disk_tidy(c, &st), 0);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.again_sec, 0);
    assert_int_equal(unlink(path), 0);
    free(good.bytes);
    free(orphan.bytes);
    cache_disk_close(c);
}

static void test_verify(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk good = make_chunk(3 * CACHE_DISK_BLOCK, 700);
    struct chunk crc = make_chunk(2 * CACHE_DISK_BLOCK, 701);
    struct chunk wrong = make_chunk(1000, 702); /* bytes that are not its digest's */
    struct chunk sha512 = make_chunk(5000, 703), orphan = make_chunk(10, 704);
    /* decrypted chunks under keyed digests: not SHA-256 of their bytes, and
     * the cache has no key; only their CRCs can be checked */
    struct chunk keyed = make_chunk(4000, 705), keyed_crc = make_chunk(4000, 706);
    struct bad_report rep = {0};
    char path[512], hex[65], crc_hex[65], wrong_hex[65];
    unsigned mdlen = 0;
    uint64_t checked = 0;
    pid_t gone = dead_pid(), reused;

    sha512.algo = CACHE_ALGO_SHA512_256;
    assert_true(EVP_Digest(sha512.bytes, sha512.len, sha512.key, &mdlen, EVP_sha512_256(), NULL));
    wrong.key[0] ^= 1;
    keyed.algo = keyed_crc.algo = CACHE_ALGO_SHA256_KEYED;
    keyed.key[0] ^= 1;
    keyed_crc.key[0] ^= 1;
    insert(c, &keyed);
    insert(c, &keyed_crc);
    insert(c, &good);
    insert(c, &crc);
    insert(c, &wrong);
    insert(c, &sha512);
    cache_disk_sync(c);
    data_path(f->dir, &crc, path, sizeof(path));
    flip_byte(path, CACHE_DISK_BLOCK + 5);
    data_path(f->dir, &keyed_crc, path, sizeof(path));
    flip_byte(path, 5);
    /* an orphan data file, and temp files: stale, fresh, and a live process's */
    fx_hex(orphan.key, CACHE_KEY_LEN, hex);
    snprintf(path, sizeof(path), "%s/data/sha256/%.2s", f->dir, hex);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/data/sha256/%.2s/%s.12345", f->dir, hex, hex);
    write_file(path, orphan.bytes, orphan.len);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.1", f->dir, (int)gone);
    write_file(path, "x", 1);
    age_file(path, 120);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.2", f->dir, (int)gone);
    write_file(path, "x", 1);
    /* a live process that started before its file was written (init) */
    snprintf(path, sizeof(path), "%s/tmp/1.1.3", f->dir);
    write_file(path, "x", 1);
    age_file(path, 120);
    /* pids alive again since their files were written: this process's
     * (say a daemon restarted as PID 1 of a container), a new child's */
    snprintf(path, sizeof(path), "%s/tmp/%d.1.4", f->dir, (int)getpid());
    write_file(path, "x", 1);
    age_file(path, 120);
    reused = fork();
    assert_true(reused >= 0);
    if (reused == 0) {
        pause();
        _exit(0);
    }
    snprintf(path, sizeof(path), "%s/tmp/%d.1.5", f->dir, (int)reused);
    write_file(path, "x", 1);
    age_file(path, 120);
    assert_int_equal(count_files(f->dir, "data"), 7);

    assert_int_equal(cache_disk_verify(c, &checked, on_bad, &rep), 3);
    assert_int_equal(checked, 6);
    assert_int_equal(rep.n, 3);
    fx_hex(crc.key, CACHE_KEY_LEN, crc_hex);
    fx_hex(wrong.key, CACHE_KEY_LEN, wrong_hex);
    fx_hex(keyed_crc.key, CACHE_KEY_LEN, hex);
    for (int i = 0; i < 3; i++) {
        if (!strcmp(rep.keys[i], crc_hex) || !strcmp(rep.keys[i], hex)) {
            assert_non_null(strstr(rep.why[i], "CRC"));
        } else {
            assert_string_equal(rep.keys[i], wrong_hex);
            assert_non_null(strstr(rep.why[i], "digest"));
        }
    }
    assert_string_not_equal(rep.keys[0], rep.keys[1]);
    assert_int_equal(stats(c).entries, 3);
    assert_int_equal(check_chunk(c, &good), 1);
    assert_int_equal(check_chunk(c, &sha512), 1);
    assert_int_equal(check_chunk(c, &keyed), 1);
    assert_int_equal(check_chunk(c, &crc), 0);
    assert_int_equal(check_chunk(c, &keyed_crc), 0);
    assert_int_equal(count_files(f->dir, "data"), 3); /* bad entries and the orphan gone */
    kill(reused, SIGKILL);
    assert_int_equal(waitpid(reused, NULL, 0), reused);
    assert_int_equal(count_files(f->dir, "tmp"), 2); /* the fresh one and init's */
    snprintf(path, sizeof(path), "%s/tmp/1.1.3", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/tmp/%d.1.1", f->dir, (int)gone);
    assert_int_equal(access(path, F_OK), -1);

    /* a clean cache verifies clean */
    rep.n = 0;
    assert_int_equal(cache_disk_verify(c, &checked, on_bad, &rep), 0);
    assert_int_equal(checked, 3);
    assert_int_equal(rep.n, 0);
    free(good.bytes);
    free(crc.bytes);
    free(wrong.bytes);
    free(sha512.bytes);
    free(orphan.bytes);
    free(keyed.bytes);
    free(keyed_crc.bytes);
    cache_disk_close(c);
}

struct prof_seen {
    int n;
    char keys[8][512];
    size_t counts[8];
};

static void on_profile(const struct cache_disk_profile_info *p, void *arg)
{
    struct prof_seen *s = arg;
    if (s->n < 8) {
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", p->key);
        s->counts[s->n++] = p->count;
    }
}

/* Read profiles: saved and loaded in order, the newest few kept per key,
 * listed newest first, cleared by key or all, and left alone by
 * cache_disk_clear. */
static void test_profiles(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct cache_disk_profile_info info;
    struct prof_seen seen = {0};
    uint64_t offs[5] = {48u << 20, 0, 60u << 20, UINT64_C(1) << 40, 4096}, *got = NULL, removed;
    size_t n = 0;

    assert_int_equal(cache_disk_profile_load(c, "s\na", &got, &n, NULL), -ENOENT);
    assert_int_equal(cache_disk_profile_save(c, "s\na", "a/t1", offs, 0), -EINVAL);
    for (size_t k = 1; k <= 5; k++) {
        assert_int_equal(cache_disk_profile_save(c, "s\na", "a/t1", offs, k), 0);
        sleep_ms(2); /* created is in µs: distinct and ordered */
    }
    assert_int_equal(cache_disk_profile_save(c, "s\nb", "b/t1", offs + 1, 2), 0);
    assert_int_equal(cache_disk_profile_load(c, "s\na", &got, &n, &info), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(got, offs, sizeof(offs));
    assert_string_equal(info.image, "a/t1");
    assert_int_equal(info.count, 5);
    free(got);
    /* the newest CACHE_PROFILE_KEEP of "a" (5, 4, 3 offsets), then "b" */
    assert_int_equal(cache_disk_profile_list(c, NULL, on_profile, &seen), CACHE_PROFILE_KEEP + 1);
    assert_int_equal(seen.counts[0], 5);
    assert_int_equal(seen.counts[1], 4);
    assert_int_equal(seen.counts[2], 3);
    assert_string_equal(seen.keys[3], "s\nb");
    /* chunks cleared: profiles stay */
    assert_int_equal(cache_disk_clear(c), 0);
    seen.n = 0;
    assert_int_equal(cache_disk_profile_list(c, "s\nb", on_profile, &seen), 1);
    assert_int_equal(cache_disk_profile_clear(c, "s\na", &removed), 0);
    assert_int_equal(removed, CACHE_PROFILE_KEEP);
    assert_int_equal(cache_disk_profile_load(c, "s\na", &got, &n, NULL), -ENOENT);
    assert_int_equal(cache_disk_profile_clear(c, NULL, &removed), 0);
    assert_int_equal(removed, 1);
    seen.n = 0;
    assert_int_equal(cache_disk_profile_list(c, NULL, on_profile, &seen), 0);
    cache_disk_close(c);
}

struct store_seen {
    int n;
    uint64_t inserts, entries, hits, misses;
};

static void on_store(const struct cache_disk_store_stats *s, void *arg)
{
    struct store_seen *seen = arg;
    seen->n++;
    seen->inserts += s->inserts;
    seen->entries += s->entries;
    seen->hits += s->hits;
    seen->misses += s->misses;
}

/* ---- sharing ---------------------------------------------------------------- */

#define SHARED_KEYS 96
#define SHARED_THREADS 4

struct sharer {
    struct cache_disk *c;
    struct chunk *chunks;
    int first;
};

static void *sharer_main(void *arg)
{
    struct sharer *s = arg;
    /* each thread inserts half of all keys, overlapping its neighbours */
    for (int i = 0; i < SHARED_KEYS / 2; i++) {
        const struct chunk *ch = &s->chunks[(s->first + i) % SHARED_KEYS];
        struct cache_disk_handle *h = NULL;
        uint8_t *copy = fx_memdup(ch->bytes, ch->len);
        if (cache_disk_lookup(s->c, ch->algo, ch->key, &h) == 1)
            cache_disk_release(s->c, h);
        cache_disk_insert(s->c, ch->algo, ch->key, copy, ch->len, copy, free_done);
        if (i % 16 == 15)
            cache_disk_sync(s->c);
    }
    cache_disk_sync(s->c);
    return NULL;
}

static void test_two_instances(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options oa = {.store = "a"}, ob = {.store = "b"};
    struct cache_disk *ca = open_cache(f->dir, &oa), *cb = open_cache(f->dir, &ob);
    struct chunk *chunks = calloc(SHARED_KEYS, sizeof(*chunks));
    struct sharer s[SHARED_THREADS];
    pthread_t t[SHARED_THREADS];
    struct store_seen seen = {0};
    struct cache_disk_stats sa, sb;

    assert_non_null(chunks);
    for (int i = 0; i < SHARED_KEYS; i++)
        chunks[i] = make_chunk(16 * KIB + (size_t)i * 1000, 800 + (uint64_t)i);
    done_calls = 0;
    for (int i = 0; i < SHARED_THREADS; i++) {
        s[i] = (struct sharer){i % 2 ? cb : ca, chunks, i * SHARED_KEYS / SHARED_THREADS};
        assert_int_equal(pthread_create(&t[i], NULL, sharer_main, &s[i]), 0);
    }
    for (int i = 0; i < SHARED_THREADS; i++)
        pthread_join(t[i], NULL);
    cache_disk_sync(ca);
    cache_disk_sync(cb);
    assert_int_equal(done_calls, SHARED_THREADS * SHARED_KEYS / 2);

    sa = stats(ca);
    sb = stats(cb);
    assert_int_equal(sa.entries, SHARED_KEYS);
    assert_int_equal(sb.entries, SHARED_KEYS);
    assert_int_equal(sa.inserts + sb.inserts, SHARED_KEYS);
    assert_int_equal(sa.last_insert_error, 0);
    assert_int_equal(sb.last_insert_error, 0);
    assert_int_equal(sa.bad_entries + sb.bad_entries, 0);
    assert_int_equal(count_rows(f->dir), SHARED_KEYS);
    assert_int_equal(count_files(f->dir, "data"), SHARED_KEYS);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    for (int i = 0; i < SHARED_KEYS; i++) {
        assert_int_equal(check_chunk(ca, &chunks[i]), 1);
        assert_int_equal(check_chunk(cb, &chunks[i]), 1);
    }
    cache_disk_sync(ca);
    cache_disk_sync(cb);
    assert_int_equal(cache_disk_store_stats(ca, on_store, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.inserts, SHARED_KEYS);
    assert_int_equal(seen.entries, SHARED_KEYS);
    assert_int_equal(seen.hits, sa.hits + sb.hits + 2 * SHARED_KEYS);
    assert_int_equal(seen.misses, sa.misses + sb.misses);
    assert_int_equal(cache_disk_verify(ca, NULL, NULL, NULL), 0);
    cache_disk_close(ca);
    cache_disk_close(cb);
    for (int i = 0; i < SHARED_KEYS; i++)
        free(chunks[i].bytes);
    free(chunks);
}

/*
 * Two daemons sharing a cache each hold the budget against what is
 * committed, so together they can commit past it; the excess is taken back
 * at the next commit, least recently used first, although every entry is
 * younger than the minimum age (the soak of 2026-12-06: two daemons whose
 * chunks stayed in use kept their cache 17-37% over its budget for an hour).
 */
static void test_shared_overshoot(void **state)
{
    struct fx *f = *state;
    const size_t len = 64 * KIB;
    uint64_t a = alloc_of(f->dir, len);
    /* minimum age 60 s; b commits only when synced: its three in one batch */
    struct cache_disk_options oa = {.store = "a", .budget = 4 * a},
                              ob = {.store = "b", .budget = 4 * a, .flush_ms = 600000};
    struct cache_disk *ca = open_cache(f->dir, &oa), *cb = open_cache(f->dir, &ob);
    struct chunk ch[6];
    struct cache_disk_stats st;

    for (int i = 0; i < 6; i++)
        ch[i] = make_chunk(len, 2600 + (uint64_t)i);
    /* b has committed nothing, so it last saw an empty cache */
    for (int i = 0; i < 3; i++) {
        insert(ca, &ch[i]);
        cache_disk_sync(ca);
        sleep_ms(5);
    }
    assert_int_equal(stats(ca).entries, 3);
    for (int i = 3; i < 6; i++)
        insert(cb, &ch[i]);
    cache_disk_sync(cb);

    st = stats(cb);
    assert_int_equal(st.inserts, 3);
    assert_true(st.bytes_allocated <= ob.budget);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.evictions, 2);
    /* the two least recently used went: a's first two */
    assert_int_equal(check_chunk(cb, &ch[0]), 0);
    assert_int_equal(check_chunk(cb, &ch[1]), 0);
    for (int i = 2; i < 6; i++)
        assert_int_equal(check_chunk(cb, &ch[i]), 1);
    assert_int_equal(cache_disk_verify(ca, NULL, NULL, NULL), 0);
    cache_disk_close(ca);
    cache_disk_close(cb);
    for (int i = 0; i < 6; i++)
        free(ch[i].bytes);
}

/* Processes creating the same new cache at once all succeed (WAL switch, schema). */
static void test_concurrent_create(void **state)
{
    struct fx *f = *state;
    enum { ROUNDS = 6, PROCS = 10 };

    for (int round = 0; round < ROUNDS; round++) {
        char dir[512], name[32];
        pid_t pids[PROCS];
        struct cache_disk *c;

        snprintf(name, sizeof(name), "new%d", round);
        join(dir, sizeof(dir), f->dir, name);
        for (int i = 0; i < PROCS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                struct cache_disk_options o = {.dir = dir, .flush_ms = 20};
                struct cache_disk *cc = NULL;
                struct chunk ch;
                int ok;
                if (cache_disk_open(&o, &cc, NULL, 0) < 0)
                    _exit(1);
                ch = make_chunk(1000, 1500 + (uint64_t)i);
                cache_disk_insert(cc, ch.algo, ch.key, ch.bytes, ch.len, NULL, NULL);
                cache_disk_sync(cc);
                ok = stats(cc).inserts == 1;
                cache_disk_close(cc);
                free(ch.bytes);
                _exit(ok ? 0 : 2);
            }
        }
        for (int i = 0; i < PROCS; i++) {
            int st = 0;
            assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        }
        c = open_cache(dir, NULL);
        assert_int_equal(stats(c).entries, PROCS);
        assert_int_equal(cache_disk_verify(c, NULL, NULL, NULL), 0);
        cache_disk_close(c);
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct inserter {
    struct cache_disk *c;
    struct chunk ch;
    atomic_bool returned;
};

static void *insert_thread(void *arg)
{
    struct inserter *in = arg;
    insert(in->c, &in->ch);
    atomic_store(&in->returned, true);
    return NULL;
}

/*
 * A full queue makes inserts wait for room: while the writer is stuck they
 * give up after stall_ms with -EAGAIN (counted), and a waiting insert goes in
 * as soon as the writer takes the next item. Every completion says what
 * happened to its chunk.
 */
static void test_queue_full(void **state)
{
    struct fx *f = *state;
    struct cache_disk_options o = {.queue_bytes = 1000, .stall_ms = 300};
    struct cache_disk *c = open_cache(f->dir, &o);
    struct chunk first = make_chunk(100, 900), dup = make_chunk(100, 900);
    struct chunk q[10], late = make_chunk(100, 990);
    struct inserter in = {.c = c};
    pthread_t t;
    uint64_t start;
    int calls;

    clear_results();
    set_gate(true);
    calls = atomic_load(&write_calls);
    insert(c, &first);
    while (atomic_load(&write_calls) == calls) /* the writer is now stuck in write() */
        sleep_ms(1);
    /* the one being written and 9 x 100 bytes: the queue is full (items the
     * writer has taken count until written: their bytes are still held) */
    for (int i = 0; i < 9; i++) {
        q[i] = make_chunk(100, 1000 + (uint64_t)i);
        insert(c, &q[i]);
    }
    assert_int_equal(done_calls, 0);
    /* one more waits stall_ms for the stuck writer, then gives up */
    start = mono_ms();
    insert(c, &late);
    assert_true(mono_ms() - start >= 300);
    assert_int_equal(done_calls, 1);
    assert_int_equal(results_of(-EAGAIN), 1);
    assert_int_equal(stats(c).insert_stalled, 1);
    assert_int_equal(stats(c).insert_waits, 1);
    assert_int_equal(stats(c).insert_skipped, 1);

    /* another waits, and goes in once the writer moves on */
    in.ch = make_chunk(100, 991);
    assert_int_equal(pthread_create(&t, NULL, insert_thread, &in), 0);
    sleep_ms(150);
    assert_false(atomic_load(&in.returned));
    set_gate(false);
    assert_int_equal(pthread_join(t, NULL), 0);
    cache_disk_sync(c);
    /* the same chunk as the first, which a reader holds open: the cache has it */
    assert_int_equal(check_chunk(c, &first), 1);
    insert(c, &dup);
    assert_int_equal(done_calls, 13);
    assert_int_equal(results_of(1), 11); /* first, q[0..8], in.ch */
    assert_int_equal(results_of(0), 1);  /* dup */
    assert_int_equal(stats(c).insert_stalled, 1);
    assert_int_equal(stats(c).insert_waits, 2);
    assert_int_equal(stats(c).entries, 11);
    assert_int_equal(check_chunk(c, &in.ch), 1);
    assert_int_equal(check_chunk(c, &late), 0);
    for (int i = 0; i < 9; i++)
        free(q[i].bytes);
    free(first.bytes);
    free(dup.bytes);
    free(late.bytes);
    free(in.ch.bytes);
    cache_disk_close(c);
}

/* ---- injected failures --------------------------------------------------- */

static void test_write_enospc(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(70 * KIB, 1100), b = make_chunk(70 * KIB, 1101);
    struct chunk later = make_chunk(5000, 1102);
    struct cache_disk_stats st;

    insert(c, &a);
    cache_disk_sync(c);
    atomic_store(&fail_write_errno, ENOSPC);
    clear_results();
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_write_errno, 0);
    assert_int_equal(done_calls, 1);
    assert_int_equal(results_of(-ENOSPC), 1);
    st = stats(c);
    assert_int_equal(st.enospc, 1);
    assert_int_equal(st.insert_skipped, 1);
    assert_int_equal(st.last_insert_error, -ENOSPC);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(count_rows(f->dir), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(count_files(f->dir, "data"), 1);
    /* readers are not affected */
    assert_int_equal(check_chunk(c, &a), 1);
    /* inserts pause for a while: dropped at once, counted */
    insert(c, &later);
    assert_int_equal(done_calls, 2);
    assert_int_equal(results_of(-ENOSPC), 2);
    assert_int_equal(stats(c).enospc, 2);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &later), 0);
    free(a.bytes);
    free(b.bytes);
    free(later.bytes);
    cache_disk_close(c);
}

static void test_fsync_fails(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(10 * KIB, 1200), b = make_chunk(10 * KIB, 1201);
    struct chunk d = make_chunk(10 * KIB, 1202);

    insert(c, &a);
    cache_disk_sync(c);
    /* the data file's fsync */
    atomic_store(&fail_fsync_errno, EIO);
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_fsync_errno, 0);
    assert_int_equal(stats(c).last_insert_error, -EIO);
    assert_int_equal(check_chunk(c, &b), 0);
    /* the directory's fsync, after the rename: the published file goes too */
    atomic_store(&fail_fsync_skip, 1);
    atomic_store(&fail_fsync_errno, EIO);
    insert(c, &d);
    cache_disk_sync(c);
    atomic_store(&fail_fsync_errno, 0);
    assert_int_equal(check_chunk(c, &d), 0);
    assert_int_equal(stats(c).insert_skipped, 2);
    assert_int_equal(count_rows(f->dir), 1);
    assert_int_equal(count_files(f->dir, "data"), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(check_chunk(c, &a), 1);
    /* and the cache goes on */
    insert(c, &b);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &b), 1);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    cache_disk_close(c);
}

static void test_rename_fails(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(10 * KIB, 1300), b = make_chunk(10 * KIB, 1301);

    insert(c, &a);
    cache_disk_sync(c);
    atomic_store(&fail_renameat_errno, EACCES);
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_renameat_errno, 0);
    assert_int_equal(stats(c).last_insert_error, -EACCES);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(count_rows(f->dir), 1);
    assert_int_equal(count_files(f->dir, "data"), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    free(a.bytes);
    free(b.bytes);
    cache_disk_close(c);
}

static void test_commit_fails(void **state)
{
    struct fx *f = *state;
    struct cache_disk *c = open_cache(f->dir, NULL);
    struct chunk a = make_chunk(10 * KIB, 1400), b = make_chunk(10 * KIB, 1401);
    struct chunk d = make_chunk(10 * KIB, 1402);

    insert(c, &a);
    cache_disk_sync(c);
    atomic_store(&fail_commit, 1);
    insert(c, &b);
    cache_disk_sync(c);
    atomic_store(&fail_commit, 0);
    assert_int_equal(stats(c).last_insert_error, -EIO);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(count_files(f->dir, "data"), 1); /* the renamed file was removed */
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    /* the cache keeps working */
    insert(c, &d);
    cache_disk_sync(c);
    assert_int_equal(check_chunk(c, &d), 1);
    cache_disk_close(c);

    c = open_cache(f->dir, NULL);
    assert_int_equal(check_chunk(c, &b), 0);
    assert_int_equal(check_chunk(c, &a), 1);
    assert_int_equal(check_chunk(c, &d), 1);
    assert_int_equal(stats(c).entries, 2);
    assert_int_equal(count_rows(f->dir), 2);
    assert_int_equal(cache_disk_verify(c, NULL, NULL, NULL), 0);
    free(a.bytes);
    free(b.bytes);
    free(d.bytes);
    cache_disk_close(c);
}

/* ---- micro-benchmark ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * Warm lookups + 4 KiB reads (latency percentiles) and 1 MiB reads
 * (throughput) over 4 MiB chunks in the page cache. Printed, not asserted:
 * sanitizers and valgrind slow it down by large factors. LAZYIMG_DC_BENCH=N
 * scales the work (0 skips it).
 */
static void test_bench_warm_reads(void **state)
{
    struct fx *f = *state;
    const char *env = getenv("LAZYIMG_DC_BENCH");
    int scale = env ? atoi(env) : 1;
    const int nchunks = 8, small_ops = 20000 * scale, big_ops = 512 * scale;
    const size_t clen = 4 * MIB;
    struct cache_disk *c;
    struct chunk *ch;
    double *lat, t0, total;
    uint8_t *buf;
    uint64_t seed = 1;

    if (scale <= 0)
        skip();
    c = open_cache(f->dir, NULL);
    ch = calloc((size_t)nchunks, sizeof(*ch));
    lat = calloc((size_t)small_ops, sizeof(*lat));
    buf = fx_malloc(MIB);
    assert_non_null(ch);
    assert_non_null(lat);
    for (int i = 0; i < nchunks; i++) {
        ch[i] = make_chunk(clen, 2000 + (uint64_t)i);
        insert(c, &ch[i]);
    }
    cache_disk_sync(c);
    for (int i = 0; i < nchunks; i++)
        assert_int_equal(check_chunk(c, &ch[i]), 1); /* warm: page cache and handles */

    for (int i = 0; i < small_ops; i++) {
        struct cache_disk_handle *h = NULL;
        const struct chunk *x;
        uint64_t off;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x = &ch[(seed >> 33) % (uint64_t)nchunks];
        off = ((seed >> 17) % (clen / 4096)) * 4096;
        t0 = now_s();
        assert_int_equal(cache_disk_lookup(c, x->algo, x->key, &h), 1);
        assert_int_equal(cache_disk_read(c, h, off, 4096, buf), 0);
        cache_disk_release(c, h);
        lat[i] = now_s() - t0;
    }
    assert_memory_equal(
        buf, ch[(seed >> 33) % (uint64_t)nchunks].bytes + ((seed >> 17) % (clen / 4096)) * 4096,
        4096);
    qsort(lat, (size_t)small_ops, sizeof(*lat), cmp_double);

    t0 = now_s();
    for (int i = 0; i < big_ops; i++) {
        struct cache_disk_handle *h = NULL;
        const struct chunk *x = &ch[(i / 4) % nchunks];
        assert_int_equal(cache_disk_lookup(c, x->algo, x->key, &h), 1);
        assert_int_equal(cache_disk_read(c, h, (uint64_t)(i % 4) * MIB, MIB, buf), 0);
        cache_disk_release(c, h);
    }
    total = now_s() - t0;
    print_message("warm lookup+read 4 KiB: p50 %.1f us, p99 %.1f us, max %.1f us (%d ops)\n",
                  lat[small_ops / 2] * 1e6, lat[small_ops * 99 / 100] * 1e6,
                  lat[small_ops - 1] * 1e6, small_ops);
    print_message("warm lookup+read 1 MiB: %.2f GB/s (%d MiB in %.3f s)\n",
                  (double)big_ops * MIB / total / 1e9, big_ops, total);
    for (int i = 0; i < nchunks; i++)
        free(ch[i].bytes);
    free(ch);
    free(lat);
    free(buf);
    cache_disk_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_lookup_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_and_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_modes_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_data_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evicted_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_added_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_overshoot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_under_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tidy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_evicted_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_trickle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_evict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_sharing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_write_fails_part_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_sync_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_write_fails_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_warm_reads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
