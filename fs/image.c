/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The image read path: offsets to extents, holes from a zero buffer, chunks from fs/chunks. */
#include "fs.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "fetch/names.h"
#include "log.h"

/* Never written: holes are answered from it. */
static uint8_t zero_buf[FS_MAX_READ];

/*
 * Disk-cache hits are read into a per-thread buffer of FS_MAX_READ bytes, at
 * the offset of the piece in the request: the reply is sent from the same
 * thread before the buffer is reused, and no read allocates.
 */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    (void)pthread_key_create(&scratch_key, free);
}

static uint8_t *thread_scratch(void)
{
    uint8_t *b;
    pthread_once(&scratch_once, scratch_key_init);
    b = pthread_getspecific(scratch_key);
    if (!b && (b = malloc(FS_MAX_READ)) && pthread_setspecific(scratch_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

/* enough for a 1 MiB read over 64 KiB chunks, unaligned, without allocating */
#define STACK_IOV 24

static void log_chunk_error(const struct fs_node *n, const struct fetch_extent *e, int r,
                            const fetch_error *err)
{
    char path[512];
    fs_node_path(n, path, sizeof(path));
    fs_err("%s: read error at offset %llu (chunk %zu bytes): %s", path,
           (unsigned long long)e->offset, (size_t)e->length,
           err->msg[0] ? err->msg : strerror(-r));
}

void fs_image_read(struct fs_ctx *ctx, const struct fs_node *n, fuse_req_t req, uint64_t off,
                   size_t size)
{
    const struct fetch_image *img = n->image;
    struct iovec stack_iov[STACK_IOV], *iov = stack_iov;
    struct cache_mem_entry *stack_held[STACK_IOV], **held = stack_held;
    size_t niov = 0, nheld = 0, first, last, slots;
    uint8_t *scratch = NULL; /* disk-cache hits are read into it, at the request offset */
    uint64_t end;
    int r = 0;

    if (off >= img->size || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > FS_MAX_READ)
        size = FS_MAX_READ;
    end = off + size > img->size ? img->size : off + size;
    first = fetch_image_find(img, off);
    last = fetch_image_find(img, end - 1);
    slots = last - first + 1;
    if (slots > STACK_IOV) {
        iov = calloc(slots, sizeof(*iov));
        held = calloc(slots, sizeof(*held));
        if (!iov || !held) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = first; i <= last; i++) {
        const struct fetch_extent *e = &img->extents[i];
        uint64_t from = off > e->offset ? off : e->offset;
        uint64_t to = end < e->offset + e->length ? end : e->offset + e->length;
        size_t len = (size_t)(to - from);

        if (e->zero) {
            /* adjacent hole pieces merge; a read is at most FS_MAX_READ long */
            if (niov && iov[niov - 1].iov_base == (void *)zero_buf)
                iov[niov - 1].iov_len += len;
            else
                iov[niov++] = (struct iovec){zero_buf, len};
        } else {
            struct cache_mem_entry *ref = NULL;
            const uint8_t *bytes;
            fetch_error err = {""};
            if (!scratch && ctx->has_disk_cache && !(scratch = thread_scratch())) {
                r = -ENOMEM;
                goto out;
            }
            r = fs_chunks_read(ctx->chunks, e, (uint32_t)(from - e->offset), len,
                               scratch ? scratch + (from - off) : NULL, &bytes, &ref, &err);
            if (r < 0) {
                log_chunk_error(n, e, r, &err);
                goto out;
            }
            if (ref)
                held[nheld++] = ref;
            iov[niov++] = (struct iovec){(void *)bytes, len};
        }
    }
out:
    if (r < 0)
        fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
    else
        fuse_reply_iov(req, iov, (int)niov);
    for (size_t i = 0; i < nheld; i++)
        fs_chunks_put(ctx->chunks, held[i]);
    if (iov != stack_iov)
        free(iov);
    if (held != stack_held)
        free(held);
}
