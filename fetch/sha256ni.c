/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256 (FIPS 180-4, §6.2.2) on the SHA extensions, written from the
 * instructions' definitions in Intel's SDM (SHA256RNDS2, SHA256MSG1,
 * SHA256MSG2). The state lives in two registers, ABEF and CDGH (A in the
 * top lane); SHA256RNDS2 takes the CDGH half and the ABEF half and gives the
 * new ABEF after two rounds, the old ABEF becoming the new CDGH.
 */
#include "sha256ni.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#include "simd.h"

#define TARGET __attribute__((target("sha,ssse3,sse4.1")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* The round constants: the first 32 bits of the fractional parts of the
 * cube roots of the first 64 primes (FIPS 180-4, §4.2.2). */
static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* One message's state and its last sixteen schedule words (W[t..t+3] each). */
struct lane {
    __m128i abef, cdgh, save_abef, save_cdgh;
    __m128i w0, w1, w2, w3;
};

/* H0..H7 (lanes a b c d, e f g h) to ABEF (lanes f e b a) and CDGH (h g d c). */
INLINE void lane_load(struct lane *l, const uint32_t h[8])
{
    __m128i badc = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xB1);
    __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1B);
    l->abef = _mm_alignr_epi8(badc, hgfe, 8);
    l->cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
}

INLINE void lane_store(const struct lane *l, uint32_t h[8])
{
    __m128i abef = _mm_shuffle_epi32(l->abef, 0x1B); /* a b e f */
    __m128i ghcd = _mm_shuffle_epi32(l->cdgh, 0xB1); /* g h c d */
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(abef, ghcd, 0xF0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(ghcd, abef, 8));
}

/* A block's sixteen words, big-endian in memory. */
INLINE void lane_block(struct lane *l, const uint8_t *p)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    l->save_abef = l->abef;
    l->save_cdgh = l->cdgh;
    l->w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap);
    l->w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
    l->w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
    l->w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
}

/* Four rounds with the words @w and the constants from K[@t]. */
INLINE void rounds4(struct lane *l, __m128i w, int t)
{
    __m128i wk = _mm_add_epi32(w, _mm_load_si128((const __m128i *)&K[t]));
    l->cdgh = _mm_sha256rnds2_epu32(l->cdgh, l->abef, wk);
    l->abef = _mm_sha256rnds2_epu32(l->abef, l->cdgh, _mm_shuffle_epi32(wk, 0x0E));
}

/*
 * Round group @g (0..15) of a block: rounds 4g..4g+3. From the fifth group
 * on, the next four schedule words come first:
 * W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], with MSG1 giving
 * W[t-16] + σ0(W[t-15]), the byte shift W[t-7], and MSG2 the σ1 terms.
 */
INLINE void lane_group(struct lane *l, int g)
{
    __m128i w;
    if (g < 4) {
        w = g == 0 ? l->w0 : g == 1 ? l->w1 : g == 2 ? l->w2 : l->w3;
    } else {
        w = _mm_add_epi32(_mm_sha256msg1_epu32(l->w0, l->w1), _mm_alignr_epi8(l->w3, l->w2, 4));
        w = _mm_sha256msg2_epu32(w, l->w3);
        l->w0 = l->w1;
        l->w1 = l->w2;
        l->w2 = l->w3;
        l->w3 = w;
    }
    rounds4(l, w, 4 * g);
}

INLINE void lane_end_block(struct lane *l)
{
    l->abef = _mm_add_epi32(l->abef, l->save_abef);
    l->cdgh = _mm_add_epi32(l->cdgh, l->save_cdgh);
}

TARGET void fetch_sha256ni_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    struct lane a;
    fetch_simd_clean_upper(); /* see fetch/simd.h */
    lane_load(&a, h);
    for (; nblocks; nblocks--, p += 64) {
        lane_block(&a, p);
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++)
            lane_group(&a, g);
        lane_end_block(&a);
    }
    lane_store(&a, h);
}

TARGET void fetch_sha256ni_blocks_x2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8],
                                     const uint8_t *pb, size_t nblocks)
{
    struct lane a, b;
    fetch_simd_clean_upper(); /* see fetch/simd.h */
    lane_load(&a, ha);
    lane_load(&b, hb);
    for (; nblocks; nblocks--, pa += 64, pb += 64) {
        lane_block(&a, pa);
        lane_block(&b, pb);
        /* the two chains are independent: each waits on its own rnds2 */
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            lane_group(&a, g);
            lane_group(&b, g);
        }
        lane_end_block(&a);
        lane_end_block(&b);
    }
    lane_store(&a, ha);
    lane_store(&b, hb);
}

#else /* not x86-64: fetch_simd_has_sha() says false, so these are never called */

#include <stdlib.h>

void fetch_sha256ni_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    (void)h, (void)p, (void)nblocks;
    abort();
}

void fetch_sha256ni_blocks_x2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb,
                              size_t nblocks)
{
    (void)ha, (void)pa, (void)hb, (void)pb, (void)nblocks;
    abort();
}

#endif
