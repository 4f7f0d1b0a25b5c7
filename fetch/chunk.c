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

enum { TAP_WAIT_HEAD, TAP_HASHING, TAP_OFF, TAP_FAILED };

void fetch_chunk_tap_feed(struct fetch_chunk_tap *t, const struct fetch_chunk_ref *ch,
                          unsigned name, const uint8_t *obj, size_t off, size_t n)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    size_t skew;

    if (!obj) {
        t->fed = 0;
        t->state = TAP_WAIT_HEAD;
        return;
    }
    if (off != t->fed)
        t->state = TAP_FAILED; /* not the bytes in order: never trusted */
    t->fed += n;
    if (t->state == TAP_HASHING) {
        if (fetch_sha256_update(t->sha, obj + off, n) < 0)
            t->state = TAP_FAILED;
        return;
    }
    if (t->state != TAP_WAIT_HEAD)
        return;
    if (!f || name >= f->names || !f->plain_after_skew || !f->skew || fetch_sha256_pairs()) {
        t->state = TAP_OFF;
        return;
    }
    skew = f->skew(ch, name);
    if (t->fed < skew)
        return;
    if (!f->plain_after_skew(ch, name, obj)) {
        t->state = TAP_OFF;
        return;
    }
    if (t->sha ? fetch_sha256_reset(t->sha) < 0 : !(t->sha = fetch_sha256_new())) {
        t->state = TAP_FAILED;
        return;
    }
    /* the bytes after the head that have arrived so far, this call's included */
    t->state = fetch_sha256_update(t->sha, obj + skew, (size_t)t->fed - skew) < 0 ? TAP_FAILED
                                                                                  : TAP_HASHING;
}

void fetch_chunk_tap_release(struct fetch_chunk_tap *t)
{
    fetch_sha256_free(t->sha);
    t->sha = NULL;
}

int fetch_chunk_decode(const struct fetch_chunk_ctx *ctx, const struct fetch_chunk_ref *ch,
                       unsigned name, void *raw, size_t raw_len, struct fetch_chunk_tap *tap,
                       fetch_data *ret, fetch_error *err)
{
    const struct fetch_chunk_format *f = fetch_chunk_format_of(ch->kind);
    uint8_t digest[FETCH_SHA256_LEN];
    const uint8_t *plain_sha256 = NULL;
    if (!f || name >= f->names) {
        fetch_buf_free(raw);
        return fetch_error_set(err, -EINVAL, "chunk of unknown kind %u", (unsigned)ch->kind);
    }
    /* the tap's digest describes @raw only if it saw every one of its bytes */
    if (tap && tap->state == TAP_HASHING && tap->fed == raw_len &&
        fetch_sha256_final(tap->sha, digest) == 0)
        plain_sha256 = digest;
    if (tap)
        tap->state = TAP_OFF; /* finalised: unusable until the next attempt */
    return f->decode(ctx, ch, name, raw, raw_len, plain_sha256, ret, err);
}
