/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: casync chunk objects (zstd, xz, gzip, raw) decoded to an
 * index-given length. The first 4 input bytes pick the length (low 20 bits)
 * and the digest algorithm and raw/compressed (top bits); the id is the
 * digest of the plaintext the rest decodes to only by chance, so a success is
 * checked against a fresh digest of the output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/cacnk.h"
#include "fetch/digest.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t id[32] = {0}, check[32];
    fetch_data out = {0};
    enum fetch_digest_algo algo;
    uint32_t sel;
    size_t len;
    bool compressed;
    void *raw;

    if (size < 4 + 32)
        return 0;
    memcpy(&sel, data, 4);
    memcpy(id, data + 4, 32);
    data += 36;
    size -= 36;
    len = (sel & 0xfffff) + 1;
    algo = (sel >> 31) ? FETCH_DIGEST_SHA512_256 : FETCH_DIGEST_SHA256;
    compressed = !((sel >> 30) & 1);
    raw = malloc(size ? size : 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    if (fetch_cacnk_decode(algo, id, len, compressed, raw, size, &out, NULL) == 0) {
        if (out.len != len || fetch_digest(algo, out.bytes, out.len, check) < 0 ||
            memcmp(check, id, 32) != 0)
            abort();
        fetch_data_release(&out);
    }
    return 0;
}
