/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "key_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "fetch/secret.h"
#include "log.h"

#define KEYFILE_MAX (64u << 10)
#define PASSWORD_MAX 4096u

int fs_key_opt_parse(int c, const char *arg, struct fs_key_opts *o)
{
    const char **slot;
    switch (c) {
    case FS_OPT_KEYFILE:
        slot = &o->keyfile;
        break;
    case FS_OPT_KEYFILE_PASSWORD_FILE:
        slot = &o->password_file;
        break;
    default:
        return 0;
    }
    if (!arg || !*arg) {
        fs_err("--%s: empty value", c == FS_OPT_KEYFILE ? "keyfile" : "keyfile-password-file");
        return -1;
    }
    *slot = arg;
    return 1;
}

/* Cuts @s at its first line end. */
static void first_line(char *s)
{
    s[strcspn(s, "\r\n")] = '\0';
}

/* The terminal a prompt turned echo off on, and its settings before. */
static int prompt_fd = -1;
static struct termios prompt_saved;
static const int prompt_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP};
#define PROMPT_SIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* A signal that ends the process during a prompt: echo back on, then the
 * signal's own action (the handler is reset as it runs). */
static void prompt_interrupted(int sig)
{
    tcsetattr(prompt_fd, TCSAFLUSH, &prompt_saved);
    raise(sig);
}

/* Reads a password from the terminal without echo, into @buf. 0 or -errno. */
static int prompt(const char *keyfile, char *buf, size_t len)
{
    struct sigaction on_sig = {.sa_handler = prompt_interrupted,
                               .sa_flags = SA_RESETHAND | SA_NODEFER},
                     before[PROMPT_SIGNALS];
    struct termios old, quiet;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC), r = 0;
    FILE *f;

    if (fd < 0)
        return -errno;
    if (tcgetattr(fd, &old) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (!(f = fdopen(fd, "r+"))) {
        r = -errno;
        close(fd);
        return r;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    /* ^C at the prompt must not leave the terminal without echo */
    prompt_fd = fd;
    prompt_saved = old;
    sigemptyset(&on_sig.sa_mask);
    /* (a signal the caller ignores, nohup's SIGHUP say, stays ignored) */
    for (size_t i = 0; i < PROMPT_SIGNALS; i++) {
        sigaction(prompt_signals[i], NULL, &before[i]);
        if (before[i].sa_handler == SIG_DFL)
            sigaction(prompt_signals[i], &on_sig, NULL);
    }
    /* echo off before the prompt shows: nothing typed at it is echoed */
    tcsetattr(fd, TCSAFLUSH, &quiet);
    fprintf(f, "Password for %s: ", keyfile);
    fflush(f);
    if (!fgets(buf, (int)len, f))
        r = -EIO;
    tcsetattr(fd, TCSAFLUSH, &old);
    for (size_t i = 0; i < PROMPT_SIGNALS; i++)
        sigaction(prompt_signals[i], &before[i], NULL);
    fputc('\n', f);
    fclose(f);
    if (r == 0)
        first_line(buf);
    return r;
}

/* The password of a protected key: into @buf, or -errno after an error. */
static int get_password(const struct fs_key_opts *o, char *buf, size_t len)
{
    const char *env = getenv("LAZYIMG_KEY_PASSWORD");
    char *file = NULL;
    size_t flen = 0;
    int r;

    if (o->password_file) {
        if ((r = fetch_secret_once_read(o->password_file, PASSWORD_MAX, &file, &flen)) < 0) {
            /* not its name: getopt takes "--keyfile-password SECRET" for this option */
            fs_err("--keyfile-password-file: cannot read the file: %s",
                   r == -EFBIG ? "too large for a password" : strerror(-r));
            return r;
        }
        first_line(file);
        snprintf(buf, len, "%s", file);
        fetch_secret_free(file, flen);
        return 0;
    }
    if (env) {
        if (strlen(env) >= len) {
            /* cut, it would only be called wrong */
            fs_err("$LAZYIMG_KEY_PASSWORD: longer than %zu bytes, too long for a password",
                   len - 1);
            return -E2BIG;
        }
        snprintf(buf, len, "%s", env);
        /* out of the environment a daemon would keep for its whole life
         * (/proc/PID/environ shows the original block: wiped in place) */
        explicit_bzero((char *)env, strlen(env));
        unsetenv("LAZYIMG_KEY_PASSWORD");
        return 0;
    }
    if (!isatty(STDIN_FILENO) || (r = prompt(o->keyfile, buf, len)) < 0) {
        fs_err("%s: the key is protected by a password: give it with "
               "--keyfile-password-file or $LAZYIMG_KEY_PASSWORD",
               o->keyfile);
        return -ENOKEY;
    }
    return 0;
}

static size_t key_page_len(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t n = page > 0 ? (size_t)page : 4096;
    return (sizeof(struct fetch_pbs_key) + n - 1) / n * n;
}

/*
 * A key's own zeroed page(s): left out of core dumps (MADV_DONTDUMP: a
 * daemon that crashes must not write the key into a core file, which
 * systemd-coredump keeps) and, where RLIMIT_MEMLOCK allows, locked so that
 * it is never written to swap. NULL on ENOMEM.
 */
static struct fetch_pbs_key *key_page_new(void)
{
    size_t len = key_page_len();
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (madvise(p, len, MADV_DONTDUMP) < 0)
        fs_warn("the key's memory cannot be left out of core dumps: %s", strerror(errno));
    (void)mlock(p, len); /* best effort: the limit may be 0 */
    return p;
}

int fs_key_load(const struct fs_key_opts *o, struct fetch_pbs_key **ret)
{
    struct fetch_pbs_key *k;
    fetch_error err = {""};
    char *json = NULL, password[PASSWORD_MAX + 1] = "";
    struct stat st;
    size_t len = 0;
    int r;

    *ret = NULL;
    if (!o->keyfile) {
        if (o->password_file)
            fs_warn("--keyfile-password-file without --keyfile: ignored");
        return 0;
    }
    if ((r = fetch_secret_file_read(o->keyfile, KEYFILE_MAX, &json, &len)) < 0) {
        fs_err("--keyfile %s: %s", o->keyfile,
               r == -EFBIG ? "too large for a key file" : strerror(-r));
        return r;
    }
    /* as ssh says of a private key: others can read it (not refused: the
     * PBS client does not either, and its password may protect it) */
    if (stat(o->keyfile, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
        fs_warn("--keyfile %s can be read by other users (mode %03o): keep a backup key in a "
                "file only its owner can read (chmod 600)",
                o->keyfile, (unsigned)(st.st_mode & 0777));
    if (!(k = key_page_new())) {
        fetch_secret_free(json, len);
        fs_err("out of memory");
        return -ENOMEM;
    }
    r = fetch_pbs_key_load(json, len, NULL, k, &err);
    if (r == -ENOKEY) {
        err.msg[0] = '\0'; /* get_password says why when it fails */
        if ((r = get_password(o, password, sizeof(password))) == 0)
            r = fetch_pbs_key_load(json, len, password, k, &err);
        explicit_bzero(password, sizeof(password));
    }
    fetch_secret_free(json, len);
    if (r < 0) {
        if (err.msg[0])
            fs_err("%s: %s", o->keyfile, err.msg);
        fs_key_free(k);
        return r;
    }
    *ret = k;
    return 0;
}

void fs_key_lock(struct fetch_pbs_key *k)
{
    if (k)
        (void)mlock(k, key_page_len()); /* best effort, as at the load */
}

void fs_key_free(struct fetch_pbs_key *k)
{
    if (!k)
        return;
    fetch_pbs_key_clear(k);
    munmap(k, key_page_len());
}
