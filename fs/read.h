/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The read path of an image: offsets to extents, holes from a zero buffer,
 * chunks from fs/chunks.h, replies assembled from pieces that arrive in any
 * order, and readahead of the sequential streams of each open file.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch/view.h"
#include "fs.h"

/* A sequential stream in an open file (see fs_read_image). */
struct fs_stream {
    uint64_t next;    /* offset the next read of the stream starts at */
    uint64_t used;    /* file clock at its last read; 0 = unused slot */
    size_t chunk;     /* extent index of its last read's end */
    size_t requested; /* highest extent index prefetched */
    size_t hinted;    /* highest extent index hinted to the disk cache */
    unsigned window;  /* FS_READAHEAD_UNITs ahead */
    uint64_t epoch;   /* fs_ctx.stream_epoch it was last counted in */
};

#define FS_STREAMS 8 /* a volume striped over up to 8 areas keeps them all */

/* A stream counts among those sharing the readahead memory for one to two
 * epochs of this length after its last read (fs_ctx.stream_epoch). */
#define FS_STREAM_EPOCH_MS 1000

/* Per open() of an image (fi->fh): streams for readahead, guarded by @lock. */
struct fs_file {
    struct fs_file *prev, *next; /* in fs_ctx.files: freed at unmount if never released */
    /* the index the file reads (an image's, or the image's of a partition or
     * volume): a reference (fs_image_get) of @image_node, from the open to
     * the release; both NULL for files of archives */
    struct fs_node *image_node;
    const struct fetch_image *image;
    pthread_mutex_t lock;
    uint64_t clock;
    struct fs_stream streams[FS_STREAMS];
};

/* Once at start, before any read. */
void fs_read_init(void);

/*
 * Answers a read of [@off, @off + @size) of image node @n, whose index @img
 * the caller holds a reference to (fs_image_get: the open file's), opened as
 * @f (may be NULL: no readahead); replies exactly once: at once when every
 * chunk is in memory or in the disk cache, else from the pool worker that
 * completes the last missing chunk, the read holding a reference of its own
 * to @img until then. Starts readahead of @f's sequential streams.
 */
void fs_read_image(struct fs_ctx *ctx, struct fs_node *n, const struct fetch_image *img,
                   struct fs_file *f, fuse_req_t req, uint64_t off, size_t size);

/* The same for a file that is @span bytes of @img from @base on (a file in
 * an archive's stream, whose images live as long as the mount: no
 * reference); @n names it in log lines. base + span <= img->size. */
void fs_read_span(struct fs_ctx *ctx, const struct fs_node *n, const struct fetch_image *img,
                  uint64_t base, uint64_t span, struct fs_file *f, fuse_req_t req, uint64_t off,
                  size_t size);

/* The same for a file that is view @v of image node @n's index @img (a
 * reference the caller holds, as for fs_read_image: a partition, a logical
 * volume) named @name in @n's directory (for log lines). A read that reaches a
 * segment that cannot be read fails with EIO and a log line saying @why
 * (an error the first time, as *@said then tells, later at debug level). */
void fs_read_view(struct fs_ctx *ctx, struct fs_node *n, const struct fetch_image *img,
                  const char *name, const char *why, atomic_bool *said, const struct fetch_view *v,
                  struct fs_file *f, fuse_req_t req, uint64_t off, size_t size);

/*
 * Reads [@off, @off + @len) of @img (held by the caller) into @buf on this thread, waiting for
 * the chunks that must be fetched (at demand priority): for metadata that a
 * request needs before it can answer (archives, partition tables). 0, or
 * -EIO with @err saying why (never a wrong byte), -ENOMEM.
 */
int fs_read_sync(struct fs_ctx *ctx, const struct fetch_image *img, uint64_t off, void *buf,
                 size_t len, fetch_error *err);

/*
 * The watchdog's pass (once a second, fs/daemon.c): a read whose reader
 * went on after an interrupt and is told to end now is answered EINTR; every
 * read that has waited for chunks longer than ctx->stuck_after_ms is
 * logged, with the chunks it still waits for, and again each such period
 * while it waits. Returns how many it logged.
 */
size_t fs_read_watch(struct fs_ctx *ctx, uint64_t now_ms);
