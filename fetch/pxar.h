/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pxar archives (pbs.md §11; proxmox/pxar src/format/mod.rs): a file tree
 * as one stream (v1, `x.pxar.didx`) or split into a metadata stream and a
 * payload stream (v2, `x.mpxar.didx` + `x.ppxar.didx`, files carrying
 * PAYLOAD_REF). Read lazily: the root is found from the stream's last 24
 * bytes, a name through its directory's goodbye table (SipHash-2-4, an
 * implicit binary search tree), so opening a/b/c reads only the items on
 * that path; a file's bytes are a range of the payload stream.
 *
 * Every offset, size and table is checked against the range its parent
 * gives it before use: a malformed archive gives -EBADMSG (with the rule it
 * breaks in @err) for the entries it breaks, never a crash, a loop or an
 * allocation beyond the small bounds below. Thread-safe: an archive is
 * immutable once open; reads go to the streams.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive.h"
#include "error.h"
#include "stream.h"

/* Bounds on what one item may hold. */
#define FETCH_PXAR_NAME_MAX 4095u         /* a file name, without its NUL */
#define FETCH_PXAR_PATH_MAX 4095u         /* a symlink or hardlink target */
#define FETCH_PXAR_XATTR_MAX (64u * 1024) /* one xattr item: name, NUL, value */
#define FETCH_PXAR_GOODBYE_MAX (1u << 24) /* items in one directory */

struct fetch_pxar;

/*
 * Opens the archive in @meta (v1: the whole archive; v2: the metadata
 * stream) with @payload (v2) or NULL (v1); both borrowed, they must outlive
 * it. Reads the root's goodbye tail. -EBADMSG, -ENOMEM, or a stream's error.
 */
int fetch_pxar_open(const struct fetch_stream *meta, const struct fetch_stream *payload,
                    struct fetch_pxar **ret, fetch_error *err);
void fetch_pxar_free(struct fetch_pxar *a);
/* 1 or 2: the format version (FORMAT_VERSION item, absent in v1). */
unsigned fetch_pxar_version(const struct fetch_pxar *a);

int fetch_pxar_root(struct fetch_pxar *a, struct fetch_archive_entry *ret, fetch_error *err);

/*
 * The entry named @name (@len bytes, no '/') in directory @dir: 0 and *@ret,
 * -ENOENT, -ENOTDIR, or -EBADMSG/-EIO. Hardlinks are resolved: *@ret is the
 * entry they point at.
 */
int fetch_pxar_lookup(struct fetch_pxar *a, const struct fetch_archive_entry *dir, const char *name,
                      size_t len, struct fetch_archive_entry *ret, fetch_error *err);

/*
 * Child @i (0 <= i < dir->goodbye_count, in goodbye-table order) of @dir:
 * its name (NUL-terminated, at most FETCH_PXAR_NAME_MAX bytes, in @name of
 * @name_cap bytes) and entry (hardlinks resolved). -EBADMSG/-EIO, -ERANGE
 * past the end.
 */
int fetch_pxar_child(struct fetch_pxar *a, const struct fetch_archive_entry *dir, uint64_t i,
                     char *name, size_t name_cap, struct fetch_archive_entry *ret,
                     fetch_error *err);

/* Reads the target of symlink @e into @buf (@cap > e->size), NUL-terminated. */
int fetch_pxar_readlink(struct fetch_pxar *a, const struct fetch_archive_entry *e, char *buf,
                        size_t cap, fetch_error *err);

/* Whether file @e's payload stream has its PAYLOAD header where the entry
 * says (v2); 0 or -EBADMSG. */
int fetch_pxar_check_data(struct fetch_pxar *a, const struct fetch_archive_entry *e,
                          fetch_error *err);

/*
 * Reads up to @len bytes of file @e at @off into @buf: the count (0 at or
 * past the end), or -errno. For callers that read through the streams; the
 * mount maps file ranges onto the payload stream itself (data_off).
 */
long fetch_pxar_read(struct fetch_pxar *a, const struct fetch_archive_entry *e, uint64_t off,
                     void *buf, size_t len, fetch_error *err);

/*
 * Calls @cb for each extended attribute of @e (name NUL-terminated, value of
 * @vlen bytes), ACLs as "system.posix_acl_access"/"..._default" in the
 * kernel's xattr form and file capabilities as "security.capability".
 * Stops at a non-zero return of @cb and returns it; 0, or -errno.
 */
int fetch_pxar_xattrs(struct fetch_pxar *a, const struct fetch_archive_entry *e,
                      int (*cb)(const char *name, const void *value, size_t vlen, void *arg),
                      void *arg, fetch_error *err);

/* The decoder as an archive format (fetch/archive.h): open returns a
 * struct fetch_pxar. */
extern const struct fetch_archive_format fetch_pxar_format;

/* SipHash-2-4 of @name with pxar's keys: the goodbye table's hash. */
uint64_t fetch_pxar_hash(const char *name, size_t len);
