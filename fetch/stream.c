/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "stream.h"

#include <errno.h>
#include <string.h>

static int buffer_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    (void)err;
    memcpy(buf, (const uint8_t *)ctx + off, len);
    return 0;
}

void fetch_stream_of_buffer(struct fetch_stream *s, const void *buf, size_t len)
{
    s->size = len;
    s->read = buffer_read;
    s->ctx = (void *)buf;
}
