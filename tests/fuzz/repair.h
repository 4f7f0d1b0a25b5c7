/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checksum repair for mutated fuzz inputs. A mutation almost never keeps a
 * checksum right, so without repair libFuzzer stops at the check and never
 * reaches the code behind it. The custom mutators of fuzz_fidx and fuzz_blob
 * call these after LLVMFuzzerMutate(); repair_test.c checks them against the
 * parsers in the ordinary (non-fuzz) build.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Fixed index: with @fix_size, when the chunk size is valid and the digest
 * list is a whole number of digests, sets the image size to one that needs
 * exactly that many (keeping the old size's remainder, so short last chunks
 * stay); then stores SHA-256 of the digest list as index_csum. Inputs shorter
 * than the header are left alone.
 */
void fuzz_fidx_repair(uint8_t *data, size_t size, bool fix_size);

/*
 * PBS blob: stores the CRC-32 of the bytes after the header (12 bytes, 44 for
 * the encrypted magics) at offset 8. Inputs shorter than the header are left
 * alone.
 */
void fuzz_blob_repair(uint8_t *data, size_t size);
