/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON the subcommands print (--json): json-c's text, made safe for a
 * terminal and valid UTF-8. json-c escapes only code points below U+0020 and
 * copies every other byte of a string as it is; names from a store (file
 * names in an archive, directory names of a datastore, a daemon's state
 * strings) are bytes, not text, and may hold
 *  - U+0080-U+009F, the C1 controls, which some terminals obey (U+009B is
 *    CSI): printed as \u0080-\u009f, so a JSON reader sees the same strings;
 *  - bytes that are not UTF-8 (a Latin-1 file name, a truncated sequence),
 *    which make the text no JSON at all (RFC 8259 §8.1): each such byte
 *    0xNN is printed as \udcNN, a lone low surrogate, as Python's
 *    "surrogateescape" does. The text is then valid UTF-8; Python's json
 *    module reads the string back and name.encode("utf-8",
 *    "surrogateescape") gives the original bytes; jq and Go put U+FFFD in
 *    their place, and strict readers (Rust's serde_json) refuse the text.
 */
#pragma once

#include <stdio.h>

struct json_object;

/* Writes @o (json_object_to_json_string_ext() @flags) and a newline to @f.
 * 0, or -ENOMEM / -EIO. */
int fs_json_write(FILE *f, struct json_object *o, int flags);
