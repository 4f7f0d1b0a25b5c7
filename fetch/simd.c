/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>

/* bits of CPUID leaf 1 ECX and leaf 7 EBX, and which of them were read */
static struct {
    bool known, avx, sha;
} cpu;

static void probe(void)
{
    unsigned a, b, c, d;
    bool avx = false, sha = false;

    if (__get_cpuid(1, &a, &b, &c, &d)) {
        /* AVX is usable only where the OS saves the YMM state (OSXSAVE, XCR0) */
        if ((c & bit_AVX) && (c & bit_OSXSAVE)) {
            unsigned lo, hi;
            __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            avx = (lo & 6) == 6;
        }
        if ((c & bit_SSSE3) && (c & bit_SSE4_1) && __get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            sha = (b & bit_SHA) != 0;
        }
    }
    __atomic_store_n(&cpu.avx, avx, __ATOMIC_RELAXED);
    __atomic_store_n(&cpu.sha, sha, __ATOMIC_RELAXED);
    __atomic_store_n(&cpu.known, true, __ATOMIC_RELEASE);
}

bool fetch_simd_has_sha(void)
{
    if (!__atomic_load_n(&cpu.known, __ATOMIC_ACQUIRE))
        probe();
    return __atomic_load_n(&cpu.sha, __ATOMIC_RELAXED);
}

__attribute__((target("avx"))) static void vzeroupper(void)
{
    _mm256_zeroupper();
}

void fetch_simd_clean_upper(void)
{
    if (!__atomic_load_n(&cpu.known, __ATOMIC_ACQUIRE))
        probe();
    if (__atomic_load_n(&cpu.avx, __ATOMIC_RELAXED))
        vzeroupper();
}

#else

bool fetch_simd_has_sha(void)
{
    return false;
}

void fetch_simd_clean_upper(void)
{
}

#endif
