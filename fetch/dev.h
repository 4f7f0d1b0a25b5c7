/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A read-only block device as the partition-table and volume-manager parsers
 * see it (fetch/disklabel.h, fetch/lvm.h): a size and a synchronous read of
 * any byte range inside it. The parsers never assume the bytes are in memory
 * and read only what their format's headers point at.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct fetch_dev {
    uint64_t size; /* bytes */
    /* Reads exactly @len bytes at @off (off + len <= size) into @buf: 0, or
     * -errno with @err filled (-EIO: the bytes could not be had). */
    int (*read)(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err);
    void *ctx;
};

/* 512-byte sectors: the unit of MBR, GPT (on the images this reads) and LVM2 */
#define FETCH_SECTOR 512u
