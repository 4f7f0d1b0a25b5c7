/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libFuzzer entry point every target defines (replay.c drives it without libFuzzer). */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef FUZZ_LIBFUZZER
/* libFuzzer's own mutator, and the hook a target defines to replace it */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
#endif
