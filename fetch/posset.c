/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "posset.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

/* The slot of @key in @slot (@cap, a power of two): its own or a free one. */
static size_t probe(const uint64_t *slot, size_t cap, uint64_t key)
{
    size_t i = slot_of(key, cap);
    while (slot[i] && slot[i] != key)
        i = (i + 1) & (cap - 1);
    return i;
}

int fetch_posset_add(struct fetch_posset *s, uint64_t pos)
{
    uint64_t key = pos + 1;
    size_t i;

    if (key == 0)
        return -EINVAL;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        uint64_t *t = calloc(cap, sizeof(*t));
        if (!t)
            return -ENOMEM;
        for (size_t k = 0; k < s->cap; k++)
            if (s->slot[k])
                t[probe(t, cap, s->slot[k])] = s->slot[k];
        free(s->slot);
        s->slot = t;
        s->cap = cap;
    }
    i = probe(s->slot, s->cap, key);
    if (s->slot[i])
        return 0;
    s->slot[i] = key;
    s->n++;
    return 1;
}

void fetch_posset_clear(struct fetch_posset *s)
{
    free(s->slot);
    *s = (struct fetch_posset){0};
}
