/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lazyimg-mkimage: deterministic generator of test disk images.
 *
 * The image is described by a layout, a comma-separated list of SEG:SIZE:
 *   rand    incompressible pseudo-random bytes (xoshiro256**, seeded by --seed
 *           and the segment's offset, so a segment's bytes do not depend on
 *           the segments before it)
 *   zero    zeros, left as a hole in the output file
 *   text    compressible ASCII text (lines of words), seeded like rand
 *   repeat  the first SIZE bytes of the image again (byte k of the segment is
 *           byte k of the image, so chunk-aligned repeats give equal chunks)
 * The same seed and layout always give the same bytes.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE (1024u * 1024)
#define MAX_SEGMENTS 4096

enum seg_kind { SEG_RAND, SEG_ZERO, SEG_TEXT, SEG_REPEAT };

static const char *const seg_names[] = {
    [SEG_RAND] = "rand",
    [SEG_ZERO] = "zero",
    [SEG_TEXT] = "text",
    [SEG_REPEAT] = "repeat",
};

struct segment {
    enum seg_kind kind;
    uint64_t size;
};

struct layout {
    struct segment seg[MAX_SEGMENTS];
    size_t count;
    uint64_t total;
};

/* Output state: the fd, whether unwritten ranges read back as zeros, a 1 MiB buffer. */
struct output {
    int fd;
    bool sparse;
    uint64_t *buf; /* BUF_SIZE bytes, 8-byte aligned */
    const char *path;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [--seed N] [--verbose] OUT LAYOUT\n"
            "       %s [--seed N] [--verbose] --preset mixed:CHUNK OUT\n"
            "\n"
            "Writes a deterministic test disk image to OUT.\n"
            "LAYOUT is a comma-separated list of SEG:SIZE; SIZE takes a K, M, G or T suffix\n"
            "(binary units). Segments:\n"
            "  rand:SIZE     incompressible pseudo-random bytes\n"
            "  zero:SIZE     zeros (a hole in the file)\n"
            "  text:SIZE     compressible ASCII text\n"
            "  repeat:SIZE   a copy of the first SIZE bytes of the image\n"
            "\n"
            "Options:\n"
            "  --seed N              seed of the generators (default 1)\n"
            "  --preset mixed:CHUNK  about 24 chunks of CHUNK bytes (a power of two, at\n"
            "                        least 1K) mixing random, zero (aligned and unaligned),\n"
            "                        partly-zero, repeated and text chunks, and a short\n"
            "                        last chunk\n"
            "  --verbose             print the layout (offset, size, segment) on stdout\n"
            "  --help                show this help\n",
            util_progname, util_progname);
}

static void layout_add(struct layout *l, enum seg_kind kind, uint64_t size)
{
    if (size == 0)
        die("segment %s has size 0", seg_names[kind]);
    if (l->count >= MAX_SEGMENTS)
        die("too many segments (at most %d)", MAX_SEGMENTS);
    if (__builtin_add_overflow(l->total, size, &l->total) || l->total > (uint64_t)INT64_MAX)
        die("image size overflows");
    if (kind == SEG_REPEAT && l->total == size)
        die("repeat cannot be the first segment (nothing to repeat yet)");
    l->seg[l->count].kind = kind;
    l->seg[l->count].size = size;
    l->count++;
}

static void layout_parse(struct layout *l, const char *spec)
{
    char *copy = xstrdup(spec);
    char *rest = copy;

    if (!*spec)
        die("empty layout");
    while (rest) {
        char *item = rest;
        char *comma = strchr(item, ',');
        char *colon;
        uint64_t size;
        size_t kind;

        rest = NULL;
        if (comma) {
            *comma = '\0';
            rest = comma + 1;
        }
        colon = strchr(item, ':');
        if (!colon)
            die("layout item '%s' is not SEG:SIZE", item);
        *colon = '\0';
        for (kind = 0; kind < sizeof(seg_names) / sizeof(seg_names[0]); kind++)
            if (strcmp(item, seg_names[kind]) == 0)
                break;
        if (kind == sizeof(seg_names) / sizeof(seg_names[0]))
            die("unknown segment type '%s' (expected rand, zero, text or repeat)", item);
        if (!parse_size(colon + 1, &size))
            die("invalid size '%s' for segment %s", colon + 1, item);
        layout_add(l, (enum seg_kind)kind, size);
    }
    free(copy);
}

/*
 * The "mixed" preset, in units of C = CHUNK (24 chunks, the last one short):
 *   [0, 3)        rand      chunks 0-2 random
 *   [3, 6)        zero      chunks 3-5 zero, aligned run
 *   [6, 6.5)      rand      chunk 6 partly zero (random, then zeros)
 *   [6.5, 8.5)    zero      unaligned zero run: chunk 7 all zero
 *   [8.5, 11)     text      chunk 8 partly zero (zeros, then text); 9-10 text
 *   [11, 13)      rand      chunks 11-12 random
 *   [13, 16)      repeat    chunks 13-15 equal chunks 0-2
 *   [16, 17)      text      chunk 16 text
 *   [17, 17.25)   rand      chunk 17 partly zero
 *   [17.25, 21)   zero      zero run starting mid-chunk: chunks 18-20 zero
 *   [21, 23)      rand      chunks 21-22 random
 *   [23, 23+1/3)  text      chunk 23, short last chunk
 */
static void layout_preset(struct layout *l, const char *spec)
{
    uint64_t c;

    if (strncmp(spec, "mixed:", 6) != 0)
        die("unknown preset '%s' (expected mixed:CHUNK)", spec);
    if (!parse_size(spec + 6, &c))
        die("invalid chunk size '%s' in preset", spec + 6);
    if (c < 1024 || (c & (c - 1)) != 0 || c > (1ull << 30))
        die("preset chunk size must be a power of two between 1K and 1G");
    layout_add(l, SEG_RAND, 3 * c);
    layout_add(l, SEG_ZERO, 3 * c);
    layout_add(l, SEG_RAND, c / 2);
    layout_add(l, SEG_ZERO, 2 * c);
    layout_add(l, SEG_TEXT, 2 * c + c / 2);
    layout_add(l, SEG_RAND, 2 * c);
    layout_add(l, SEG_REPEAT, 3 * c);
    layout_add(l, SEG_TEXT, c);
    layout_add(l, SEG_RAND, c / 4);
    layout_add(l, SEG_ZERO, 3 * c + 3 * c / 4);
    layout_add(l, SEG_RAND, 2 * c);
    layout_add(l, SEG_TEXT, c / 3);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed, uint64_t offset, uint64_t stream)
{
    uint64_t x = seed ^ (offset * 0xd1342543de82ef95ull) ^ (stream << 56);

    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

static void out_write(struct output *o, const void *buf, size_t len, uint64_t offset)
{
    int r = pwrite_all(o->fd, buf, len, (off_t)offset);

    if (r < 0)
        die("cannot write %s: %s", o->path, strerror(-r));
}

/* Extends the file to @end so that skipped zero ranges read back as zeros. */
static void out_extend(struct output *o, uint64_t end)
{
    if (ftruncate(o->fd, (off_t)end) < 0)
        die("cannot resize %s: %s", o->path, strerror(errno));
}

static void gen_zero(struct output *o, uint64_t offset, uint64_t size)
{
    if (o->sparse) {
        out_extend(o, offset + size);
        return;
    }
    memset(o->buf, 0, BUF_SIZE);
    while (size > 0) {
        size_t n = size < BUF_SIZE ? (size_t)size : BUF_SIZE;

        out_write(o, o->buf, n, offset);
        offset += n;
        size -= n;
    }
}

static void gen_rand(struct output *o, uint64_t seed, uint64_t offset, uint64_t size)
{
    struct rng r;

    rng_seed(&r, seed, offset, 1);
    while (size > 0) {
        size_t n = size < BUF_SIZE ? (size_t)size : BUF_SIZE;

        for (size_t i = 0; i < (n + 7) / 8; i++)
            o->buf[i] = rng_next(&r);
        out_write(o, o->buf, n, offset);
        offset += n;
        size -= n;
    }
}

static const char *const words[] = {
    "lazy",     "image",   "chunk",  "backup",  "snapshot", "restore", "proxmox", "datastore",
    "the",      "a",       "of",     "and",     "to",       "in",      "is",      "it",
    "virtual",  "machine", "disk",   "sector",  "block",    "file",    "system",  "kernel",
    "read",     "write",   "cache",  "fetch",   "digest",   "index",   "fixed",   "dynamic",
    "zero",     "hole",    "sparse", "extent",  "offset",   "length",  "mount",   "fuse",
    "quick",    "brown",   "fox",    "jumps",   "over",     "dog",     "lorem",   "ipsum",
    "boot",     "loader",  "config", "network", "storage",  "server",  "client",  "request",
    "verified", "bytes",   "stream", "archive", "manifest", "blob",    "store",   "data",
};

/* Streams words separated by spaces, with a newline every 6 to 13 words. */
struct text_gen {
    struct rng rng;
    char tok[32];
    size_t tok_len, tok_pos;
    unsigned words_left;
};

static void text_next_token(struct text_gen *t)
{
    uint64_t v = rng_next(&t->rng);
    const char *w = words[v % (sizeof(words) / sizeof(words[0]))];
    size_t len = strlen(w);

    if (t->words_left == 0)
        t->words_left = 6 + (unsigned)((v >> 32) % 8);
    memcpy(t->tok, w, len);
    t->tok[len] = --t->words_left == 0 ? '\n' : ' ';
    t->tok_len = len + 1;
    t->tok_pos = 0;
}

static void gen_text(struct output *o, uint64_t seed, uint64_t offset, uint64_t size)
{
    struct text_gen t = {0};
    char *buf = (char *)o->buf;

    rng_seed(&t.rng, seed, offset, 2);
    while (size > 0) {
        size_t n = size < BUF_SIZE ? (size_t)size : BUF_SIZE;

        for (size_t i = 0; i < n;) {
            size_t take;

            if (t.tok_pos == t.tok_len)
                text_next_token(&t);
            take = t.tok_len - t.tok_pos;
            if (take > n - i)
                take = n - i;
            memcpy(buf + i, t.tok + t.tok_pos, take);
            t.tok_pos += take;
            i += take;
        }
        out_write(o, buf, n, offset);
        offset += n;
        size -= n;
    }
}

/* Byte k of the segment is byte k of the image; every source byte precedes its copy. */
static void gen_repeat(struct output *o, uint64_t offset, uint64_t size)
{
    uint64_t src = 0;

    while (size > 0) {
        /* never read past what is already written: the source may overlap the segment */
        uint64_t limit = offset - src;
        size_t n = size < BUF_SIZE ? (size_t)size : BUF_SIZE;
        ssize_t got;

        if (n > limit)
            n = (size_t)limit;
        got = pread(o->fd, o->buf, n, (off_t)src);
        if (got < 0)
            die("cannot read back %s: %s", o->path, strerror(errno));
        if ((size_t)got < n)
            memset((char *)o->buf + got, 0, n - (size_t)got);
        if (o->sparse && is_all_zero(o->buf, n))
            out_extend(o, offset + n);
        else
            out_write(o, o->buf, n, offset);
        src += n;
        offset += n;
        size -= n;
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"seed", required_argument, NULL, 's'},
        {"preset", required_argument, NULL, 'p'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct layout layout;
    const char *preset = NULL;
    bool verbose = false;
    uint64_t seed = 1, offset = 0;
    struct output out = {0};
    struct stat st;
    int opt;

    util_progname = "lazyimg-mkimage";
    opterr = 0; /* report bad options with our own prefix */
    while ((opt = getopt_long(argc, argv, "s:p:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (!parse_u64(optarg, &seed))
                die("invalid --seed '%s' (expected an unsigned integer)", optarg);
            break;
        case 'p':
            preset = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            die("invalid option or missing argument: %s (try --help)", argv[optind - 1]);
        }
    }
    if (argc - optind != (preset ? 1 : 2)) {
        usage(stderr);
        return 1;
    }
    if (preset)
        layout_preset(&layout, preset);
    else
        layout_parse(&layout, argv[optind + 1]);

    out.path = argv[optind];
    out.fd = open(out.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out.fd < 0)
        die("cannot create %s: %s", out.path, strerror(errno));
    if (fstat(out.fd, &st) < 0)
        die("cannot stat %s: %s", out.path, strerror(errno));
    /* a fresh regular file reads back zeros where nothing was written */
    out.sparse = S_ISREG(st.st_mode);
    out.buf = xmalloc(BUF_SIZE);

    for (size_t i = 0; i < layout.count; i++) {
        const struct segment *s = &layout.seg[i];

        if (verbose)
            printf("%12llu %12llu %s\n", (unsigned long long)offset, (unsigned long long)s->size,
                   seg_names[s->kind]);
        switch (s->kind) {
        case SEG_RAND:
            gen_rand(&out, seed, offset, s->size);
            break;
        case SEG_ZERO:
            gen_zero(&out, offset, s->size);
            break;
        case SEG_TEXT:
            gen_text(&out, seed, offset, s->size);
            break;
        case SEG_REPEAT:
            gen_repeat(&out, offset, s->size);
            break;
        }
        offset += s->size;
    }
    if (verbose)
        printf("%12llu total\n", (unsigned long long)offset);
    if (out.sparse)
        out_extend(&out, offset);
    if (close(out.fd) < 0)
        die("cannot write %s: %s", out.path, strerror(errno));
    free(out.buf);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("cannot write to stdout");
    return 0;
}
