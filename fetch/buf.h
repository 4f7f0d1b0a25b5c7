/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunk-sized buffers: objects as fetched, decoded chunks, read replies.
 *
 * They are megabytes each and live for milliseconds. From malloc they either
 * pile up in the heap (freed chunks in the middle of an arena are not given
 * back: RSS of twice the working set was measured) or, when mmap()ed, cost a
 * page fault and a zeroed page per 4 KiB on every use (a second of CPU per
 * GiB of chunks on this project's machines, whose host takes freed memory
 * back so that every fresh page costs a fault on the host too). So buffers
 * between FETCH_BUF_MIN and FETCH_BUF_SLOT bytes come from fixed slots of one
 * reserved mapping, reused most recently freed first, so that their pages
 * stay mapped. A freed slot keeps its pages while buffers are being used:
 * the resident set is then the most buffers ever in use at once, which a
 * release on every free does not lower (measured: the same peak RSS, and
 * 40% less CPU for a cold read without the releases). Slots left free for
 * longer than fetch_buf_trim() is told give their pages back, and so do the
 * slots freed longest ago beyond FETCH_BUF_WARM_MAX bytes of touched pages.
 * Other sizes, and every size once all slots are in use, come from malloc.
 * Where the kernel has transparent huge pages, a slot first used for a
 * buffer of at least a huge page has its first 4 MiB in huge pages (a first
 * touch costs a fault per 2 MiB instead of one per 4 KiB: daemon CPU for a
 * cold local read of 4 MiB chunks went from 1.23 to 1.02 s per GiB), its
 * header room in small ones; a slot first used for a smaller buffer (a
 * casync chunk) stays in small pages, so that it holds what it is given.
 * Free slots are reused by kind where one of the same kind was freed lately.
 *
 * fetch_buf_free() and fetch_buf_realloc() accept any pointer from malloc
 * too, so that a buffer can come from either (a caller's malloc()ed raw
 * blob is freed by the decoder with fetch_buf_free()). Thread-safe.
 * Under AddressSanitizer every buffer comes from malloc, so that overflows
 * are caught.
 */
#pragma once

#include <stddef.h>

#define FETCH_BUF_MIN ((size_t)256 << 10)
#define FETCH_BUF_SLOT (((size_t)4 << 20) + ((size_t)64 << 10)) /* a 4 MiB chunk and its header */
#define FETCH_BUF_SLOTS 256
#define FETCH_BUF_WARM_MAX ((size_t)256 << 20)

/* @len bytes, uninitialised; NULL on ENOMEM. From FETCH_BUF_MIN bytes on,
 * on a FETCH_BUF_ALIGN boundary (slot or heap: O_DIRECT reads into it). */
void *fetch_buf_alloc(size_t len);

/* Page alignment that fetch_buf_alloc_skewed() aims for (O_DIRECT writes of
 * the disk cache need no bounce copy from such bytes). */
#define FETCH_BUF_ALIGN ((size_t)4096)

/* As fetch_buf_alloc(), placed so that the address @skew bytes in is
 * FETCH_BUF_ALIGN-aligned when the buffer comes from a slot (a hint: a heap
 * buffer with a @skew off the alignment has malloc's). For an object whose
 * payload follows a @skew-byte header and is used in place. */
void *fetch_buf_alloc_skewed(size_t len, size_t skew);

/* Like realloc(): the contents up to the smaller size are kept; NULL (and @p
 * untouched) on ENOMEM. A slot's buffer keeps its place (and alignment)
 * while @len fits in the slot. */
void *fetch_buf_realloc(void *p, size_t len);

/* NULL-safe. */
void fetch_buf_free(void *p);

/* Gives back the pages of slots free for longer than @idle_ms (of
 * CLOCK_MONOTONIC); returns how many slots were released. For a periodic
 * caller (the daemon's housekeeping thread). */
size_t fetch_buf_trim(unsigned idle_ms);

struct fetch_buf_stats {
    size_t slots_used, slots_warm, warm_bytes;
    unsigned long long slot_allocs, heap_allocs, released;
};
void fetch_buf_get_stats(struct fetch_buf_stats *ret);
