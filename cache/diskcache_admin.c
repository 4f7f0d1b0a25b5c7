/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The persistent chunk cache: statistics and maintenance (the `lazyimg cache`
 * subcommands). The contract is diskcache.h; locks are described in
 * diskcache_internal.h.
 */
#include "diskcache.h"
#include "diskcache_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l/crc.h>

/* Rows read per verify query: short read transactions, so that the WAL can
 * be checkpointed while a long verify runs. */
#define VERIFY_PAGE 64
/* A temp file of a dead process older than this is removed by verify, gc
 * and tidy (a younger one may be a live writer's in another PID namespace). */
#define STALE_TMP_SEC 60

/* Counts a file removed in @st (may be NULL): @sb its stat from before
 * (NULL: not known, no bytes counted). */
static void count_removed(struct cache_disk_tidy_stats *st, const struct stat *sb)
{
    if (st) {
        st->files++;
        st->bytes += sb ? (uint64_t)sb->st_blocks * 512 : 0;
    }
}

/* Removes @path (relative to the cache directory) and counts it in @st. */
static void remove_counted(struct cache_disk *c, const char *path, struct cache_disk_tidy_stats *st)
{
    struct stat sb;
    bool known = fstatat(c->dirfd, path, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    if (unlinkat(c->dirfd, path, 0) == 0)
        count_removed(st, known ? &sb : NULL);
}

uint64_t cache_disk_enospc_count(struct cache_disk *c)
{
    return atomic_load(&c->enospc);
}

uint64_t cache_disk_insert_errors(struct cache_disk *c, int *ret_last)
{
    if (ret_last)
        *ret_last = atomic_load(&c->last_insert_failure);
    return atomic_load(&c->insert_errors);
}

/* One integer of @sql (bound to @arg when it has a parameter): 0 where
 * it gives NULL (max() of no rows). */
static int read_int(sqlite3 *db, const char *sql, int64_t arg, int64_t *ret)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    *ret = 0;
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) > 0)
        rc = sqlite3_bind_int64(st, 1, arg);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return cache_dc_sql_errno(rc);
}

/* The mark (drops first, then the rest in one read transaction of @rc),
 * with the rows of its last @window µs counted when @window > 0. */
static int read_mark(struct cache_disk *c, struct dc_rconn *rc, int64_t window,
                     struct cache_disk_mark *ret)
{
    uint64_t apparent;
    int64_t recent = 0;
    int r;

    *ret = (struct cache_disk_mark){.window = window > 0 ? window : 0};
    pthread_mutex_lock(&c->q_lock);
    ret->gen.drops = atomic_load(&c->drops_changes);
    pthread_mutex_unlock(&c->q_lock);
    if ((r = cache_dc_read_meta(rc->meta, &ret->gen.entries, &ret->gen.alloc, &apparent,
                                &ret->gen.changes)) < 0 ||
        (r = read_int(rc->db, "SELECT max(created) FROM chunks", 0, &ret->newest)) < 0)
        return r;
    if (ret->window && (r = read_int(rc->db, "SELECT count(*) FROM chunks WHERE created > ?1",
                                     ret->newest - ret->window, &recent)) < 0)
        return r;
    ret->recent = recent > 0 ? (uint64_t)recent : 0;
    return 0;
}

/* Starts and ends the read transaction of @rc's statements. */
static int rconn_begin(struct dc_rconn *rc)
{
    int s = sqlite3_step(rc->begin);
    sqlite3_reset(rc->begin);
    return s == SQLITE_DONE ? 0 : cache_dc_sql_errno(s);
}

static void rconn_end(struct dc_rconn *rc)
{
    (void)sqlite3_step(rc->end);
    sqlite3_reset(rc->end);
    if (!sqlite3_get_autocommit(rc->db))
        (void)sqlite3_exec(rc->db, "ROLLBACK", NULL, NULL, NULL);
}

int cache_disk_mark(struct cache_disk *c, int64_t window, struct cache_disk_mark *ret)
{
    struct dc_rconn *rc;
    int r;

    *ret = (struct cache_disk_mark){.newest = 0};
    if ((r = cache_dc_rconn_get(c, &rc)) < 0)
        return r;
    if ((r = rconn_begin(rc)) == 0) {
        r = read_mark(c, rc, window, ret);
        rconn_end(rc);
    }
    cache_dc_rconn_put(c, rc);
    return r;
}

/* Whether the rows only grew from @then to @now, by @added rows (both
 * counts of the index moved by as much; a lazyimg from before the count of
 * changes moves only the totals). */
static bool only_added(const struct cache_disk_gen *then, const struct cache_disk_gen *now,
                       uint64_t *added)
{
    if (now->drops != then->drops || now->changes < then->changes || now->entries < then->entries ||
        now->alloc < then->alloc)
        return false;
    *added = now->entries - then->entries;
    if (now->changes - then->changes != *added)
        return false;
    return *added || now->alloc == then->alloc;
}

/* The rows created after @newest, into @ret (room for @max); *@ret_n is
 * @max + 1 when there are more. */
static int rows_after(sqlite3 *db, int64_t newest, size_t max, struct cache_disk_row *ret,
                      size_t *ret_n)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT algo, digest, len FROM chunks WHERE created > ?1", -1,
                                &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, newest);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const void *d = sqlite3_column_blob(st, 1);
        sqlite3_int64 algo = sqlite3_column_int64(st, 0), len = sqlite3_column_int64(st, 2);
        rc = SQLITE_OK;
        if (n == max) { /* one more than the caller counts */
            n++;
            break;
        }
        /* a row cache_disk_peek() would not find (an unknown algorithm, a
         * length out of bounds) is kept with length 0: it matches no chunk */
        ret[n] = (struct cache_disk_row){.len = 0};
        if (d && sqlite3_column_bytes(st, 1) == CACHE_KEY_LEN && algo >= 0 && algo <= UINT8_MAX &&
            cache_dc_algo_valid((unsigned)algo) && len > 0 && len <= CACHE_DISK_MAX_CHUNK) {
            ret[n].algo = (uint8_t)algo;
            memcpy(ret[n].key, d, CACHE_KEY_LEN);
            ret[n].len = (uint64_t)len;
        }
        n++;
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    *ret_n = n;
    return cache_dc_sql_errno(rc);
}

int cache_disk_added_since(struct cache_disk *c, const struct cache_disk_mark *then, size_t max,
                           struct cache_disk_row **ret, size_t *ret_n, struct cache_disk_mark *now)
{
    struct cache_disk_row *rows = NULL;
    struct dc_rconn *rc;
    uint64_t added = 0, want;
    size_t n = 0;
    int r;

    *ret = NULL;
    *ret_n = 0;
    *now = (struct cache_disk_mark){.newest = 0};
    if ((r = cache_dc_rconn_get(c, &rc)) < 0)
        return r;
    if ((r = rconn_begin(rc)) < 0)
        goto out;
    if ((r = read_mark(c, rc, then->window, now)) < 0 ||
        !only_added(&then->gen, &now->gen, &added) || added > max) {
        r = r < 0 ? r : 0;
        goto end;
    }
    if (!added) {
        r = 1;
        goto end;
    }
    /* with a window, the rows of its end at @then come again (counted
     * then: the caller matches them again to no effect) */
    want = added + then->recent;
    if (want > SIZE_MAX / sizeof(*rows) - 1 || !(rows = malloc((size_t)want * sizeof(*rows)))) {
        r = -ENOMEM;
        goto end;
    }
    /* one row more than counted shows a row the count does not know */
    if ((r = rows_after(rc->db, then->newest - then->window, (size_t)want, rows, &n)) == 0)
        r = n == want ? 1 : n < want ? CACHE_DISK_ADDED_LATE : 0;
end:
    rconn_end(rc);
out:
    cache_dc_rconn_put(c, rc);
    if (r == 1 && n) {
        *ret = rows;
        *ret_n = n;
    } else {
        free(rows);
    }
    return r;
}

int cache_disk_rows(struct cache_disk *c, size_t max, int64_t window, struct cache_disk_row **ret,
                    size_t *ret_n, struct cache_disk_mark *mark)
{
    struct cache_disk_row *rows = NULL;
    struct dc_rconn *rc;
    size_t n = 0, room;
    int r;

    *ret = NULL;
    *ret_n = 0;
    *mark = (struct cache_disk_mark){.newest = 0};
    if ((r = cache_dc_rconn_get(c, &rc)) < 0)
        return r;
    if ((r = rconn_begin(rc)) < 0)
        goto out;
    if ((r = read_mark(c, rc, window, mark)) < 0)
        goto end;
    if (mark->gen.entries > max) {
        r = 0;
        goto end;
    }
    room = (size_t)mark->gen.entries;
    if (room && !(rows = malloc(room * sizeof(*rows)))) {
        r = -ENOMEM;
        goto end;
    }
    /* (the totals count every row: one more than they say is a damaged
     * index, looked up chunk by chunk instead) */
    if ((r = rows_after(rc->db, INT64_MIN, room, rows, &n)) == 0)
        r = n <= room ? 1 : 0;
end:
    rconn_end(rc);
out:
    cache_dc_rconn_put(c, rc);
    if (r == 1) {
        for (size_t i = 0; i < n; i++)
            if (rows[i].len && cache_dc_drop_pending(c, rows[i].algo, rows[i].key))
                rows[i].len = 0;
        *ret = n ? rows : NULL;
        *ret_n = n;
        if (!n)
            free(rows);
    } else {
        free(rows);
    }
    return r;
}

void cache_disk_get_stats(struct cache_disk *c, struct cache_disk_stats *ret)
{
    struct cache_disk_stats s = {0};
    struct dc_rconn *rc;

    if (cache_dc_rconn_get(c, &rc) == 0) {
        cache_dc_read_meta(rc->meta, &s.entries, &s.bytes_allocated, &s.bytes_apparent, NULL);
        cache_dc_rconn_put(c, rc);
    }
    s.budget = c->budget;
    s.hits = atomic_load(&c->hits);
    s.misses = atomic_load(&c->misses);
    s.inserts = atomic_load(&c->inserts);
    s.insert_skipped = atomic_load(&c->insert_skipped);
    s.evictions = atomic_load(&c->evictions);
    s.bad_entries = atomic_load(&c->bad_entries);
    s.sqlite_writes = atomic_load(&c->sqlite_writes);
    s.direct_inserts = atomic_load(&c->direct_inserts);
    s.direct_reads = atomic_load(&c->direct_reads);
    s.enospc = atomic_load(&c->enospc);
    s.over_budget = atomic_load(&c->over_budget);
    s.insert_waits = atomic_load(&c->insert_waits);
    s.insert_stalled = atomic_load(&c->insert_stalled);
    s.insert_errors = atomic_load(&c->insert_errors);
    s.last_insert_failure = atomic_load(&c->last_insert_failure);
    s.last_insert_error = atomic_load(&c->last_insert_error);
    *ret = s;
}

static uint64_t col_u64(sqlite3_stmt *st, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    return v > 0 ? (uint64_t)v : 0;
}

int cache_disk_store_stats(struct cache_disk *c,
                           void (*cb)(const struct cache_disk_store_stats *s, void *arg), void *arg)
{
    static const char sql[] =
        "SELECT s.name, s.hits, s.misses, s.inserts, s.evictions, IFNULL(t.n, 0), IFNULL(t.b, 0)"
        " FROM stores s LEFT JOIN"
        " (SELECT store, COUNT(*) AS n, SUM(alloc) AS b FROM chunks GROUP BY store) t"
        " ON t.store = s.id ORDER BY s.name";
    struct dc_rconn *rc;
    sqlite3_stmt *st = NULL;
    int r, step;

    if ((r = cache_dc_rconn_get(c, &rc)) < 0)
        return r;
    r = cache_dc_sql_errno(sqlite3_prepare_v2(rc->db, sql, -1, &st, NULL));
    while (r == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct cache_disk_store_stats s = {0};
        const char *name = (const char *)sqlite3_column_text(st, 0);
        snprintf(s.store, sizeof(s.store), "%s", name ? name : "");
        s.hits = col_u64(st, 1);
        s.misses = col_u64(st, 2);
        s.inserts = col_u64(st, 3);
        s.evictions = col_u64(st, 4);
        s.entries = col_u64(st, 5);
        s.bytes_allocated = col_u64(st, 6);
        cb(&s, arg);
    }
    if (r == 0 && step != SQLITE_DONE)
        r = cache_dc_sql_errno(step);
    sqlite3_finalize(st);
    cache_dc_rconn_put(c, rc);
    return r;
}

/* ---- verify -------------------------------------------------------------- */

struct vrow {
    uint8_t algo;
    uint8_t key[CACHE_KEY_LEN];
    int64_t len, created, pack, off;
    uint8_t *crcs;
    size_t crcs_len;
};

static int digest_of(unsigned algo, const uint8_t *p, size_t len, uint8_t out[CACHE_KEY_LEN])
{
    const EVP_MD *md = algo == CACHE_ALGO_SHA256 ? EVP_sha256() : EVP_sha512_256();
    unsigned outlen = 0;
    if (!EVP_Digest(p, len, out, &outlen, md, NULL) || outlen != CACHE_KEY_LEN)
        return -EIO;
    return 0;
}

/*
 * Checks one entry against its file: 0 if good, 1 with @why filled if bad,
 * -errno if the check itself could not run (out of memory, descriptors).
 */
static int check_entry(struct cache_disk *c, const struct vrow *row, uint8_t *buf, char *why,
                       size_t why_len)
{
    char path[DC_PATH_MAX];
    uint8_t digest[CACHE_KEY_LEN];
    uint64_t len = (uint64_t)row->len, nblocks;
    struct stat st;
    ssize_t got;
    bool direct;
    int fd, r = 0;

    if (!cache_dc_algo_name(row->algo)) {
        snprintf(why, why_len, "unknown digest algorithm %u", row->algo);
        return 1;
    }
    nblocks = (len + CACHE_DISK_BLOCK - 1) / CACHE_DISK_BLOCK;
    if (row->len <= 0 || len > CACHE_DISK_MAX_CHUNK || row->crcs_len != nblocks * 4 ||
        row->pack < 0 || row->off < 0) {
        snprintf(why, why_len, "malformed index row");
        return 1;
    }
    cache_dc_entry_path(row->algo, row->key, row->created, row->pack, path);
    fd = openat(c->dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        if (r == -ENOMEM || r == -EMFILE || r == -ENFILE || r == -EACCES)
            return r;
        snprintf(why, why_len, "data file cannot be opened: %s", strerror(-r));
        return 1;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(why, why_len, "data file cannot be examined: %s", strerror(errno));
        r = 1;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(why, why_len, "data file is not a regular file of this user");
        r = 1;
        goto out;
    }
    if (!row->pack && (uint64_t)st.st_size != len) {
        snprintf(why, why_len, "data file has %lld bytes, the index says %llu",
                 (long long)st.st_size, (unsigned long long)len);
        r = 1;
        goto out;
    }
    if (row->pack && (uint64_t)st.st_size < (uint64_t)row->off + len) {
        snprintf(why, why_len, "pack file has %lld bytes, the index says the chunk ends at %llu",
                 (long long)st.st_size, (unsigned long long)((uint64_t)row->off + len));
        r = 1;
        goto out;
    }
    /* around the page cache where it can: a verify of the whole cache does
     * not push everything else out of it */
    got = cache_dc_pread(c, fd, (uint64_t)row->off, len, buf, &direct);
    if (got < 0 || (uint64_t)got != len) {
        snprintf(why, why_len, "data file unreadable: %s",
                 got < 0 ? strerror((int)-got) : "unexpected end of file");
        r = 1;
        goto out;
    }
    for (uint64_t b = 0; b < nblocks; b++) {
        uint64_t off = b * CACHE_DISK_BLOCK;
        uint64_t n = len - off < CACHE_DISK_BLOCK ? len - off : CACHE_DISK_BLOCK;
        const uint8_t *p = row->crcs + 4 * b;
        uint32_t want =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (crc32_gzip_refl(0, buf + off, n) != want) {
            snprintf(why, why_len, "CRC mismatch in block %llu", (unsigned long long)b);
            r = 1;
            goto out;
        }
    }
    if (row->algo == CACHE_ALGO_SHA256_KEYED)
        goto out; /* a keyed digest: the CRCs are all we can check without the key */
    if ((r = digest_of(row->algo, buf, (size_t)len, digest)) < 0)
        goto out;
    if (memcmp(digest, row->key, CACHE_KEY_LEN)) {
        snprintf(why, why_len, "%s digest mismatch",
                 row->algo == CACHE_ALGO_SHA256 ? "SHA-256" : "SHA-512/256");
        r = 1;
    }
out:
    close(fd);
    return r;
}

static void vrows_free(struct vrow *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].crcs);
}

/* Reads the next page of rows after (@algo, @key). Number of rows, or -errno. */
static int read_page(struct cache_disk *c, unsigned algo, const uint8_t *key, size_t keylen,
                     struct vrow *rows)
{
    static const char sql[] = "SELECT algo, digest, len, crcs, created, pack, off FROM chunks"
                              " WHERE (algo, digest) > (?1, ?2) ORDER BY algo, digest LIMIT ?3";
    struct dc_rconn *rc;
    sqlite3_stmt *st = NULL;
    int n = 0, r, step;

    if ((r = cache_dc_rconn_get(c, &rc)) < 0)
        return r;
    r = cache_dc_sql_errno(sqlite3_prepare_v2(rc->db, sql, -1, &st, NULL));
    if (r == 0) {
        sqlite3_bind_int(st, 1, (int)algo);
        sqlite3_bind_blob(st, 2, key, (int)keylen, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, VERIFY_PAGE);
    }
    while (r == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct vrow *v = &rows[n];
        const void *digest = sqlite3_column_blob(st, 1);
        const void *crcs = sqlite3_column_blob(st, 3);
        int dlen = sqlite3_column_bytes(st, 1), clen = sqlite3_column_bytes(st, 3);
        memset(v, 0, sizeof(*v));
        v->algo = (uint8_t)sqlite3_column_int(st, 0);
        memcpy(v->key, digest ? digest : "", dlen == CACHE_KEY_LEN ? CACHE_KEY_LEN : 0);
        v->len = sqlite3_column_int64(st, 2);
        v->created = sqlite3_column_int64(st, 4);
        v->pack = sqlite3_column_int64(st, 5);
        v->off = sqlite3_column_int64(st, 6);
        v->crcs_len = (size_t)clen;
        if (dlen != CACHE_KEY_LEN) {
            v->len = -1; /* never ours; reported as malformed */
        } else if (clen > 0 && !(v->crcs = malloc((size_t)clen))) {
            r = -ENOMEM;
            break;
        } else if (clen > 0) {
            memcpy(v->crcs, crcs, (size_t)clen);
        }
        n++;
    }
    if (r == 0 && step != SQLITE_DONE)
        r = cache_dc_sql_errno(step);
    sqlite3_finalize(st);
    cache_dc_rconn_put(c, rc);
    if (r < 0) {
        vrows_free(rows, (size_t)n);
        return r;
    }
    return n;
}

/* Opens a directory under the cache directory for listing. NULL, errno set. */
static DIR *open_dir(struct cache_disk *c, const char *path)
{
    DIR *d;
    int fd = openat(c->dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (!(d = fdopendir(fd)))
        close(fd);
    return d;
}

/* Parses a data file name, <64 hex>.<created>, found in fan-out dir @sub. */
static int parse_data_name(const char *name, const char *sub, uint8_t key[CACHE_KEY_LEN],
                           int64_t *ret_created)
{
    char hex[DC_KEY_HEX];
    const char *dot = strchr(name, '.');
    char *end;
    long long created;

    if (!dot || dot - name != 2 * CACHE_KEY_LEN || memcmp(name, sub, 2))
        return -EINVAL;
    memcpy(hex, name, 2 * CACHE_KEY_LEN);
    hex[2 * CACHE_KEY_LEN] = '\0';
    if (cache_dc_unhex(hex, key) < 0 || !(dot[1] >= '0' && dot[1] <= '9'))
        return -EINVAL;
    errno = 0;
    created = strtoll(dot + 1, &end, 10);
    if (errno || *end || created <= 0)
        return -EINVAL;
    *ret_created = created;
    return 0;
}

/*
 * Removes the data files of one fan-out directory that no row names. Runs in
 * a write transaction: publishing also happens under the write lock, so a
 * file seen here without a row is not one about to get its row.
 */
static int sweep_orphans_in(struct cache_disk *c, unsigned algo, const char *sub,
                            struct cache_disk_tidy_stats *st)
{
    char dir[DC_PATH_MAX], path[DC_PATH_MAX];
    struct dirent *de;
    DIR *d;
    int r;

    snprintf(dir, sizeof(dir), "data/%s/%.2s", cache_dc_algo_name(algo), sub);
    pthread_mutex_lock(&c->db_lock);
    if ((r = cache_dc_exec(c->st_begin)) < 0)
        goto out;
    if (!(d = open_dir(c, dir))) {
        r = errno == ENOENT ? 0 : -errno;
        cache_dc_exec(c->st_rollback);
        goto out;
    }
    while ((de = readdir(d))) {
        uint8_t key[CACHE_KEY_LEN];
        int64_t created, row_created = 0;
        if (parse_data_name(de->d_name, sub, key, &created) < 0)
            continue; /* not a name we give: leave it alone */
        if ((r = cache_dc_row_created(c, algo, key, &row_created)) < 0)
            break;
        if (r == 0 || row_created != created) {
            cache_dc_data_path(algo, key, created, path);
            remove_counted(c, path, st);
        }
        r = 0;
    }
    closedir(d);
    /* nothing was written: ending the transaction either way releases the lock */
    cache_dc_exec(c->st_rollback);
out:
    pthread_mutex_unlock(&c->db_lock);
    return r;
}

/* The two lowercase hex digits of a fan-out directory. */
static bool is_fanout_name(const char *n)
{
    for (int i = 0; i < 2; i++) {
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return false;
    }
    return n[2] == '\0';
}

/* Removes the packs no row names and no writer holds (its rows still to
 * come). Whether they hold bytes no row names (a crash) is not looked at:
 * those pages come back with the pack. */
static int sweep_packs(struct cache_disk *c, struct cache_disk_tidy_stats *st)
{
    struct dirent *de;
    DIR *d = open_dir(c, "packs");
    int r = 0;

    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(d))) {
        char *end, path[DC_PATH_MAX];
        struct stat sb;
        long long id;
        bool known;
        errno = 0;
        id = strtoll(de->d_name, &end, 10);
        if (errno || end == de->d_name || *end || id <= 0)
            continue; /* not a name we give: leave it alone */
        cache_dc_pack_path((int64_t)id, path);
        known = fstatat(c->dirfd, path, &sb, AT_SYMLINK_NOFOLLOW) == 0;
        pthread_mutex_lock(&c->db_lock);
        r = cache_dc_pack_reap(c, (int64_t)id);
        pthread_mutex_unlock(&c->db_lock);
        if (r < 0)
            break;
        if (r > 0)
            count_removed(st, known ? &sb : NULL);
        r = 0;
    }
    closedir(d);
    return r;
}

static int sweep_orphans(struct cache_disk *c, struct cache_disk_tidy_stats *st)
{
    static const unsigned algos[] = {CACHE_ALGO_SHA256, CACHE_ALGO_SHA512_256,
                                     CACHE_ALGO_SHA256_KEYED};
    for (size_t i = 0; i < sizeof(algos) / sizeof(algos[0]); i++) {
        char dir[DC_PATH_MAX];
        struct dirent *de;
        DIR *d;
        int r = 0;

        snprintf(dir, sizeof(dir), "data/%s", cache_dc_algo_name(algos[i]));
        if (!(d = open_dir(c, dir))) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        while ((de = readdir(d))) {
            if (is_fanout_name(de->d_name) &&
                (r = sweep_orphans_in(c, algos[i], de->d_name, st)) < 0)
                break;
        }
        closedir(d);
        if (r < 0)
            return r;
    }
    return 0;
}

/* When process @pid started, in seconds since the epoch; -1 if unknown. */
static time_t proc_started(pid_t pid)
{
    static long long boot = -1; /* btime of /proc/stat; racy but idempotent */
    char path[64], text[1024];
    const char *p;
    unsigned long long ticks;
    long hz = sysconf(_SC_CLK_TCK);
    ssize_t n;
    int fd;

    if (boot < 0) {
        FILE *f = fopen("/proc/stat", "re");
        char line[256];
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "btime %lld", &boot) == 1)
                break;
        if (f)
            fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (boot < 0 || hz <= 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    /* the fields after the command's closing parenthesis, each after a
     * space: starttime is the 20th of them (field 22 of proc(5)) */
    if (!(p = strrchr(text, ')')))
        return -1;
    for (int field = 0; field < 20; field++)
        if (!(p = strchr(p + 1, ' ')))
            return -1;
    if (sscanf(p, " %llu", &ticks) != 1)
        return -1;
    return (time_t)(boot + (long long)(ticks / (unsigned long long)hz));
}

/* Whether temp file @name (pid.tid.counter), last written at @mtime,
 * belongs to a process that is gone: its pid names no process, or one that
 * started after the file was written (the pid was reused: a crashed
 * daemon's own pid, say, as PID 1 of a container restarted). */
static bool tmp_owner_dead(const char *name, time_t mtime)
{
    char *end;
    long pid;
    time_t started;
    errno = 0;
    pid = strtol(name, &end, 10);
    if (errno || end == name || *end != '.' || pid <= 0 || pid > INT32_MAX)
        return false;
    if (pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        return true;
    /* (a second's slack: start times are whole seconds here) */
    return (started = proc_started((pid_t)pid)) >= 0 && started > mtime + 1;
}

/* Removes temp files left by dead processes (a live one may be writing). */
static void sweep_tmp(struct cache_disk *c, struct cache_disk_tidy_stats *tst)
{
    time_t now = time(NULL);
    struct dirent *de;
    DIR *d = open_dir(c, "tmp");
    if (!d)
        return;
    while ((de = readdir(d))) {
        char path[sizeof(de->d_name) + sizeof("tmp/")];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "tmp/%s", de->d_name);
        if (fstatat(c->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (st.st_mtime > now - STALE_TMP_SEC) {
            /* kept for now: a live writer's in another PID namespace, or
             * one that a daemon killed and restarted at once left */
            time_t due = st.st_mtime + STALE_TMP_SEC + 1 - now;
            if (tst && due > 0 && (unsigned)due > tst->again_sec &&
                tmp_owner_dead(de->d_name, st.st_mtime))
                tst->again_sec = (unsigned)due; /* the youngest: all of them then */
            continue;
        }
        if (!tmp_owner_dead(de->d_name, st.st_mtime))
            continue;
        remove_counted(c, path, tst);
    }
    closedir(d);
}

/* What crashes left behind, which the budget does not count: data files and
 * packs no row names (and no writer holds), temp files of dead processes. */
static int sweep_leftovers(struct cache_disk *c, struct cache_disk_tidy_stats *st)
{
    int r = sweep_orphans(c, st);
    if (r == 0)
        r = sweep_packs(c, st);
    if (r == 0)
        sweep_tmp(c, st);
    return r;
}

/* Recomputes the running totals from the rows (repairs any drift). */
static int recount(struct cache_disk *c)
{
    static const char sql[] =
        "UPDATE meta SET value = (SELECT CASE meta.key WHEN 'entries' THEN COUNT(*)"
        " WHEN 'alloc' THEN IFNULL(SUM(alloc), 0) ELSE IFNULL(SUM(len), 0) END FROM chunks)"
        " WHERE key IN ('entries', 'alloc', 'apparent')";
    sqlite3_stmt *st = NULL;
    int r;

    pthread_mutex_lock(&c->db_lock);
    r = cache_dc_sql_errno(sqlite3_prepare_v2(c->wdb, sql, -1, &st, NULL));
    if (r == 0)
        r = cache_dc_exec(st); /* one statement: its own transaction */
    sqlite3_finalize(st);
    if (r == 0) {
        uint64_t entries, alloc, apparent;
        if (cache_dc_read_meta(c->st_meta_get, &entries, &alloc, &apparent, NULL) == 0)
            __atomic_store_n(&c->total_alloc, alloc, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&c->db_lock);
    return r;
}

int cache_disk_verify(struct cache_disk *c, uint64_t *ret_checked,
                      void (*bad)(const char *hex_key, const char *why, void *arg), void *arg)
{
    struct vrow rows[VERIFY_PAGE];
    uint8_t last_key[CACHE_KEY_LEN] = {0};
    size_t last_len = 0;
    unsigned last_algo = 0;
    uint64_t checked = 0;
    uint8_t *buf;
    int nbad = 0, r = 0;

    if (posix_memalign((void **)&buf, 4096, CACHE_DISK_MAX_CHUNK) != 0) /* O_DIRECT reads */
        return -ENOMEM;
    for (;;) {
        int n = read_page(c, last_algo, last_key, last_len, rows);
        if (n <= 0) {
            r = n;
            break;
        }
        for (int i = 0; i < n && r == 0; i++) {
            char why[160], hex[DC_KEY_HEX];
            int bad_now = check_entry(c, &rows[i], buf, why, sizeof(why));
            checked++;
            if (bad_now < 0) {
                r = bad_now;
                break;
            }
            if (!bad_now || rows[i].len < 0)
                continue;
            pthread_mutex_lock(&c->db_lock);
            bad_now = cache_dc_drop_row(c, rows[i].algo, rows[i].key, rows[i].created);
            pthread_mutex_unlock(&c->db_lock);
            if (bad_now < 0) {
                r = bad_now;
                break;
            }
            if (bad_now == 0)
                continue; /* evicted or replaced meanwhile: not bad, just gone */
            nbad++;
            if (bad) {
                cache_dc_hex(rows[i].key, hex);
                bad(hex, why, arg);
            }
        }
        last_algo = rows[n - 1].algo;
        memcpy(last_key, rows[n - 1].key, CACHE_KEY_LEN);
        last_len = CACHE_KEY_LEN;
        vrows_free(rows, (size_t)n);
        if (r < 0 || n < VERIFY_PAGE)
            break;
    }
    free(buf);
    if (r == 0)
        r = sweep_leftovers(c, NULL);
    if (r == 0)
        r = recount(c);
    if (r < 0)
        return r;
    if (ret_checked)
        *ret_checked = checked;
    return nbad;
}

/* ---- gc and clear -------------------------------------------------------- */

int cache_disk_gc(struct cache_disk *c, uint64_t target, uint64_t *ret_evicted)
{
    uint64_t evicted = 0;
    int r;
    pthread_mutex_lock(&c->db_lock);
    r = cache_dc_evict(c, target, INT64_MAX, &evicted);
    pthread_mutex_unlock(&c->db_lock);
    if (r == 0)
        r = sweep_leftovers(c, NULL);
    if (r < 0)
        return r;
    if (ret_evicted)
        *ret_evicted = evicted;
    return 0;
}

int cache_disk_tidy(struct cache_disk *c, struct cache_disk_tidy_stats *ret)
{
    struct cache_disk_tidy_stats st = {0};
    int r = sweep_leftovers(c, &st);
    if (ret)
        *ret = st;
    return r;
}

int cache_disk_clear(struct cache_disk *c)
{
    return cache_disk_gc(c, 0, NULL);
}
