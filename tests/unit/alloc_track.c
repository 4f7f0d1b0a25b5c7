/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "alloc_track.h"

#include <stdbool.h>

void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_calloc(size_t nmemb, size_t size);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_calloc(size_t nmemb, size_t size);
/* fetch/buf.h's chunk buffers, which do not all come from malloc */
void *__real_fetch_buf_alloc(size_t n);
void *__real_fetch_buf_realloc(void *p, size_t n);
void *__wrap_fetch_buf_alloc(size_t n);
void *__wrap_fetch_buf_realloc(void *p, size_t n);

static bool tracking;
static size_t largest;

static void note(size_t n)
{
    if (tracking && n > largest)
        largest = n;
}

void *__wrap_malloc(size_t n)
{
    note(n);
    return __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
    note(n);
    return __real_realloc(p, n);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
    if (size && nmemb > (size_t)-1 / size)
        note((size_t)-1);
    else
        note(nmemb * size);
    return __real_calloc(nmemb, size);
}

void *__wrap_fetch_buf_alloc(size_t n)
{
    note(n);
    return __real_fetch_buf_alloc(n);
}

void *__wrap_fetch_buf_realloc(void *p, size_t n)
{
    note(n);
    return __real_fetch_buf_realloc(p, n);
}

void fx_alloc_track_start(void)
{
    largest = 0;
    tracking = true;
}

size_t fx_alloc_track_stop(void)
{
    tracking = false;
    return largest;
}
