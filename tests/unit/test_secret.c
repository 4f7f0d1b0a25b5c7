/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: fetch/secret.h (the one reader of small secret files): the
 * bytes of a regular file, NUL-terminated; refused without blocking: a
 * FIFO, a directory; too large; missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/secret.h"
#include "fixtures.h"

static void reads_and_refuses(void **state)
{
    (void)state;
    char *dir = fx_tmpdir(), path[512], *buf = NULL;
    size_t len = 0;

    fx_write(dir, "pw", "user:secret\n", 12);
    snprintf(path, sizeof(path), "%s/pw", dir);
    assert_int_equal(fetch_secret_file_read(path, 64, &buf, &len), 0);
    assert_int_equal(len, 12);
    assert_string_equal(buf, "user:secret\n");
    fetch_secret_free(buf, len);
    /* exactly the bound, and one byte over */
    assert_int_equal(fetch_secret_file_read(path, 12, &buf, &len), 0);
    fetch_secret_free(buf, len);
    assert_int_equal(fetch_secret_file_read(path, 11, &buf, &len), -EFBIG);
    fx_write(dir, "empty", "", 0);
    snprintf(path, sizeof(path), "%s/empty", dir);
    assert_int_equal(fetch_secret_file_read(path, 64, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    fetch_secret_free(buf, len);

    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(fetch_secret_file_read(path, 64, &buf, &len), -ENOENT);
    assert_int_equal(fetch_secret_file_read(dir, 64, &buf, &len), -EINVAL);
    /* a FIFO with no writer would block an open without O_NONBLOCK */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(fetch_secret_file_read(path, 64, &buf, &len), -EINVAL);
    assert_int_equal(fetch_secret_file_read("/dev/null", 64, &buf, &len), -EINVAL);
    fx_rmtree(dir);
    free(dir);
}

/* A secret read once may come through a FIFO whose writer opens it later. */
static void once_from_a_fifo(void **state)
{
    (void)state;
    char *dir = fx_tmpdir(), path[512], *buf = NULL;
    size_t len = 0;
    pid_t pid;
    int status;

    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd;
        usleep(200 * 1000); /* the reader is waiting by now */
        fd = open(path, O_WRONLY | O_CLOEXEC);
        _exit(fd >= 0 && write(fd, "secret\n", 7) == 7 ? 0 : 1);
    }
    assert_int_equal(fetch_secret_once_read(path, 64, &buf, &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(buf, "secret\n");
    fetch_secret_free(buf, len);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the same reader refuses a directory, as the other one does */
    assert_int_equal(fetch_secret_once_read(dir, 64, &buf, &len), -EINVAL);
    fx_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_and_refuses),
        cmocka_unit_test(once_from_a_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
