/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Read profiles in the cache's index (cache/diskcache.h, "Profiles"): table
 * profiles(key, created, image, offsets) in index.sqlite, reached through a
 * connection of their own (opened per call: profiles are saved and loaded a
 * few times per mount), so that they never join the writer's transactions.
 */
#include "diskcache_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static const char profiles_schema[] = "CREATE TABLE IF NOT EXISTS profiles("
                                      " key TEXT NOT NULL,"
                                      " created INTEGER NOT NULL," /* µs since the epoch */
                                      " image TEXT NOT NULL,"      /* recorded on */
                                      " offsets BLOB NOT NULL,"    /* le64 each, in order */
                                      " PRIMARY KEY(key, created)) WITHOUT ROWID;";

static int profiles_db(struct cache_disk *c, sqlite3 **ret)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        c->db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, profiles_schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = db ? cache_dc_sql_errno(rc) : -ENOMEM;
        sqlite3_close(db);
        return r;
    }
    *ret = db;
    return 0;
}

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

int cache_disk_profile_save(struct cache_disk *c, const char *key, const char *image,
                            const uint64_t *offsets, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *trim = NULL;
    uint8_t *blob;
    int rc, r;

    if (n == 0 || n > CACHE_PROFILE_MAX)
        return -EINVAL;
    if (!(blob = malloc(n * 8)))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++)
            blob[8 * i + b] = (uint8_t)(offsets[i] >> (8 * b));
    if ((r = profiles_db(c, &db)) < 0) {
        free(blob);
        return r;
    }
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT OR REPLACE INTO profiles(key, created, image, offsets) "
                                "VALUES (?1, ?2, ?3, ?4)",
                                -1, &ins, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(ins, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, now_us());
        sqlite3_bind_text(ins, 3, image, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 4, blob, (int)(n * 8), SQLITE_STATIC);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    /* the newest CACHE_PROFILE_KEEP of the key stay */
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "DELETE FROM profiles WHERE key = ?1 AND created NOT IN "
                                "(SELECT created FROM profiles WHERE key = ?1 "
                                "ORDER BY created DESC LIMIT ?2)",
                                -1, &trim, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(trim, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int(trim, 2, CACHE_PROFILE_KEEP);
        rc = sqlite3_step(trim) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_finalize(ins);
    sqlite3_finalize(trim);
    sqlite3_close(db);
    free(blob);
    return rc == SQLITE_OK ? 0 : cache_dc_sql_errno(rc);
}

int cache_disk_profile_load(struct cache_disk *c, const char *key, uint64_t **ret, size_t *ret_n,
                            struct cache_disk_profile_info *info)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t *offs = NULL;
    size_t n = 0;
    int rc, r;

    if ((r = profiles_db(c, &db)) < 0)
        return r;
    rc = sqlite3_prepare_v2(db,
                            "SELECT created, image, offsets FROM profiles WHERE key = ?1 "
                            "ORDER BY created DESC LIMIT 1",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        const char *image = (const char *)sqlite3_column_text(st, 1);
        n = len / 8;
        if (n == 0 || n > CACHE_PROFILE_MAX || len % 8 || !b) {
            r = -EBADMSG;
        } else if (!(offs = malloc(n * sizeof(*offs)))) {
            r = -ENOMEM;
        } else {
            for (size_t i = 0; i < n; i++) {
                offs[i] = 0;
                for (int k = 0; k < 8; k++)
                    offs[i] |= (uint64_t)b[8 * i + k] << (8 * k);
            }
            if (info) {
                snprintf(info->key, sizeof(info->key), "%s", key);
                snprintf(info->image, sizeof(info->image), "%s", image ? image : "");
                info->created_us = sqlite3_column_int64(st, 0);
                info->count = n;
            }
        }
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : cache_dc_sql_errno(rc);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (r < 0) {
        free(offs);
        return r;
    }
    *ret = offs;
    *ret_n = n;
    return 0;
}

int cache_disk_profile_list(struct cache_disk *c, const char *key,
                            void (*cb)(const struct cache_disk_profile_info *p, void *arg),
                            void *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc, r, count = 0;

    if ((r = profiles_db(c, &db)) < 0)
        return r;
    rc = sqlite3_prepare_v2(db,
                            "SELECT key, created, image, length(offsets) FROM profiles "
                            "WHERE ?1 IS NULL OR key = ?1 ORDER BY key, created DESC",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        if (key)
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct cache_disk_profile_info p = {0};
            const char *k = (const char *)sqlite3_column_text(st, 0);
            const char *image = (const char *)sqlite3_column_text(st, 2);
            snprintf(p.key, sizeof(p.key), "%s", k ? k : "");
            snprintf(p.image, sizeof(p.image), "%s", image ? image : "");
            p.created_us = sqlite3_column_int64(st, 1);
            p.count = (size_t)sqlite3_column_int64(st, 3) / 8;
            cb(&p, arg);
            count++;
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_OK ? count : cache_dc_sql_errno(rc);
}

int cache_disk_profile_clear(struct cache_disk *c, const char *key, uint64_t *ret_removed)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc, r;

    if ((r = profiles_db(c, &db)) < 0)
        return r;
    rc = sqlite3_prepare_v2(db, "DELETE FROM profiles WHERE ?1 IS NULL OR key = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        if (key)
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    if (rc == SQLITE_OK && ret_removed)
        *ret_removed = (uint64_t)sqlite3_changes(db);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : cache_dc_sql_errno(rc);
}
