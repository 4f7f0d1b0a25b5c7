/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file catalog of a Proxmox Backup Server snapshot (catalog.pcat1.didx,
 * pbs.md §11; proxmox-backup pbs-datastore/src/catalog.rs): the names, kinds,
 * sizes and modification times of the files of the snapshot's single-stream
 * pxar archives, without their contents. Layout: an 8-byte magic, directory
 * blocks written children first ({varint table length, varint count,
 * entries}), and the root block's offset in the last 8 bytes. The root's
 * entries are the archives, named as in the manifest ("root.pxar.didx").
 * Every offset is checked to point back into the catalog; a malformed
 * catalog gives -EBADMSG. Not thread-safe per stream.
 */
#pragma once

#include <stdint.h>

#include "archive.h"
#include "error.h"
#include "stream.h"

#define FETCH_PCAT_DEPTH_MAX 256

struct fetch_pcat_entry {
    const char *name; /* NUL-terminated, no '/' */
    const char *path; /* below the walked directory, '/'-separated */
    enum fetch_archive_kind kind;
    bool hardlink; /* a hardlink (the catalog says no more about it) */
    uint64_t size; /* files */
    int64_t mtime; /* files: seconds */
};

/*
 * Calls @cb for every entry below the root's directory named @top (an
 * archive: "root.pxar.didx"), depth first. @cb returns 0 to go on, or stops
 * the walk with its non-zero return. -ENOENT when @top is not in the
 * catalog, -EBADMSG when malformed, a stream's error.
 */
int fetch_pcat_walk(const struct fetch_stream *s, const char *top,
                    int (*cb)(const struct fetch_pcat_entry *e, void *arg), void *arg,
                    fetch_error *err);
