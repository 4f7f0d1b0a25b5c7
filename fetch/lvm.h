/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LVM2 physical volumes and logical volume maps, read without device-mapper.
 *
 * Given the devices of one disk image (the whole image and/or its
 * partitions), finds the LVM2 physical volume labels among them, reads the
 * volume group metadata from their metadata areas (the text copy with the
 * highest seqno of each VG) and returns every logical volume as a list of
 * segments, each mapping a byte range of the LV onto areas of those devices.
 *
 * Read on disk (all little-endian, 512-byte sectors):
 *   - the label, in one of the first 4 sectors: "LABELONE", its own sector
 *     number, a CRC of the rest of the sector, the offset of the pv_header,
 *     "LVM2 001"; the pv_header: the PV uuid (32 chars), device size, a
 *     zero-terminated list of data areas and one of metadata areas;
 *   - each metadata area: a 512-byte header (CRC, magic, version 1, its own
 *     start, size, slots) whose first slot locates the current metadata text
 *     in the circular buffer that follows the header (wrapping back to
 *     start + 512), with the text's CRC;
 *   - the text, in LVM's config syntax, parsed with fixed bounds (size, depth,
 *     node count, name lengths).
 * Only "striped" segments (linear is striped with one stripe) are mapped,
 * and "zero" ones (zeros, FETCH_LVM_ZERO); other types (error, thin, raid*,
 * snapshot, mirror, cache, ...) are listed as
 * FETCH_LVM_UNSUPPORTED with their type name. A stripe on a pvmove's LV
 * (a move in progress) is mapped to the move's source; one on another LV
 * makes its segment unsupported. A snapshot is listed under the name lvs
 * shows (its copy-on-write store's), and an origin with a snapshot merge
 * pending is unreadable as a whole (fetch_lvm_lv.unreadable).
 *
 * Nothing here is thread-safe or shared: a scan reads through the devices
 * and returns one owned result.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "error.h"

enum fetch_lvm_seg_type {
    FETCH_LVM_LINEAR,     /* "striped" with stripe_count 1 */
    FETCH_LVM_STRIPED,    /* "striped" with stripe_count > 1 */
    FETCH_LVM_ZERO,       /* "zero": reads as zeros; no stripes */
    FETCH_LVM_UNSUPPORTED /* any other type: see type_name; no stripes */
};

struct fetch_lvm_stripe {
    /* index into the caller's device array; SIZE_MAX: the PV is not among
     * the devices (missing) */
    size_t dev;
    /* bytes on that device where this stripe's area starts
     * (pe_start + pe * extent_size) */
    uint64_t offset;
};

struct fetch_lvm_seg {
    uint64_t start, length;       /* bytes within the LV */
    enum fetch_lvm_seg_type type; /* "striped" with stripe_count 1 is LINEAR */
    char type_name[32];           /* the metadata's type string, e.g. "striped", "thin", "raid1" */
    /* bytes (STRIPED only; 0 otherwise): the LV's bytes go round-robin over
     * the stripes in units of stripe_size */
    uint64_t stripe_size;
    unsigned stripe_count;            /* 0 for UNSUPPORTED */
    struct fetch_lvm_stripe *stripes; /* stripe_count of them (NULL for unsupported) */
};

struct fetch_lvm_lv {
    char name[128];
    uint64_t size; /* bytes: sum of segment lengths */
    bool visible;  /* status contains "VISIBLE" (hidden: pool data, raid images...) */
    /* non-empty: none of it can be read (its segments notwithstanding), and
     * why: an origin whose snapshot merge is pending */
    char unreadable[128];
    size_t seg_count;
    struct fetch_lvm_seg *segs; /* sorted by start, contiguous from 0 */
};

struct fetch_lvm_vg {
    char name[128];
    char id[40]; /* the metadata's id, with its dashes */
    uint64_t seqno;
    uint64_t extent_size; /* bytes */
    size_t lv_count;
    struct fetch_lvm_lv *lvs; /* in metadata order */
    /* non-empty: this VG's metadata was refused (lv_count 0, lvs NULL); says
     * why, e.g. "vg0: lv1 segment 2 starts at extent 10, expected 8" */
    char error[256];
};

struct fetch_lvm {
    size_t vg_count;
    struct fetch_lvm_vg *vgs; /* in the order their first copy was found */
    size_t pv_count;          /* devices that carry a valid PV label */
    /* non-empty: the first problem met with a label, metadata area or text
     * copy that was skipped, whether or not a VG got an error for it (a bad
     * copy is harmless when another PV holds a good one); for diagnostics */
    char note[256];
};

/*
 * Scans @devs (@n of them; each read only where LVM's headers point).
 * Returns 0 and *@ret (owned by the caller: fetch_lvm_free) — with vg_count 0
 * if no PV label is found. A device whose label or metadata area is malformed
 * is skipped and, if its metadata text names a VG that no good copy
 * describes, that VG is listed with an error string. A VG whose chosen copy
 * fails validation (segments not contiguous from extent 0, stripes outside
 * their PV or device, bad stripe geometry, unknown PV, absurd counts) is
 * listed with an error and no LVs. Errors: -ENOMEM; -EIO (or the read's own
 * -errno) only when a device read fails, with @err naming the device.
 * *@ret is untouched on failure.
 */
int fetch_lvm_scan(const struct fetch_dev *devs, size_t n, struct fetch_lvm **ret,
                   fetch_error *err);

/* NULL-safe */
void fetch_lvm_free(struct fetch_lvm *l);
