/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The catar dialect of the goodbye-table engine (casync.md §6). */
#include "catar.h"

#include <errno.h>
#include <string.h>

#include "gbarchive.h"

#define CA_ENTRY 0x1396fabcea5bbb51ull
#define CA_USER 0xf453131aaeeaccb3ull
#define CA_GROUP 0x25eb6ac969396a52ull
#define CA_XATTR 0xb8157091f80bc486ull
#define CA_ACL_USER 0x297dc88b2ef12fafull
#define CA_ACL_GROUP 0x36f2acb56cb3dd0bull
#define CA_ACL_GROUP_OBJ 0x23047110441f38f3ull
#define CA_ACL_DEFAULT 0xfe3eeda6823c8cd0ull
#define CA_ACL_DEFAULT_USER 0xbdf03df9bd010a91ull
#define CA_ACL_DEFAULT_GROUP 0xa0cb1168782d1f51ull
#define CA_FCAPS 0xf7267db0afed0629ull
#define CA_QUOTA_PROJID 0x161baf2d8772a72bull
#define CA_SELINUX 0x46faf0602fd26c59ull
#define CA_SYMLINK 0x664a6fb6830e0d6cull
#define CA_DEVICE 0xac3dace369dfe643ull
#define CA_PAYLOAD 0x8b9e1d93d6dcffc9ull
#define CA_FILENAME 0x6dbb6ebcb3161f0bull
#define CA_GOODBYE 0xdfd35c5e8327c403ull
#define CA_GOODBYE_TAIL_MARKER 0x57446fa533702943ull

/* NAME_MAX: casync refuses longer names */
#define CA_NAME_MAX 255u

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ENTRY: feature_flags, mode, flags, uid, gid, mtime in ns; all le64. The
 * feature flags say what the archive recorded: fields it did not are 0. */
static int entry_fields(uint64_t type, const uint8_t *b, size_t len, struct fetch_archive_entry *e)
{
    uint64_t uid, gid, ns;
    if (type != CA_ENTRY || len != 48)
        return -EBADMSG;
    e->mode = le64(b + 8);
    e->flags = le64(b + 16);
    uid = le64(b + 24);
    gid = le64(b + 32);
    if (uid > UINT32_MAX || gid > UINT32_MAX)
        return -EBADMSG;
    e->uid = (uint32_t)uid;
    e->gid = (uint32_t)gid;
    ns = le64(b + 40);
    e->mtime_sec = (int64_t)(ns / 1000000000u);
    e->mtime_nsec = (uint32_t)(ns % 1000000000u);
    return 0;
}

static const uint64_t meta_items[] = {
    CA_USER,
    CA_GROUP,
    CA_XATTR,
    CA_ACL_USER,
    CA_ACL_GROUP,
    CA_ACL_GROUP_OBJ,
    CA_ACL_DEFAULT,
    CA_ACL_DEFAULT_USER,
    CA_ACL_DEFAULT_GROUP,
    CA_SELINUX,
    CA_FCAPS,
    CA_QUOTA_PROJID,
};

static int catar_open_op(const struct fetch_stream *meta, const struct fetch_stream *payload,
                         struct fetch_archive **ret, fetch_error *err);

const struct fetch_archive_format fetch_catar_format = GB_FORMAT("catar", catar_open_op);

static const struct gb_dialect catar = {
    .name = "catar",
    .format = &fetch_catar_format,
    .size_first = true,
    .entry = CA_ENTRY,
    .filename = CA_FILENAME,
    .symlink = CA_SYMLINK,
    .device = CA_DEVICE,
    .payload = CA_PAYLOAD,
    .goodbye = CA_GOODBYE,
    .xattr = CA_XATTR,
    .fcaps = CA_FCAPS,
    .acl_user = CA_ACL_USER,
    .acl_group = CA_ACL_GROUP,
    .acl_group_obj = CA_ACL_GROUP_OBJ,
    .acl_default = CA_ACL_DEFAULT,
    .acl_default_user = CA_ACL_DEFAULT_USER,
    .acl_default_group = CA_ACL_DEFAULT_GROUP,
    .meta_items = meta_items,
    .n_meta_items = sizeof(meta_items) / sizeof(meta_items[0]),
    /* item {offset, size, hash}; tail {entry offset, size, marker} */
    .gb_off = 0,
    .gb_size = 1,
    .gb_hash = 2,
    .tail_off = 0,
    .tail_size = 1,
    .tail_marker = 2,
    .tail_marker_value = CA_GOODBYE_TAIL_MARKER,
    .hash_key = {0xb3, 0x84, 0x1d, 0x0f, 0x2b, 0x44, 0x74, 0x85, 0xc1, 0x2e, 0xc2, 0xd1, 0x30, 0xed,
                 0x36, 0x27},
    .name_max = CA_NAME_MAX,
    .entry_fields = entry_fields,
};

static int catar_open_op(const struct fetch_stream *meta, const struct fetch_stream *payload,
                         struct fetch_archive **ret, fetch_error *err)
{
    if (payload)
        return fetch_error_set(err, -EINVAL, "a catar archive is one stream");
    return gb_open(&catar, meta, NULL, ret, err);
}

int fetch_catar_open(const struct fetch_stream *archive, struct fetch_archive **ret,
                     fetch_error *err)
{
    return gb_open(&catar, archive, NULL, ret, err);
}

uint64_t fetch_catar_hash(const char *name, size_t len)
{
    return gb_hash(catar.hash_key, name, len);
}
