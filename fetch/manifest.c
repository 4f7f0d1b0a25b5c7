/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manifest.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "names.h"

#define MANIFEST_MAX_FILES 4096

const char *fetch_crypt_name(enum fetch_crypt c)
{
    switch (c) {
    case FETCH_CRYPT_NONE:
        return "none";
    case FETCH_CRYPT_SIGN_ONLY:
        return "sign-only";
    case FETCH_CRYPT_ENCRYPT:
        return "encrypt";
    }
    return "?";
}

static int parse_crypt(const char *s, enum fetch_crypt *ret)
{
    static const enum fetch_crypt all[] = {FETCH_CRYPT_NONE, FETCH_CRYPT_SIGN_ONLY,
                                           FETCH_CRYPT_ENCRYPT};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (!strcmp(s, fetch_crypt_name(all[i]))) {
            *ret = all[i];
            return 0;
        }
    }
    return -EINVAL;
}

static json_object *get_typed(json_object *o, const char *key, json_type type)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

static int parse_file(json_object *f, size_t i, struct fetch_manifest_file *out, fetch_error *err)
{
    json_object *name = get_typed(f, "filename", json_type_string);
    json_object *crypt = NULL;
    json_object *size = get_typed(f, "size", json_type_int);
    json_object *csum = get_typed(f, "csum", json_type_string);
    int64_t sz;

    if (json_object_is_type(f, json_type_object) &&
        json_object_object_get_ex(f, "crypt-mode", &crypt) &&
        !json_object_is_type(crypt, json_type_string))
        return fetch_error_set(err, -EBADMSG, "manifest file entry %zu: crypt-mode is not a string",
                               i);
    if (!json_object_is_type(f, json_type_object) || !name || !size || !csum)
        return fetch_error_set(err, -EBADMSG, "manifest file entry %zu lacks filename/size/csum",
                               i);
    if ((size_t)json_object_get_string_len(name) != strlen(json_object_get_string(name)) ||
        !fetch_name_is_file(json_object_get_string(name)))
        return fetch_error_set(err, -EBADMSG, "manifest file entry %zu has an invalid name", i);
    out->crypt = FETCH_CRYPT_NONE;
    if (crypt && parse_crypt(json_object_get_string(crypt), &out->crypt) < 0)
        return fetch_error_set(err, -EBADMSG, "manifest: unknown crypt-mode '%s' for %s",
                               json_object_get_string(crypt), json_object_get_string(name));
    errno = 0;
    sz = json_object_get_int64(size);
    if (sz < 0 || errno != 0)
        return fetch_error_set(err, -EBADMSG, "manifest: invalid size for %s",
                               json_object_get_string(name));
    out->size = json_object_get_uint64(size);
    if (fetch_hex_decode(json_object_get_string(csum), out->csum, sizeof(out->csum)) < 0)
        return fetch_error_set(err, -EBADMSG, "manifest: invalid csum for %s",
                               json_object_get_string(name));
    out->name = strdup(json_object_get_string(name));
    if (!out->name)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

int fetch_manifest_parse(const char *json, size_t len, struct fetch_manifest **ret,
                         fetch_error *err)
{
    struct json_tokener *tok;
    json_object *root = NULL, *type, *id, *time, *files;
    struct fetch_manifest *m = NULL;
    size_t n;
    int r;

    if (len > INT32_MAX)
        return fetch_error_set(err, -EBADMSG, "manifest too large");
    tok = json_tokener_new();
    if (!tok)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success ||
        tok->char_offset != (int)len) {
        /* allow trailing whitespace / NUL only */
        size_t off = root ? (size_t)tok->char_offset : 0;
        bool trailing_ok = root != NULL;
        for (size_t i = off; trailing_ok && i < len; i++)
            trailing_ok = json[i] == ' ' || json[i] == '\n' || json[i] == '\r' || json[i] == '\t' ||
                          json[i] == '\0';
        if (!trailing_ok) {
            r = fetch_error_set(err, -EBADMSG, "manifest is not valid JSON: %s",
                                json_tokener_error_desc(json_tokener_get_error(tok)));
            json_tokener_free(tok);
            json_object_put(root);
            return r;
        }
    }
    json_tokener_free(tok);

    type = get_typed(root, "backup-type", json_type_string);
    id = get_typed(root, "backup-id", json_type_string);
    time = get_typed(root, "backup-time", json_type_int);
    files = get_typed(root, "files", json_type_array);
    if (!json_object_is_type(root, json_type_object) || !type || !id || !time || !files) {
        r = fetch_error_set(err, -EBADMSG,
                            "manifest lacks backup-type, backup-id, backup-time or files");
        goto out;
    }
    if (!fetch_name_is_type(json_object_get_string(type)) ||
        !fetch_name_is_id(json_object_get_string(id))) {
        r = fetch_error_set(err, -EBADMSG, "manifest has an invalid backup-type or backup-id");
        goto out;
    }
    n = json_object_array_length(files);
    if (n > MANIFEST_MAX_FILES) {
        r = fetch_error_set(err, -EBADMSG, "manifest lists %zu files (limit %d)", n,
                            MANIFEST_MAX_FILES);
        goto out;
    }
    m = calloc(1, sizeof(*m));
    if (!m || !(m->files = calloc(n ? n : 1, sizeof(*m->files))) ||
        !(m->id = strdup(json_object_get_string(id)))) {
        r = fetch_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    snprintf(m->type, sizeof(m->type), "%s", json_object_get_string(type));
    m->time = json_object_get_int64(time);
    for (size_t i = 0; i < n; i++) {
        r = parse_file(json_object_array_get_idx(files, i), i, &m->files[i], err);
        if (r < 0)
            goto out;
        m->count++;
        for (size_t j = 0; j + 1 < m->count; j++) {
            if (!strcmp(m->files[j].name, m->files[i].name)) {
                r = fetch_error_set(err, -EBADMSG, "manifest lists %s twice", m->files[i].name);
                goto out;
            }
        }
    }
    *ret = m;
    m = NULL;
    r = 0;
out:
    fetch_manifest_free(m);
    json_object_put(root);
    return r;
}

void fetch_manifest_free(struct fetch_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++)
        free(m->files[i].name);
    free(m->files);
    free(m->id);
    free(m);
}

const struct fetch_manifest_file *fetch_manifest_find(const struct fetch_manifest *m,
                                                      const char *name)
{
    for (size_t i = 0; i < m->count; i++) {
        if (!strcmp(m->files[i].name, name))
            return &m->files[i];
    }
    return NULL;
}
