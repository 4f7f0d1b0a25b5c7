/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pxar archives (pbs.md §11; proxmox/pxar src/format/mod.rs), read through
 * the goodbye-table engine (gbarchive.h): a file tree as one stream (v1,
 * `x.pxar.didx`) or split into a metadata stream and a payload stream (v2,
 * `x.mpxar.didx` + `x.ppxar.didx`, files carrying PAYLOAD_REF); ENTRY and
 * ENTRY_V1, hardlinks, xattrs and file capabilities.
 */
#pragma once

#include <stdint.h>

#include "archive.h"

extern const struct fetch_archive_format fetch_pxar_format;

/* @meta: the archive (v1) or its metadata stream (v2, with @payload). */
int fetch_pxar_open(const struct fetch_stream *meta, const struct fetch_stream *payload,
                    struct fetch_archive **ret, fetch_error *err);
/* 1 or 2: the format version (FORMAT_VERSION item, absent in v1). */
unsigned fetch_pxar_version(const struct fetch_archive *a);
/* SipHash-2-4 of @name with pxar's keys: the goodbye table's hash. */
uint64_t fetch_pxar_hash(const char *name, size_t len);
