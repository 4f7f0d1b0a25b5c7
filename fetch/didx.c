/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "didx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "pbs_format.h"

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Offsets in the 4096-byte header (pbs.md §4). */
#define OFF_UUID 8u
#define OFF_CTIME 24u
#define OFF_CSUM 32u

int fetch_didx_parse(void *buf, size_t len, struct fetch_didx **ret, fetch_error *err)
{
    const uint8_t *p = buf;
    struct fetch_didx *idx;
    uint8_t csum[32];
    uint64_t prev = 0;
    size_t count;
    int r;

    if (len < FETCH_DIDX_HEAD) {
        r = fetch_error_set(err, -EBADMSG, "dynamic index truncated: %zu bytes, header needs %u",
                            len, FETCH_DIDX_HEAD);
        goto fail;
    }
    if (len > FETCH_DIDX_FILE_MAX) {
        r = fetch_error_set(err, -EBADMSG, "dynamic index too large: %zu bytes (at most %llu)", len,
                            (unsigned long long)FETCH_DIDX_FILE_MAX);
        goto fail;
    }
    if (memcmp(p, PBS_MAGIC_DYNAMIC_INDEX, PBS_MAGIC_LEN) != 0) {
        r = fetch_error_set(err, -EBADMSG, "not a dynamic index (bad magic)");
        goto fail;
    }
    if ((len - FETCH_DIDX_HEAD) % FETCH_DIDX_ITEM != 0) {
        r = fetch_error_set(err, -EBADMSG,
                            "dynamic index length %zu is not a 4096-byte header and whole "
                            "40-byte entries",
                            len);
        goto fail;
    }
    count = (len - FETCH_DIDX_HEAD) / FETCH_DIDX_ITEM;
    if ((r = fetch_sha256(p + FETCH_DIDX_HEAD, len - FETCH_DIDX_HEAD, csum)) < 0) {
        fetch_error_set(err, r, "SHA-256 failed");
        goto fail;
    }
    if (memcmp(csum, p + OFF_CSUM, sizeof(csum)) != 0) {
        r = fetch_error_set(err, -EBADMSG, "index checksum mismatch (entry list corrupt)");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t end = get_le64(p + FETCH_DIDX_HEAD + i * FETCH_DIDX_ITEM);
        if (end <= prev) {
            r = fetch_error_set(err, -EBADMSG,
                                "entry %zu: end offset %llu does not follow %llu (offsets must "
                                "increase strictly)",
                                i, (unsigned long long)end, (unsigned long long)prev);
            goto fail;
        }
        if (end - prev > FETCH_DIDX_CHUNK_MAX) {
            r = fetch_error_set(err, -EBADMSG, "entry %zu: a chunk of %llu bytes (at most %u)", i,
                                (unsigned long long)(end - prev), FETCH_DIDX_CHUNK_MAX);
            goto fail;
        }
        prev = end;
    }
    if (!(idx = calloc(1, sizeof(*idx)))) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(idx->uuid, p + OFF_UUID, sizeof(idx->uuid));
    idx->ctime = (int64_t)get_le64(p + OFF_CTIME);
    memcpy(idx->csum, csum, sizeof(csum));
    idx->size = prev;
    idx->count = count;
    idx->items = p + FETCH_DIDX_HEAD;
    idx->buf = buf;
    *ret = idx;
    return 0;
fail:
    free(buf);
    return r;
}

void fetch_didx_free(struct fetch_didx *idx)
{
    if (!idx)
        return;
    free(idx->buf);
    free(idx);
}

int fetch_image_from_didx(const struct fetch_didx *idx, const uint8_t *id_key,
                          struct fetch_image **ret, fetch_error *err)
{
    return fetch_image_from_items(idx->items, idx->count, FETCH_CHUNK_PBS,
                                  id_key ? FETCH_DIGEST_SHA256_KEYED : FETCH_DIGEST_SHA256, id_key,
                                  ret, err);
}
