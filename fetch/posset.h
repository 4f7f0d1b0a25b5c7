/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A set of stream positions, for walks of untrusted archives and catalogs
 * that must visit each directory once: a hostile file can name one
 * directory from many places (2^depth paths from a few KiB). Not
 * thread-safe; zero-initialised is empty.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct fetch_posset {
    uint64_t *slot; /* open addressing, position + 1 (0: free) */
    size_t cap, n;
};

/* Adds @pos: 1 if it is new, 0 if it was there, -ENOMEM. */
int fetch_posset_add(struct fetch_posset *s, uint64_t pos);

/* Frees the set and leaves it empty. */
void fetch_posset_clear(struct fetch_posset *s);
