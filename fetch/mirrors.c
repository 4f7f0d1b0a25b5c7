/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mirrors.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "remote.h"

struct fetch_mirrors {
    struct fetch_store *const *stores;
    size_t n;
    struct fetch_mirrors *state; /* itself, or the one it was made like */
    atomic_size_t active;
    atomic_uint_fast64_t failovers;
};

struct fetch_mirrors *fetch_mirrors_new(struct fetch_store *const *stores, size_t n)
{
    struct fetch_mirrors *m;
    if (!n || !(m = calloc(1, sizeof(*m))))
        return NULL;
    m->stores = stores;
    m->n = n;
    m->state = m;
    return m;
}

struct fetch_mirrors *fetch_mirrors_new_like(const struct fetch_mirrors *like,
                                             struct fetch_store *const *stores)
{
    struct fetch_mirrors *m = fetch_mirrors_new(stores, like->n);
    if (m)
        m->state = like->state;
    return m;
}

void fetch_mirrors_free(struct fetch_mirrors *m)
{
    free(m);
}

size_t fetch_mirrors_count(const struct fetch_mirrors *m)
{
    return m->n;
}

struct fetch_store *fetch_mirrors_store(const struct fetch_mirrors *m, size_t i)
{
    return m->stores[i];
}

size_t fetch_mirrors_active(const struct fetch_mirrors *m)
{
    return atomic_load(&m->state->active);
}

uint64_t fetch_mirrors_failovers(const struct fetch_mirrors *m)
{
    return atomic_load(&m->state->failovers);
}

bool fetch_mirrors_fail_over(const struct fetch_mirrors *m, int r)
{
    return m->n > 1 && fetch_remote_retryable(r);
}

size_t fetch_mirrors_next(const struct fetch_mirrors *m, size_t i)
{
    return (i + 1) % m->n;
}

void fetch_mirrors_worked(struct fetch_mirrors *m, size_t i, size_t tried)
{
    if (tried > 0 && atomic_exchange(&m->state->active, i) != i)
        atomic_fetch_add(&m->state->failovers, 1);
}

void fetch_mirrors_set_active(struct fetch_mirrors *m, size_t i)
{
    if (i < m->n)
        atomic_store(&m->state->active, i);
}

int fetch_mirrors_run(struct fetch_mirrors *m, int (*op)(struct fetch_store *s, void *arg),
                      void *arg)
{
    size_t i = fetch_mirrors_active(m);
    int r = -EIO;
    for (size_t tried = 0; tried < m->n; tried++, i = fetch_mirrors_next(m, i)) {
        /* an unavailable store is waited for only when it is the last one */
        bool prev = fetch_remote_wait_outages(tried + 1 >= m->n);
        r = op(m->stores[i], arg);
        fetch_remote_wait_outages(prev);
        if (r == 0) {
            fetch_mirrors_worked(m, i, tried);
            break;
        }
        if (!fetch_mirrors_fail_over(m, r))
            break;
    }
    return r;
}
