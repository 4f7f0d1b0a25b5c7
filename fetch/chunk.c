/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunk.h"
#include "buf.h"

#include <errno.h>
#include <string.h>

/* One line per chunk kind. */
static const struct fetch_chunk_format *const formats[] = {
    [FETCH_CHUNK_PBS] = &fetch_pbs_chunk_format,
    [FETCH_CHUNK_CASYNC] = &fetch_cacnk_chunk_format,
};

const struct fetch_chunk_format *fetch_chunk_format_of(unsigned kind)
{
    return kind < sizeof(formats) / sizeof(formats[0]) ? formats[kind] : NULL;
}

void fetch_chunk_ref_of(const struct fetch_extent *e, struct fetch_chunk_ref *ret)
{
    ret->kind = e->kind;
    ret->algo = e->algo;
    ret->len = e->length;
    memcpy(ret->digest, e->digest, sizeof(ret->digest));
}

bool fetch_chunk_has_next_name(const struct fetch_chunk_ref *ch, unsigned name)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    return f && name + 1 < f->names;
}

int fetch_chunk_path(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                     unsigned name, char *buf, size_t len)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    if (!f || name >= f->names)
        return -EINVAL;
    return f->path(ctx, ch, name, buf, len);
}

size_t fetch_chunk_max_raw(const struct fetch_chunk_ref *ch, unsigned name)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    return f && name < f->names ? f->max_raw(ch, name) : 0;
}

size_t fetch_chunk_skew(const struct fetch_chunk_ref *ch, unsigned name)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    return f && name < f->names && f->skew ? f->skew(ch, name) : 0;
}

int fetch_chunk_decode(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                       unsigned name, void *raw, size_t raw_len, fetch_data *ret, fetch_error *err)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    if (!f || name >= f->names) {
        fetch_buf_free(raw);
        return fetch_error_set(err, -EINVAL, "chunk of unknown kind %u", (unsigned)ch->kind);
    }
    return f->decode(ctx, ch, name, raw, raw_len, ret, err);
}
