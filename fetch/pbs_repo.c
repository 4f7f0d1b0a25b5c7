/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A Proxmox Backup Server datastore as a repository (fetch/repo.h):
 *   [ns/<n>/…]<type>/<id>/<time>/<archive>   and   <type>/<id>/latest -> <time>
 * Images are the .fidx archives, small files the .blob ones, directories the
 * pxar file archives: `x.pxar.didx` (v1), or the pair `x.mpxar.didx` +
 * `x.ppxar.didx` (v2), both shown as `x.pxar`. Encrypted archives open with
 * the repository's key (repo->key); encrypted blobs are shown only with one.
 * With a key, signed manifests are verified: a snapshot whose signature does
 * not verify refuses every archive (-EBADMSG).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbs.h"
#include "pbs_format.h"
#include "pbs_key.h"
#include "pxar.h"
#include "repo.h"

/* What an entry's handle points at: one archive of one snapshot. */
struct pbs_ref {
    const struct fetch_pbs_snapshot *snap;
    const struct fetch_manifest_file *file;
};

struct pbs_priv {
    struct fetch_pbs_catalog *cat;
    struct pbs_ref *refs;
    size_t nmsgs;
    char **msgs; /* refusal messages of entries (why a key does not fit) */
};

static void pbs_free_priv(void *p)
{
    struct pbs_priv *pp = p;
    fetch_pbs_catalog_free(pp->cat);
    free(pp->refs);
    for (size_t i = 0; i < pp->nmsgs; i++)
        free(pp->msgs[i]);
    free(pp->msgs);
    free(pp);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t l = strlen(s), sl = strlen(suffix);
    return l >= sl && !strcmp(s + l - sl, suffix);
}

/* "[ns/A/ns/B/]TYPE/ID/TIME": the snapshot's directory below the mountpoint. */
static void snapshot_path(const struct fetch_pbs_snapshot *s, char *buf, size_t len)
{
    size_t off = 0;
    const char *ns = s->ns;
    buf[0] = '\0';
    while (*ns && off < len) {
        const char *slash = strchr(ns, '/');
        int n = (int)(slash ? (size_t)(slash - ns) : strlen(ns));
        off += (size_t)snprintf(buf + off, len - off, "ns/%.*s/", n, ns);
        ns += n + (slash != NULL);
    }
    if (off < len)
        snprintf(buf + off, len - off, "%s/%s/%s", s->type, s->id, s->time_str);
}

/* What a pxar file name is: a v1 archive, the metadata or payload half of a
 * v2 pair, or not pxar (0). */
enum pxar_part { PXAR_NONE, PXAR_V1, PXAR_META, PXAR_PAYLOAD };

static enum pxar_part pxar_part(const char *name)
{
    if (has_suffix(name, ".mpxar.didx"))
        return PXAR_META;
    if (has_suffix(name, ".ppxar.didx"))
        return PXAR_PAYLOAD;
    if (has_suffix(name, ".pxar.didx"))
        return PXAR_V1;
    return PXAR_NONE;
}

/* The payload half of v2 metadata archive @meta in @m, or NULL. */
static const struct fetch_manifest_file *payload_of(const struct fetch_manifest *m,
                                                    const struct fetch_manifest_file *meta)
{
    size_t l = strlen(meta->name) - strlen(".mpxar.didx");
    for (size_t i = 0; i < m->count; i++) {
        const char *n = m->files[i].name;
        if (pxar_part(n) == PXAR_PAYLOAD && strlen(n) == strlen(meta->name) &&
            !strncmp(n, meta->name, l))
            return &m->files[i];
    }
    return NULL;
}

/* Whether the mount shows archive @f of @m (@keyed: the mount has a key). */
static bool shown(const struct fetch_manifest *m, const struct fetch_manifest_file *f,
                  enum fetch_pbs_archive k, bool keyed)
{
    if (k == FETCH_PBS_ARCHIVE_DIDX)
        return pxar_part(f->name) == PXAR_V1 ||
               (pxar_part(f->name) == PXAR_META && payload_of(m, f));
    return k == FETCH_PBS_ARCHIVE_FIDX ||
           (k == FETCH_PBS_ARCHIVE_BLOB && (keyed || f->crypt != FETCH_CRYPT_ENCRYPT) &&
            f->size <= FETCH_PBS_SMALL_BLOB_MAX);
}

/* The name archive @f shows under: its stem, "x.pxar" for "x.mpxar.didx". */
static void shown_name(const struct fetch_manifest_file *f, size_t stem, char *buf, size_t len)
{
    if (pxar_part(f->name) == PXAR_META)
        snprintf(buf, len, "%.*s.pxar", (int)(strlen(f->name) - strlen(".mpxar.didx")), f->name);
    else
        snprintf(buf, len, "%.*s", (int)stem, f->name);
}

/*
 * One note for the dynamic-index archives (pxar file archives of containers
 * and hosts) the mount does not show yet: how many, and how many snapshots
 * they leave empty.
 */
static int note_unsupported(struct fetch_repo *repo, const struct fetch_pbs_catalog *cat)
{
    bool keyed = repo->key != NULL;
    size_t archives = 0, snaps = 0, empty = 0;
    char tail[96] = "";
    for (size_t i = 0; i < cat->count; i++) {
        const struct fetch_manifest *m = cat->snaps[i].manifest;
        size_t n = 0, nshown = 0;
        for (size_t j = 0; j < m->count; j++) {
            enum fetch_pbs_archive k = fetch_pbs_archive_kind(m->files[j].name, NULL);
            bool half = pxar_part(m->files[j].name) == PXAR_PAYLOAD;
            n += k == FETCH_PBS_ARCHIVE_DIDX && !half && !shown(m, &m->files[j], k, keyed);
            nshown += shown(m, &m->files[j], k, keyed);
        }
        archives += n;
        snaps += n > 0;
        empty += n > 0 && nshown == 0;
    }
    if (!archives)
        return 0;
    if (empty)
        snprintf(tail, sizeof(tail), "; %zu snapshot%s nothing else and appear%s empty", empty,
                 empty == 1 ? " holds" : "s hold", empty == 1 ? "s" : "");
    return fetch_repo_add_note(repo, true,
                               "%s: %zu dynamic-index archive%s not shown (in %zu snapshot%s): "
                               "only pxar file archives are%s; `lazyimg ls` lists them",
                               repo->store->location, archives, archives == 1 ? " is" : "s are",
                               snaps, snaps == 1 ? "" : "s", tail);
}

/* Whether archive @j of @m shows under a name an earlier one has taken. */
static bool name_taken(const struct fetch_manifest *m, size_t j, const char *name, bool keyed)
{
    char other[300];
    for (size_t i = 0; i < j; i++) {
        size_t st = 0;
        enum fetch_pbs_archive k = fetch_pbs_archive_kind(m->files[i].name, &st);
        if (!shown(m, &m->files[i], k, keyed))
            continue;
        shown_name(&m->files[i], st, other, sizeof(other));
        if (!strcmp(other, name))
            return true;
    }
    return false;
}

/*
 * With a key, the signature of @snap's manifest: 0 when it verifies, when
 * it is not the key's to check (a note says so), or when the manifest was
 * made without a key and is not signed; -EBADMSG (noted) when it does not
 * verify, or is missing although the manifest was made with a key; -ENOMEM.
 */
static int check_signature(struct fetch_repo *repo, const struct fetch_pbs_snapshot *snap)
{
    fetch_error err = {""};
    int r;
    if (!repo->key)
        return 0;
    r = fetch_manifest_verify(snap->manifest, repo->key, &err);
    if (r == 0 || r == -ENODATA)
        return 0;
    if (fetch_repo_add_note(repo, true, "%s: %s%s", snap->path, err.msg,
                            r == -EKEYREJECTED ? "; its signature is not checked"
                                               : "; its archives refuse to open") < 0)
        return -ENOMEM;
    return r == -EKEYREJECTED ? 0 : -EBADMSG;
}

/*
 * With a key, whether it is the one @snap's encrypted archives were
 * encrypted with: 0, or -EKEYREJECTED with the message (both fingerprints,
 * kept in @pp) in @ret_msg and a note; -ENOMEM.
 */
static int check_key(struct fetch_repo *repo, struct pbs_priv *pp,
                     const struct fetch_pbs_snapshot *snap, const char **ret_msg)
{
    const struct fetch_manifest *m = snap->manifest;
    fetch_error err = {""};
    char **msgs;
    size_t i;

    /* only a snapshot with encrypted archives (a sign-only one with another
     * key still reads) */
    for (i = 0; i < m->count && m->files[i].crypt != FETCH_CRYPT_ENCRYPT; i++)
        ;
    if (!repo->key || i == m->count ||
        fetch_manifest_check_key(m, repo->key, "encrypted", &err) == 0)
        return 0;
    if (!(msgs = realloc(pp->msgs, (pp->nmsgs + 1) * sizeof(*msgs))))
        return -ENOMEM;
    pp->msgs = msgs;
    if (!(msgs[pp->nmsgs] = strdup(err.msg)) ||
        fetch_repo_add_note(repo, true, "%s: %s; its encrypted archives refuse to open", snap->path,
                            err.msg) < 0)
        return -ENOMEM;
    *ret_msg = msgs[pp->nmsgs++];
    return -EKEYREJECTED;
}

static int add_snapshot(struct fetch_repo *repo, struct pbs_priv *pp,
                        const struct fetch_pbs_snapshot *snap, struct pbs_ref **refs)
{
    char dir[512], path[1024], name[300], group[1024];
    const char *key_msg = NULL;
    bool keyed = repo->key != NULL;
    int r, sig, key;

    if ((sig = check_signature(repo, snap)) == -ENOMEM ||
        (key = check_key(repo, pp, snap, &key_msg)) == -ENOMEM)
        return -ENOMEM;
    snapshot_path(snap, dir, sizeof(dir));
    r = fetch_repo_add_entry(
        repo, &(struct fetch_entry){.path = dir, .type = FETCH_ENTRY_DIR, .mtime = snap->time});
    for (size_t j = 0; j < snap->manifest->count && r == 0; j++) {
        const struct fetch_manifest_file *f = &snap->manifest->files[j];
        size_t stem = 0;
        enum fetch_pbs_archive k = fetch_pbs_archive_kind(f->name, &stem);
        struct fetch_entry e = {.path = path, .mtime = snap->time, .handle = *refs};

        if (!shown(snap->manifest, f, k, keyed))
            continue; /* other .didx; encrypted blobs stay hidden without a key */
        shown_name(f, stem, name, sizeof(name));
        if (name_taken(snap->manifest, j, name, keyed)) {
            /* "x.fidx" and "x.blob" would both show as "x": keep the first */
            r = fetch_repo_add_note(repo, true, "%s: %s hidden: another archive has the name %s",
                                    snap->path, f->name, name);
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        /* the group's directory (the snapshot's without the time) and the name */
        snprintf(group, sizeof(group), "%.*s%s", (int)(strlen(dir) - strlen(snap->time_str)), dir,
                 name);
        e.group = group;
        if (k == FETCH_PBS_ARCHIVE_FIDX || k == FETCH_PBS_ARCHIVE_DIDX) {
            e.type = k == FETCH_PBS_ARCHIVE_FIDX ? FETCH_ENTRY_IMAGE : FETCH_ENTRY_ARCHIVE;
            e.size = k == FETCH_PBS_ARCHIVE_FIDX ? f->size : 0;
        } else {
            e.type = FETCH_ENTRY_BLOB; /* its size is known once decoded */
        }
        if (f->crypt == FETCH_CRYPT_ENCRYPT && !keyed) {
            e.refuse = -ENOKEY;
            e.refuse_msg = "encrypted archive: give its key with --keyfile";
        } else if (f->crypt == FETCH_CRYPT_ENCRYPT && key < 0) {
            e.refuse = key;
            e.refuse_msg = key_msg;
        }
        if (sig < 0) {
            e.refuse = sig;
            e.refuse_msg = "the snapshot's manifest signature is missing or does not verify "
                           "with the key";
        }
        **refs = (struct pbs_ref){snap, f};
        (*refs)++;
        r = fetch_repo_add_entry(repo, &e);
    }
    return r;
}

/* The entries of the whole catalog: snapshots and archives, then each
 * group's "latest" link after its snapshots (sorted: the last is newest). */
static int add_entries(struct fetch_repo *repo, struct pbs_priv *pp)
{
    const struct fetch_pbs_catalog *cat = pp->cat;
    struct pbs_ref *refs;
    size_t nfiles = 0;
    int r = 0;

    for (size_t i = 0; i < cat->count; i++)
        nfiles += cat->snaps[i].manifest->count;
    if (!(pp->refs = calloc(nfiles ? nfiles : 1, sizeof(*pp->refs))))
        return -ENOMEM;
    refs = pp->refs;
    for (size_t i = 0; i < cat->count && r == 0; i++) {
        const struct fetch_pbs_snapshot *s = &cat->snaps[i], *next;
        r = add_snapshot(repo, pp, s, &refs);
        next = i + 1 < cat->count ? &cat->snaps[i + 1] : NULL;
        if (r == 0 && (!next || strcmp(next->ns, s->ns) || strcmp(next->type, s->type) ||
                       strcmp(next->id, s->id))) {
            char dir[512], link[600];
            size_t dl;
            snapshot_path(s, dir, sizeof(dir));
            dl = strlen(dir) - strlen(s->time_str); /* ".../ID/" */
            snprintf(link, sizeof(link), "%.*slatest", (int)dl, dir);
            r = fetch_repo_add_entry(repo, &(struct fetch_entry){.path = link,
                                                                 .type = FETCH_ENTRY_SYMLINK,
                                                                 .mtime = s->time,
                                                                 .target = (char *)s->time_str});
        }
    }
    return r;
}

static int pbs_load(struct fetch_repo *repo, const char *const *paths, size_t n, bool for_mount,
                    fetch_error *err)
{
    struct pbs_priv *pp = calloc(1, sizeof(*pp));
    int r;

    if (!pp)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    repo->priv = pp;
    r = n ? fetch_pbs_catalog_load_paths(repo->store, paths, n, &pp->cat, err)
          : fetch_pbs_catalog_load(repo->store, &pp->cat, err);
    if (r < 0)
        return r;
    repo->items = pp->cat->count;
    for (size_t i = 0; i < pp->cat->warning_count; i++) {
        if (fetch_repo_add_note(repo, true, "%s", pp->cat->warnings[i]) < 0)
            return fetch_error_set(err, -ENOMEM, "out of memory");
    }
    if (!for_mount)
        return 0;
    if ((pp->cat->count == 0 &&
         fetch_repo_add_note(repo, true, "%s: no finished snapshots; the mount will be empty",
                             repo->store->location) < 0) ||
        note_unsupported(repo, pp->cat) < 0 || add_entries(repo, pp) < 0)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int pbs_open_image(const struct fetch_repo *repo, struct fetch_store *s,
                          const struct fetch_entry *e, struct fetch_image **ret, fetch_error *err)
{
    const struct pbs_ref *ref = e->handle;
    return fetch_pbs_open_fidx(s, ref->snap, ref->file, repo->key, ret, err);
}

static int pbs_read_blob(const struct fetch_repo *repo, struct fetch_store *s,
                         const struct fetch_entry *e, fetch_data *ret, fetch_error *err)
{
    const struct pbs_ref *ref = e->handle;
    return fetch_pbs_read_blob(s, ref->snap, ref->file, repo->key, ret, err);
}

static int pbs_open_archive(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_archive_src *ret,
                            fetch_error *err)
{
    const struct pbs_ref *ref = e->handle;
    const struct fetch_manifest_file *payload = NULL;
    struct fetch_archive_src src = {.format = &fetch_pxar_format};
    int r;

    if (pxar_part(ref->file->name) == PXAR_META &&
        !(payload = payload_of(ref->snap->manifest, ref->file)))
        return fetch_error_set(err, -EBADMSG, "%s: its payload archive is missing",
                               ref->file->name);
    if ((r = fetch_pbs_open_didx(s, ref->snap, ref->file, repo->key, &src.meta, err)) < 0 ||
        (payload &&
         (r = fetch_pbs_open_didx(s, ref->snap, payload, repo->key, &src.payload, err)) < 0)) {
        fetch_archive_src_free(&src);
        return r;
    }
    *ret = src;
    return 0;
}

static int pbs_open_catalog(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_image **ret, char *name,
                            size_t name_len, fetch_error *err)
{
    const struct pbs_ref *ref = e->handle;
    const struct fetch_manifest *m = ref->snap->manifest;
    /* the client writes a catalog of its single-stream archives only */
    if (pxar_part(ref->file->name) != PXAR_V1)
        return -ENOENT;
    for (size_t i = 0; i < m->count; i++) {
        if (strcmp(m->files[i].name, PBS_CATALOG_NAME))
            continue;
        snprintf(name, name_len, "%s", ref->file->name);
        return fetch_pbs_open_didx(s, ref->snap, &m->files[i], repo->key, ret, err);
    }
    return -ENOENT;
}

/* --- lazyimg ls ------------------------------------------------------------ */

static const char *archive_kind(const struct fetch_manifest_file *f, size_t *stem)
{
    switch (fetch_pbs_archive_kind(f->name, stem)) {
    case FETCH_PBS_ARCHIVE_FIDX:
        return "image";
    case FETCH_PBS_ARCHIVE_DIDX:
        return has_suffix(f->name, "pxar.didx") ? "pxar" : "didx";
    case FETCH_PBS_ARCHIVE_CATALOG:
        return "catalog";
    case FETCH_PBS_ARCHIVE_BLOB:
        return "blob";
    default:
        return "other";
    }
}

/* Whether the mount shows file @f of @s (and can read it with @key): "yes",
 * or why not. */
static const char *mount_state(const struct fetch_pbs_key *key, const struct fetch_pbs_snapshot *s,
                               const struct fetch_manifest_file *f)
{
    enum fetch_pbs_archive k = fetch_pbs_archive_kind(f->name, NULL);
    switch (k) {
    case FETCH_PBS_ARCHIVE_DIDX:
        if (pxar_part(f->name) == PXAR_PAYLOAD)
            return "with its .mpxar (the file contents of a pxar archive)";
        if (pxar_part(f->name) == PXAR_NONE)
            return "no (dynamic index: not supported yet)";
        break;
    case FETCH_PBS_ARCHIVE_CATALOG:
        return "no (catalog of the pxar archives' files)";
    case FETCH_PBS_ARCHIVE_OTHER:
        return "no (unknown kind of file)";
    default:
        break;
    }
    if (f->crypt == FETCH_CRYPT_ENCRYPT && !key)
        return k == FETCH_PBS_ARCHIVE_BLOB ? "hidden (encrypted, no key)" : "encrypted, no key";
    if (fetch_pbs_check_key(s, f, key, NULL) == -EKEYREJECTED)
        return "no (encrypted with another key)";
    if (key && fetch_manifest_verify(s->manifest, key, NULL) == -EBADMSG)
        return s->manifest->has_fingerprint
                   ? "no (manifest signature missing or wrong: changed after the backup)"
                   : "no (manifest signature missing or wrong: another key's, or changed after "
                     "the backup)";
    if (k == FETCH_PBS_ARCHIVE_BLOB && f->size > FETCH_PBS_SMALL_BLOB_MAX)
        return "no (blob larger than 16 MiB)";
    return "yes";
}

/*
 * The size the mount shows: for a blob it shows, its decoded size (the
 * manifest has the stored one, header and compression included), read from
 * the store; else the manifest's. A blob that cannot be read gets -errno and
 * @errbuf says why.
 */
static int shown_size(const struct fetch_repo *repo, const struct fetch_pbs_snapshot *s,
                      const struct fetch_manifest_file *f, uint64_t *ret, char *errbuf,
                      size_t errlen)
{
    fetch_data data = {0};
    fetch_error err = {""};
    int r;
    *ret = f->size;
    if (fetch_pbs_archive_kind(f->name, NULL) != FETCH_PBS_ARCHIVE_BLOB ||
        strcmp(mount_state(repo->key, s, f), "yes"))
        return 0;
    r = fetch_pbs_read_blob(repo->store, s, f, repo->key, &data, &err);
    if (r < 0) {
        snprintf(errbuf, errlen, "%s", err.msg[0] ? err.msg : strerror(-r));
        return r;
    }
    *ret = data.len;
    fetch_data_release(&data);
    return 0;
}

static const struct fetch_list_column pbs_columns[] = {
    {"SNAPSHOT", 44, false, 0}, {"ARCHIVE", 28, false, 1}, {"KIND", 7, false, 1},
    {"SIZE", 9, true, 1},       {"CRYPT", 9, false, 2},    {"MOUNTED", 0, false, 1},
};

static int pbs_list_rows(struct fetch_repo *repo, fetch_list_row_fn row, void *arg)
{
    const struct fetch_pbs_catalog *c = ((struct pbs_priv *)repo->priv)->cat;
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *s = &c->snaps[i];
        char path[512];
        snapshot_path(s, path, sizeof(path));
        for (size_t j = 0; j < s->manifest->count; j++) {
            const struct fetch_manifest_file *f = &s->manifest->files[j];
            size_t stem = 0;
            const char *kind = archive_kind(f, &stem);
            char size[32], why[256], name[1024], state[300];
            uint64_t bytes;
            const char *cells[6] = {path, name, kind, size, fetch_crypt_name(f->crypt), state};
            int r;
            shown_name(f, stem, name, sizeof(name));
            if (shown_size(repo, s, f, &bytes, why, sizeof(why)) < 0) {
                snprintf(size, sizeof(size), "-");
                snprintf(state, sizeof(state), "unreadable: %s", why);
            } else {
                fetch_format_size(bytes, size, sizeof(size));
                snprintf(state, sizeof(state), "%s", mount_state(repo->key, s, f));
            }
            if ((r = row(arg, cells)) < 0)
                return r;
        }
    }
    return 0;
}

static json_object *pbs_list_json(struct fetch_repo *repo)
{
    const struct fetch_pbs_catalog *c = ((struct pbs_priv *)repo->priv)->cat;
    json_object *arr = json_object_new_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < c->count; i++) {
        const struct fetch_pbs_snapshot *s = &c->snaps[i];
        json_object *o = json_object_new_object(), *files = json_object_new_array();
        char path[512];
        snapshot_path(s, path, sizeof(path));
        json_object_object_add(o, "path", json_object_new_string(path));
        json_object_object_add(o, "ns", json_object_new_string(s->ns));
        json_object_object_add(o, "backup-type", json_object_new_string(s->type));
        json_object_object_add(o, "backup-id", json_object_new_string(s->id));
        json_object_object_add(o, "backup-time", json_object_new_int64(s->time));
        json_object_object_add(o, "time", json_object_new_string(s->time_str));
        for (size_t j = 0; j < s->manifest->count; j++) {
            const struct fetch_manifest_file *f = &s->manifest->files[j];
            json_object *fo = json_object_new_object();
            size_t stem = 0;
            const char *kind = archive_kind(f, &stem), *state = mount_state(repo->key, s, f);
            char why[256], shown[300];
            uint64_t size;
            int r = shown_size(repo, s, f, &size, why, sizeof(why));
            json_object_object_add(fo, "filename", json_object_new_string(f->name));
            shown_name(f, stem, shown, sizeof(shown));
            json_object_object_add(fo, "name", json_object_new_string(shown));
            json_object_object_add(fo, "kind", json_object_new_string(kind));
            json_object_object_add(fo, "size", json_object_new_int64((int64_t)size));
            if (!strcmp(kind, "blob"))
                json_object_object_add(fo, "stored-size", json_object_new_int64((int64_t)f->size));
            json_object_object_add(fo, "crypt-mode",
                                   json_object_new_string(fetch_crypt_name(f->crypt)));
            json_object_object_add(fo, "mountable",
                                   json_object_new_boolean(!strcmp(state, "yes") && r == 0));
            if (r < 0)
                json_object_object_add(fo, "error", json_object_new_string(why));
            else if (strcmp(state, "yes"))
                json_object_object_add(fo, "reason", json_object_new_string(state));
            json_object_array_add(files, fo);
        }
        json_object_object_add(o, "files", files);
        json_object_array_add(arr, o);
    }
    return arr;
}

const struct fetch_repo_format fetch_pbs_repo_format = {
    .name = "pbs",
    .label = "a Proxmox Backup Server datastore",
    .items = "snapshots",
    .snapshot_hint = "[ns/NS/]TYPE/ID/TIME",
    .chunk_dir = NULL,
    .probe = fetch_pbs_probe,
    .claims = NULL, /* --snapshot paths nobody else claims */
    .load = pbs_load,
    .free_priv = pbs_free_priv,
    .open_image = pbs_open_image,
    .read_blob = pbs_read_blob,
    .open_archive = pbs_open_archive,
    .open_catalog = pbs_open_catalog,
    .columns = pbs_columns,
    .ncolumns = sizeof(pbs_columns) / sizeof(pbs_columns[0]),
    .empty_list = "(no finished snapshots)",
    .list_rows = pbs_list_rows,
    .list_json = pbs_list_json,
};
