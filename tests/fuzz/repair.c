/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "repair.h"

#include <string.h>

#include <zlib.h>

#include "fetch/digest.h"
#include "fetch/pbs_format.h"

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fuzz_fidx_repair(uint8_t *data, size_t size, bool fix_size)
{
    uint64_t cs, body, count, old;

    if (size < PBS_FIDX_HDR_LEN)
        return;
    cs = get_le64(data + PBS_FIDX_OFF_CHUNK_SIZE);
    body = size - PBS_FIDX_HDR_LEN;
    if (fix_size && cs >= PBS_CHUNK_SIZE_MIN && cs <= PBS_CHUNK_SIZE_MAX && (cs & (cs - 1)) == 0 &&
        body % PBS_DIGEST_LEN == 0) {
        count = body / PBS_DIGEST_LEN;
        old = get_le64(data + PBS_FIDX_OFF_SIZE);
        /* count chunks, the last one (old % cs) bytes long unless that is 0 */
        put_le64(data + PBS_FIDX_OFF_SIZE,
                 count ? (count - 1) * cs + (old % cs ? old % cs : cs) : 0);
    }
    (void)fetch_sha256(data + PBS_FIDX_HDR_LEN, body, data + PBS_FIDX_OFF_CSUM);
}

void fuzz_blob_repair(uint8_t *data, size_t size)
{
    size_t hdr = PBS_BLOB_HDR_LEN;
    uLong crc;

    if (size >= PBS_MAGIC_LEN && (!memcmp(data, PBS_MAGIC_BLOB_ENCRYPTED, PBS_MAGIC_LEN) ||
                                  !memcmp(data, PBS_MAGIC_BLOB_ENCR_COMPR, PBS_MAGIC_LEN)))
        hdr = PBS_BLOB_ENC_HDR_LEN;
    if (size < hdr)
        return;
    crc = crc32(0L, Z_NULL, 0);
    for (size_t off = hdr; off < size;) {
        uInt step = size - off > (1u << 30) ? (1u << 30) : (uInt)(size - off);
        crc = crc32(crc, data + off, step);
        off += step;
    }
    for (int i = 0; i < 4; i++)
        data[PBS_BLOB_CRC_OFFSET + i] = (uint8_t)(crc >> (8 * i));
}
