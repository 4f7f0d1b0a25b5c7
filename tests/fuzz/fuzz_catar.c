/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the catar decoder over an archive: open, then walk (archive_walk.h). */
#include <stdint.h>

#include "archive_walk.h"
#include "fetch/catar.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fetch_stream s;
    struct fetch_archive *a = NULL;
    fetch_error err = {""};
    fetch_stream_of_buffer(&s, data, size);
    if (fetch_catar_open(&s, &a, &err) == 0) {
        fuzz_walk_archive(a, size);
        fetch_archive_free(a);
    }
    return 0;
}
