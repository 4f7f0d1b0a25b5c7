/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON the subcommands print (--json): json-c's text with the C1 control
 * characters escaped. json-c escapes only code points below U+0020; names
 * from a store (file names in an archive, a daemon's state strings) may hold
 * U+0080-U+009F, which some terminals obey (U+009B is CSI). They are printed
 * as \u0080-\u009f: a JSON reader sees the same strings.
 */
#pragma once

#include <stdio.h>

struct json_object;

/* Writes @o (json_object_to_json_string_ext() @flags) and a newline to @f.
 * 0, or -ENOMEM / -EIO. */
int fs_json_write(FILE *f, struct json_object *o, int flags);
