/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Proxmox Backup Server encryption keys (pbs.md §5): the client's JSON key
 * file (kdf null, Scrypt or PBKDF2; `data` is the key, or IV ‖ tag ‖ the key
 * wrapped with AES-256-GCM under the passphrase's derived key), and what a
 * reader derives from the key: the id key that keys chunk digests, and the
 * fingerprint that names the key in manifests. Every primitive is OpenSSL's.
 * Keys live in memory only and are wiped by fetch_pbs_key_clear().
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define FETCH_PBS_KEY_LEN 32
/* "xx:xx:…", 32 bytes */
#define FETCH_PBS_FINGERPRINT_STR 96

struct fetch_pbs_key {
    uint8_t key[FETCH_PBS_KEY_LEN];    /* AES-256 */
    uint8_t id_key[FETCH_PBS_KEY_LEN]; /* PBKDF2-HMAC-SHA256(key, "_id_key", 10) */
    uint8_t fingerprint[32];           /* SHA-256(SHA-256(FP string) ‖ id_key) */
};

/*
 * Loads the key file held in @json (@len bytes) with @password (NUL-terminated;
 * NULL when none was given). The file's own fingerprint, when it has one,
 * must be the key's. Errors: -ENOKEY the key is protected and no password was
 * given; -EKEYREJECTED the password is wrong (the wrapped key does not
 * authenticate); -EBADMSG a malformed file (unknown kdf, parameters beyond
 * bounds, bad base64, wrong lengths, a fingerprint that is not the key's);
 * -ENOMEM. @err says which. The key is written to @ret directly, and @ret
 * wiped on failure: no copy of it is left in memory the caller cannot wipe
 * or keep out of a core dump (fs/key_opts.c).
 */
int fetch_pbs_key_load(const char *json, size_t len, const char *password,
                       struct fetch_pbs_key *ret, fetch_error *err);

/* Wipes @k. */
void fetch_pbs_key_clear(struct fetch_pbs_key *k);

/* @fp as PBS shows it: lowercase hex bytes separated by ':'. */
void fetch_pbs_fingerprint_str(const uint8_t fp[32], char out[FETCH_PBS_FINGERPRINT_STR]);

/* Parses "xx:xx:…" (32 bytes, either case) into @out: 0 or -EINVAL. */
int fetch_pbs_fingerprint_parse(const char *s, uint8_t out[32]);

/* HMAC-SHA256 of @data under the id key: what signs a manifest (pbs.md §5). */
int fetch_pbs_key_hmac(const struct fetch_pbs_key *k, const void *data, size_t len,
                       uint8_t out[32]);

/* The digest of a chunk of an encrypted archive: SHA-256(@data ‖ id_key). */
int fetch_pbs_key_digest(const struct fetch_pbs_key *k, const void *data, size_t len,
                         uint8_t out[32]);

/*
 * AES-256-GCM decryption with a 16-byte IV and no AAD, as PBS blobs and key
 * files use it: 0 and @len bytes in @out (which may be @in: in place),
 * -EBADMSG when the tag does not authenticate (@out is wiped), -ENOMEM.
 */
int fetch_pbs_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16], const uint8_t tag[16],
                          const void *in, size_t len, void *out);

/*
 * The same in place, in steps of at most @step bytes, so that another pass
 * over the plaintext (its digest) runs on each step while it is in the CPU's
 * cache: @after (may be NULL) sees each step's plaintext. 0; -EBADMSG when
 * the tag does not authenticate: @buf then holds the ciphertext again (the
 * caller may look at what arrived, e.g. its CRC, to say why) and @after has
 * seen bytes that must not be used; a callback's negative return stops there
 * with it (@buf is then part plaintext); -EIO or -ENOMEM from the library
 * (@buf wiped where it was touched).
 */
typedef int (*fetch_pbs_gcm_step_fn)(void *arg, const uint8_t *bytes, size_t len);
int fetch_pbs_gcm_decrypt_steps(const uint8_t key[32], const uint8_t iv[16], const uint8_t tag[16],
                                uint8_t *buf, size_t len, size_t step, fetch_pbs_gcm_step_fn after,
                                void *arg);
