/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the pxar decoder over a metadata stream (v2, with a payload
 * stream of zeros) or a whole archive (v1): open, then walk what a mount
 * would reach (names, lookups, file reads, symlinks, xattrs), bounded.
 * Errors are fine; a crash, a hang or an entry outside its stream is not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/pxar.h"
#include "fuzz.h"

static int zeros_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    (void)ctx;
    (void)off;
    (void)err;
    memset(buf, 0, len);
    return 0;
}

static int count_xattr(const char *name, const void *value, size_t vlen, void *arg)
{
    (void)value;
    (void)vlen;
    if (!name[0])
        abort();
    ++*(unsigned *)arg;
    return 0;
}

static unsigned budget;

static void walk(struct fetch_archive *a, const struct fetch_archive_entry *dir, int depth,
                 uint64_t meta_size)
{
    char name[FETCH_ARCHIVE_NAME_MAX + 1], target[FETCH_ARCHIVE_PATH_MAX + 1];
    fetch_error err = {""};
    uint8_t b[256];

    if (depth > 16)
        return;
    for (uint64_t i = 0; i < dir->goodbye_count && budget; i++, budget--) {
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
        (void)fetch_archive_xattrs(a, &c, count_xattr, &n, &err);
        if (c.kind == FETCH_ARCHIVE_DIR)
            walk(a, &c, depth + 1, meta_size);
        else if (c.kind == FETCH_ARCHIVE_FILE &&
                 fetch_archive_read(a, &c, 0, b, sizeof(b), &err) > (long)sizeof(b))
            abort();
        else if (c.kind == FETCH_ARCHIVE_SYMLINK && c.size < sizeof(target))
            (void)fetch_archive_readlink(a, &c, target, sizeof(target), &err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_stream meta, payload = {1ull << 40, zeros_read, NULL};
    for (int v2 = 0; v2 < 2; v2++) {
        struct fetch_archive *a = NULL;
        struct fetch_archive_entry root;
        fetch_error err = {""};
        fetch_stream_of_buffer(&meta, data, size);
        if (fetch_pxar_open(&meta, v2 ? &payload : NULL, &a, &err) < 0)
            continue;
        budget = 4096;
        if (fetch_archive_root(a, &root, &err) == 0)
            walk(a, &root, 0, size);
        fetch_archive_free(a);
    }
    return 0;
}
