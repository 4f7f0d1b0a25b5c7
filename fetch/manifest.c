/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manifest.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "names.h"
#include "pbs_key.h"

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
    /* json-c clamps what int64 cannot hold: the unsigned reading tells */
    errno = 0;
    sz = json_object_get_int64(size);
    if (sz < 0 || errno != 0 || json_object_get_uint64(size) > (uint64_t)INT64_MAX)
        return fetch_error_set(err, -EBADMSG, "manifest: invalid size for %s",
                               json_object_get_string(name));
    out->size = (uint64_t)sz;
    if (fetch_hex_decode(json_object_get_string(csum), out->csum, sizeof(out->csum)) < 0)
        return fetch_error_set(err, -EBADMSG, "manifest: invalid csum for %s",
                               json_object_get_string(name));
    out->name = strdup(json_object_get_string(name));
    if (!out->name)
        return fetch_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* A JSON string as serde_json writes it: only '"', '\\' and control
 * characters escaped, everything else (UTF-8 included) as it is. */
static void canonical_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        static const char short_esc[] = {
            ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r'};
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < sizeof(short_esc) && short_esc[c])
            fprintf(f, "\\%c", short_esc[c]);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int canonical(FILE *f, json_object *v, unsigned depth);

/* Object @v with its keys in byte order; the manifest itself (@depth 0)
 * without "unprotected" and "signature", which are not signed. */
static int canonical_object(FILE *f, json_object *v, unsigned depth)
{
    size_t n = 0;
    const char **keys = calloc((size_t)json_object_object_length(v) + 1, sizeof(*keys));
    int r = 0;

    if (!keys)
        return -ENOMEM;
    json_object_object_foreach(v, key, val)
    {
        (void)val;
        if (depth > 0 || (strcmp(key, "unprotected") && strcmp(key, "signature")))
            keys[n++] = key;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    fputc('{', f);
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (i)
            fputc(',', f);
        canonical_string(f, keys[i], strlen(keys[i]));
        fputc(':', f);
        r = canonical(f, json_object_object_get(v, keys[i]), depth + 1);
    }
    fputc('}', f);
    free(keys);
    return r;
}

/*
 * Writes @v in PBS's canonical form (pbs.md §5, manifest signature): no
 * whitespace, object keys in byte order, strings and numbers as serde_json
 * writes them; a null value has no canonical form (-EINVAL). @depth bounds
 * the recursion.
 */
static int canonical(FILE *f, json_object *v, unsigned depth)
{
    int r = 0;
    if (depth > 64)
        return -EINVAL;
    switch (json_object_get_type(v)) {
    case json_type_null:
        return -EINVAL;
    case json_type_boolean:
        fputs(json_object_get_boolean(v) ? "true" : "false", f);
        return 0;
    case json_type_int:
    case json_type_double:
        /* json-c keeps the number's text: integers print as they came */
        fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), f);
        return 0;
    case json_type_string:
        canonical_string(f, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    case json_type_array:
        fputc('[', f);
        for (size_t i = 0; r == 0 && i < json_object_array_length(v); i++) {
            if (i)
                fputc(',', f);
            r = canonical(f, json_object_array_get_idx(v, i), depth + 1);
        }
        fputc(']', f);
        return r;
    case json_type_object:
        return canonical_object(f, v, depth);
    }
    return -EINVAL;
}

/* The canonical JSON of manifest @root without "unprotected" and "signature". */
static int signed_part(json_object *root, char **ret, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int r;

    if (!f)
        return -ENOMEM;
    r = canonical_object(f, root, 0);
    if (fclose(f) != 0 && r == 0)
        r = -ENOMEM;
    if (r < 0) {
        free(buf);
        return r;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* The key fingerprint and signature of @root, into @m. */
static int parse_signing(json_object *root, struct fetch_manifest *m, fetch_error *err)
{
    json_object *unprot = get_typed(root, "unprotected", json_type_object), *fp, *sig;
    int r;

    /* "unprotected" is not authenticated: a malformed fingerprint is ignored
     * (an encrypted archive then fails at its chunks with another key) */
    if (unprot && (fp = get_typed(unprot, "key-fingerprint", json_type_string)))
        m->has_fingerprint =
            fetch_pbs_fingerprint_parse(json_object_get_string(fp), m->key_fingerprint) == 0;
    if (!(sig = get_typed(root, "signature", json_type_string)))
        return 0;
    m->has_signature = true;
    if (fetch_hex_decode(json_object_get_string(sig), m->signature, sizeof(m->signature)) < 0)
        return 0; /* signed_json stays NULL: it cannot verify */
    r = signed_part(root, &m->signed_json, &m->signed_len);
    if (r == -ENOMEM)
        return fetch_error_set(err, r, "out of memory");
    return 0; /* no canonical form: signed_json stays NULL, verification fails */
}

int fetch_manifest_check_key(const struct fetch_manifest *m, const struct fetch_pbs_key *k,
                             const char *what, fetch_error *err)
{
    char mine[FETCH_PBS_FINGERPRINT_STR], theirs[FETCH_PBS_FINGERPRINT_STR];
    if (!m->has_fingerprint || memcmp(m->key_fingerprint, k->fingerprint, 32) == 0)
        return 0;
    fetch_pbs_fingerprint_str(m->key_fingerprint, theirs);
    fetch_pbs_fingerprint_str(k->fingerprint, mine);
    return fetch_error_set(err, -EKEYREJECTED,
                           "this snapshot was %s with key %s, the key file is %s", what, theirs,
                           mine);
}

/* Whether the client that wrote @m had a key: it names the key's fingerprint,
 * or an archive is encrypted or signed (pbs.md §7: it then signs the manifest). */
static bool made_with_key(const struct fetch_manifest *m)
{
    if (m->has_fingerprint)
        return true;
    for (size_t i = 0; i < m->count; i++) {
        if (m->files[i].crypt != FETCH_CRYPT_NONE)
            return true;
    }
    return false;
}

int fetch_manifest_verify(const struct fetch_manifest *m, const struct fetch_pbs_key *k,
                          fetch_error *err)
{
    uint8_t mac[32];
    int r;

    if (!m->has_signature && made_with_key(m))
        return fetch_error_set(err, -EBADMSG,
                               "the manifest is not signed, although %s: the backup client "
                               "signs every manifest it writes with a key, so it was changed "
                               "after the backup",
                               m->has_fingerprint ? "it names a key's fingerprint"
                                                  : "its archives are encrypted or signed");
    if (!m->has_signature)
        return fetch_error_set(err, -ENODATA, "the manifest is not signed");
    if ((r = fetch_manifest_check_key(m, k, "signed", err)) < 0)
        return r;
    if (!m->signed_json)
        return fetch_error_set(err, -EBADMSG,
                               "the manifest's signature cannot be checked (not 64 hex digits, "
                               "or a null value in its signed part)");
    if ((r = fetch_pbs_key_hmac(k, m->signed_json, m->signed_len, mac)) < 0)
        return fetch_error_set(err, r, "HMAC-SHA256 failed");
    /* a manifest that names its key's fingerprint was checked against the
     * key above; one that does not (older clients) may be another key's */
    if (CRYPTO_memcmp(mac, m->signature, sizeof(mac)) != 0)
        return fetch_error_set(err, -EBADMSG,
                               m->has_fingerprint
                                   ? "the manifest's signature does not verify with the key: it "
                                     "was changed after the backup"
                                   : "the manifest's signature does not verify with the key: it "
                                     "names no key fingerprint, so either the backup was made "
                                     "with another key or the manifest was changed after it");
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
    if ((r = parse_signing(root, m, err)) < 0)
        goto out;
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
    free(m->signed_json);
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
