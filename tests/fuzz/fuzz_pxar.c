/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the pxar decoder over a metadata stream (v2, with a payload
 * stream of zeros) or a whole archive (v1): open, then walk (archive_walk.h).
 */
#include <stdint.h>
#include <string.h>

#include "archive_walk.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_stream meta, payload = {1ull << 40, zeros_read, NULL};
    for (int v2 = 0; v2 < 2; v2++) {
        struct fetch_archive *a = NULL;
        fetch_error err = {""};
        fetch_stream_of_buffer(&meta, data, size);
        if (fetch_pxar_open(&meta, v2 ? &payload : NULL, &a, &err) < 0)
            continue;
        fuzz_walk_archive(a, size);
        fetch_archive_free(a);
    }
    return 0;
}
