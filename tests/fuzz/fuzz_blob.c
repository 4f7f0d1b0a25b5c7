/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: PBS blob decoding (chunks of known length, blobs of unknown length). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/blob.h"
#include "fuzz.h"

static void decode(const uint8_t *data, size_t size, size_t len, size_t max_len,
                   const uint8_t *digest)
{
    struct fetch_blob_expect exp = {.len = len, .max_len = max_len, .digest = digest};
    fetch_data out = {0};
    void *raw = malloc(size ? size : 1);
    if (!raw)
        return;
    memcpy(raw, data, size);
    if (fetch_blob_decode(raw, size, &exp, &out, NULL) == 0) {
        /* touch every byte: out-of-bounds results show up under ASan */
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < out.len; i++)
            sum ^= out.bytes[i];
        (void)sum;
        if (len && out.len != len)
            abort();
        fetch_data_release(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t digest[32] = {1};
    decode(data, size, 0, 1 << 20, NULL);
    decode(data, size, 64 * 1024, 0, NULL);
    decode(data, size, 4096, 0, digest);
    return 0;
}
