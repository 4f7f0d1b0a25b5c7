/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "store_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Loads extent @i of the image into a slot: 0 and the slot, or -errno. */
static int load(struct fetch_store_stream *ss, size_t i, unsigned *ret_slot, fetch_error *err)
{
    const struct fetch_extent *e = &ss->img->extents[i];
    struct fetch_chunk_ref ch;
    unsigned victim = 0;
    int r = -ENOENT;

    for (unsigned k = 0; k < FETCH_STORE_STREAM_SLOTS; k++) {
        if (ss->slots[k].extent == i) {
            ss->slots[k].used = ++ss->clock;
            *ret_slot = k;
            return 0;
        }
        if (ss->slots[k].used < ss->slots[victim].used)
            victim = k;
    }
    fetch_chunk_ref_of(e, &ch);
    for (unsigned name = 0;; name++) {
        char path[FETCH_CHUNK_PATH_MAX];
        void *raw = NULL;
        size_t len = 0;
        fetch_data d = {0};
        if ((r = fetch_chunk_path(&ss->cctx, &ch, name, path, sizeof(path))) < 0)
            return fetch_error_set(err, r, "chunk path too long");
        r = fetch_store_get(ss->store, path, fetch_chunk_max_raw(&ch, name), &raw, &len, err);
        if ((r == -ENOENT || r == -ELOOP) && fetch_chunk_has_next_name(&ch, name))
            continue;
        if (r < 0)
            return r;
        ss->chunks++;
        ss->bytes += len;
        if ((r = fetch_chunk_decode(&ss->cctx, &ch, name, raw, len, NULL, &d, err)) < 0)
            return r;
        fetch_data_release(&ss->slots[victim].data);
        ss->slots[victim].data = d;
        ss->slots[victim].extent = i;
        ss->slots[victim].used = ++ss->clock;
        *ret_slot = victim;
        return 0;
    }
}

static int chunk_piece(void *arg, const struct fetch_extent *e, uint32_t from, size_t len,
                       uint8_t *dst, fetch_error *err)
{
    struct fetch_store_stream *ss = arg;
    unsigned k;
    int r = load(ss, (size_t)(e - ss->img->extents), &k, err);
    if (r < 0)
        return r == -ENOMEM ? r : -EIO;
    if (ss->slots[k].data.len != e->length)
        return fetch_error_set(err, -EIO, "a chunk of %zu bytes where the index says %u",
                               ss->slots[k].data.len, e->length);
    memcpy(dst, (const uint8_t *)ss->slots[k].data.bytes + from, len);
    return 0;
}

static int stream_read(void *arg, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    struct fetch_store_stream *ss = arg;
    return fetch_image_read(ss->img, off, buf, len, chunk_piece, ss, err);
}

void fetch_store_stream_init(struct fetch_store_stream *ss, struct fetch_store *store,
                             const struct fetch_chunk_ctx *cctx, const struct fetch_image *img)
{
    memset(ss, 0, sizeof(*ss));
    ss->store = store;
    ss->img = img;
    ss->cctx = *cctx;
    for (unsigned k = 0; k < FETCH_STORE_STREAM_SLOTS; k++)
        ss->slots[k].extent = SIZE_MAX;
    ss->s = (struct fetch_stream){img->size, stream_read, ss};
}

void fetch_store_stream_release(struct fetch_store_stream *ss)
{
    for (unsigned k = 0; k < FETCH_STORE_STREAM_SLOTS; k++)
        fetch_data_release(&ss->slots[k].data);
}
