/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "repo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct fetch_repo_format fetch_pbs_repo_format;
extern const struct fetch_repo_format fetch_casync_repo_format;

/* One line per format, in the order they are probed. */
static const struct fetch_repo_format *const formats[] = {
    &fetch_pbs_repo_format,
    &fetch_casync_repo_format,
};
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

const struct fetch_repo_format *const *fetch_repo_formats(size_t *ret_count)
{
    *ret_count = NFORMATS;
    return formats;
}

const struct fetch_repo_format *fetch_repo_format_by_name(const char *name)
{
    for (size_t i = 0; i < NFORMATS; i++) {
        if (!strcmp(formats[i]->name, name))
            return formats[i];
    }
    return NULL;
}

const struct fetch_repo_format *fetch_repo_format_for_path(const char *path)
{
    for (size_t i = 0; i < NFORMATS; i++) {
        if (formats[i]->claims && formats[i]->claims(path))
            return formats[i];
    }
    for (size_t i = 0; i < NFORMATS; i++) {
        if (!formats[i]->claims)
            return formats[i];
    }
    return formats[0];
}

const struct fetch_repo_format *fetch_repo_format_with_chunk_dir(void)
{
    for (size_t i = 0; i < NFORMATS; i++) {
        if (formats[i]->chunk_dir)
            return formats[i];
    }
    return NULL;
}

int fetch_repo_probe(struct fetch_store *s, const struct fetch_repo_format **ret, fetch_error *err)
{
    for (size_t i = 0; i < NFORMATS; i++) {
        int r = formats[i]->probe ? formats[i]->probe(s, err) : 0;
        if (r == -EMEDIUMTYPE && i + 1 < NFORMATS)
            continue;
        if (r < 0 && r != -EMEDIUMTYPE)
            return r;
        *ret = formats[i];
        return 0;
    }
    return fetch_error_set(err, -EMEDIUMTYPE, "%s: no repository format", s->location);
}

int fetch_repo_load(const struct fetch_repo_format *f, struct fetch_store *s,
                    const struct fetch_pbs_key *key, const char *const *paths, size_t n,
                    bool for_mount, struct fetch_repo **ret, fetch_error *err)
{
    struct fetch_repo *repo = calloc(1, sizeof(*repo));
    int r;
    if (!repo)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    repo->format = f;
    repo->store = s;
    repo->key = key;
    r = f->load(repo, paths, n, for_mount, err);
    if (r < 0) {
        fetch_repo_free(repo);
        return r;
    }
    *ret = repo;
    return 0;
}

void fetch_repo_free(struct fetch_repo *repo)
{
    if (!repo)
        return;
    for (size_t i = 0; i < repo->count; i++) {
        free(repo->entries[i].path);
        free(repo->entries[i].target);
        free(repo->entries[i].group);
        fetch_image_free(repo->entries[i].image);
    }
    free(repo->entries);
    for (size_t i = 0; i < repo->note_count; i++)
        free(repo->notes[i].text);
    free(repo->notes);
    if (repo->priv)
        repo->format->free_priv(repo->priv);
    free(repo);
}

/* -EINVAL unless @e is of @type, the entry's refusal, or 0; @err says why. */
static int check_entry(const struct fetch_entry *e, enum fetch_entry_type type, const char *what,
                       fetch_error *err)
{
    if (e->type != type)
        return fetch_error_set(err, -EINVAL, "%s: not %s", e->path, what);
    if (e->refuse)
        return fetch_error_set(err, e->refuse, "%s: %s", e->path,
                               e->refuse_msg ? e->refuse_msg : strerror(-e->refuse));
    return 0;
}

int fetch_repo_open_image(const struct fetch_repo *repo, struct fetch_store *s,
                          const struct fetch_entry *e, struct fetch_image **ret, fetch_error *err)
{
    int r = check_entry(e, FETCH_ENTRY_IMAGE, "an image", err);
    return r < 0 ? r : repo->format->open_image(repo, s, e, ret, err);
}

int fetch_repo_read_blob(const struct fetch_repo *repo, struct fetch_store *s,
                         const struct fetch_entry *e, fetch_data *ret, fetch_error *err)
{
    int r = check_entry(e, FETCH_ENTRY_BLOB, "a small file", err);
    if (r == 0 && !repo->format->read_blob)
        r = fetch_error_set(err, -EINVAL, "%s: not a small file", e->path);
    return r < 0 ? r : repo->format->read_blob(repo, s, e, ret, err);
}

int fetch_repo_open_archive(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_archive_src *ret,
                            fetch_error *err)
{
    int r = check_entry(e, FETCH_ENTRY_ARCHIVE, "a file archive", err);
    if (r == 0 && !repo->format->open_archive)
        r = fetch_error_set(err, -EINVAL, "%s: not a file archive", e->path);
    return r < 0 ? r : repo->format->open_archive(repo, s, e, ret, err);
}

int fetch_repo_open_catalog(const struct fetch_repo *repo, struct fetch_store *s,
                            const struct fetch_entry *e, struct fetch_image **ret, char *name,
                            size_t name_len, fetch_error *err)
{
    int r = check_entry(e, FETCH_ENTRY_ARCHIVE, "a file archive", err);
    if (r == 0 && !repo->format->open_catalog)
        return -ENOENT;
    return r < 0 ? r : repo->format->open_catalog(repo, s, e, ret, name, name_len, err);
}

int fetch_repo_add_entry(struct fetch_repo *repo, const struct fetch_entry *e)
{
    struct fetch_entry *ne;
    if (repo->count == repo->cap) {
        size_t cap = repo->cap ? repo->cap * 2 : 16;
        struct fetch_entry *nv = realloc(repo->entries, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        repo->entries = nv;
        repo->cap = cap;
    }
    ne = &repo->entries[repo->count];
    *ne = *e;
    ne->path = strdup(e->path);
    ne->target = e->target ? strdup(e->target) : NULL;
    ne->group = e->group ? strdup(e->group) : NULL;
    if (!ne->path || (e->target && !ne->target) || (e->group && !ne->group)) {
        free(ne->path);
        free(ne->target);
        free(ne->group);
        return -ENOMEM;
    }
    repo->count++;
    return 0;
}

int fetch_repo_add_note(struct fetch_repo *repo, bool warning, const char *fmt, ...)
{
    struct fetch_repo_note *nv;
    va_list ap;
    char *text;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    nv = realloc(repo->notes, (repo->note_count + 1) * sizeof(*nv));
    if (!nv) {
        free(text);
        return -ENOMEM;
    }
    repo->notes = nv;
    repo->notes[repo->note_count++] = (struct fetch_repo_note){warning, text};
    return 0;
}

void fetch_format_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "BKMGTP";
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%lluB", (unsigned long long)v);
    else
        snprintf(buf, len, "%.1f%c", d, units[u]);
}
