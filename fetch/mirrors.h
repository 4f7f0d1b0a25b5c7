/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirrors: one repository in several stores, in order of preference. The one
 * failover policy of the program, for chunk fetches (fetch/pool.h, which
 * retries and fails over asynchronously) and for index and blob loads
 * (fs/tree.c, through fetch_mirrors_run()):
 *  - work starts on the active store: the first, until another one worked
 *    after the ones before it failed; then that one, for every caller;
 *  - a failure fetch_remote_retryable() accepts (a timeout, a 5xx, a refused
 *    connection) moves on to the next store, in a ring; any other (-ENOENT,
 *    -EACCES, corrupt data) is final, as every mirror holds the same content.
 * Thread-safe: the active index is atomic.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct fetch_mirrors;

/* @stores (borrowed; they must outlive it) in order of preference; @n >= 1.
 * NULL on ENOMEM or @n == 0. */
struct fetch_mirrors *fetch_mirrors_new(struct fetch_store *const *stores, size_t n);
/* The same mirrors seen through other store objects (@stores[i] reaches the
 * same server as @like's i-th, e.g. its chunk directory): they share the
 * active store and the failover count. @like must outlive it. */
struct fetch_mirrors *fetch_mirrors_new_like(const struct fetch_mirrors *like,
                                             struct fetch_store *const *stores);
void fetch_mirrors_free(struct fetch_mirrors *m); /* NULL-safe */

size_t fetch_mirrors_count(const struct fetch_mirrors *m);
struct fetch_store *fetch_mirrors_store(const struct fetch_mirrors *m, size_t i);
/* Where new work starts. */
size_t fetch_mirrors_active(const struct fetch_mirrors *m);
/* Failovers so far: times another store became the active one. */
uint64_t fetch_mirrors_failovers(const struct fetch_mirrors *m);

/* Whether a failure @r on one store is worth trying on another. */
bool fetch_mirrors_fail_over(const struct fetch_mirrors *m, int r);
/* The store to try after store @i. */
size_t fetch_mirrors_next(const struct fetch_mirrors *m, size_t i);
/* Store @i worked after @tried other stores failed for this piece of work:
 * with @tried > 0 it becomes the active store. */
void fetch_mirrors_worked(struct fetch_mirrors *m, size_t i, size_t tried);
/* Makes store @i active without counting a failover (where the catalog was
 * found at mount time). */
void fetch_mirrors_set_active(struct fetch_mirrors *m, size_t i);

/*
 * Runs @op on the active store, then on the next ones while its failures are
 * worth it (see above), each store at most once. Returns @op's last result.
 */
int fetch_mirrors_run(struct fetch_mirrors *m, int (*op)(struct fetch_store *s, void *arg),
                      void *arg);
