/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "archive.h"

#include <stdlib.h>

void fetch_archive_src_free(struct fetch_archive_src *s)
{
    if (!s)
        return;
    fetch_image_free(s->meta);
    fetch_image_free(s->payload);
    s->meta = s->payload = NULL;
}
