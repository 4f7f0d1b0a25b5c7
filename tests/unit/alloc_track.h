/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Largest single allocation made between start and stop, for tests that must
 * prove a bound on memory (decompression bombs, oversized files). Only works
 * in executables linked with -Wl,--wrap=malloc,--wrap=realloc,--wrap=calloc
 * (see tests/unit/meson.build); it sees the calls made by fetch/ and by the
 * test itself, not those made inside shared libraries. Single-threaded use.
 */
#pragma once

#include <stddef.h>

void fx_alloc_track_start(void);
/* Stops tracking; returns the largest request seen since start. */
size_t fx_alloc_track_stop(void);
