/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MBR and GPT partition tables of a block device (fetch/dev.h), read and
 * validated so that a caller can expose each partition as a byte range of
 * the device. Only the sectors the tables point at are read: the MBR, each
 * EBR of an extended partition's chain, the GPT header at LBA 1 and its
 * entry array, and (when the primary GPT is damaged) the backup header at
 * the device's last LBA and its array. Sectors are 512 bytes (FETCH_SECTOR).
 *
 * Keeps no state between calls: concurrent calls are safe when the
 * devices' read callbacks are.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "error.h"

enum fetch_label_kind {
    FETCH_LABEL_NONE = 0, /* no partition table: the device is one whole volume */
    FETCH_LABEL_MBR,      /* DOS/MBR, with logical partitions in an EBR chain */
    FETCH_LABEL_GPT,      /* UEFI GPT (behind a protective MBR) */
};

/* Bound on the logical partitions (and EBRs) of an MBR's extended partitions */
#define FETCH_LABEL_MAX_LOGICAL 128u
/* Bounds on a GPT entry array: entries, bytes per entry, bytes in all */
#define FETCH_LABEL_GPT_MAX_ENTRIES 4096u
#define FETCH_LABEL_GPT_MAX_ENTRY_SIZE 4096u
#define FETCH_LABEL_GPT_MAX_ARRAY (4u * 1024 * 1024)

struct fetch_partition {
    /*
     * MBR: 1-4 for a primary partition (its slot in the MBR); 5, 6, ... for
     * the logical partitions in chain order, counting only EBRs that hold a
     * partition (as the Linux kernel numbers them). GPT: entry index + 1.
     */
    unsigned number;
    uint64_t start, size; /* bytes from the start of the device; size > 0 */
    uint8_t mbr_type;     /* MBR partition type byte (0 for GPT) */
    bool bootable;        /* MBR status byte 0x80 (false for GPT) */
    /* GPT partition type GUID and unique GUID in on-disk byte order (mixed
     * endian, as stored); all zero for MBR */
    uint8_t type_guid[16], uuid[16];
    uint64_t attributes; /* GPT attribute bits (0 for MBR) */
    /* GPT partition name as NUL-terminated UTF-8 (up to 36 UTF-16 code
     * units, surrogate pairs combined); empty for MBR, for an unnamed entry,
     * and when the stored UTF-16 is invalid (an unpaired surrogate) */
    char name[160];
};

struct fetch_label {
    enum fetch_label_kind kind;
    /* GPT only: the primary header or its entry array was damaged and the
     * table was read from the backup header at the device's last LBA */
    bool used_backup;
    uint8_t disk_guid[16]; /* GPT disk GUID, on-disk byte order (0 for MBR) */
    uint32_t disk_id;      /* MBR disk signature at byte 440 (0 for GPT) */
    size_t count;
    struct fetch_partition *parts; /* @count entries sorted by number; NULL if 0 */
};

/*
 * Reads and validates the partition table of @dev. On success returns 0 and
 * sets *@ret to a label the caller owns (fetch_label_free()); *@ret is
 * untouched on failure.
 *
 * "No table" (0, kind FETCH_LABEL_NONE, count 0): the device is shorter
 * than one sector, sector 0 lacks the 0x55AA signature, the four MBR slots
 * are all zero, or a slot's status byte is neither 0x00 nor 0x80 (the
 * sector is then taken for a filesystem boot sector such as FAT or NTFS,
 * whose code and BPB occupy those bytes).
 *
 * MBR: primary slots of type 0 or size 0 are skipped (their numbers stay
 * free). Each extended partition (types 0x05, 0x0F, 0x85) is followed
 * through its EBR chain and is not itself returned. An EBR is read as the
 * kernel reads it (block/partitions/msdos.c): every entry with a size that
 * is not of an extended type is a logical partition, whatever its type
 * byte (start relative to that EBR; it must start after it), numbered from
 * 5 in order; in the 3rd and 4th entries, which often hold garbage, one
 * that does not fit in the EBR's part of the extended partition is
 * skipped. The first entry of an extended type links to the next EBR
 * (relative to the extended partition's start); an EBR without one ends
 * the chain. A first EBR without the 0x55AA signature means an empty
 * extended partition; a linked EBR without it is an error. The chain is
 * refused when it loops (an EBR offset seen before), leaves its extended
 * partition, or has more than FETCH_LABEL_MAX_LOGICAL EBRs or logical
 * partitions in all.
 *
 * GPT (any MBR slot of type 0xEE): the header at LBA 1 is checked
 * (signature "EFI PART", revision 1.x, header size 92..512, header CRC32,
 * its own LBA, the usable range inside the device, entry size >= 128, a
 * multiple of 8 and <= FETCH_LABEL_GPT_MAX_ENTRY_SIZE, entry count <=
 * FETCH_LABEL_GPT_MAX_ENTRIES, array <= FETCH_LABEL_GPT_MAX_ARRAY bytes and
 * inside the device outside the usable range) and then its entry array's
 * CRC32. If either is bad, the backup header at the last LBA and its own
 * array are checked the same way and used (used_backup) when good; when
 * both are bad the error names the primary's problem first. A read error
 * is returned as is (never a reason to try the backup), and a bad entry in
 * an array whose CRC is right is an error (the backup is not consulted).
 * Entries with an all-zero type GUID are unused and skipped.
 *
 * Both: every partition must lie inside the device (GPT: inside the first
 * to last usable LBA) and no two may overlap; MBR logical partitions must
 * lie inside their extended partition, which must not overlap a primary.
 *
 * Errors: -EBADMSG with @err saying what is wrong (in sectors) for a
 * malformed table; the -errno of dev->read (-EIO...) with its message;
 * -ENOMEM. @err may be NULL.
 */
int fetch_label_read(const struct fetch_dev *dev, struct fetch_label **ret, fetch_error *err);

/* Frees @l and its partitions; NULL-safe. */
void fetch_label_free(struct fetch_label *l);
