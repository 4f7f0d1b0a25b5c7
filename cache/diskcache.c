/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The persistent chunk cache: open/close, the SQLite index and its
 * connections, shared helpers. Lookups and reads are in diskcache_read.c,
 * inserts, the writer thread and eviction in diskcache_write.c, maintenance
 * (stats, verify, gc, clear) in diskcache_admin.c. The contract is
 * diskcache.h; the locks are described in diskcache_internal.h.
 *
 * Files and rows, and why they cannot disagree in a harmful way:
 *  - a data file is written under tmp/, fsync()ed, renamed to its data path
 *    and its directory fsync()ed before the transaction adding its row
 *    commits; the rename happens inside that write transaction, so gc and
 *    verify, which walk data/ under the same lock, never mistake a file about
 *    to get its row for an orphan;
 *  - a row is deleted in a durable transaction and its file unlinked after
 *    the commit; the path carries the row's creation time, so that unlink
 *    never hits a newer copy of the chunk published meanwhile by another
 *    process (which a path made of the digest alone would allow);
 *  - a crash in between leaves files without rows (orphans), which gc and
 *    verify remove; never a row naming missing or wrong bytes;
 *  - a pack is created under tmp/, locked (flock) and linked into packs/
 *    (the directory fsync()ed) before anything is appended; its owner
 *    fsync()s it before committing rows of chunks appended to it and keeps
 *    the lock until they are committed, so gc and verify, which remove only
 *    packs that no row names and nobody holds locked, never remove a pack
 *    about to get rows; a deleted packed row's pages are punched after the
 *    commit (never reused: appends only go to a pack's end).
 */
#include "diskcache.h"
#include "diskcache_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GIB ((uint64_t)1 << 30)

#define DEFAULT_BUDGET (10 * GIB)
#define DEFAULT_HIGH_PCT 95
#define DEFAULT_LOW_PCT 90
#define DEFAULT_MIN_AGE_SEC 60
#define DEFAULT_FLUSH_MS 2000
#define DEFAULT_MAX_OPEN 512
#define DEFAULT_DIRECT_BACKLOG UINT64_MAX
#define DEFAULT_QUEUE_BYTES ((uint64_t)64 << 20)
#define DEFAULT_STALL_MS 30000
#define DEFAULT_PACK_BELOW ((uint64_t)1 << 20)
#define DEFAULT_PACK_BYTES ((uint64_t)512 << 20)

/* ---- small helpers ------------------------------------------------------ */

int64_t cache_dc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cache_dc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cache_dc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cache_dc_sql_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
        return -EACCES;
    default:
        return -EIO;
    }
}

int cache_dc_exec(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : cache_dc_sql_errno(rc);
}

void cache_dc_hex(const uint8_t key[CACHE_KEY_LEN], char out[DC_KEY_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < CACHE_KEY_LEN; i++) {
        out[2 * i] = digits[key[i] >> 4];
        out[2 * i + 1] = digits[key[i] & 15];
    }
    out[2 * CACHE_KEY_LEN] = '\0';
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

int cache_dc_unhex(const char *hex, uint8_t key[CACHE_KEY_LEN])
{
    for (unsigned i = 0; i < CACHE_KEY_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * CACHE_KEY_LEN] == '\0' ? 0 : -EINVAL;
}

const char *cache_dc_algo_name(unsigned algo)
{
    switch (algo) {
    case CACHE_ALGO_SHA256:
        return "sha256";
    case CACHE_ALGO_SHA512_256:
        return "sha512_256";
    case CACHE_ALGO_SHA256_KEYED:
        return "sha256_keyed";
    default:
        return NULL;
    }
}

void cache_dc_data_path(unsigned algo, const uint8_t key[CACHE_KEY_LEN], int64_t created,
                        char out[DC_PATH_MAX])
{
    char hex[DC_KEY_HEX];
    cache_dc_hex(key, hex);
    snprintf(out, DC_PATH_MAX, "data/%s/%.2s/%s.%" PRId64, cache_dc_algo_name(algo), hex, hex,
             created);
}

void cache_dc_pack_path(int64_t pack, char out[DC_PATH_MAX])
{
    snprintf(out, DC_PATH_MAX, "packs/%" PRId64, pack);
}

void cache_dc_entry_path(unsigned algo, const uint8_t key[CACHE_KEY_LEN], int64_t created,
                         int64_t pack, char out[DC_PATH_MAX])
{
    if (pack)
        cache_dc_pack_path(pack, out);
    else
        cache_dc_data_path(algo, key, created, out);
}

void cache_dc_pack_punch(struct cache_disk *c, int64_t pack, uint64_t off, uint64_t len)
{
    char path[DC_PATH_MAX];
    int fd;
    cache_dc_pack_path(pack, path);
    fd = openat(c->dirfd, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    /* whole pages: a packed chunk starts on a page and owns its last one */
    len = (len + 4095) & ~(uint64_t)4095;
    (void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
    close(fd);
}

/* 1 if a row names @pack, 0 if none, -errno. */
static int pack_used(struct cache_disk *c, int64_t pack)
{
    int rc;
    sqlite3_bind_int64(c->st_pack_used, 1, pack);
    rc = sqlite3_step(c->st_pack_used);
    sqlite3_reset(c->st_pack_used);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : cache_dc_sql_errno(rc);
}

int cache_dc_pack_reap(struct cache_disk *c, int64_t pack)
{
    char path[DC_PATH_MAX];
    int fd, r;

    if ((r = pack_used(c, pack)) != 0)
        return r < 0 ? r : 0;
    /* Again under the write lock: a writer commits its rows before it lets
     * go of the pack's lock, so a pack found unlocked with no row while no
     * commit can happen will never get one. */
    if ((r = cache_dc_exec(c->st_begin)) < 0)
        return r;
    if ((r = pack_used(c, pack)) != 0) {
        r = r < 0 ? r : 0;
        goto out;
    }
    cache_dc_pack_path(pack, path);
    fd = openat(c->dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        r = errno == ENOENT ? 0 : -errno;
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(c->dirfd, path, 0) == 0)
        r = 1;
    close(fd);
out:
    cache_dc_exec(c->st_rollback); /* nothing written */
    return r;
}

/* Appends to a vector; false when out of memory (the caller drops the item:
 * touches and drops are hints that are found again later). */
bool cache_dc_vec_push(struct dc_vec *v, unsigned algo, const uint8_t *key, int64_t t)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct dc_keytime *nv = realloc(v->v, cap * sizeof(*nv));
        if (!nv)
            return false;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n].algo = (uint8_t)algo;
    memcpy(v->v[v->n].key, key, CACHE_KEY_LEN);
    v->v[v->n].t = t;
    v->v[v->n].pack = 0;
    v->v[v->n].off = v->v[v->n].len = 0;
    v->n++;
    return true;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_len,
                                                          const char *fmt, ...)
{
    va_list ap;
    if (!err || !err_len)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- SQLite connections -------------------------------------------------- */

static const char schema_v1[] =
    "CREATE TABLE chunks("
    " algo INTEGER NOT NULL,"
    " digest BLOB NOT NULL,"
    " len INTEGER NOT NULL,"      /* bytes of the chunk */
    " alloc INTEGER NOT NULL,"    /* st_blocks * 512 of its data file */
    " crcs BLOB NOT NULL,"        /* little-endian CRC-32 of each 64 KiB block */
    " last_use INTEGER NOT NULL," /* ms since the epoch, batched */
    " created INTEGER NOT NULL,"  /* µs since the epoch: names this incarnation */
    " store INTEGER NOT NULL,"    /* stores.id of the inserter */
    " PRIMARY KEY(algo, digest)) WITHOUT ROWID;"
    "CREATE INDEX chunks_last_use ON chunks(last_use);"
    "CREATE TABLE stores("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " hits INTEGER NOT NULL DEFAULT 0,"
    " misses INTEGER NOT NULL DEFAULT 0,"
    " inserts INTEGER NOT NULL DEFAULT 0,"
    " evictions INTEGER NOT NULL DEFAULT 0);"
    /* running totals over chunks, updated in the transactions that change
     * rows, so no insert or stats call needs a full SUM() */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('entries', 0), ('alloc', 0), ('apparent', 0);"
    "PRAGMA user_version = 1;";

/* Version 2: small chunks in pack files (pack 0: a file of its own). */
static const char schema_v2[] =
    "ALTER TABLE chunks ADD COLUMN pack INTEGER NOT NULL DEFAULT 0;" /* packs/<pack> */
    "ALTER TABLE chunks ADD COLUMN off INTEGER NOT NULL DEFAULT 0;"  /* its offset there */
    "CREATE INDEX chunks_pack ON chunks(pack) WHERE pack != 0;"
    "PRAGMA user_version = 2;";

/*
 * Durability: connections run with synchronous=NORMAL, under which a WAL
 * commit is not fsync()ed, so a power loss may forget the last commits. For
 * inserts that is safe: a forgotten insert leaves a data file without a row
 * (an orphan, removed by gc/verify), and no committed row names a file that
 * is not durable, because the file was fsync()ed, renamed and its directory
 * fsync()ed before the commit. Transactions that delete rows switch to
 * synchronous=FULL, so the deletion is durable before the file is unlinked.
 * Every read checks block CRCs. A process crash (kill -9) loses nothing that
 * was committed.
 */
static int db_configure(sqlite3 *db)
{
    int rc = sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;", NULL, NULL,
                          NULL);
    return cache_dc_sql_errno(rc);
}

/* *@rc: SQLite's extended result code of a failure (for db_damaged()).
 * @create: the writer's connection (a read connection never makes an index:
 * one that went away meanwhile is an error, not a new empty index). */
static int db_open(const char *path, bool create, sqlite3 **ret, int *rc)
{
    sqlite3 *db = NULL;
    /* the path has no symbolic link (see open_dir), so none may appear */
    int r;
    *rc = sqlite3_open_v2(path, &db,
                          SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) |
                              SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                          NULL);
    if (*rc != SQLITE_OK) {
        r = db ? cache_dc_sql_errno(*rc) : -ENOMEM;
        if (db)
            *rc = sqlite3_extended_errcode(db);
        sqlite3_close(db);
        return r;
    }
    if ((r = db_configure(db)) < 0) {
        *rc = sqlite3_extended_errcode(db);
        sqlite3_close(db);
        return r;
    }
    *ret = db;
    return 0;
}

/* Whether SQLite's extended result @rc says the index file itself is damaged
 * (not a disk's I/O error, a lock, a full disk or a permission). */
static bool db_damaged(int rc)
{
    return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB ||
           rc == SQLITE_IOERR_SHORT_READ;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret)
{
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
    return cache_dc_sql_errno(rc);
}

/*
 * Switches the database to WAL mode (persistent: a no-op once done). The
 * switch needs the database to itself for a moment and SQLite reports BUSY
 * at once rather than through the busy handler when several processes open a
 * new cache together, so it is retried here for up to the busy timeout.
 */
static int db_wal(sqlite3 *db)
{
    int rc = SQLITE_BUSY;
    for (int i = 0; i < 500 && (rc == SQLITE_BUSY || rc == SQLITE_LOCKED); i++) {
        sqlite3_stmt *st = NULL;
        struct timespec ts = {0, 10 * 1000 * 1000};
        if (i)
            nanosleep(&ts, NULL);
        rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *mode = (const char *)sqlite3_column_text(st, 0);
                rc = mode && !strcmp(mode, "wal") ? SQLITE_OK : SQLITE_BUSY;
            }
        }
        sqlite3_finalize(st);
        rc &= 0xff;
    }
    return rc;
}

/* Creates the schema, or checks that the existing one is one we know.
 * *@code: SQLite's extended code of a failure, taken before the rollback
 * (which clears it), 0 for none. */
static int db_schema(sqlite3 *db, int *code, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int version = -1, rc, r;

    *code = 0;
    rc = db_wal(db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0)
        goto sqlfail;
    if (version == 0)
        rc = sqlite3_exec(db, schema_v1, NULL, NULL, NULL);
    if (rc == SQLITE_OK && version < 2)
        rc = sqlite3_exec(db, schema_v2, NULL, NULL, NULL);
    /* rows added and removed (cache_disk_mark); a lazyimg from before
     * it ignores the row */
    if (rc == SQLITE_OK && version <= DC_SCHEMA_VERSION)
        rc = sqlite3_exec(db, "INSERT OR IGNORE INTO meta VALUES('changes', 0)", NULL, NULL, NULL);
    /* the rows added since a report counted (cache_disk_added_since), found
     * without a scan; SQLite keeps it up to date for a lazyimg from before
     * it too */
    if (rc == SQLITE_OK && version <= DC_SCHEMA_VERSION)
        rc = sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS chunks_created ON chunks(created)", NULL,
                          NULL, NULL);
    if (rc == SQLITE_OK && version > DC_SCHEMA_VERSION) {
        /* a newer lazyimg made this index; later versions migrate, older ones refuse */
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        set_err(err, err_len, "cache index %s: schema version %d is newer than this lazyimg's (%d)",
                sqlite3_db_filename(db, "main"), version, DC_SCHEMA_VERSION);
        return -EPROTO;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    return 0;

sqlfail:
    r = cache_dc_sql_errno(rc ? rc : SQLITE_ERROR);
    *code = sqlite3_extended_errcode(db);
    set_err(err, err_len, "cache index %s: %s", sqlite3_db_filename(db, "main"),
            sqlite3_errmsg(db));
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

int cache_dc_read_meta(sqlite3_stmt *meta, uint64_t *entries, uint64_t *alloc, uint64_t *apparent,
                       uint64_t *changes)
{
    int rc;
    *entries = *alloc = *apparent = 0;
    if (changes)
        *changes = 0;
    while ((rc = sqlite3_step(meta)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(meta, 0);
        sqlite3_int64 v = sqlite3_column_int64(meta, 1);
        uint64_t u = v > 0 ? (uint64_t)v : 0;
        if (!k)
            continue;
        if (!strcmp(k, "entries"))
            *entries = u;
        else if (!strcmp(k, "alloc"))
            *alloc = u;
        else if (!strcmp(k, "apparent"))
            *apparent = u;
        else if (changes && !strcmp(k, "changes"))
            *changes = u;
    }
    sqlite3_reset(meta);
    return rc == SQLITE_DONE ? 0 : cache_dc_sql_errno(rc);
}

static const char sql_meta_get[] = "SELECT key, value FROM meta";

static void rconn_free(struct dc_rconn *rc)
{
    if (!rc)
        return;
    sqlite3_finalize(rc->lookup);
    sqlite3_finalize(rc->meta);
    sqlite3_finalize(rc->begin);
    sqlite3_finalize(rc->end);
    sqlite3_close(rc->db);
    free(rc);
}

/*
 * Read connections come from a pool rather than one per thread: a lookup
 * takes one for the length of one query, so the pool holds as many as there
 * are concurrent lookups, nothing is tied to thread lifetimes, and close()
 * knows every connection. In WAL mode these readers never wait for the
 * writer's transactions.
 */
int cache_dc_rconn_get(struct cache_disk *c, struct dc_rconn **ret)
{
    struct dc_rconn *rc;
    int r, src;

    pthread_mutex_lock(&c->pool_lock);
    rc = c->pool;
    if (rc)
        c->pool = rc->next;
    pthread_mutex_unlock(&c->pool_lock);
    if (rc) {
        *ret = rc;
        return 0;
    }
    if (!(rc = calloc(1, sizeof(*rc))))
        return -ENOMEM;
    if ((r = db_open(c->db_path, false, &rc->db, &src)) < 0 ||
        (r = cache_dc_sql_errno(sqlite3_exec(rc->db, "PRAGMA query_only=1", NULL, NULL, NULL))) <
            0 ||
        (r = prepare(rc->db,
                     "SELECT len, crcs, created, pack, off FROM chunks WHERE algo = ?1 AND "
                     "digest = ?2",
                     &rc->lookup)) < 0 ||
        (r = prepare(rc->db, sql_meta_get, &rc->meta)) < 0 ||
        (r = prepare(rc->db, "BEGIN", &rc->begin)) < 0 ||
        (r = prepare(rc->db, "COMMIT", &rc->end)) < 0) {
        rconn_free(rc);
        return r;
    }
    *ret = rc;
    return 0;
}

void cache_dc_rconn_put(struct cache_disk *c, struct dc_rconn *rc)
{
    pthread_mutex_lock(&c->pool_lock);
    rc->next = c->pool;
    c->pool = rc;
    pthread_mutex_unlock(&c->pool_lock);
}

static int writer_prepare(struct cache_disk *c)
{
    static const struct {
        size_t off;
        const char *sql;
    } stmts[] = {
#define S(field, sql) {offsetof(struct cache_disk, field), sql}
        S(st_begin, "BEGIN IMMEDIATE"),
        S(st_commit, "COMMIT"),
        S(st_rollback, "ROLLBACK"),
        S(st_insert, "INSERT OR IGNORE INTO chunks(algo, digest, len, alloc, crcs, last_use, "
                     "created, store, pack, off) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        S(st_get, "SELECT alloc, len, created, pack, off FROM chunks WHERE algo = ?1 AND "
                  "digest = ?2"),
        S(st_delete, "DELETE FROM chunks WHERE algo = ?1 AND digest = ?2"),
        S(st_touch, "UPDATE chunks SET last_use = max(last_use, ?3) WHERE algo = ?1 AND "
                    "digest = ?2"),
        S(st_meta_add, "UPDATE meta SET value = value + ?2 WHERE key = ?1"),
        S(st_meta_get, sql_meta_get),
        S(st_store_add, "UPDATE stores SET hits = hits + ?2, misses = misses + ?3, "
                        "inserts = inserts + ?4, evictions = evictions + ?5 WHERE id = ?1"),
        S(st_victims, "SELECT algo, digest, alloc, len, store, created, pack, off FROM chunks "
                      "WHERE last_use < ?1 "
                      "ORDER BY last_use LIMIT ?2"),
        S(st_pack_used, "SELECT 1 FROM chunks WHERE pack = ?1 AND pack != 0 LIMIT 1"),
#undef S
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        sqlite3_stmt **slot = (sqlite3_stmt **)((char *)c + stmts[i].off);
        int r = prepare(c->wdb, stmts[i].sql, slot);
        if (r < 0)
            return r;
    }
    return 0;
}

static void writer_finalize(struct cache_disk *c)
{
    sqlite3_stmt **all[] = {&c->st_begin,    &c->st_commit,    &c->st_rollback, &c->st_insert,
                            &c->st_get,      &c->st_delete,    &c->st_touch,    &c->st_meta_add,
                            &c->st_meta_get, &c->st_store_add, &c->st_victims,  &c->st_pack_used};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        sqlite3_finalize(*all[i]);
        *all[i] = NULL;
    }
}

/* The id of store @name in the stores table, created if missing. */
static int store_id(sqlite3 *db, const char *name, int64_t *ret)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO stores(name) VALUES(?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT id FROM stores WHERE name = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_CORRUPT;
        }
    }
    sqlite3_finalize(st);
    return cache_dc_sql_errno(rc);
}

/* ---- trust ----------------------------------------------------------------
 *
 * Block CRCs catch damage, not an attacker: whoever can write the cache
 * directory can replace a data file and recompute its row. So, as ssh does
 * for its files, the cache is used only when no one but this user (and root)
 * can change it: the directory, data/ and its fan-out directories, tmp/ and
 * the index files must be owned by the effective user and not writable by
 * group or others, and must not be symbolic links. The directory's parent
 * must be owned by this user or root and, when others may write it, sticky
 * (others could otherwise rename the directory away and put their own in its
 * place, which SQLite, opening the index by path, would use). Parents further
 * up are not checked (ssh does not either). Once these checks pass, only this
 * user can change anything below the directory, so the checks are made once,
 * at open; files are still opened without following symbolic links.
 */

/* Describes why @st (of @path) cannot be trusted; 0 if it can. */
static int check_stat(const struct stat *st, bool want_dir, const char *what, const char *path,
                      char *err, size_t err_len)
{
    if (S_ISLNK(st->st_mode)) {
        set_err(err, err_len, "%s %s is a symbolic link; refusing to use it", what, path);
        return -EPERM;
    }
    if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
        set_err(err, err_len, "%s %s is not a %s; refusing to use it", what, path,
                want_dir ? "directory" : "regular file");
        return want_dir ? -ENOTDIR : -EPERM;
    }
    if (st->st_uid != geteuid()) {
        set_err(err, err_len,
                "%s %s is owned by uid %u, not by this user (uid %u); refusing to use it "
                "(choose another --cache-dir)",
                what, path, (unsigned)st->st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        set_err(err, err_len,
                "%s %s is writable by group or others (mode %04o); refusing to use it "
                "(chmod go-w %s, or choose another --cache-dir)",
                what, path, (unsigned)(st->st_mode & 07777), path);
        return -EPERM;
    }
    return 0;
}

/* @name below @dirfd (shown as @dir/@name): 0 if trusted or (@may_miss)
 * absent, else -errno with a message. */
static int check_at(int dirfd, const char *dir, const char *name, bool want_dir, bool may_miss,
                    char *err, size_t err_len)
{
    struct stat st;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        int r = -errno;
        if (r == -ENOENT && may_miss)
            return 0;
        set_err(err, err_len, "cache: cannot stat %s: %s", path, strerror(-r));
        return r;
    }
    return check_stat(&st, want_dir, want_dir ? "cache directory" : "cache file", path, err,
                      err_len);
}

static bool is_fanout_name(const char *name)
{
    static const char hex[] = "0123456789abcdef";
    return strlen(name) == 2 && strchr(hex, name[0]) && strchr(hex, name[1]);
}

/* data/<algo> and its data/<algo>/<xx> fan-out directories, if present. */
static int check_algo_tree(int datafd, const char *data_path, const char *algo, char *err,
                           size_t err_len)
{
    char path[PATH_MAX];
    struct dirent *de;
    DIR *d;
    int fd, r;

    if ((r = check_at(datafd, data_path, algo, true, true, err, err_len)) < 0)
        return r;
    fd = openat(datafd, algo, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!(d = fdopendir(fd))) {
        r = -errno;
        close(fd);
        return r;
    }
    if (snprintf(path, sizeof(path), "%s/%s", data_path, algo) >= (int)sizeof(path)) {
        closedir(d);
        return -ENAMETOOLONG;
    }
    r = 0;
    while (r == 0 && (de = readdir(d)))
        if (is_fanout_name(de->d_name))
            r = check_at(dirfd(d), path, de->d_name, true, true, err, err_len);
    closedir(d);
    return r;
}

/* The directory behind @dirfd (opened from @canon, its path without symbolic
 * links), its parent, and everything below it that exists. */
static int check_tree(int dirfd, const char *canon, char *err, size_t err_len)
{
    static const char *const index_files[] = {"index.sqlite", "index.sqlite-wal",
                                              "index.sqlite-shm", "index.sqlite-journal"};
    char parent[PATH_MAX], data_path[PATH_MAX];
    struct stat st, pst;
    char *slash;
    int datafd, r;

    if (fstat(dirfd, &st) < 0)
        return -errno;
    if ((r = check_stat(&st, true, "cache directory", canon, err, err_len)) < 0)
        return r;

    snprintf(parent, sizeof(parent), "%s", canon);
    slash = strrchr(parent, '/');
    if (slash)
        slash[slash == parent ? 1 : 0] = '\0';
    if (stat(parent, &pst) < 0) {
        r = -errno;
        set_err(err, err_len, "cache: cannot stat %s: %s", parent, strerror(-r));
        return r;
    }
    if (pst.st_uid != geteuid() && pst.st_uid != 0) {
        set_err(err, err_len,
                "the parent %s of cache directory %s is owned by uid %u, not by this user or "
                "root; refusing to use it (choose another --cache-dir)",
                parent, canon, (unsigned)pst.st_uid);
        return -EPERM;
    }
    if ((pst.st_mode & (S_IWGRP | S_IWOTH)) && !(pst.st_mode & S_ISVTX)) {
        set_err(err, err_len,
                "the parent %s of cache directory %s is writable by group or others and not "
                "sticky (mode %04o); refusing to use it (chmod go-w %s, or choose another "
                "--cache-dir)",
                parent, canon, (unsigned)(pst.st_mode & 07777), parent);
        return -EPERM;
    }

    for (size_t i = 0; i < sizeof(index_files) / sizeof(index_files[0]); i++)
        if ((r = check_at(dirfd, canon, index_files[i], false, true, err, err_len)) < 0)
            return r;
    if ((r = check_at(dirfd, canon, "tmp", true, false, err, err_len)) < 0 ||
        (r = check_at(dirfd, canon, "packs", true, false, err, err_len)) < 0 ||
        (r = check_at(dirfd, canon, "data", true, false, err, err_len)) < 0)
        return r;
    datafd = openat(dirfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (datafd < 0) {
        r = -errno;
        set_err(err, err_len, "cache: cannot open %s/data: %s", canon, strerror(-r));
        return r;
    }
    r = 0;
    if (snprintf(data_path, sizeof(data_path), "%s/data", canon) >= (int)sizeof(data_path))
        r = -ENAMETOOLONG;
    for (unsigned algo = 0; r == 0 && algo < 4; algo++)
        if (cache_dc_algo_valid(algo))
            r = check_algo_tree(datafd, data_path, cache_dc_algo_name(algo), err, err_len);
    close(datafd);
    if (r < 0 && err && !err[0])
        set_err(err, err_len, "cache: cannot check %s: %s", data_path, strerror(-r));
    return r;
}

/* ---- open / close -------------------------------------------------------- */

static int make_dir(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/*
 * Opens (creating it, mode 0700, if missing) the cache directory without
 * following a symbolic link, checks that it and everything below it can be
 * trusted, and sets c->dirfd and c->db_path (through a path without symbolic
 * links, which SQLITE_OPEN_NOFOLLOW requires).
 */
static int open_dir(struct cache_disk *c, const char *dir, char *err, size_t err_len)
{
    char canon[PATH_MAX];
    struct stat st, cst;
    size_t plen;
    int r;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        set_err(err, err_len, "cannot create cache directory %s: %s", dir, strerror(-r));
        return r;
    }
    c->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (c->dirfd < 0) {
        r = -errno;
        if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
            return check_stat(&st, true, "cache directory", dir, err, err_len);
        set_err(err, err_len, "cannot open cache directory %s: %s", dir, strerror(-r));
        return r;
    }
    if (!realpath(dir, canon)) {
        r = -errno;
        set_err(err, err_len, "cannot resolve cache directory %s: %s", dir, strerror(-r));
        return r;
    }
    if (fstat(c->dirfd, &st) < 0 || stat(canon, &cst) < 0 || st.st_dev != cst.st_dev ||
        st.st_ino != cst.st_ino) {
        set_err(err, err_len, "cache directory %s changed while it was opened", dir);
        return -EAGAIN;
    }
    if ((r = make_dir(c->dirfd, "data")) < 0 || (r = make_dir(c->dirfd, "tmp")) < 0 ||
        (r = make_dir(c->dirfd, "packs")) < 0) {
        set_err(err, err_len, "cannot create directories in %s: %s", dir, strerror(-r));
        return r;
    }
    if ((r = check_tree(c->dirfd, canon, err, err_len)) < 0)
        return r;
    plen = strlen(canon);
    if (!(c->db_path = malloc(plen + sizeof("/index.sqlite"))))
        return -ENOMEM;
    memcpy(c->db_path, canon, plen);
    memcpy(c->db_path + plen, "/index.sqlite", sizeof("/index.sqlite"));
    return 0;
}

/* With @check (the cache commands), every page of the index is read
 * (PRAGMA quick_check): a damage where a daemon's open does not look is
 * found there too. 0, or -EIO with *@rc SQLITE_CORRUPT. */
static int check_index(struct cache_disk *c, bool check, int *rc)
{
    sqlite3_stmt *st = NULL;
    int r = 0, step;
    if (!check)
        return 0;
    *rc = sqlite3_prepare_v2(c->wdb, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (*rc == SQLITE_OK) {
        step = sqlite3_step(st);
        if (step != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0) ?: "", "ok") != 0)
            *rc = step == SQLITE_ROW ? SQLITE_CORRUPT : sqlite3_extended_errcode(c->wdb);
    }
    sqlite3_finalize(st);
    if (*rc != SQLITE_OK)
        r = -EIO;
    return r;
}

/*
 * Opens the index (c->wdb) with its schema, statements and store row. On
 * failure c->wdb is closed again and *@rc is SQLite's extended code (0 when
 * the failure was not SQLite's).
 */
static int open_index(struct cache_disk *c, const char *store, bool check, int *rc, char *err,
                      size_t err_len)
{
    int r;

    *rc = 0;
    if ((r = db_open(c->db_path, true, &c->wdb, rc)) < 0) {
        set_err(err, err_len, "cannot open cache index %s: %s", c->db_path,
                *rc ? sqlite3_errstr(*rc) : strerror(-r));
        return r;
    }
    if ((r = db_schema(c->wdb, rc, err, err_len)) == 0 && (r = writer_prepare(c)) == 0 &&
        (r = store_id(c->wdb, store, &c->store_id)) == 0) {
        if ((r = check_index(c, check, rc)) == 0)
            return 0;
        set_err(err, err_len, "cache index %s: %s (PRAGMA quick_check)", c->db_path,
                sqlite3_errstr(*rc));
    }
    if (r != -EPROTO && !*rc)
        *rc = sqlite3_extended_errcode(c->wdb);
    if (r != -EPROTO && !(err && err[0]))
        set_err(err, err_len, "cache index %s: %s", c->db_path, sqlite3_errmsg(c->wdb));
    writer_finalize(c);
    sqlite3_close(c->wdb);
    c->wdb = NULL;
    return r;
}

/* The schema version in the header of the index file (user_version, a
 * big-endian 32-bit number at offset 60), -1 when it cannot be read. */
static int64_t header_version(struct cache_disk *c)
{
    uint8_t h[64];
    int fd = openat(c->dirfd, "index.sqlite", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, h, sizeof(h), 0);
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16) != 0)
        return -1;
    return (int64_t)h[60] << 24 | (int64_t)h[61] << 16 | (int64_t)h[62] << 8 | h[63];
}

/*
 * Moves a damaged index (and its WAL, whose frames must not be applied to a
 * new one) aside as index.sqlite.damaged-<time>-<n>[-wal], names no earlier
 * one has; its shared-memory file goes after them. The caller holds the
 * cache's lock exclusively: no other process has the index open. The chunk
 * files it named become strays, which the start's tidy-up (cache_disk_tidy)
 * removes. 0 or -errno.
 */
static int set_aside(struct cache_disk *c, char *aside, size_t len)
{
    char to[96], wal[100];
    long t = (long)time(NULL);
    int r = -EEXIST;

    for (unsigned n = 0; n < 1000 && r == -EEXIST; n++) {
        snprintf(to, sizeof(to), "index.sqlite.damaged-%ld-%u", t, n);
        snprintf(wal, sizeof(wal), "%s-wal", to);
        if (faccessat(c->dirfd, wal, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        r = renameat2(c->dirfd, "index.sqlite", c->dirfd, to, RENAME_NOREPLACE) < 0 ? -errno : 0;
        if (r == -EINVAL) /* a filesystem without RENAME_NOREPLACE; we hold the lock */
            r = faccessat(c->dirfd, to, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ? -EEXIST
                : renameat(c->dirfd, "index.sqlite", c->dirfd, to) < 0  ? -errno
                                                                        : 0;
    }
    if (r < 0)
        return r;
    snprintf(aside, len, "%s/%s", c->dir, to);
    /* the WAL must not stay for the new index: kept beside the old one, or gone */
    if (renameat2(c->dirfd, "index.sqlite-wal", c->dirfd, wal, RENAME_NOREPLACE) < 0 &&
        errno != ENOENT && unlinkat(c->dirfd, "index.sqlite-wal", 0) < 0 && errno != ENOENT)
        return -errno;
    (void)unlinkat(c->dirfd, "index.sqlite-shm", 0);
    return 0;
}

/*
 * The cache's lock (index.lock): every handle holds it shared while it is
 * open; moving the index aside needs it alone. 0 or -errno.
 */
static int lock_cache(struct cache_disk *c, char *err, size_t err_len)
{
    struct stat st;
    c->lockfd = openat(c->dirfd, "index.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (c->lockfd < 0 || fstat(c->lockfd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid()) {
        int r = c->lockfd < 0 ? -errno : -EPERM;
        set_err(err, err_len, "cache lock %s/index.lock: %s", c->dir,
                r == -EPERM ? "not a file of this user" : strerror(-r));
        return r;
    }
    while (flock(c->lockfd, LOCK_SH) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/*
 * After open_index() found the index damaged (@why: how): a newer lazyimg's
 * index (a schema this SQLite cannot read) is refused as such; otherwise,
 * when no other process has the cache open, the index is moved aside and a
 * new one opened (c->open_note says so); when one has, the open fails and
 * says what to do.
 */
static int replace_damaged(struct cache_disk *c, const char *store, bool check, int *rc,
                           const char *why, char *err, size_t err_len)
{
    char aside[PATH_MAX + 128];
    int64_t v = header_version(c);
    int r;

    if (v > DC_SCHEMA_VERSION) {
        set_err(err, err_len,
                "cache index %s: schema version %lld is newer than this lazyimg's (%d)", c->db_path,
                (long long)v, DC_SCHEMA_VERSION);
        return -EPROTO;
    }
    if (flock(c->lockfd, LOCK_EX | LOCK_NB) < 0) {
        set_err(err, err_len,
                "%s; another process has this cache open: stop it (or give another "
                "--cache-dir), and the next open moves the damaged index aside",
                why);
        return -EIO;
    }
    r = set_aside(c, aside, sizeof(aside));
    if (r == 0) {
        snprintf(c->open_note, sizeof(c->open_note),
                 "%s; it was moved aside to %s and a new, empty index started (the cached "
                 "chunks are fetched again)",
                 why, aside);
        if (err)
            err[0] = '\0';
        r = open_index(c, store, check, rc, err, err_len);
    } else {
        set_err(err, err_len, "%s; it could not be moved aside: %s", why, strerror(-r));
    }
    while (flock(c->lockfd, LOCK_SH) < 0 && errno == EINTR)
        ;
    return r;
}

const char *cache_disk_open_note(const struct cache_disk *c)
{
    return c->open_note;
}

int cache_disk_open(const struct cache_disk_options *o, struct cache_disk **ret, char *err,
                    size_t err_len)
{
    struct cache_disk *c;
    pthread_condattr_t ca;
    int r, rc;

    if (!o || !o->dir || !o->dir[0]) {
        set_err(err, err_len, "no cache directory given");
        return -EINVAL;
    }
    if (!(c = calloc(1, sizeof(*c))))
        return -ENOMEM;
    c->dirfd = c->lockfd = -1;
    c->budget = o->budget ? o->budget : DEFAULT_BUDGET;
    c->high_pct = o->high_pct ? o->high_pct : DEFAULT_HIGH_PCT;
    c->low_pct = o->low_pct ? o->low_pct : DEFAULT_LOW_PCT;
    if (c->high_pct > 100)
        c->high_pct = 100;
    if (c->low_pct > c->high_pct)
        c->low_pct = c->high_pct;
    c->min_age_ms = (int64_t)(o->min_age_sec ? o->min_age_sec : DEFAULT_MIN_AGE_SEC) * 1000;
    c->flush_ms = o->flush_ms ? o->flush_ms : DEFAULT_FLUSH_MS;
    c->max_open = o->max_open ? o->max_open : DEFAULT_MAX_OPEN;
    c->direct_backlog = o->direct_backlog ? o->direct_backlog : DEFAULT_DIRECT_BACKLOG;
    c->q_max_bytes = o->queue_bytes ? o->queue_bytes : DEFAULT_QUEUE_BYTES;
    c->stall_ms = o->stall_ms ? o->stall_ms : DEFAULT_STALL_MS;
    c->pack_below = o->pack_below == CACHE_DISK_PACK_OFF ? 0
                    : o->pack_below                      ? o->pack_below
                                                         : DEFAULT_PACK_BELOW;
    c->pack_bytes = o->pack_bytes ? o->pack_bytes : DEFAULT_PACK_BYTES;
    pthread_mutex_init(&c->db_lock, NULL);
    pthread_mutex_init(&c->pool_lock, NULL);
    pthread_mutex_init(&c->h_lock, NULL);
    pthread_mutex_init(&c->p_lock, NULL);
    pthread_mutex_init(&c->q_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->q_wake, &ca);
    pthread_cond_init(&c->q_room, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&c->q_done, NULL);

    if (!(c->dir = strdup(o->dir))) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = open_dir(c, o->dir, err, err_len)) < 0)
        goto fail;

    if ((r = lock_cache(c, err, err_len)) < 0)
        goto fail;
    r = open_index(c, o->store ? o->store : "", o->check_index, &rc, err, err_len);
    if (r < 0 && db_damaged(rc)) {
        /* the index is what makes files entries, and nothing else holds
         * what it held: a damaged one is replaced by an empty one (its
         * chunks are fetched again), not left to refuse every mount */
        char why[1024];
        snprintf(why, sizeof(why), "%s", err && err[0] ? err : sqlite3_errstr(rc));
        r = replace_damaged(c, o->store ? o->store : "", o->check_index, &rc, why, err, err_len);
    }
    if (r < 0)
        goto fail;
    cache_dc_refresh_total(c);

    for (c->nbuckets = 64; c->nbuckets < 2 * (size_t)c->max_open; c->nbuckets *= 2)
        ;
    if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) ||
        !(c->wstate = cache_dc_wstate_new())) {
        r = -ENOMEM;
        goto fail;
    }
    c->writer_running = true;
    if ((r = -pthread_create(&c->writer, NULL, cache_dc_writer_main, c)) < 0) {
        c->writer_running = false;
        set_err(err, err_len, "cannot start the cache writer thread: %s", strerror(-r));
        goto fail;
    }
    c->writer_joinable = true;
    (void)pthread_setname_np(c->writer, "lz-cachewrite");
    *ret = c;
    return 0;

fail:
    if (r == -EPROTO || r == -EBUSY)
        r = -EIO;
    cache_disk_close(c);
    return r;
}

void cache_disk_close(struct cache_disk *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->q_lock);
    c->stop = true;
    pthread_cond_signal(&c->q_wake);
    pthread_cond_broadcast(&c->q_room);
    pthread_mutex_unlock(&c->q_lock);
    if (c->writer_joinable)
        pthread_join(c->writer, NULL);
    /* nothing can be queued without a writer, but be exact about ownership */
    while (c->q_head) {
        struct dc_item *it = c->q_head;
        c->q_head = it->next;
        if (it->done)
            it->done(it->owner, -ECANCELED);
        free(it);
    }
    cache_dc_free_handles(c);
    free(c->touches.v);
    free(c->drops.v);
    while (c->pool) {
        struct dc_rconn *rc = c->pool;
        c->pool = rc->next;
        rconn_free(rc);
    }
    writer_finalize(c);
    sqlite3_close(c->wdb);
    if (c->dirfd >= 0)
        close(c->dirfd);
    if (c->lockfd >= 0)
        close(c->lockfd);
    pthread_mutex_destroy(&c->db_lock);
    pthread_mutex_destroy(&c->pool_lock);
    pthread_mutex_destroy(&c->h_lock);
    cache_dc_pending_free_all(c);
    pthread_mutex_destroy(&c->p_lock);
    pthread_mutex_destroy(&c->q_lock);
    pthread_cond_destroy(&c->q_wake);
    pthread_cond_destroy(&c->q_done);
    pthread_cond_destroy(&c->q_room);
    free(c->wstate);
    free(c->dir);
    free(c->db_path);
    free(c);
}
