/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: PBS blob decoding (chunks of known length, blobs of unknown
 * length). An input that decodes as a blob of unknown length is decoded again
 * as a chunk of exactly that length with its true digest, so the success
 * paths of the length and digest checks are reached too. In the libFuzzer
 * build a custom mutator repairs the CRC-32 after each mutation (the check
 * that otherwise stops almost every mutated input).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/blob.h"
#include "fetch/digest.h"
#include "fuzz.h"
#include "repair.h"

/* Decodes a copy of @data; returns the decoded length, or -1 if it fails. */
static long decode(const uint8_t *data, size_t size, size_t len, size_t max_len,
                   const uint8_t *digest, uint8_t *ret_digest)
{
    struct fetch_blob_expect exp = {.len = len, .max_len = max_len, .digest = digest};
    fetch_data out = {0};
    long r = -1;
    void *raw = malloc(size ? size : 1);
    if (!raw)
        return -1;
    memcpy(raw, data, size);
    if (fetch_blob_decode(raw, size, &exp, &out, NULL) == 0) {
        /* touch every byte: out-of-bounds results show up under ASan */
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < out.len; i++)
            sum ^= out.bytes[i];
        (void)sum;
        if ((len && out.len != len) || (!len && out.len > max_len))
            abort();
        if (ret_digest && fetch_sha256(out.bytes, out.len, ret_digest) < 0)
            abort();
        r = (long)out.len;
        fetch_data_release(&out);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t digest[32] = {1};
    uint8_t real[32];
    long n = decode(data, size, 0, 1 << 20, NULL, real);
    if (n > 0) {
        /* as a chunk: the right length and digest must decode to the same */
        if (decode(data, size, (size_t)n, 0, real, NULL) != n)
            abort();
        /* one byte more or the wrong digest must not */
        if (decode(data, size, (size_t)n + 1, 0, NULL, NULL) >= 0 ||
            decode(data, size, (size_t)n, 0, digest, NULL) >= 0)
            abort();
    }
    decode(data, size, 64 * 1024, 0, NULL, NULL);
    decode(data, size, 4096, 0, digest, NULL);
    return 0;
}

#ifdef FUZZ_LIBFUZZER
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    /* leave 1 in 16 unrepaired: the CRC check stays covered */
    if (seed % 16 != 0)
        fuzz_blob_repair(data, size);
    return size;
}
#endif
