/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: fetch/posset.h, the set of positions walks of untrusted
 * archives keep (a directory met twice is refused, not walked twice). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "fetch/posset.h"

static void add_and_find(void **state)
{
    struct fetch_posset s = {0};
    (void)state;
    /* position 0 (an archive's root) and positions that collide in a small
     * table, across several growths */
    for (uint64_t i = 0; i < 5000; i++)
        assert_int_equal(fetch_posset_add(&s, i * 4096), 1);
    assert_int_equal(s.n, 5000);
    for (uint64_t i = 0; i < 5000; i++)
        assert_int_equal(fetch_posset_add(&s, i * 4096), 0);
    assert_int_equal(fetch_posset_add(&s, 1), 1);
    assert_int_equal(fetch_posset_add(&s, UINT64_MAX - 1), 1);
    assert_int_equal(fetch_posset_add(&s, UINT64_MAX - 1), 0);
    assert_int_equal(fetch_posset_add(&s, UINT64_MAX), -EINVAL);
    assert_int_equal(s.n, 5002);
    fetch_posset_clear(&s);
    assert_int_equal(s.n, 0);
    assert_null(s.slot);
    assert_int_equal(fetch_posset_add(&s, 0), 1);
    fetch_posset_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_and_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
