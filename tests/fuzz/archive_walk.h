/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the fuzz targets of the archive decoders (fuzz_pxar, fuzz_catar) do
 * with an archive that opened: walk what a mount would reach (names, lookups,
 * file reads, symlinks, xattrs), bounded. Errors are fine; a crash, a hang
 * or an entry outside its stream is not.
 */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/archive.h"

static int fuzz_count_xattr(const char *name, const void *value, size_t vlen, void *arg)
{
    (void)value;
    (void)vlen;
    if (!name[0])
        abort();
    ++*(unsigned *)arg;
    return 0;
}

static void fuzz_walk(struct fetch_archive *a, const struct fetch_archive_entry *dir, int depth,
                      uint64_t meta_size, unsigned *budget)
{
    char name[FETCH_ARCHIVE_NAME_MAX + 1], target[FETCH_ARCHIVE_PATH_MAX + 1];
    fetch_error err = {""};
    uint8_t b[256];

    if (depth > 16)
        return;
    for (uint64_t i = 0; i < dir->goodbye_count && *budget; i++, --*budget) {
        struct fetch_archive_entry c, again;
        unsigned n = 0;
        if (fetch_archive_child(a, dir, i, name, sizeof(name), &c, &err) < 0)
            continue;
        if (c.pos >= meta_size || c.meta_end > meta_size || strlen(name) == 0)
            abort();
        /* by name: the same entry, or another of the same name (a damaged
         * archive may hold two) */
        if (fetch_archive_lookup(a, dir, name, strlen(name), &again, &err) == 0 &&
            again.pos >= meta_size)
            abort();
        (void)fetch_archive_xattrs(a, &c, fuzz_count_xattr, &n, &err);
        if (c.kind == FETCH_ARCHIVE_DIR)
            fuzz_walk(a, &c, depth + 1, meta_size, budget);
        else if (c.kind == FETCH_ARCHIVE_FILE &&
                 fetch_archive_read(a, &c, 0, b, sizeof(b), &err) > (long)sizeof(b))
            abort();
        else if (c.kind == FETCH_ARCHIVE_SYMLINK && c.size < sizeof(target))
            (void)fetch_archive_readlink(a, &c, target, sizeof(target), &err);
    }
}

/* Opens nothing itself: walks the root of @a. */
static void fuzz_walk_archive(struct fetch_archive *a, uint64_t meta_size)
{
    struct fetch_archive_entry root;
    fetch_error err = {""};
    unsigned budget = 4096;
    if (fetch_archive_root(a, &root, &err) == 0)
        fuzz_walk(a, &root, 0, meta_size, &budget);
}
