/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "caibx.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* field offsets in the file (casync.md §2.1) */
#define OFF_INDEX_SIZE 0
#define OFF_INDEX_TYPE 8
#define OFF_FLAGS 16
#define OFF_MIN 24
#define OFF_AVG 32
#define OFF_MAX 40
#define OFF_TABLE_SIZE 48
#define OFF_TABLE_TYPE 56
#define INDEX_HEADER_SIZE 48u
/* offsets inside the tail */
#define TAIL_ZERO1 0
#define TAIL_ZERO2 8
#define TAIL_INDEX_OFFSET 16
#define TAIL_SIZE 24
#define TAIL_MARKER 32

/*
 * Feature bits an index may carry: the WITH_* archive metadata bits, then
 * EXCLUDE_FILE, SHA512_256, EXCLUDE_SUBMOUNTS and EXCLUDE_NODUMP (§2.3).
 */
#define KNOWN_FLAGS                                                                                \
    (0x00000001ffffffffull | 0x1000000000000000ull | FETCH_CAIBX_FLAG_SHA512_256 |                 \
     0x4000000000000000ull | 0x8000000000000000ull)

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* Every rule of casync.md's reader checklist; the message names the one broken. */
static int validate(const uint8_t *p, size_t len, fetch_error *err)
{
    uint64_t v, min, avg, max, prev = 0;
    size_t n;
    const uint8_t *tail;

    if (len > FETCH_CAIBX_FILE_MAX)
        return fetch_error_set(err, -EBADMSG,
                               "index: file of %zu bytes is larger than the %llu byte limit", len,
                               (unsigned long long)FETCH_CAIBX_FILE_MAX);
    if (len < FETCH_CAIBX_HEAD + FETCH_CAIBX_TAIL)
        return fetch_error_set(err, -EBADMSG,
                               "index: file of %zu bytes is shorter than the %u byte minimum", len,
                               FETCH_CAIBX_HEAD + FETCH_CAIBX_TAIL);
    if ((len - FETCH_CAIBX_HEAD - FETCH_CAIBX_TAIL) % FETCH_CAIBX_ITEM != 0)
        return fetch_error_set(err, -EBADMSG,
                               "index: file size %zu is not %u + a multiple of %u (truncated "
                               "or trailing bytes)",
                               len, FETCH_CAIBX_HEAD + FETCH_CAIBX_TAIL, FETCH_CAIBX_ITEM);
    n = (len - FETCH_CAIBX_HEAD - FETCH_CAIBX_TAIL) / FETCH_CAIBX_ITEM;

    if ((v = get_le64(p + OFF_INDEX_SIZE)) != INDEX_HEADER_SIZE)
        return fetch_error_set(err, -EBADMSG, "index: INDEX header size is %llu, not %u",
                               (unsigned long long)v, INDEX_HEADER_SIZE);
    if ((v = get_le64(p + OFF_INDEX_TYPE)) != FETCH_CAIBX_TYPE_INDEX)
        return fetch_error_set(err, -EBADMSG,
                               "index: not a casync index (header type %016llx, not %016llx)",
                               (unsigned long long)v, FETCH_CAIBX_TYPE_INDEX);
    if ((v = get_le64(p + OFF_FLAGS)) & ~KNOWN_FLAGS)
        return fetch_error_set(err, -EBADMSG,
                               "index: unknown feature flags %016llx (flags %016llx)",
                               (unsigned long long)(v & ~KNOWN_FLAGS), (unsigned long long)v);

    min = get_le64(p + OFF_MIN);
    avg = get_le64(p + OFF_AVG);
    max = get_le64(p + OFF_MAX);
    if (min < 1 || min > avg || avg > max || max > FETCH_CAIBX_CHUNK_LIMIT)
        return fetch_error_set(err, -EBADMSG,
                               "index: chunk sizes min %llu, avg %llu, max %llu break "
                               "1 <= min <= avg <= max <= %llu",
                               (unsigned long long)min, (unsigned long long)avg,
                               (unsigned long long)max,
                               (unsigned long long)FETCH_CAIBX_CHUNK_LIMIT);

    if ((v = get_le64(p + OFF_TABLE_SIZE)) != UINT64_MAX)
        return fetch_error_set(err, -EBADMSG,
                               "index: TABLE header size is %llu, not %llu (UINT64_MAX)",
                               (unsigned long long)v, (unsigned long long)UINT64_MAX);
    if ((v = get_le64(p + OFF_TABLE_TYPE)) != FETCH_CAIBX_TYPE_TABLE)
        return fetch_error_set(err, -EBADMSG, "index: TABLE header type %016llx, not %016llx",
                               (unsigned long long)v, FETCH_CAIBX_TYPE_TABLE);

    for (size_t i = 0; i < n; i++) {
        uint64_t end = get_le64(p + FETCH_CAIBX_HEAD + i * FETCH_CAIBX_ITEM);
        /* a tail where an item should be: the file goes on after its table */
        if (end == 0 && i > 0 &&
            get_le64(p + FETCH_CAIBX_HEAD + i * FETCH_CAIBX_ITEM + 32) == FETCH_CAIBX_TAIL_MARKER)
            return fetch_error_set(err, -EBADMSG,
                                   "index: trailing bytes after the table tail at offset %zu",
                                   (size_t)(FETCH_CAIBX_HEAD + (i + 1) * FETCH_CAIBX_ITEM));
        if (end <= prev)
            return fetch_error_set(err, -EBADMSG,
                                   "index: chunk %zu ends at %llu, not after %llu (end offsets "
                                   "must strictly increase)",
                                   i, (unsigned long long)end, (unsigned long long)prev);
        /* end > prev, so the subtraction cannot wrap */
        if (end - prev > max)
            return fetch_error_set(err, -EBADMSG,
                                   "index: chunk %zu is %llu bytes, more than chunk_size_max %llu",
                                   i, (unsigned long long)(end - prev), (unsigned long long)max);
        prev = end;
    }

    tail = p + FETCH_CAIBX_HEAD + n * FETCH_CAIBX_ITEM;
    if (get_le64(tail + TAIL_ZERO1) != 0 || get_le64(tail + TAIL_ZERO2) != 0)
        return fetch_error_set(err, -EBADMSG, "index: tail zero fill is not zero");
    if ((v = get_le64(tail + TAIL_INDEX_OFFSET)) != INDEX_HEADER_SIZE)
        return fetch_error_set(err, -EBADMSG, "index: tail index_offset is %llu, not %u",
                               (unsigned long long)v, INDEX_HEADER_SIZE);
    /* v <= len - 48 first, so v + 48 cannot wrap */
    if ((v = get_le64(tail + TAIL_SIZE)) > len - INDEX_HEADER_SIZE || v + INDEX_HEADER_SIZE != len)
        return fetch_error_set(err, -EBADMSG,
                               "index: tail table size %llu + %u is not the file size %zu",
                               (unsigned long long)v, INDEX_HEADER_SIZE, len);
    if ((v = get_le64(tail + TAIL_MARKER)) != FETCH_CAIBX_TAIL_MARKER)
        return fetch_error_set(err, -EBADMSG, "index: tail marker %016llx, not %016llx",
                               (unsigned long long)v, FETCH_CAIBX_TAIL_MARKER);
    return 0;
}

int fetch_caibx_parse(void *buf, size_t len, struct fetch_caibx **ret, fetch_error *err)
{
    const uint8_t *p = buf;
    struct fetch_caibx *idx;
    int r;

    r = validate(p, len, err);
    if (r < 0)
        goto fail;
    idx = calloc(1, sizeof(*idx));
    if (!idx) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    idx->flags = get_le64(p + OFF_FLAGS);
    idx->chunk_min = get_le64(p + OFF_MIN);
    idx->chunk_avg = get_le64(p + OFF_AVG);
    idx->chunk_max = get_le64(p + OFF_MAX);
    idx->algo =
        idx->flags & FETCH_CAIBX_FLAG_SHA512_256 ? FETCH_DIGEST_SHA512_256 : FETCH_DIGEST_SHA256;
    idx->count = (len - FETCH_CAIBX_HEAD - FETCH_CAIBX_TAIL) / FETCH_CAIBX_ITEM;
    idx->items = p + FETCH_CAIBX_HEAD;
    idx->buf = buf;
    idx->size = idx->count ? fetch_caibx_end(idx, idx->count - 1) : 0;
    *ret = idx;
    return 0;
fail:
    free(buf);
    return r;
}

void fetch_caibx_free(struct fetch_caibx *idx)
{
    if (!idx)
        return;
    free(idx->buf);
    free(idx);
}

uint64_t fetch_caibx_end(const struct fetch_caibx *idx, size_t i)
{
    return get_le64(idx->items + i * FETCH_CAIBX_ITEM);
}

const uint8_t *fetch_caibx_id(const struct fetch_caibx *idx, size_t i)
{
    return idx->items + i * FETCH_CAIBX_ITEM + 8;
}

int fetch_image_from_caibx(const struct fetch_caibx *idx, struct fetch_image **ret,
                           fetch_error *err)
{
    return fetch_image_from_items(idx->items, idx->count, FETCH_CHUNK_CASYNC, (uint8_t)idx->algo,
                                  NULL, ret, err);
}
