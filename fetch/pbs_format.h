/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * On-disk constants of the Proxmox Backup Server datastore format
 * (shared/formats/pbs.md; proxmox-backup pbs-datastore/src/file_formats.rs).
 * All on-disk integers are little-endian. Shared by the reader (fetch/) and
 * the fixture writer (contrib/); contains no code.
 */
#pragma once

#include <stdint.h>

#define PBS_MAGIC_LEN 8

/* each magic is sha256("<description>")[0..8] */
#define PBS_MAGIC_BLOB_UNCOMPRESSED "\x42\xab\x38\x07\xbe\x83\x70\xa1"
#define PBS_MAGIC_BLOB_COMPRESSED "\x31\xb9\x58\x42\x6f\xb6\xa3\x7f"
#define PBS_MAGIC_BLOB_ENCRYPTED "\x7b\x67\x85\xbe\x22\x2d\x4c\xf0"
#define PBS_MAGIC_BLOB_ENCR_COMPR "\xe6\x59\x1b\xbf\x0b\xbf\xd8\x0b"
#define PBS_MAGIC_FIXED_INDEX "\x2f\x7f\x41\xed\x91\xfd\x0f\xcd"
#define PBS_MAGIC_DYNAMIC_INDEX "\x1c\x91\x4e\xa5\x19\xba\xb3\xcd"

/* blob header: magic(8) crc32(4) [iv(16) tag(16)] payload */
#define PBS_BLOB_HDR_LEN 12u
#define PBS_BLOB_ENC_HDR_LEN 44u
#define PBS_BLOB_CRC_OFFSET 8u
#define PBS_BLOB_IV_LEN 16u
#define PBS_BLOB_TAG_LEN 16u
#define PBS_BLOB_MAX (128u * 1024 * 1024)

/* fixed index: 4096-byte header, then one 32-byte digest per chunk */
#define PBS_FIDX_HDR_LEN 4096u
#define PBS_FIDX_OFF_MAGIC 0u
#define PBS_FIDX_OFF_UUID 8u
#define PBS_FIDX_OFF_CTIME 24u
#define PBS_FIDX_OFF_CSUM 32u
#define PBS_FIDX_OFF_SIZE 64u
#define PBS_FIDX_OFF_CHUNK_SIZE 72u

#define PBS_DIGEST_LEN 32u
#define PBS_CHUNK_SIZE_MIN (64u * 1024)
#define PBS_CHUNK_SIZE_MAX (4u * 1024 * 1024)
#define PBS_CHUNK_SIZE_DEFAULT PBS_CHUNK_SIZE_MAX

#define PBS_MANIFEST_NAME "index.json.blob"
/* the dynamic index of the catalog of a snapshot's pxar archives */
#define PBS_CATALOG_NAME "catalog.pcat1.didx"
/* the backup key encrypted to an RSA master key (pbs.md §5): the client
 * uploads it as a plain blob, and its manifest entry has the backup's
 * crypt-mode ("encrypt") all the same */
#define PBS_MASTER_KEY_BLOB_NAME "rsa-encrypted.key.blob"
#define PBS_CHUNK_DIR ".chunks"
#define PBS_NS_DIR "ns"
#define PBS_NS_MAX_DEPTH 7
#define PBS_NS_MAX_LEN 256
/* "YYYY-MM-DDTHH:MM:SSZ" */
#define PBS_TIME_LEN 20
