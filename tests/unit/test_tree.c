/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fs/tree.h (the mount's namespace built from a repository's
 * entries, fetch/repo.h), with a repository format of the test's own:
 * directories made for paths, names kept unique (a later entry whose name
 * or directory name is taken is left out), a directory entry listed after
 * its contents, symlinks, images read at load time moving into their nodes,
 * sizes before loading, refusals, loads falling back to mirrors, a large
 * flat directory, and image indexes let go beyond the bound once unused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/image.h"
#include "fetch/repo.h"
#include "fs/log.h"
#include "fs/tree.h"

/* The stores of the test: only their identity matters. */
static struct fetch_store store_a, store_b;

static atomic_int opens_a, opens_b;
#define EXTENT 65536u
static int fail_a, fail_b; /* what store_a and store_b answer an open with */

static int fake_open_image(const struct fetch_repo *repo, struct fetch_store *s,
                           const struct fetch_entry *e, struct fetch_image **ret, fetch_error *err)
{
    struct fetch_image *img;
    (void)repo;
    if (s == &store_a) {
        opens_a++;
        if (fail_a)
            return fetch_error_set(err, fail_a, "store a: %s", strerror(-fail_a));
    } else {
        opens_b++;
        if (fail_b)
            return fetch_error_set(err, fail_b, "store b: %s", strerror(-fail_b));
    }
    img = calloc(1, sizeof(*img));
    assert_non_null(img);
    img->size = (uint64_t)(uintptr_t)e->handle;
    /* extents of 64 KiB, each digest its index (none below 64 KiB) */
    img->count = (size_t)(img->size / EXTENT);
    img->stride = EXTENT;
    img->data_bytes = img->count * (uint64_t)EXTENT;
    if (img->count) {
        img->extents = calloc(img->count, sizeof(*img->extents));
        assert_non_null(img->extents);
    }
    for (size_t i = 0; i < img->count; i++) {
        img->extents[i] = (struct fetch_extent){.offset = i * (uint64_t)EXTENT, .length = EXTENT};
        memcpy(img->extents[i].digest, &i, sizeof(i));
    }
    *ret = img;
    return 0;
}

static int fake_read_blob(const struct fetch_repo *repo, struct fetch_store *s,
                          const struct fetch_entry *e, fetch_data *ret, fetch_error *err)
{
    (void)repo;
    (void)s;
    (void)err;
    char *b = strdup(e->path);
    assert_non_null(b);
    *ret = (fetch_data){b, (const uint8_t *)b, strlen(b)};
    return 0;
}

static const struct fetch_repo_format fake_format = {
    .name = "fake",
    .label = "a test repository",
    .items = "things",
    .open_image = fake_open_image,
    .read_blob = fake_read_blob,
};

static struct fetch_repo *repo_new(void)
{
    struct fetch_repo *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->format = &fake_format;
    r->store = &store_a;
    return r;
}

static void add(struct fetch_repo *r, const char *path, enum fetch_entry_type type, int64_t mtime,
                uint64_t size_or_handle)
{
    struct fetch_entry e = {.path = (char *)path,
                            .type = type,
                            .mtime = mtime,
                            .size = size_or_handle,
                            .handle = (const void *)(uintptr_t)size_or_handle};
    if (type == FETCH_ENTRY_SYMLINK)
        e.target = (char *)"2025-01-01T00:00:00Z";
    assert_int_equal(fetch_repo_add_entry(r, &e), 0);
}

/* The node at @path ("a/b/c") or NULL. */
static struct fs_node *walk(struct fs_tree *t, const char *path)
{
    struct fs_node *n = fs_tree_get(t, FS_ROOT_INO);
    char buf[256], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *c = strtok_r(buf, "/", &save); c && n; c = strtok_r(NULL, "/", &save))
        n = n->kind == FS_NODE_DIR ? fs_tree_lookup(n, c) : NULL;
    return n;
}

static void dirs_names_and_kinds(void **state)
{
    (void)state;
    struct fetch_repo *r = repo_new();
    struct fs_tree *t = NULL;
    struct fs_node *n, *root;
    struct stat st;
    char path[256];

    add(r, "vm/100/2025-01-01T00:00:00Z", FETCH_ENTRY_DIR, 1735689600, 0);
    add(r, "vm/100/2025-01-01T00:00:00Z/drive-scsi0.img", FETCH_ENTRY_IMAGE, 1735689600, 4096);
    add(r, "vm/100/2025-01-01T00:00:00Z/qemu-server.conf", FETCH_ENTRY_BLOB, 1735689600, 0);
    add(r, "vm/100/latest", FETCH_ENTRY_SYMLINK, 1735689600, 0);
    add(r, "ct/200/x", FETCH_ENTRY_IMAGE, 0, 512);
    /* a directory entry after its contents gives it its time */
    add(r, "ct/200", FETCH_ENTRY_DIR, 1700000000, 0);
    assert_int_equal(fs_tree_new(r, true, &t), 0);

    root = fs_tree_get(t, FS_ROOT_INO);
    assert_int_equal(root->child_count, 2);
    /* sorted for the binary search of lookups */
    assert_string_equal(root->children[0]->name, "ct");
    assert_string_equal(root->children[1]->name, "vm");
    assert_int_equal(t->image_count, 2);

    n = walk(t, "vm/100/2025-01-01T00:00:00Z");
    assert_non_null(n);
    assert_int_equal(n->kind, FS_NODE_DIR);
    assert_int_equal(n->mtime, 1735689600);
    n = walk(t, "vm/100");
    assert_int_equal(n->mtime, t->mount_time); /* made for the path */
    assert_int_equal(walk(t, "ct/200")->mtime, 1700000000);

    n = walk(t, "vm/100/latest");
    assert_non_null(n);
    assert_int_equal(n->kind, FS_NODE_SYMLINK);
    assert_string_equal(n->target, "2025-01-01T00:00:00Z");
    fs_node_stat(t, n, &st);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(st.st_size, 20);

    n = walk(t, "vm/100/2025-01-01T00:00:00Z/drive-scsi0.img");
    assert_non_null(n);
    assert_int_equal(n->kind, FS_NODE_IMAGE);
    assert_false(fs_node_loaded(n));
    fs_node_stat(t, n, &st); /* before loading: the repository's size */
    assert_int_equal(st.st_size, 4096);
    assert_int_equal(st.st_mode, S_IFREG | 0444);
    assert_int_equal(fs_node_path(n, path, sizeof(path)), 0);
    assert_string_equal(path, "vm/100/2025-01-01T00:00:00Z/drive-scsi0.img");

    n = walk(t, "vm/100/2025-01-01T00:00:00Z/qemu-server.conf");
    assert_int_equal(n->kind, FS_NODE_BLOB);
    fetch_error err = {""};
    assert_int_equal(fs_node_load(t, n, &err), 0);
    fs_node_stat(t, n, &st);
    assert_int_equal(st.st_size, strlen("vm/100/2025-01-01T00:00:00Z/qemu-server.conf"));

    /* directories count their subdirectories in st_nlink */
    fs_node_stat(t, walk(t, "vm/100"), &st);
    assert_int_equal(st.st_nlink, 3);
    assert_null(walk(t, "vm/101"));
    assert_null(fs_tree_get(t, 0));
    assert_null(fs_tree_get(t, t->count + 1));
    fs_tree_free(t);
}

static void taken_names_hidden(void **state)
{
    (void)state;
    struct fetch_repo *r = repo_new();
    struct fs_tree *t = NULL;
    struct fs_node *n;

    add(r, "a/x", FETCH_ENTRY_IMAGE, 0, 1);
    add(r, "a/x", FETCH_ENTRY_BLOB, 0, 2);    /* the name is taken: left out */
    add(r, "a/x/y", FETCH_ENTRY_IMAGE, 0, 3); /* its directory's name is taken */
    add(r, "a", FETCH_ENTRY_IMAGE, 0, 4);     /* a directory has the name */
    add(r, "b/c", FETCH_ENTRY_IMAGE, 0, 5);
    add(r, "b/c/d", FETCH_ENTRY_IMAGE, 0, 6);
    add(r, "b/c.parts", FETCH_ENTRY_BLOB, 0, 7); /* the store's file wins over c's .parts */
    assert_int_equal(fs_tree_new(r, true, &t), 0);

    n = walk(t, "a/x");
    assert_non_null(n);
    assert_int_equal(n->kind, FS_NODE_IMAGE);
    assert_int_equal(n->entry->size, 1); /* the first one */
    assert_int_equal(walk(t, "a")->kind, FS_NODE_DIR);
    /* each image has its <name>.parts directory beside it (fs/parts.h) */
    assert_int_equal(walk(t, "a")->child_count, 2);
    assert_int_equal(walk(t, "a/x.parts")->kind, FS_NODE_PARTS);
    assert_ptr_equal(walk(t, "a/x.parts")->of, n);
    assert_int_equal(walk(t, "b")->child_count, 2);
    assert_int_equal(walk(t, "b/c.parts")->kind, FS_NODE_BLOB);
    assert_int_equal(walk(t, "b/c.parts")->entry->size, 7);
    assert_int_equal(t->image_count, 2);
    fs_tree_free(t);
}

static void loaded_images_and_refusals(void **state)
{
    (void)state;
    struct fetch_repo *r = repo_new();
    struct fs_tree *t = NULL;
    struct fs_node *n;
    struct fetch_image *pre = calloc(1, sizeof(*pre));
    fetch_error err = {""};
    struct stat st;

    assert_non_null(pre);
    pre->size = 1 << 20;
    pre->data_bytes = 4096;
    add(r, "pre", FETCH_ENTRY_IMAGE, 0, 0);
    r->entries[0].image = pre;
    add(r, "locked", FETCH_ENTRY_IMAGE, 0, 777);
    r->entries[1].refuse = -ENOKEY;
    r->entries[1].refuse_msg = "encrypted";
    assert_int_equal(fs_tree_new(r, true, &t), 0);
    assert_null(t->repo->entries[0].image); /* moved into the node */

    opens_a = opens_b = 0;
    n = walk(t, "pre");
    assert_true(fs_node_loaded(n));
    assert_ptr_equal(n->image, pre);
    assert_int_equal(fs_node_load(t, n, &err), 0);
    assert_int_equal(opens_a + opens_b, 0);
    fs_node_stat(t, n, &st);
    assert_int_equal(st.st_size, 1 << 20);
    assert_int_equal(st.st_blocks, 8);

    n = walk(t, "locked");
    assert_int_equal(fs_node_load(t, n, &err), -ENOKEY);
    assert_non_null(strstr(err.msg, "encrypted"));
    assert_false(fs_node_loaded(n));
    assert_int_equal(opens_a + opens_b, 0);
    fs_node_stat(t, n, &st);
    assert_int_equal(st.st_size, 777);
    fs_tree_free(t);
}

static void loads_fall_back_to_mirrors(void **state)
{
    (void)state;
    struct fetch_repo *r = repo_new();
    struct fetch_store *stores[2] = {&store_a, &store_b};
    struct fetch_mirrors *m = fetch_mirrors_new(stores, 2);
    struct fs_tree *t = NULL;
    struct fs_node *n;
    fetch_error err = {""};

    add(r, "one", FETCH_ENTRY_IMAGE, 0, 100);
    add(r, "two", FETCH_ENTRY_IMAGE, 0, 200);
    add(r, "three", FETCH_ENTRY_IMAGE, 0, 300);
    assert_int_equal(fs_tree_new(r, true, &t), 0);
    fs_tree_set_mirrors(t, m);

    /* a failure another copy may not have: the next store is tried, and
     * becomes the active one */
    opens_a = opens_b = 0;
    fail_a = -ECONNRESET;
    n = walk(t, "one");
    assert_int_equal(fs_node_load(t, n, &err), 0);
    assert_int_equal(opens_a, 1);
    assert_int_equal(opens_b, 1);
    assert_int_equal(n->image->size, 100);
    assert_int_equal(fetch_mirrors_active(m), 1);
    assert_int_equal(fetch_mirrors_failovers(m), 1);
    /* loaded once: later calls return at once */
    assert_int_equal(fs_node_load(t, n, &err), 0);
    assert_int_equal(opens_a + opens_b, 2);

    /* later loads start on the active store: the failed one is not asked */
    n = walk(t, "two");
    assert_int_equal(fs_node_load(t, n, &err), 0);
    assert_int_equal(opens_a, 1);
    assert_int_equal(opens_b, 2);

    /* a failure every copy has (not found): not retried elsewhere */
    fail_a = 0;
    fail_b = -ENOENT;
    n = walk(t, "three");
    assert_int_equal(fs_node_load(t, n, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "store b"));
    assert_int_equal(opens_a, 1);
    assert_int_equal(opens_b, 3);
    assert_false(fs_node_loaded(n));
    fail_b = 0;
    /* for FS_LOAD_FAILED_MS the failure is the answer, the store not asked */
    err.msg[0] = '\0';
    assert_int_equal(fs_node_load(t, n, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "store b"));
    assert_int_equal(opens_b, 3);
    /* then the next call loads again */
    n->load_failed_ms -= FS_LOAD_FAILED_MS;
    assert_int_equal(fs_node_load(t, n, &err), 0);
    assert_int_equal(opens_b, 4);
    assert_int_equal(n->image->size, 300);
    assert_int_equal(fetch_mirrors_failovers(m), 1);
    fs_tree_free(t);
    fetch_mirrors_free(m);
}

/* Whether @img is the fake index of a @size-byte image, read in full. */
static bool index_intact(const struct fetch_image *img, uint64_t size)
{
    if (img->size != size || img->count != size / EXTENT)
        return false;
    for (size_t i = 0; i < img->count; i++) {
        size_t d;
        memcpy(&d, img->extents[i].digest, sizeof(d));
        if (img->extents[i].offset != i * (uint64_t)EXTENT || d != i)
            return false;
    }
    return fetch_image_find(img, size - 1) == img->count - 1;
}

#define BOUND_IMAGES 40
#define KEEP 3
#define IMG_SIZE (64ull << 20) /* 1024 extents: 48 KiB of index */

static struct fs_tree *many_images(void)
{
    struct fetch_repo *r = repo_new();
    struct fs_tree *t = NULL;
    char path[64];
    for (int i = 0; i < BOUND_IMAGES; i++) {
        snprintf(path, sizeof(path), "vm/%03d/drive.img", i);
        add(r, path, FETCH_ENTRY_IMAGE, 0, IMG_SIZE);
    }
    assert_int_equal(fs_tree_new(r, true, &t), 0);
    return t;
}

static struct fs_node *image_no(struct fs_tree *t, int i)
{
    char path[64];
    snprintf(path, sizeof(path), "vm/%03d/drive.img", i);
    return walk(t, path);
}

/* What the indexes of KEEP images take, and a little less than one more. */
static uint64_t keep_bytes(void)
{
    uint64_t one = sizeof(struct fetch_image) + IMG_SIZE / EXTENT * sizeof(struct fetch_extent);
    return KEEP * one + one / 2;
}

/* stat() of image @n (lookup, getattr): its size and blocks, all data */
static void stat_image(struct fs_tree *t, struct fs_node *n)
{
    fetch_error err = {""};
    struct stat sb;
    assert_int_equal(fs_node_load(t, n, &err), 0);
    fs_node_stat(t, n, &sb);
    assert_int_equal(sb.st_size, IMG_SIZE);
    assert_int_equal(sb.st_blocks, IMG_SIZE / 512);
}

static void unused_indexes_are_bounded(void **state)
{
    (void)state;
    struct fs_tree *t = many_images();
    struct fs_index_stats st;
    const struct fetch_image *held, *again, *peeked;
    struct fs_node *n, *open_n;
    fetch_error err = {""};

    fs_tree_set_index_keep(t, keep_bytes());
    opens_a = opens_b = 0;
    /* stat() of every image (lookup, getattr): the index once each; at most
     * KEEP of them stay in memory */
    for (int i = 0; i < BOUND_IMAGES; i++) {
        stat_image(t, image_no(t, i));
        fs_tree_index_stats(t, &st);
        assert_true(st.loaded <= KEEP);
        assert_true(st.unused_bytes <= keep_bytes());
    }
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.loaded, KEEP);
    assert_int_equal(st.unused, KEEP);
    assert_int_equal(st.loads, BOUND_IMAGES);
    assert_int_equal(st.evictions, BOUND_IMAGES - KEEP);
    assert_int_equal(opens_a, BOUND_IMAGES);
    /* the most recently used stay, the others went */
    assert_null(image_no(t, 0)->image);
    assert_non_null(image_no(t, BOUND_IMAGES - 1)->image);
    /* stat again: from the node, no load */
    for (int i = 0; i < BOUND_IMAGES; i++)
        stat_image(t, image_no(t, i));
    assert_int_equal(opens_a, BOUND_IMAGES);

    /* an open image loads again, and stays while open however many others
     * come and go */
    open_n = image_no(t, 0);
    assert_int_equal(fs_image_get(t, open_n, &held, &err), 0);
    assert_int_equal(opens_a, BOUND_IMAGES + 1);
    assert_true(index_intact(held, IMG_SIZE));
    for (int i = 1; i < BOUND_IMAGES; i++) {
        n = image_no(t, i);
        assert_int_equal(fs_image_get(t, n, &again, &err), 0);
        assert_true(index_intact(again, IMG_SIZE));
        fs_image_put(t, n);
        fs_tree_index_stats(t, &st);
        assert_true(st.unused <= KEEP);
        assert_int_equal(st.loaded - st.unused, 1); /* the open one */
    }
    assert_ptr_equal(open_n->image, held);
    assert_true(index_intact(held, IMG_SIZE)); /* read after the others went */
    /* a second opener shares it; a read that waits adds its own */
    assert_int_equal(fs_image_get(t, open_n, &again, &err), 0);
    assert_ptr_equal(again, held);
    fs_image_ref(open_n);
    fs_image_put(t, open_n);
    fs_image_put(t, open_n);
    assert_ptr_equal(open_n->image, held);
    /* each went before the loop reached it (the newest pushed out the oldest) */
    assert_int_equal(opens_a, 2 * BOUND_IMAGES);
    /* the last release: unused, the most recent of them, so it stays */
    fs_image_put(t, open_n);
    assert_ptr_equal(open_n->image, held);
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.loaded, KEEP);
    assert_int_equal(st.unused, KEEP);

    /* a peek (status) neither loads nor makes one recently used: the least
     * recently used goes next all the same */
    assert_null(fs_image_peek(t, image_no(t, 1)));
    n = image_no(t, BOUND_IMAGES - 2); /* the least recently used kept */
    assert_non_null(n->image);
    assert_non_null(peeked = fs_image_peek(t, n));
    assert_true(index_intact(peeked, IMG_SIZE));
    fs_image_put(t, n);
    assert_int_equal(fs_image_get(t, image_no(t, 1), &again, &err), 0);
    fs_image_put(t, image_no(t, 1));
    assert_null(n->image);
    /* a bound smaller than one index keeps the most recently used one (it
     * would be fetched again at every open), a bound of 0 none */
    fs_tree_set_index_keep(t, 1);
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.unused, 1);
    assert_non_null(image_no(t, 1)->image);
    assert_int_equal(fs_image_get(t, image_no(t, 2), &again, &err), 0);
    fs_image_put(t, image_no(t, 2));
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.unused, 1);
    assert_null(image_no(t, 1)->image);
    assert_non_null(image_no(t, 2)->image);
    assert_int_equal(fs_image_get(t, image_no(t, BOUND_IMAGES - 1), &again, &err), 0);
    fs_image_put(t, image_no(t, BOUND_IMAGES - 1));
    /* ... but one peeked at stays while it is looked at */
    n = image_no(t, BOUND_IMAGES - 1);
    assert_non_null(peeked = fs_image_peek(t, n));
    fs_tree_set_index_keep(t, 0);
    assert_ptr_equal(n->image, peeked);
    assert_true(index_intact(peeked, IMG_SIZE));
    fs_image_put(t, n);
    assert_null(n->image);
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.loaded, 0);
    assert_int_equal(st.loaded_bytes, 0);
    assert_int_equal(st.unused_bytes, 0);
    fs_tree_free(t);
}

/* Threads that get, read and put images (and peek at them) while the bound
 * lets most go: every index read is whole (the sanitizer builds see a use
 * after free). */
struct churn {
    struct fs_tree *t;
    unsigned seed;
    atomic_int *bad;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    for (int k = 0; k < 400; k++) {
        struct fs_node *n = image_no(c->t, (int)(rand_r(&c->seed) % 12));
        const struct fetch_image *img;
        fetch_error err = {""};
        if (k % 5 == 0) {
            if ((img = fs_image_peek(c->t, n))) {
                if (!index_intact(img, IMG_SIZE))
                    atomic_fetch_add(c->bad, 1);
                fs_image_put(c->t, n);
            }
            continue;
        }
        if (fs_image_get(c->t, n, &img, &err) < 0) {
            atomic_fetch_add(c->bad, 1);
            continue;
        }
        if (k % 3 == 0)
            fs_image_ref(n); /* a read that waits */
        if (!index_intact(img, IMG_SIZE))
            atomic_fetch_add(c->bad, 1);
        if (k % 3 == 0)
            fs_image_put(c->t, n);
        fs_image_put(c->t, n);
    }
    return NULL;
}

static void indexes_churn_across_threads(void **state)
{
    (void)state;
    struct fs_tree *t = many_images();
    struct churn c[4];
    pthread_t th[4];
    atomic_int bad = 0;
    struct fs_index_stats st;

    fs_tree_set_index_keep(t, keep_bytes());
    for (unsigned i = 0; i < 4; i++) {
        c[i] = (struct churn){t, i + 1, &bad};
        assert_int_equal(pthread_create(&th[i], NULL, churn_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(bad, 0);
    fs_tree_index_stats(t, &st);
    assert_int_equal(st.loaded, st.unused); /* nobody holds one */
    assert_true(st.unused <= KEEP);
    assert_true(st.evictions > 0);
    for (int i = 0; i < 12; i++)
        assert_int_equal(atomic_load(&image_no(t, i)->image_refs), 0);
    fs_tree_free(t);
}

static void large_flat_directory(void **state)
{
    (void)state;
    enum { N = 60000 };
    struct fetch_repo *r = repo_new();
    struct fs_tree *t = NULL;
    struct fs_node *d;
    char path[64];

    /* in reverse order: nothing may rely on the repository's order */
    for (int i = N; i-- > 0;) {
        snprintf(path, sizeof(path), "dir/img%05d", i);
        add(r, path, FETCH_ENTRY_IMAGE, 0, (uint64_t)i + 1);
    }
    add(r, "dir/img00042", FETCH_ENTRY_IMAGE, 0, 1); /* taken */
    assert_int_equal(fs_tree_new(r, true, &t), 0);
    d = walk(t, "dir");
    assert_int_equal(d->child_count, 2 * N); /* and their .parts */
    assert_int_equal(t->image_count, N);
    for (int i = 0; i < N; i += 997) {
        snprintf(path, sizeof(path), "img%05d", i);
        assert_int_equal(fs_tree_lookup(d, path)->entry->size, (uint64_t)i + 1);
    }
    for (size_t i = 1; i < d->child_count; i++)
        assert_true(strcmp(d->children[i - 1]->name, d->children[i]->name) < 0);
    fs_tree_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dirs_names_and_kinds),
        cmocka_unit_test(taken_names_hidden),
        cmocka_unit_test(loaded_images_and_refusals),
        cmocka_unit_test(loads_fall_back_to_mirrors),
        cmocka_unit_test(large_flat_directory),
        cmocka_unit_test(unused_indexes_are_bounded),
        cmocka_unit_test(indexes_churn_across_threads),
    };
    fs_log_set_level(FS_LOG_ERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
