/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: manifest JSON parsing and validation. */
#include <stdint.h>
#include <string.h>

#include "fetch/manifest.h"
#include "fetch/names.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_manifest *m = NULL;
    if (fetch_manifest_parse((const char *)data, size, &m, NULL) < 0)
        return 0;
    for (size_t i = 0; i < m->count; i++) {
        if (!fetch_name_is_file(m->files[i].name))
            __builtin_trap();
        (void)fetch_manifest_find(m, m->files[i].name);
    }
    fetch_manifest_free(m);
    return 0;
}
