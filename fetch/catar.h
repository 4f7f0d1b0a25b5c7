/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * casync's catar archives (casync.md §6; casync src/caformat.h), the stream
 * a .caidx indexes, read through the goodbye-table engine (gbarchive.h):
 * entries with their feature flags, user and group names (skipped: the
 * numeric ids are shown), xattrs, file capabilities, symlinks, devices,
 * FIFOs and sockets. catar has no hardlinks.
 */
#pragma once

#include <stdint.h>

#include "archive.h"

extern const struct fetch_archive_format fetch_catar_format;

int fetch_catar_open(const struct fetch_stream *archive, struct fetch_archive **ret,
                     fetch_error *err);
/* SipHash-2-4 of @name with catar's key: the goodbye table's hash. */
uint64_t fetch_catar_hash(const char *name, size_t len);
