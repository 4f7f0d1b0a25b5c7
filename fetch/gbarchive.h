/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Archives with goodbye tables: casync's catar (casync.md §6) and the pxar
 * of Proxmox Backup Server that descends from it (pbs.md §11). A tree of
 * items ({type, size} headers; the order is the dialect's), where a
 * directory's children follow it, each after a FILENAME item, and end in a
 * GOODBYE table: the children's name hashes (SipHash-2-4 with the dialect's
 * key) as an implicit binary search tree, each with the distance back to the
 * child, and a tail that gives the table's size and the distance back to the
 * directory's ENTRY. The archive's last 24 bytes are the root's tail, so a
 * reader finds anything by following the tables down from there, reading
 * only the items on the way.
 *
 * One engine (gbarchive.c), a dialect per format (pxar.c, catar.c): what
 * differs is a table of constants and how an ENTRY item is laid out.
 * Every offset, size and table is checked against the range its parent
 * gives it before use: a malformed archive gives -EBADMSG (with the rule it
 * breaks in @err) for the entries it breaks, never a crash, a loop or an
 * allocation beyond the bounds in fetch/archive.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive.h"

/* The largest ENTRY item content a dialect has (catar: 48 bytes). */
#define GB_ENTRY_MAX 64u

struct gb_dialect {
    const char *name; /* "pxar", for messages */
    const struct fetch_archive_format *format;
    bool size_first;          /* headers are {size, type} (catar), else {type, size} */
    uint64_t entry, entry_v1; /* ENTRY types (entry_v1: an older layout, or 0) */
    uint64_t filename, symlink, device, payload, goodbye;
    uint64_t hardlink;       /* 0: none */
    uint64_t payload_ref;    /* a file's bytes in the payload stream (0: none) */
    uint64_t format_version; /* the first item of a split archive's metadata (0: none) */
    uint64_t prelude;        /* may follow it (0: none) */
    uint64_t xattr, fcaps;
    /* POSIX ACL items: named users and groups ({id, perms}), the owning
     * group ({perms}), the default ACL ({user, group, other, mask perms})
     * and its named entries */
    uint64_t acl_user, acl_group, acl_group_obj, acl_default, acl_default_user, acl_default_group;
    /* the items that may come between an ENTRY and its content */
    const uint64_t *meta_items;
    size_t n_meta_items;
    /* where hash, offset and size are in a goodbye item (8-byte fields 0..2),
     * and marker, offset and size in the tail item */
    unsigned gb_hash, gb_off, gb_size;
    unsigned tail_marker, tail_off, tail_size;
    uint64_t tail_marker_value;
    uint8_t hash_key[16];
    unsigned name_max; /* of a file name, without its NUL */
    /* Fills mode, flags, uid, gid and mtime of @e from the content of an
     * ENTRY item of @type (@len bytes at @b); -EBADMSG if malformed. */
    int (*entry_fields)(uint64_t type, const uint8_t *b, size_t len, struct fetch_archive_entry *e);
};

/* SipHash-2-4 of @name (@len bytes) with @key: a goodbye table's hash. */
uint64_t gb_hash(const uint8_t key[16], const char *name, size_t len);

/* The engine: the operations of struct fetch_archive_format, for dialect @d. */
int gb_open(const struct gb_dialect *d, const struct fetch_stream *meta,
            const struct fetch_stream *payload, struct fetch_archive **ret, fetch_error *err);
void gb_free(struct fetch_archive *a);
unsigned gb_version(const struct fetch_archive *a); /* 2 after a FORMAT_VERSION item, else 1 */
int gb_root(struct fetch_archive *a, struct fetch_archive_entry *ret, fetch_error *err);
int gb_lookup(struct fetch_archive *a, const struct fetch_archive_entry *dir, const char *name,
              size_t len, struct fetch_archive_entry *ret, fetch_error *err);
int gb_child(struct fetch_archive *a, const struct fetch_archive_entry *dir, uint64_t i, char *name,
             size_t cap, struct fetch_archive_entry *ret, fetch_error *err);
int gb_readlink(struct fetch_archive *a, const struct fetch_archive_entry *e, char *buf, size_t cap,
                fetch_error *err);
int gb_check_data(struct fetch_archive *a, const struct fetch_archive_entry *e, fetch_error *err);
long gb_read(struct fetch_archive *a, const struct fetch_archive_entry *e, uint64_t off, void *buf,
             size_t len, fetch_error *err);
int gb_xattrs(struct fetch_archive *a, const struct fetch_archive_entry *e, fetch_xattr_fn cb,
              void *arg, fetch_error *err);

/* A format table of the engine's operations for a dialect's open. */
#define GB_FORMAT(NAME, OPEN)                                                                      \
    {                                                                                              \
        .name = NAME, .open = OPEN, .free = gb_free, .root = gb_root, .lookup = gb_lookup,         \
        .child = gb_child, .readlink = gb_readlink, .check_data = gb_check_data, .read = gb_read,  \
        .xattrs = gb_xattrs,                                                                       \
    }
