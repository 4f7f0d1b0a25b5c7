/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fidx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "pbs_format.h"

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int fetch_fidx_parse(void *buf, size_t len, struct fetch_fidx **ret, fetch_error *err)
{
    const uint8_t *p = buf;
    struct fetch_fidx *idx;
    uint64_t size, cs, count;
    uint8_t csum[32];
    int r;

    if (len < PBS_FIDX_HDR_LEN) {
        r = fetch_error_set(err, -EBADMSG, "fixed index truncated: %zu bytes, header needs %u", len,
                            PBS_FIDX_HDR_LEN);
        goto fail;
    }
    if (memcmp(p + PBS_FIDX_OFF_MAGIC, PBS_MAGIC_FIXED_INDEX, PBS_MAGIC_LEN) != 0) {
        r = fetch_error_set(err, -EBADMSG, "not a fixed index (bad magic)");
        goto fail;
    }
    size = read_le64(p + PBS_FIDX_OFF_SIZE);
    cs = read_le64(p + PBS_FIDX_OFF_CHUNK_SIZE);
    if (cs < PBS_CHUNK_SIZE_MIN || cs > PBS_CHUNK_SIZE_MAX || (cs & (cs - 1)) != 0) {
        r = fetch_error_set(err, -EBADMSG,
                            "invalid chunk size %llu (must be a power of two, 64 KiB to 4 MiB)",
                            (unsigned long long)cs);
        goto fail;
    }
    count = size / cs + (size % cs != 0);
    if ((len - PBS_FIDX_HDR_LEN) % PBS_DIGEST_LEN != 0 ||
        (len - PBS_FIDX_HDR_LEN) / PBS_DIGEST_LEN != count) {
        r = fetch_error_set(err, -EBADMSG,
                            "index length %zu does not match image size %llu / chunk size %llu "
                            "(%llu digests expected)",
                            len, (unsigned long long)size, (unsigned long long)cs,
                            (unsigned long long)count);
        goto fail;
    }
    r = fetch_sha256(p + PBS_FIDX_HDR_LEN, len - PBS_FIDX_HDR_LEN, csum);
    if (r < 0) {
        fetch_error_set(err, r, "SHA-256 failed");
        goto fail;
    }
    if (memcmp(csum, p + PBS_FIDX_OFF_CSUM, sizeof(csum)) != 0) {
        r = fetch_error_set(err, -EBADMSG, "index checksum mismatch (digest list corrupt)");
        goto fail;
    }
    idx = calloc(1, sizeof(*idx));
    if (!idx) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(idx->uuid, p + PBS_FIDX_OFF_UUID, sizeof(idx->uuid));
    idx->ctime = (int64_t)read_le64(p + PBS_FIDX_OFF_CTIME);
    memcpy(idx->csum, csum, sizeof(csum));
    idx->size = size;
    idx->chunk_size = cs;
    idx->count = (size_t)count;
    idx->digests = p + PBS_FIDX_HDR_LEN;
    idx->buf = buf;
    *ret = idx;
    return 0;
fail:
    free(buf);
    return r;
}

void fetch_fidx_free(struct fetch_fidx *idx)
{
    if (!idx)
        return;
    free(idx->buf);
    free(idx);
}
