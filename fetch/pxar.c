/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pxar dialect of the goodbye-table engine (pbs.md §11). */
#include "pxar.h"

#include <errno.h>
#include <string.h>

#include "gbarchive.h"

#define PXAR_FORMAT_VERSION 0x730f6c75df16a40dull
#define PXAR_ENTRY 0xd5956474e588acefull
#define PXAR_ENTRY_V1 0x11da850a1c1cceffull
#define PXAR_PRELUDE 0xe309d79d9f7b771bull
#define PXAR_FILENAME 0x16701121063917b3ull
#define PXAR_SYMLINK 0x27f971e7dbf5dc5full
#define PXAR_HARDLINK 0x51269c8422bd7275ull
#define PXAR_DEVICE 0x9fc9e906586d5ce9ull
#define PXAR_XATTR 0x0dab0229b57dcd03ull
#define PXAR_ACL_USER 0x2ce8540a457d55b8ull
#define PXAR_ACL_GROUP 0x136e3eceb04c03abull
#define PXAR_ACL_GROUP_OBJ 0x10868031e9582876ull
#define PXAR_ACL_DEFAULT 0xbbbb13415a6896f5ull
#define PXAR_ACL_DEFAULT_USER 0xc89357b40532cd1full
#define PXAR_ACL_DEFAULT_GROUP 0xf90a8a5816038ffeull
#define PXAR_FCAPS 0x2da9dd9db5f7fb67ull
#define PXAR_QUOTA_PROJID 0xe07540e82f7d1cbbull
#define PXAR_PAYLOAD 0x28147a1b0b7c1a25ull
#define PXAR_PAYLOAD_REF 0x419d3d6bc4ba977eull
#define PXAR_GOODBYE 0x2fec4fa642d5731dull
#define PXAR_GOODBYE_TAIL_MARKER 0xef5eed5b753e1555ull

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ENTRY: mode u64, flags u64, uid u32, gid u32, mtime {i64 s, u32 ns, u32 pad};
 * ENTRY_V1: the same with mtime as u64 nanoseconds. */
static int entry_fields(uint64_t type, const uint8_t *b, size_t len, struct fetch_archive_entry *e)
{
    if (type == PXAR_ENTRY && len == 40) {
        e->mtime_sec = (int64_t)le64(b + 24);
        e->mtime_nsec = le32(b + 32);
        if (e->mtime_nsec >= 1000000000u)
            return -EBADMSG;
    } else if (type == PXAR_ENTRY_V1 && len == 32) {
        uint64_t ns = le64(b + 24);
        e->mtime_sec = (int64_t)(ns / 1000000000u);
        e->mtime_nsec = (uint32_t)(ns % 1000000000u);
    } else {
        return -EBADMSG;
    }
    e->mode = le64(b);
    e->flags = le64(b + 8);
    e->uid = le32(b + 16);
    e->gid = le32(b + 20);
    return 0;
}

static const uint64_t meta_items[] = {
    PXAR_XATTR,        PXAR_ACL_USER,         PXAR_ACL_GROUP,         PXAR_ACL_GROUP_OBJ,
    PXAR_ACL_DEFAULT,  PXAR_ACL_DEFAULT_USER, PXAR_ACL_DEFAULT_GROUP, PXAR_FCAPS,
    PXAR_QUOTA_PROJID,
};

/* SipHash keys k0 = 0x83ac3f1cfbb450db, k1 = 0xaa4f1b6879369fbd, as bytes */
#define PXAR_HASH_KEY                                                                              \
    {                                                                                              \
        0xdb, 0x50, 0xb4, 0xfb, 0x1c, 0x3f, 0xac, 0x83, 0xbd, 0x9f, 0x36, 0x79, 0x68, 0x1b, 0x4f,  \
            0xaa                                                                                   \
    }

static int pxar_open_op(const struct fetch_stream *meta, const struct fetch_stream *payload,
                        struct fetch_archive **ret, fetch_error *err);

const struct fetch_archive_format fetch_pxar_format = GB_FORMAT("pxar", pxar_open_op);

static const struct gb_dialect pxar = {
    .name = "pxar",
    .format = &fetch_pxar_format,
    .size_first = false,
    .entry = PXAR_ENTRY,
    .entry_v1 = PXAR_ENTRY_V1,
    .filename = PXAR_FILENAME,
    .symlink = PXAR_SYMLINK,
    .device = PXAR_DEVICE,
    .payload = PXAR_PAYLOAD,
    .goodbye = PXAR_GOODBYE,
    .hardlink = PXAR_HARDLINK,
    .payload_ref = PXAR_PAYLOAD_REF,
    .format_version = PXAR_FORMAT_VERSION,
    .prelude = PXAR_PRELUDE,
    .xattr = PXAR_XATTR,
    .fcaps = PXAR_FCAPS,
    .acl_user = PXAR_ACL_USER,
    .acl_group = PXAR_ACL_GROUP,
    .acl_group_obj = PXAR_ACL_GROUP_OBJ,
    .acl_default = PXAR_ACL_DEFAULT,
    .acl_default_user = PXAR_ACL_DEFAULT_USER,
    .acl_default_group = PXAR_ACL_DEFAULT_GROUP,
    .meta_items = meta_items,
    .n_meta_items = sizeof(meta_items) / sizeof(meta_items[0]),
    /* item {hash, offset, size}; tail {marker, offset, size} */
    .gb_hash = 0,
    .gb_off = 1,
    .gb_size = 2,
    .tail_marker = 0,
    .tail_off = 1,
    .tail_size = 2,
    .tail_marker_value = PXAR_GOODBYE_TAIL_MARKER,
    .hash_key = PXAR_HASH_KEY,
    .name_max = FETCH_ARCHIVE_NAME_MAX,
    .entry_fields = entry_fields,
};

static int pxar_open_op(const struct fetch_stream *meta, const struct fetch_stream *payload,
                        struct fetch_archive **ret, fetch_error *err)
{
    return gb_open(&pxar, meta, payload, ret, err);
}

int fetch_pxar_open(const struct fetch_stream *meta, const struct fetch_stream *payload,
                    struct fetch_archive **ret, fetch_error *err)
{
    return gb_open(&pxar, meta, payload, ret, err);
}

unsigned fetch_pxar_version(const struct fetch_archive *a)
{
    return gb_version(a);
}

uint64_t fetch_pxar_hash(const char *name, size_t len)
{
    return gb_hash(pxar.hash_key, name, len);
}
