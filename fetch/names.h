/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Validation of names read from a store before they become path components
 * (pbs.md §7). Every function is pure and thread-safe. A name that passes
 * never contains '/', is never "." or "..", and has no control characters.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "vm", "ct" or "host" */
bool fetch_name_is_type(const char *s);
/* backup id: [A-Za-z0-9_][A-Za-z0-9._-]*, at most 128 chars */
bool fetch_name_is_id(const char *s);
/* namespace component: SAFE_ID [A-Za-z0-9_][A-Za-z0-9._-]*, at most 32 chars */
bool fetch_name_is_ns(const char *s);
/* snapshot time "YYYY-MM-DDTHH:MM:SSZ"; a valid calendar date/time */
bool fetch_name_is_time(const char *s);
/* Parses a snapshot time into unix seconds; 0 or -EINVAL. */
int fetch_name_parse_time(const char *s, int64_t *ret_epoch);
/* Formats unix seconds as a snapshot time into @buf (at least 21 bytes). */
int fetch_name_format_time(int64_t epoch, char *buf, size_t len);
/* file inside a snapshot: 1..255 bytes of [A-Za-z0-9._+-] (no '/'), not "." or "..",
 * not starting with '.' */
bool fetch_name_is_file(const char *s);
/* 64 lowercase hex digits */
bool fetch_name_is_digest_hex(const char *s);

/* Lowercase hex of @len bytes into @out (2*len+1 bytes). */
void fetch_hex_encode(const uint8_t *in, size_t len, char *out);
/* The value of hex digit @c (either case), or -1. */
int fetch_hex_value(char c);
/* Decodes exactly 2*@len hex digits (either case); 0 or -EINVAL. */
int fetch_hex_decode(const char *in, uint8_t *out, size_t len);
