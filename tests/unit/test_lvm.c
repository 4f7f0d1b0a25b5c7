/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/lvm.h (LVM2 labels, metadata areas, LV maps). The
 * fixtures are the first MiB of two real PVs made by lvm2 (tests/data/lvm/,
 * make.sh) and the answer lvs/pvs gave for them (expected.json), read here
 * with json-c. Variants (broken checksums, wrapped or edited metadata text)
 * are made from them with this file's own CRC and layout code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <zstd.h>

#include "fetch/lvm.h"
#include "fixtures.h"

#define HEAD_LEN FX_MIB /* bytes of each PV kept in the fixture */

/* ---- LVM's CRC and on-disk layout, written here independently of fetch/lvm.c ---- */

static uint32_t crc_lvm(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = 0xf597a6cf;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)le64((const uint8_t[8]){p[0], p[1], p[2], p[3]});
}

/* the sector holding the label */
static uint8_t *label_of(uint8_t *img)
{
    for (int s = 0; s < 4; s++)
        if (memcmp(img + 512 * s, "LABELONE", 8) == 0)
            return img + 512 * s;
    fail_msg("fixture has no label");
    return NULL;
}

static void label_fix(uint8_t *label)
{
    fx_put_le32(label + 16, crc_lvm(label + 20, 512 - 20));
}

/* offset of the first metadata area named by the pv_header */
static uint64_t mda_of(uint8_t *img)
{
    uint8_t *l = label_of(img);
    size_t pos = le32(l + 20) + 40;
    while (le64(l + pos) || le64(l + pos + 8)) /* data areas */
        pos += 16;
    pos += 16;
    assert_true(le64(l + pos) != 0);
    return le64(l + pos);
}

static void mda_fix(uint8_t *img)
{
    uint8_t *h = img + mda_of(img);
    fx_put_le32(h, crc_lvm(h + 4, 512 - 4));
}

/* the current metadata text (not wrapped in the fixtures) */
static char *text_get(uint8_t *img, size_t *len)
{
    uint8_t *h = img + mda_of(img);
    assert_true(le64(h + 40) + le64(h + 48) <= le64(h + 32));
    *len = (size_t)le64(h + 48);
    return fx_memdup(h + le64(h + 40), *len);
}

/* Writes @text at @roff of the circular buffer (wrapping as LVM does) and points slot 0 at it. */
static void text_put(uint8_t *img, const char *text, size_t len, uint64_t roff)
{
    uint64_t start = mda_of(img);
    uint8_t *h = img + start;
    uint64_t msize = le64(h + 32);
    size_t first = roff + len > msize ? (size_t)(msize - roff) : len;

    assert_true(start + msize <= HEAD_LEN);
    memcpy(h + roff, text, first);
    memcpy(h + 512, text + first, len - first);
    fx_put_le64(h + 40, roff);
    fx_put_le64(h + 48, len);
    fx_put_le32(h + 56, crc_lvm(text, len));
    mda_fix(img);
}

static uint64_t text_off(uint8_t *img)
{
    return le64(img + mda_of(img) + 40);
}

/* @text with the one occurrence of @old replaced by @repl */
static char *edit(const char *text, size_t *len, const char *old, const char *repl)
{
    size_t ol = strlen(old), rl = strlen(repl);
    const char *at = memmem(text, *len, old, ol);
    char *out;
    if (!at)
        fail_msg("fixture text lacks \"%s\"", old);
    if (memmem(at + 1, *len - (size_t)(at + 1 - text), old, ol))
        fail_msg("fixture text has \"%s\" more than once", old);
    out = fx_malloc(*len - ol + rl);
    memcpy(out, text, (size_t)(at - text));
    memcpy(out + (at - text), repl, rl);
    memcpy(out + (at - text) + rl, at + ol, *len - (size_t)(at - text) - ol);
    *len = *len - ol + rl;
    return out;
}

/* ---- devices ---- */

struct fake {
    const uint8_t *head; /* the first head_len bytes; zeros beyond */
    size_t head_len;
    uint64_t size;
    bool fail;
};

static int fake_read(void *ctx, uint64_t off, void *buf, size_t len, fetch_error *err)
{
    struct fake *f = ctx;
    if (off > f->size || len > f->size - off)
        fail_msg("read of %zu at %llu past the device's %llu bytes", len, (unsigned long long)off,
                 (unsigned long long)f->size);
    if (f->fail)
        return fetch_error_set(err, -EIO, "injected read failure");
    memset(buf, 0, len);
    if (off < f->head_len) {
        size_t n = f->head_len - (size_t)off < len ? f->head_len - (size_t)off : len;
        memcpy(buf, f->head + off, n);
    }
    return 0;
}

static struct fetch_dev dev_of(struct fake *f)
{
    return (struct fetch_dev){.size = f->size, .read = fake_read, .ctx = f};
}

/* ---- the fixtures and lvm2's answer ---- */

struct fixture {
    uint8_t *img[2]; /* pv1, pv2: the first MiB of each */
    uint64_t dev_size[2];
    json_object *expected;
};
static struct fixture fx;

static uint8_t *load_pv(const char *rel)
{
    size_t zlen, got;
    void *z = fx_read(TEST_DATA_DIR, rel, &zlen);
    uint8_t *img = fx_malloc(HEAD_LEN);
    got = ZSTD_decompress(img, HEAD_LEN, z, zlen);
    if (ZSTD_isError(got) || got != HEAD_LEN)
        fail_msg("%s: not %zu bytes of zstd", rel, HEAD_LEN);
    free(z);
    return img;
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("expected.json: no \"%s\"", key);
    return v;
}

static const char *jstr(json_object *o, const char *key)
{
    return json_object_get_string(jget(o, key));
}

static uint64_t jnum(json_object *o, const char *key)
{
    return strtoull(jstr(o, key), NULL, 10);
}

static json_object *report(const char *kind, const char *rows)
{
    json_object *r = jget(jget(fx.expected, kind), "report");
    return jget(json_object_array_get_idx(r, 0), rows);
}

static json_object *pv_row(const char *name)
{
    json_object *pvs = report("pvs", "pv");
    for (size_t i = 0; i < json_object_array_length(pvs); i++)
        if (strcmp(jstr(json_object_array_get_idx(pvs, i), "pv_name"), name) == 0)
            return json_object_array_get_idx(pvs, i);
    fail_msg("expected.json: no PV %s", name);
    return NULL;
}

static int setup(void **state)
{
    char *path = fx_path(TEST_DATA_DIR, "lvm/expected.json");
    (void)state;
    fx.img[0] = load_pv("lvm/vgt-pv1.img.zst");
    fx.img[1] = load_pv("lvm/vgt-pv2.img.zst");
    fx.expected = json_object_from_file(path);
    if (!fx.expected)
        fail_msg("cannot read %s", path);
    free(path);
    fx.dev_size[0] = jnum(pv_row("pv1"), "dev_size");
    fx.dev_size[1] = jnum(pv_row("pv2"), "dev_size");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(fx.img[0]);
    free(fx.img[1]);
    json_object_put(fx.expected);
    return 0;
}

/* a writable copy of PV @k's first MiB */
static uint8_t *pv_copy(int k)
{
    return fx_memdup(fx.img[k], HEAD_LEN);
}

static struct fake fake_pv(const uint8_t *img, int k)
{
    return (struct fake){.head = img, .head_len = HEAD_LEN, .size = fx.dev_size[k]};
}

static struct fetch_lvm *scan_ok(struct fetch_dev *devs, size_t n)
{
    struct fetch_lvm *l = NULL;
    fetch_error err = {""};
    int r = fetch_lvm_scan(devs, n, &l, &err);
    if (r != 0)
        fail_msg("scan failed: %d %s", r, err.msg);
    assert_non_null(l);
    return l;
}

static const struct fetch_lvm_lv *find_lv(const struct fetch_lvm_vg *vg, const char *name)
{
    for (size_t i = 0; i < vg->lv_count; i++)
        if (strcmp(vg->lvs[i].name, name) == 0)
            return &vg->lvs[i];
    fail_msg("LV %s not found", name);
    return NULL;
}

/*
 * Compares the scan with lvm2's own report. @dev[0], @dev[1]: the device
 * index of pv1 and pv2 in the scanned array (SIZE_MAX: not given).
 */
static void check_like_lvs(const struct fetch_lvm *l, const size_t dev[2])
{
    json_object *p1 = pv_row("pv1"), *lvs = report("lvs", "lv");
    const struct fetch_lvm_vg *vg;
    uint64_t es = jnum(p1, "vg_extent_size");
    size_t rows = json_object_array_length(lvs), names = 0;

    assert_int_equal(l->vg_count, 1);
    vg = &l->vgs[0];
    if (vg->error[0])
        fail_msg("VG refused: %s", vg->error);
    assert_string_equal(vg->name, jstr(p1, "vg_name"));
    assert_string_equal(vg->id, jstr(p1, "vg_uuid"));
    assert_int_equal(vg->seqno, jnum(p1, "vg_seqno"));
    assert_int_equal(vg->extent_size, es);

    for (size_t i = 0; i < rows; i++) {
        json_object *row = json_object_array_get_idx(lvs, i);
        const char *name = jstr(row, "lv_name"), *segtype = jstr(row, "segtype");
        const struct fetch_lvm_lv *lv;
        const struct fetch_lvm_seg *seg = NULL;
        uint64_t start = jnum(row, "seg_start"), stripes = jnum(row, "stripes");
        size_t segs_in_report = 0;
        const char *ranges;
        char pv[16];
        unsigned long long first, last;
        int used;
        unsigned k = 0;

        bool hidden = name[0] == '[';
        assert_false(hidden); /* make.sh makes none */
        lv = find_lv(vg, name);
        assert_true(lv->visible);
        assert_int_equal(lv->size, jnum(row, "lv_size"));
        for (size_t j = 0; j < rows; j++)
            if (strcmp(jstr(json_object_array_get_idx(lvs, j), "lv_name"), name) == 0)
                segs_in_report++;
        assert_int_equal(lv->seg_count, segs_in_report);
        if (i == 0 || strcmp(jstr(json_object_array_get_idx(lvs, i - 1), "lv_name"), name) != 0)
            names++;
        for (size_t j = 0; j < lv->seg_count; j++)
            if (lv->segs[j].start == start)
                seg = &lv->segs[j];
        if (!seg)
            fail_msg("%s: no segment at %llu", name, (unsigned long long)start);
        assert_int_equal(seg->length, jnum(row, "seg_size"));
        assert_int_equal(seg->stripe_count, stripes);
        assert_string_equal(seg->type_name, "striped");
        if (strcmp(segtype, "linear") == 0) {
            assert_int_equal(seg->type, FETCH_LVM_LINEAR);
            assert_int_equal(seg->stripe_size, 0);
        } else {
            assert_string_equal(segtype, "striped");
            assert_int_equal(seg->type, FETCH_LVM_STRIPED);
            assert_int_equal(seg->stripe_size, jnum(row, "stripe_size"));
        }
        /* "pv1:8-11 pv2:0-3": one range per stripe, in stripe order */
        ranges = jstr(row, "seg_pe_ranges");
        while (sscanf(ranges, " %15[^:]:%llu-%llu%n", pv, &first, &last, &used) == 3) {
            int which = strcmp(pv, "pv1") == 0 ? 0 : 1;
            ranges += used;
            assert_true(k < seg->stripe_count);
            assert_int_equal(seg->stripes[k].dev, dev[which]);
            assert_int_equal(seg->stripes[k].offset, jnum(pv_row(pv), "pe_start") + first * es);
            assert_int_equal((last - first + 1) * es * stripes, seg->length);
            k++;
        }
        assert_int_equal(k, seg->stripe_count);
    }
    assert_int_equal(vg->lv_count, names);
    /* segments contiguous from 0 */
    for (size_t i = 0; i < vg->lv_count; i++) {
        uint64_t at = 0;
        for (size_t j = 0; j < vg->lvs[i].seg_count; j++) {
            assert_int_equal(vg->lvs[i].segs[j].start, at);
            at += vg->lvs[i].segs[j].length;
        }
        assert_int_equal(at, vg->lvs[i].size);
    }
}

/* ---- tests ---- */

static void fixture_checksums_are_lvms(void **state)
{
    (void)state;
    /* this file's CRC and layout code agree with what lvm2 wrote */
    for (int k = 0; k < 2; k++) {
        uint8_t *img = fx.img[k], *l = label_of(img), *h = img + mda_of(img);
        assert_int_equal(le32(l + 16), crc_lvm(l + 20, 512 - 20));
        assert_int_equal(le32(h), crc_lvm(h + 4, 512 - 4));
        assert_int_equal(le32(h + 56), crc_lvm(h + le64(h + 40), (size_t)le64(h + 48)));
        assert_int_equal(le64(h + 24), mda_of(img));
    }
}

static void real_pvs_match_lvs(void **state)
{
    /* a device without a label first, like the whole image before its partitions */
    struct fake z = {.size = 64 * FX_MIB}, a = fake_pv(fx.img[0], 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&z), dev_of(&a), dev_of(&b)};
    struct fetch_lvm *l;
    (void)state;

    l = scan_ok(devs, 3);
    assert_int_equal(l->pv_count, 2);
    check_like_lvs(l, (size_t[]){1, 2});
    assert_string_equal(l->note, "");
    fetch_lvm_free(l);

    /* the other order: device indexes follow the caller's array */
    devs[0] = dev_of(&b);
    devs[1] = dev_of(&a);
    l = scan_ok(devs, 2);
    check_like_lvs(l, (size_t[]){1, 0});
    fetch_lvm_free(l);
}

static void missing_pv_listed_as_size_max(void **state)
{
    struct fake b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&b)};
    struct fetch_lvm *l;
    (void)state;

    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    check_like_lvs(l, (size_t[]){SIZE_MAX, 0});
    fetch_lvm_free(l);
}

static void label_checks(void **state)
{
    uint8_t *bad = pv_copy(0), *moved = pv_copy(0), *lab;
    struct fake a = fake_pv(bad, 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&a), dev_of(&b)};
    struct fetch_lvm *l;
    (void)state;

    /* a uuid byte changed, CRC not: the PV is skipped, its copy unused */
    label_of(bad)[32 + 5] ^= 1;
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 1);
    check_like_lvs(l, (size_t[]){SIZE_MAX, 1});
    assert_non_null(strstr(l->note, "checksum"));
    fetch_lvm_free(l);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 0);
    assert_int_equal(l->vg_count, 0);
    fetch_lvm_free(l);

    /* the label in sector 2 is as good as in sector 1, if it says so */
    lab = label_of(moved);
    memcpy(moved + 1024, lab, 512);
    memset(lab, 0, 512);
    a.head = moved;
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 1); /* sector_xl still says 1 */
    fetch_lvm_free(l);
    fx_put_le64(moved + 1024 + 8, 2);
    label_fix(moved + 1024);
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 2);
    check_like_lvs(l, (size_t[]){0, 1});
    fetch_lvm_free(l);

    /* wrong type, CRC fixed */
    memcpy(moved + 1024 + 24, "LVM1 001", 8);
    label_fix(moved + 1024);
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 1);
    fetch_lvm_free(l);

    /* pv_header offset past the sector, CRC fixed */
    memcpy(moved + 1024 + 24, "LVM2 001", 8);
    fx_put_le32(moved + 1024 + 20, 0xfffffff0u);
    label_fix(moved + 1024);
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 1);
    fetch_lvm_free(l);

    /* area lists without their terminators: every slot to the sector end non-zero */
    fx_put_le32(moved + 1024 + 20, 32);
    memset(moved + 1024 + 32 + 40, 0x11, 512 - 32 - 40);
    label_fix(moved + 1024);
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 1);
    fetch_lvm_free(l);
    free(bad);
    free(moved);
}

static void mda_header_checks(void **state)
{
    uint8_t *bad = pv_copy(0);
    uint8_t *h = bad + mda_of(bad);
    struct fake a = fake_pv(bad, 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&a), dev_of(&b)};
    struct fetch_lvm *l;
    (void)state;

    /* checksum wrong: this copy is skipped; the other PV's copy serves */
    h[200] ^= 1;
    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 2);
    check_like_lvs(l, (size_t[]){0, 1});
    assert_non_null(strstr(l->note, "checksum"));
    fetch_lvm_free(l);
    /* alone: a PV, no VG */
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    assert_int_equal(l->vg_count, 0);
    assert_string_not_equal(l->note, "");
    fetch_lvm_free(l);

    /* start, magic, version, size wrong with the checksum right */
    h[200] ^= 1;
    struct {
        size_t at;
        uint8_t x;
    } cases[] = {{24, 1}, {4, 0x20}, {20, 2}, {32 + 3, 0x40}, {32, 0xff}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h[cases[i].at] ^= cases[i].x;
        mda_fix(bad);
        l = scan_ok(devs, 1);
        if (l->vg_count != 0)
            fail_msg("case %zu: header accepted", i);
        fetch_lvm_free(l);
        h[cases[i].at] ^= cases[i].x;
        mda_fix(bad);
    }

    /* the slot says ignored, or empty (an orphan PV) */
    h[40 + 20] |= 1;
    mda_fix(bad);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    assert_int_equal(l->vg_count, 0);
    assert_string_equal(l->note, "");
    fetch_lvm_free(l);
    h[40 + 20] &= (uint8_t)~1u;
    memset(h + 40, 0, 24);
    mda_fix(bad);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    assert_int_equal(l->vg_count, 0);
    assert_string_equal(l->note, "");
    fetch_lvm_free(l);
    free(bad);
}

/* PV 1 with @text at @roff, scanned alone: the one VG */
static struct fetch_lvm *scan_text(const char *text, size_t len, uint64_t roff)
{
    uint8_t *img = pv_copy(0);
    struct fake a = fake_pv(img, 0);
    struct fetch_dev devs[] = {dev_of(&a)};
    struct fetch_lvm *l;

    text_put(img, text, len, roff);
    l = scan_ok(devs, 1);
    free(img);
    assert_int_equal(l->vg_count, 1);
    return l;
}

static void expect_refused(const char *text, size_t len, const char *why)
{
    struct fetch_lvm *l = scan_text(text, len, text_off(fx.img[0]));
    const struct fetch_lvm_vg *vg = &l->vgs[0];
    assert_string_equal(vg->name, "vgt");
    if (!strstr(vg->error, why))
        fail_msg("expected an error with \"%s\", got \"%s\"", why, vg->error);
    assert_int_equal(vg->lv_count, 0);
    assert_null(vg->lvs);
    fetch_lvm_free(l);
}

static void text_checksum_and_bounds(void **state)
{
    uint8_t *bad = pv_copy(0);
    uint8_t *h = bad + mda_of(bad);
    struct fake a = fake_pv(bad, 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&a), dev_of(&b)};
    struct fetch_lvm *l;
    size_t len;
    char *text = text_get(bad, &len);
    (void)state;

    /* one text byte changed, the slot's checksum not */
    bad[mda_of(bad) + text_off(bad) + 100] ^= 1;
    l = scan_ok(devs, 1);
    assert_int_equal(l->vg_count, 1);
    assert_string_equal(l->vgs[0].name, "vgt");
    assert_non_null(strstr(l->vgs[0].error, "checksum"));
    assert_int_equal(l->vgs[0].lv_count, 0);
    fetch_lvm_free(l);
    /* a good copy elsewhere wins, whichever comes first */
    l = scan_ok(devs, 2);
    check_like_lvs(l, (size_t[]){0, 1});
    fetch_lvm_free(l);
    devs[0] = dev_of(&b);
    devs[1] = dev_of(&a);
    l = scan_ok(devs, 2);
    check_like_lvs(l, (size_t[]){1, 0});
    fetch_lvm_free(l);
    devs[0] = dev_of(&a);

    /* truncated text (at a line end, or in a string), its checksum right: a parse error */
    size_t cut = len / 2;
    while (text[cut - 1] != '\n')
        cut--;
    expect_refused(text, cut, "not closed");
    cut = (size_t)((char *)memmem(text, len, "creation_host = \"vm", 19) - text) + 18;
    expect_refused(text, cut, "unterminated string");

    /* slot size past the area or beyond 16 MiB, slot offset past the area */
    text_put(bad, text, len, text_off(fx.img[0]));
    uint64_t msize = le64(h + 32);
    uint64_t bad_slots[][2] = {{text_off(bad), msize},
                               {text_off(bad), (uint64_t)1 << 40},
                               {msize, len},
                               {100, len},
                               {text_off(bad), 0}};
    for (size_t i = 0; i < sizeof(bad_slots) / sizeof(bad_slots[0]); i++) {
        fx_put_le64(h + 40, bad_slots[i][0]);
        fx_put_le64(h + 48, bad_slots[i][1]);
        mda_fix(bad);
        l = scan_ok(devs, 1);
        if (l->vg_count != 0)
            fail_msg("slot %zu accepted", i);
        assert_string_not_equal(l->note, "");
        fetch_lvm_free(l);
    }

    /* a device that ends inside the metadata area: never read past its end */
    text_put(bad, text, len, text_off(fx.img[0]));
    a.size = 8192;
    devs[0] = dev_of(&a);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    assert_int_equal(l->vg_count, 0);
    fetch_lvm_free(l);
    a.size = 1024; /* two sectors: the label is still read */
    devs[0] = dev_of(&a);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 1);
    fetch_lvm_free(l);
    a.size = 300;
    devs[0] = dev_of(&a);
    l = scan_ok(devs, 1);
    assert_int_equal(l->pv_count, 0);
    fetch_lvm_free(l);
    free(text);
    free(bad);
}

static void wrapped_text(void **state)
{
    uint8_t *img[2] = {pv_copy(0), pv_copy(1)};
    struct fake a = fake_pv(img[0], 0), b = fake_pv(img[1], 1);
    struct fetch_dev devs[] = {dev_of(&a), dev_of(&b)};
    struct fetch_lvm *l;
    (void)state;

    for (int k = 0; k < 2; k++) {
        size_t len;
        char *text = text_get(img[k], &len);
        uint8_t *h = img[k] + mda_of(img[k]);
        uint64_t msize = le64(h + 32), roff = msize - 1024;
        assert_true(len > 1024);
        /* the old text is gone: only the wrapped copy can serve */
        memset(h + text_off(img[k]), 'x', len);
        text_put(img[k], text, len, roff);
        assert_memory_equal(h + 512, text + 1024, len - 1024);
        free(text);
    }
    l = scan_ok(devs, 2);
    check_like_lvs(l, (size_t[]){0, 1});
    fetch_lvm_free(l);
    free(img[0]);
    free(img[1]);
}

static void highest_seqno_wins(void **state)
{
    uint8_t *newer = pv_copy(0);
    struct fake a = fake_pv(newer, 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[] = {dev_of(&b), dev_of(&a)};
    struct fetch_lvm *l;
    size_t len;
    char *text = text_get(newer, &len), *t1, *t2;
    (void)state;

    /* lin shrunk to 4 extents in seqno 7, on pv1 only */
    t1 = edit(text, &len, "seqno = 6", "seqno = 7");
    t2 = edit(t1, &len, "extent_count = 8\n\ntype = \"striped\"\nstripe_count = 1\n",
              "extent_count = 4\n\ntype = \"striped\"\nstripe_count = 1\n");
    text_put(newer, t2, len, text_off(newer));
    for (int order = 0; order < 2; order++) {
        l = scan_ok(devs, 2);
        assert_int_equal(l->vg_count, 1);
        assert_string_equal(l->vgs[0].error, "");
        assert_int_equal(l->vgs[0].seqno, 7);
        assert_int_equal(find_lv(&l->vgs[0], "lin")->size, 4 * FX_MIB);
        assert_int_equal(find_lv(&l->vgs[0], "str")->size, 8 * FX_MIB);
        fetch_lvm_free(l);
        devs[0] = dev_of(&a);
        devs[1] = dev_of(&b);
    }
    free(text);
    free(t1);
    free(t2);
    free(newer);
}

/* the fixture text of pv1 with @old replaced, expected to be refused with @why */
static void refuse_edit(const char *old, const char *repl, const char *why)
{
    size_t len;
    char *text = text_get(fx.img[0], &len), *t = edit(text, &len, old, repl);
    expect_refused(t, len, why);
    free(t);
    free(text);
}

static void malformed_texts(void **state)
{
    size_t len, n;
    char *text = text_get(fx.img[0], &len), *t;
    (void)state;

    /* syntax */
    t = fx_malloc(len + 16);
    memcpy(t, text, len);
    while (len && t[len - 1] == '\0')
        len--;
    memcpy(t + len, "\nx = \"abc", 9);
    expect_refused(t, len + 9, "unterminated string");
    memcpy(t + len, "\nx = \"ab\\", 9);
    expect_refused(t, len + 9, "unterminated string");
    memcpy(t + len, "\n}", 2);
    expect_refused(t, len + 2, "} without a section");
    memcpy(t + len, "\nx = [1, 2", 10);
    expect_refused(t, len + 10, "unterminated array");
    memcpy(t + len, "\nx = [1 2]", 10);
    expect_refused(t, len + 10, "expected , or ]");
    memcpy(t + len, "\nx = [[1]]", 10);
    expect_refused(t, len + 10, "");
    memcpy(t + len, "\nx y", 4);
    expect_refused(t, len + 4, "expected = or {");
    memcpy(t + len, "\nx = abc", 8);
    expect_refused(t, len + 8, "bad value");
    memcpy(t + len, "\nx = ", 5);
    expect_refused(t, len + 5, "expected a value");
    free(t);
    refuse_edit("}\n# Generated", "\n# Generated", "not closed");
    refuse_edit("pe_count = 19\n}\n\npv1", "pe_count = 99999999999999999999\n}\n\npv1",
                "out of range");

    /* nesting 200 deep inside the VG section */
    n = 0;
    t = fx_malloc(len + 2000);
    memcpy(t, "vgt {\n", 6);
    n = 6;
    for (int i = 0; i < 200; i++, n += 4)
        memcpy(t + n, "a { ", 4);
    for (int i = 0; i < 200; i++, n += 2)
        memcpy(t + n, "} ", 2);
    memcpy(t + n, text + 6, len - 6);
    expect_refused(t, n + len - 6, "nested deeper");
    free(t);

    /* structure */
    refuse_edit("segment2 {\nstart_extent = 2\n", "segment2 {\nstart_extent = 3\n",
                "vgt: ext segment2 starts at extent 3, expected 2");
    refuse_edit("segment_count = 2\n", "segment_count = 3\n", "segment_count");
    refuse_edit("\"pv0\", 0\n]", "\"pv0\", 12\n]", "beyond");
    refuse_edit("\"pv1\", 4\n]", "\"pv7\", 4\n]", "unknown PV");
    refuse_edit("extent_count = 8\n\ntype = \"striped\"\nstripe_count = 2",
                "extent_count = 7\n\ntype = \"striped\"\nstripe_count = 2", "do not divide");
    refuse_edit("stripe_size = 128", "stripe_size = 100", "power of two");
    refuse_edit("stripe_size = 128", "stripe_size = 4", "power of two");
    refuse_edit("stripe_count = 2", "stripe_count = 1000", "stripe_count");
    refuse_edit("\"pv0\", 8,\n\"pv1\", 0\n]", "\"pv0\", 8\n]", "pairs");
    refuse_edit("\"pv0\", 8,\n\"pv1\", 0\n]", "\"pv0\", 8, \"pv1\", 0, \"pv1\", 4\n]",
                "more than 2");
    refuse_edit("extent_size = 2048", "extent_size = 0", "extent_size");
    refuse_edit("pe_start = 2048\npe_count = 19\n}\n\npv1",
                "pe_start = 36028797018963968\npe_count = 19\n}\n\npv1", "pe_start");
    refuse_edit("id = \"LhN5YA-YlzK-OxZM-eV3x-ih7n-XFUP-EgJbQK\"", "id = \"LhN5YA\"",
                "32 characters");
    free(text);
}

static void stripe_past_device_end(void **state)
{
    struct fake a = fake_pv(fx.img[0], 0), b = fake_pv(fx.img[1], 1);
    struct fetch_dev devs[2];
    struct fetch_lvm *l;
    (void)state;

    /* str's first stripe ends at pe_start + 12 extents = 13 MiB */
    a.size = 13 * FX_MIB;
    devs[0] = dev_of(&a);
    devs[1] = dev_of(&b);
    l = scan_ok(devs, 2);
    check_like_lvs(l, (size_t[]){0, 1});
    fetch_lvm_free(l);
    a.size = 13 * FX_MIB - 512;
    devs[0] = dev_of(&a);
    l = scan_ok(devs, 2);
    assert_int_equal(l->vg_count, 1);
    assert_non_null(strstr(l->vgs[0].error, "past the end"));
    assert_int_equal(l->vgs[0].lv_count, 0);
    fetch_lvm_free(l);
}

static void unsupported_and_hidden(void **state)
{
    size_t len;
    char *text = text_get(fx.img[0], &len), *t1, *t2, *t3;
    struct fetch_lvm *l;
    const struct fetch_lvm_lv *lv;
    (void)state;

    t1 = edit(text, &len, "type = \"striped\"\nstripe_count = 1\n\nstripes = [\n\"pv1\", 6\n]",
              "type = \"thin\"\nthin_pool = \"pool\"\ntransaction_id = 0\ndevice_id = 1");
    t2 = edit(t1, &len, "start_extent = 2\nextent_count = 2\n\ntype = \"striped\"",
              "start_extent = 2\nextent_count = 2\n\ntype = \"raid1\"");
    t3 = edit(t2, &len,
              "status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\ncreation_time = "
              "1796396340\ncreation_host = \"vm\"\nsegment_count = 1\n\nsegment1 {\n"
              "start_extent = 0\nextent_count = 8\n\ntype = \"striped\"\nstripe_count = 1",
              "status = [\"READ\", \"WRITE\"]\nflags = []\ncreation_time = "
              "1796396340\ncreation_host = \"vm\"\nsegment_count = 1\n\nsegment1 {\n"
              "start_extent = 0\nextent_count = 8\n\ntype = \"striped\"\nstripe_count = 1");
    l = scan_text(t3, len, text_off(fx.img[0]));
    assert_string_equal(l->vgs[0].error, "");
    assert_int_equal(l->vgs[0].lv_count, 4);

    lv = find_lv(&l->vgs[0], "mid");
    assert_true(lv->visible);
    assert_int_equal(lv->size, 2 * FX_MIB);
    assert_int_equal(lv->seg_count, 1);
    assert_int_equal(lv->segs[0].type, FETCH_LVM_UNSUPPORTED);
    assert_string_equal(lv->segs[0].type_name, "thin");
    assert_int_equal(lv->segs[0].stripe_count, 0);
    assert_null(lv->segs[0].stripes);

    lv = find_lv(&l->vgs[0], "ext");
    assert_int_equal(lv->seg_count, 2);
    assert_int_equal(lv->segs[0].type, FETCH_LVM_LINEAR);
    assert_int_equal(lv->segs[1].type, FETCH_LVM_UNSUPPORTED);
    assert_string_equal(lv->segs[1].type_name, "raid1");
    assert_int_equal(lv->segs[1].start, 2 * FX_MIB);
    assert_int_equal(lv->size, 4 * FX_MIB);

    assert_false(find_lv(&l->vgs[0], "lin")->visible);
    assert_true(find_lv(&l->vgs[0], "str")->visible);
    fetch_lvm_free(l);
    free(text);
    free(t1);
    free(t2);
    free(t3);
}

/* The visible LV named @name (a snapshot takes its hidden store's name). */
static const struct fetch_lvm_lv *find_visible(const struct fetch_lvm_vg *vg, const char *name)
{
    for (size_t i = 0; i < vg->lv_count; i++)
        if (vg->lvs[i].visible && strcmp(vg->lvs[i].name, name) == 0)
            return &vg->lvs[i];
    fail_msg("no visible LV %s", name);
    return NULL;
}

/*
 * LVs moved by a pvmove sit on its mirror LV while it runs: mapped to the
 * mirror's first leg, the source (the state an interrupted pvmove leaves;
 * it hid the whole VG); a stripe on another LV leaves that segment unmapped,
 * not the VG refused. Snapshots as lvs shows them: under their store's
 * name; an origin with a merge pending cannot be read (it read as its
 * pre-merge bytes).
 */
static void pvmove_and_snapshots(void **state)
{
    static const char mid_end[] = "\"pv1\", 6\n]\n}\n}\n}\n\n}";
    static const char mid_status[] = "id = \"dJnlfJ-yqE5-6WKX-zCNV-eyGW-icom-zOQLYR\"\n"
                                     "status = [\"READ\", \"WRITE\", \"VISIBLE\"]";
    size_t len, len0;
    char *text = text_get(fx.img[0], &len), *t, *t2;
    struct fetch_lvm *l0, *l;
    const struct fetch_lvm_lv *mid0, *lv;
    (void)state;

    len0 = len;
    l0 = scan_text(text, len0, text_off(fx.img[0]));
    mid0 = find_lv(&l0->vgs[0], "mid");

    /* mid on pvmove0's extent 0, which mirrors pv1:6 (mid's place) to pv0:17 */
    t = edit(text, &len, mid_end,
             "\"pvmove0\", 0\n]\n}\n}\n\npvmove0 {\nid = \"x\"\n"
             "status = [\"READ\", \"WRITE\", \"PVMOVE\", \"LOCKED\"]\nflags = []\n"
             "segment_count = 1\n\nsegment1 {\nstart_extent = 0\nextent_count = 2\n\n"
             "type = \"mirror\"\nmirror_count = 2\nextents_moved = 0\n\nmirrors = [\n"
             "\"pv1\", 6,\n\"pv0\", 17\n]\n}\n}\n}\n\n}");
    l = scan_text(t, len, text_off(fx.img[0]));
    assert_string_equal(l->vgs[0].error, "");
    lv = find_visible(&l->vgs[0], "mid");
    assert_int_equal(lv->segs[0].type, FETCH_LVM_LINEAR);
    assert_int_equal(lv->segs[0].stripes[0].dev, mid0->segs[0].stripes[0].dev);
    assert_int_equal(lv->segs[0].stripes[0].offset, mid0->segs[0].stripes[0].offset);
    assert_false(find_lv(&l->vgs[0], "pvmove0")->visible);
    assert_int_equal(find_visible(&l->vgs[0], "lin")->segs[0].type, FETCH_LVM_LINEAR);
    fetch_lvm_free(l);
    /* that segment moved already: on the destination, pv0:17 */
    t2 = edit(t, &len, "extents_moved = 0", "extents_moved = 2");
    l = scan_text(t2, len, text_off(fx.img[0]));
    lv = find_visible(&l->vgs[0], "mid");
    assert_int_equal(lv->segs[0].type, FETCH_LVM_LINEAR);
    assert_int_equal(lv->segs[0].stripes[0].dev,
                     find_lv(&l->vgs[0], "lin")->segs[0].stripes[0].dev);
    assert_int_equal(lv->segs[0].stripes[0].offset,
                     find_lv(&l->vgs[0], "lin")->segs[0].stripes[0].offset + 17 * FX_MIB);
    fetch_lvm_free(l);
    free(t2);
    free(t);

    /* on another LV: that segment unmapped, the others there */
    len = len0;
    t = edit(text, &len, "\"pv1\", 6\n]", "\"lin\", 0\n]");
    l = scan_text(t, len, text_off(fx.img[0]));
    assert_string_equal(l->vgs[0].error, "");
    lv = find_visible(&l->vgs[0], "mid");
    assert_int_equal(lv->segs[0].type, FETCH_LVM_UNSUPPORTED);
    assert_string_equal(lv->segs[0].type_name, "striped on an LV");
    assert_int_equal(find_visible(&l->vgs[0], "str")->segs[0].type, FETCH_LVM_STRIPED);
    fetch_lvm_free(l);
    free(t);

    /* mid as the store of snapshot0, a snapshot of lin */
    for (int merging = 0; merging < 2; merging++) {
        char snap[512];
        len = len0;
        t = edit(text, &len, mid_status,
                 "id = \"dJnlfJ-yqE5-6WKX-zCNV-eyGW-icom-zOQLYR\"\n"
                 "status = [\"READ\", \"WRITE\"]");
        snprintf(snap, sizeof(snap),
                 "\"pv1\", 6\n]\n}\n}\n\nsnapshot0 {\nid = \"y\"\n"
                 "status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\nsegment_count = 1\n\n"
                 "segment1 {\nstart_extent = 0\nextent_count = 8\n\ntype = \"snapshot\"\n"
                 "chunk_size = 8\norigin = \"lin\"\n%s = \"mid\"\n}\n}\n}\n\n}",
                 merging ? "merging_store" : "cow_store");
        t2 = edit(t, &len, mid_end, snap);
        l = scan_text(t2, len, text_off(fx.img[0]));
        assert_string_equal(l->vgs[0].error, "");
        lv = find_visible(&l->vgs[0], "mid");
        assert_int_equal(lv->size, 8 * FX_MIB);
        assert_int_equal(lv->segs[0].type, FETCH_LVM_UNSUPPORTED);
        assert_string_equal(lv->segs[0].type_name, "snapshot");
        for (size_t i = 0; i < l->vgs[0].lv_count; i++)
            assert_string_not_equal(l->vgs[0].lvs[i].name, "snapshot0");
        lv = find_visible(&l->vgs[0], "lin");
        if (merging)
            assert_non_null(strstr(lv->unreadable, "merge of snapshot mid into it is pending"));
        else
            assert_string_equal(lv->unreadable, "");
        assert_int_equal(lv->segs[0].type, FETCH_LVM_LINEAR);
        fetch_lvm_free(l);
        free(t);
        free(t2);
    }
    fetch_lvm_free(l0);
    free(text);
}

static void read_failure_and_nothing(void **state)
{
    struct fake z = {.size = 64 * FX_MIB}, tiny = {.size = 100}, a = fake_pv(fx.img[0], 0);
    struct fetch_dev devs[] = {dev_of(&z), dev_of(&tiny), dev_of(&a)};
    struct fetch_lvm *l = NULL;
    fetch_error err = {""};
    (void)state;

    l = scan_ok(devs, 2);
    assert_int_equal(l->pv_count, 0);
    assert_int_equal(l->vg_count, 0);
    assert_null(l->vgs);
    fetch_lvm_free(l);
    l = scan_ok(devs, 0);
    assert_int_equal(l->vg_count, 0);
    fetch_lvm_free(l);
    fetch_lvm_free(NULL);

    l = NULL;
    a.fail = true;
    assert_int_equal(fetch_lvm_scan(devs, 3, &l, &err), -EIO);
    assert_null(l);
    assert_non_null(strstr(err.msg, "device 2"));
    assert_non_null(strstr(err.msg, "injected"));
}

/* Devices whose metadata names many volume groups, each with a large text:
 * the scan keeps at most SCAN_NODES_MAX (2^20) values of them at once and
 * tells the VGs past that why they are not shown, instead of holding every
 * parsed text (about 90 MiB per 2^20 values) until it ends. */
static void many_large_vgs_bounded(void **state)
{
    enum { NDEV = 8 };
    uint8_t *img[NDEV];
    struct fake f[NDEV];
    struct fetch_dev devs[NDEV];
    struct fetch_lvm *l;
    size_t refused = 0;
    (void)state;

    for (int k = 0; k < NDEV; k++) {
        size_t len, pad, plen;
        char *text, *t1, *t2, *big, name[16], id[48];
        uint8_t *h;

        img[k] = pv_copy(0);
        h = img[k] + mda_of(img[k]);
        text = text_get(img[k], &len);
        snprintf(name, sizeof(name), "vg%d {", k);
        snprintf(id, sizeof(id), "id = \"Zsq14F-2UKS-m3rA-VUN9-ZqgY-PyRM-UkRT%02d\"", k);
        t1 = edit(text, &len, "vgt {", name);
        t2 = edit(t1, &len, "id = \"Zsq14F-2UKS-m3rA-VUN9-ZqgY-PyRM-UkRT4e\"", id);
        /* a section of small values after the VG's, filling the area */
        pad = (size_t)(le64(h + 32) - 512 - len - 64) / 6;
        big = fx_malloc(len + 16 + 6 * pad);
        /* (before the text's closing NUL) */
        plen = len && !t2[len - 1] ? len - 1 : len;
        memcpy(big, t2, plen);
        plen += (size_t)sprintf(big + plen, "\npad {\n");
        for (size_t n = 0; n < pad; n++, plen += 6)
            memcpy(big + plen, "a = 1\n", 6);
        plen += (size_t)sprintf(big + plen, "}\n") + 1;
        text_put(img[k], big, plen, 512);
        f[k] = fake_pv(img[k], 0);
        devs[k] = dev_of(&f[k]);
        free(text);
        free(t1);
        free(t2);
        free(big);
    }
    l = scan_ok(devs, NDEV);
    assert_int_equal(l->vg_count, NDEV);
    for (size_t k = 0; k < l->vg_count; k++)
        refused += strstr(l->vgs[k].error, "more metadata than one scan keeps") != NULL;
    /* each text holds over 2^17 values: 8 of them are more than one scan keeps */
    assert_true(refused >= 1);
    assert_true(refused < NDEV);
    fetch_lvm_free(l);
    for (int k = 0; k < NDEV; k++)
        free(img[k]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_checksums_are_lvms),
        cmocka_unit_test(real_pvs_match_lvs),
        cmocka_unit_test(missing_pv_listed_as_size_max),
        cmocka_unit_test(label_checks),
        cmocka_unit_test(mda_header_checks),
        cmocka_unit_test(text_checksum_and_bounds),
        cmocka_unit_test(wrapped_text),
        cmocka_unit_test(highest_seqno_wins),
        cmocka_unit_test(malformed_texts),
        cmocka_unit_test(stripe_past_device_end),
        cmocka_unit_test(unsupported_and_hidden),
        cmocka_unit_test(pvmove_and_snapshots),
        cmocka_unit_test(read_failure_and_nothing),
        cmocka_unit_test(many_large_vgs_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
