/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What this CPU's vector units need from us. Thread-safe.
 *
 * Code in legacy SSE encoding (the SHA extensions have no other; OpenSSL's
 * SHA-256 and zstd use it too) runs slowly while the upper halves of the
 * AVX registers hold data: ISA-L's AVX-512 CRC-32 returns without clearing
 * them (no VZEROUPPER), and then each SSE instruction merges with them.
 * Measured on this project's AMD EPYC VM, in the daemon: SHA-256 of 4 MiB
 * chunks 40–46 ns per 64-byte block instead of 35–36, and two messages
 * interleaved 37 ns instead of 19. fetch_simd_clean_upper() before such code
 * puts it back at full speed.
 */
#pragma once

#include <stdbool.h>

/* Whether the CPU has the SHA extensions with SSSE3 and SSE4.1. */
bool fetch_simd_has_sha(void);

/* VZEROUPPER where the CPU has AVX; nothing elsewhere. A function call, so
 * that no caller has vector values live across it. */
void fetch_simd_clean_upper(void);
