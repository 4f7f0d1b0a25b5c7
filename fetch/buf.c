/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "buf.h"
#include "clock.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define BUF_USE_SLOTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUF_USE_SLOTS 0
#endif
#endif
#ifndef BUF_USE_SLOTS
#define BUF_USE_SLOTS 1
#endif

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint8_t *region; /* FETCH_BUF_SLOTS slots, NULL if not mapped */
/* Slot i is at region + i * stride. With transparent huge pages, stride is
 * FETCH_BUF_SLOT rounded up to the huge page size, and the first huge_len
 * bytes of a slot are in huge pages while it is a huge slot (huge[i]); the
 * rest (the header room) never is, so that it costs small pages only.
 * huge_page is 0 without huge pages. */
static size_t stride = FETCH_BUF_SLOT, huge_len, huge_page;
static bool huge[FETCH_BUF_SLOTS];
/* free slots, oldest first: warm[nwarm - 1] was freed last */
static uint16_t warm[FETCH_BUF_SLOTS], cold[FETCH_BUF_SLOTS];
static size_t nwarm, ncold, warm_bytes, used;
static size_t touched[FETCH_BUF_SLOTS];    /* bytes of the slot that may be resident */
static uint64_t freed_at[FETCH_BUF_SLOTS]; /* CLOCK_MONOTONIC ms when last freed */
static unsigned long long slot_allocs, heap_allocs, released;

/* The text of a small file (a sysfs setting), NUL-terminated: 0 or -1. */
static int read_setting(const char *path, char *text, size_t size)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, text, size - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = 0;
    return 0;
}

/* The size of a transparent huge page if the kernel can give this process
 * some (sysfs says neither "never" nor an unknown size), else 0. */
static size_t thp_size(void)
{
    char text[64];
    unsigned long long v;
    if (read_setting("/sys/kernel/mm/transparent_hugepage/enabled", text, sizeof(text)) < 0 ||
        strstr(text, "[never]") ||
        read_setting("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", text, sizeof(text)) < 0)
        return 0;
    v = strtoull(text, NULL, 10);
    /* a power of two that a chunk fills at least once (2 MiB on x86-64) */
    if (v < ((size_t)64 << 10) || v > FETCH_BUF_SLOT || (v & (v - 1)))
        return 0;
    return (size_t)v;
}

/* Maps the slots. A buffer's pages are touched for the first time once per
 * slot (they stay mapped while the slot is reused), and on this project's
 * virtual machines a first touch costs a fault in the guest and another in
 * the host per 4 KiB: in huge pages it costs one per 2 MiB (measured: 4 MiB
 * written to fresh memory at 300-390 MB/s in small pages, 600-1140 MB/s in
 * huge ones). Kernels set to give huge pages only where asked ("madvise",
 * as on this project's machines) get asked. */
static void region_init(void)
{
    size_t hp, len;
    uint8_t *m, *start;
    if (!BUF_USE_SLOTS)
        return;
    hp = thp_size();
    if (hp) {
        stride = (FETCH_BUF_SLOT + hp - 1) / hp * hp;
        huge_len = FETCH_BUF_SLOT / hp * hp;
        huge_page = hp;
    }
    len = (size_t)FETCH_BUF_SLOTS * stride;
    m = mmap(NULL, len + hp, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (m == MAP_FAILED)
        return; /* everything from malloc */
    start = m;
    if (hp) {
        /* a huge page needs an aligned address: trim the excess off both ends */
        start = (uint8_t *)(((uintptr_t)m + hp - 1) & ~(uintptr_t)(hp - 1));
        if (start > m)
            munmap(m, (size_t)(start - m));
        if (start + len < m + len + hp)
            munmap(start + len, (size_t)(m + len + hp - (start + len)));
        /* small pages until a slot is first used for a buffer of at least
         * a huge page (set_huge), also where the kernel's setting is
         * "always" */
        if (madvise(start, len, MADV_NOHUGEPAGE) != 0)
            huge_len = huge_page = 0;
    }
    region = start;
    for (size_t i = 0; i < FETCH_BUF_SLOTS; i++)
        cold[i] = (uint16_t)(FETCH_BUF_SLOTS - 1 - i);
    ncold = FETCH_BUF_SLOTS;
}

/* Bytes resident once the first @n bytes of slot @s have been touched: the
 * huge pages count whole. */
static size_t resident_bytes(size_t s, size_t n)
{
    if (!huge[s] || n >= huge_len)
        return n;
    return (n + huge_page - 1) / huge_page * huge_page;
}

/* Whether a buffer of @len bytes belongs in a huge slot: one smaller than a
 * huge page would hold a whole one (a casync chunk of 256 KiB, 2 MiB). */
static bool wants_huge(size_t len)
{
    return huge_page && len >= huge_page;
}

/* Makes free, empty slot @s a huge slot or a small one; the slot is the
 * caller's (on no list), no lock held. */
static void set_huge(size_t s, bool on)
{
    if (huge[s] == on)
        return;
    if (madvise(region + s * stride, huge_len, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0)
        huge[s] = on;
}

/* Takes a free slot for a buffer of the kind @want (huge or small), lock
 * held: the most recently freed one of that kind among the last few freed,
 * else a cold one, else the most recently freed. SIZE_MAX if none is free;
 * *@ret_cold tells that the slot had no pages. */
static size_t take_slot(bool want, bool *ret_cold)
{
    enum { LOOK_BACK = 8 };
    size_t i, s;
    *ret_cold = false;
    for (i = nwarm; i > 0 && nwarm - i < LOOK_BACK; i--) {
        if (huge[warm[i - 1]] == want)
            break;
    }
    if (i == 0 || nwarm - i >= LOOK_BACK) {
        if (ncold) {
            *ret_cold = true;
            return cold[--ncold];
        }
        if (!nwarm)
            return SIZE_MAX;
        i = nwarm; /* the most recently freed, of the other kind */
    }
    s = warm[i - 1];
    memmove(warm + i - 1, warm + i, (nwarm - i) * sizeof(warm[0]));
    nwarm--;
    warm_bytes -= resident_bytes(s, touched[s]);
    return s;
}

static bool in_region(const void *p, size_t *ret_slot)
{
    uintptr_t a = (uintptr_t)p, r = (uintptr_t)region;
    if (!region || a < r || a >= r + (uintptr_t)FETCH_BUF_SLOTS * stride)
        return false;
    *ret_slot = (size_t)((a - r) / stride);
    return true;
}

void *fetch_buf_alloc_skewed(size_t len, size_t skew)
{
    size_t s, pad = (FETCH_BUF_ALIGN - skew % FETCH_BUF_ALIGN) % FETCH_BUF_ALIGN;
    if (len >= FETCH_BUF_MIN && len <= FETCH_BUF_SLOT - pad) {
        bool fresh, want;
        pthread_once(&once, region_init);
        want = wants_huge(pad + len); /* what the buffer spans of its slot */
        pthread_mutex_lock(&lock);
        if (region && (s = take_slot(want, &fresh)) != SIZE_MAX) {
            if (touched[s] < pad + len)
                touched[s] = pad + len;
            used++;
            slot_allocs++;
            pthread_mutex_unlock(&lock);
            if (fresh)
                set_huge(s, want);
            return region + s * stride + pad;
        }
        pthread_mutex_unlock(&lock);
    }
    __atomic_add_fetch(&heap_allocs, 1, __ATOMIC_RELAXED);
    if (len >= FETCH_BUF_MIN && !pad) {
        /* on a page all the same: a chunk larger than a slot, or any under
         * AddressSanitizer, is then loaded from the disk cache with O_DIRECT
         * too (free() and realloc() take it) */
        void *p;
        return posix_memalign(&p, FETCH_BUF_ALIGN, len) == 0 ? p : NULL;
    }
    return malloc(len ? len : 1);
}

void *fetch_buf_alloc(size_t len)
{
    return fetch_buf_alloc_skewed(len, 0);
}

/* Moves the free slots freed longest ago to the cold list, giving their pages
 * back: those freed before @before, then any beyond FETCH_BUF_WARM_MAX bytes.
 * Takes and releases the lock; returns how many were released. */
static size_t release_old(uint64_t before)
{
    size_t drop[FETCH_BUF_SLOTS], ndrop = 0;
    pthread_mutex_lock(&lock);
    while (ndrop < nwarm) {
        size_t s = warm[ndrop];
        if (freed_at[s] >= before && warm_bytes <= FETCH_BUF_WARM_MAX)
            break;
        warm_bytes -= resident_bytes(s, touched[s]);
        drop[ndrop++] = s;
    }
    memmove(warm, warm + ndrop, (nwarm - ndrop) * sizeof(warm[0]));
    nwarm -= ndrop;
    pthread_mutex_unlock(&lock);
    if (!ndrop)
        return 0;
    /* outside the lock: the slots are on no list meanwhile, so nobody gets them */
    for (size_t i = 0; i < ndrop; i++)
        (void)madvise(region + drop[i] * stride, FETCH_BUF_SLOT, MADV_DONTNEED);
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < ndrop; i++) {
        touched[drop[i]] = 0;
        cold[ncold++] = (uint16_t)drop[i];
    }
    released += ndrop;
    pthread_mutex_unlock(&lock);
    return ndrop;
}

void fetch_buf_free(void *p)
{
    size_t s;
    bool over;
    if (!p)
        return;
    if (!in_region(p, &s)) {
        free(p);
        return;
    }
    pthread_mutex_lock(&lock);
    used--;
    freed_at[s] = fetch_mono_ms();
    warm[nwarm++] = (uint16_t)s;
    warm_bytes += resident_bytes(s, touched[s]);
    over = warm_bytes > FETCH_BUF_WARM_MAX;
    pthread_mutex_unlock(&lock);
    if (over)
        release_old(0);
}

size_t fetch_buf_trim(unsigned idle_ms)
{
    uint64_t now = fetch_mono_ms();
    pthread_once(&once, region_init);
    if (!region)
        return 0;
    return release_old(now > idle_ms ? now - idle_ms : 0);
}

void *fetch_buf_realloc(void *p, size_t len)
{
    size_t s, off, room;
    void *n;
    if (!p)
        return fetch_buf_alloc(len);
    if (in_region(p, &s)) {
        off = (size_t)((uint8_t *)p - (region + s * stride));
        room = FETCH_BUF_SLOT - off;
        if (len <= room) {
            pthread_mutex_lock(&lock);
            if (touched[s] < off + len)
                touched[s] = off + len;
            pthread_mutex_unlock(&lock);
            return p;
        }
        if (!(n = malloc(len)))
            return NULL;
        memcpy(n, p, room);
        fetch_buf_free(p);
        return n;
    }
    return realloc(p, len ? len : 1);
}

void fetch_buf_get_stats(struct fetch_buf_stats *ret)
{
    pthread_mutex_lock(&lock);
    ret->slots_used = used;
    ret->slots_warm = nwarm;
    ret->warm_bytes = warm_bytes;
    ret->slot_allocs = slot_allocs;
    ret->released = released;
    pthread_mutex_unlock(&lock);
    ret->heap_allocs = __atomic_load_n(&heap_allocs, __ATOMIC_RELAXED);
}
