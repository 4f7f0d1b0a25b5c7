/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: the control socket's request parser (fs/control.h): the four
 * requests with their exact numbers, and everything else refused: extra or
 * missing numbers, signs, leading zeros, spaces, overflow, other verbs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "fs/control.h"

static void accepted(void **state)
{
    (void)state;
    struct fs_control_req q;
    assert_int_equal(fs_control_parse("status", &q), 0);
    assert_int_equal(q.verb, FS_CONTROL_STATUS);
    assert_int_equal(fs_control_parse("hydrate 7 0", &q), 0);
    assert_int_equal(q.verb, FS_CONTROL_HYDRATE);
    assert_int_equal(q.args[0], 7);
    assert_int_equal(q.args[1], 0);
    assert_int_equal(fs_control_parse("hydrate 18446744073709551615 52428800", &q), 0);
    assert_true(q.args[0] == UINT64_MAX);
    assert_int_equal(q.args[1], 52428800);
    assert_int_equal(fs_control_parse("progress 12", &q), 0);
    assert_int_equal(q.verb, FS_CONTROL_PROGRESS);
    assert_int_equal(q.args[0], 12);
    assert_int_equal(fs_control_parse("cancel 1", &q), 0);
    assert_int_equal(q.verb, FS_CONTROL_CANCEL);
    assert_int_equal(q.args[0], 1);
}

static void refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "Status",
        "status ",
        " status",
        "status 1",
        "hydrate",
        "hydrate 1",
        "hydrate 1 2 3",
        "hydrate  1 2",
        "hydrate 1  2",
        "hydrate 1 2 ",
        "hydrate -1 2",
        "hydrate +1 2",
        "hydrate 01 2",
        "hydrate 1 00",
        "hydrate 0x10 2",
        "hydrate 1 2x",
        "hydrate 18446744073709551616 1", /* 2^64 */
        "hydrate 99999999999999999999 1",
        "progress",
        "progress 1 2",
        "progress a",
        "cancel",
        "cancel -0",
        "cancel 1\t",
        "hydrates 1 2",
        "progressive 1",
        "shutdown",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fs_control_req q;
        if (fs_control_parse(bad[i], &q) != -EINVAL)
            fail_msg("accepted: \"%s\"", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
