/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lazyimg-mkpbs: the encryption key side (pbs.md §5), written from the
 * format notes with OpenSSL, apart from lazyimg's reader (fetch/pbs_key.c),
 * so that each checks the other: the id key, the key fingerprint, the
 * manifest signature, and the client's JSON key file (kdf none, scrypt or
 * PBKDF2, the key wrapped with AES-256-GCM under the password's derived key).
 * Every failure dies with a message.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* id_key = PBKDF2-HMAC-SHA256(@key, "_id_key", 10 iterations, 32 bytes). */
void mkpbs_id_key(const uint8_t key[32], uint8_t id_key[32]);

/* The key's fingerprint as PBS shows it, "xx:xx:…" (96 bytes with the NUL). */
void mkpbs_fingerprint(const uint8_t id_key[32], char out[96]);

/* HMAC-SHA256(@id_key, @data) as 64 lowercase hex digits (65 with the NUL). */
void mkpbs_sign(const uint8_t id_key[32], const void *data, size_t len, char out[65]);

/*
 * Writes the key file @path (mode 0600, not replacing an existing file) for
 * @key, protected by @password with @kdf ("scrypt" or "pbkdf2"), or with
 * @kdf "none" holding the key in the clear (@password unused).
 */
void mkpbs_write_keyfile(const char *path, const uint8_t key[32], const char *kdf,
                         const char *password);
