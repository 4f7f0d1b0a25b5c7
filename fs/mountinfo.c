/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /proc/self/mountinfo: one parser for mount, umount, status and control. */
#include "mountinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/sysmacros.h>

/* Undoes the octal escapes (\040 ...) of a mountinfo field, in place. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* The value of user_id= among the comma-separated super options @opts. */
static bool parse_user_id(const char *opts, uid_t *ret)
{
    for (const char *o = opts; o && *o; o = strchr(o, ',') ? strchr(o, ',') + 1 : NULL) {
        char *end;
        unsigned long uid;
        if (strncmp(o, "user_id=", 8) != 0)
            continue;
        errno = 0;
        uid = strtoul(o + 8, &end, 10);
        if (errno || end == o + 8 || (*end && *end != ','))
            return false;
        *ret = (uid_t)uid;
        return true;
    }
    return false;
}

/* Parses @line (modified); false for a line that is not an entry. */
static bool parse_line(char *line, struct fs_mount_entry *e)
{
    /* id parent major:minor root mountpoint options [optional...] - fstype source superopts */
    char *fields[5], *p = line, *sep, *rest[3];
    unsigned maj, min;
    unsigned long long id;
    char end;
    int i;

    line[strcspn(line, "\n")] = '\0';
    if (!(sep = strstr(line, " - ")))
        return false;
    *sep = '\0';
    for (i = 0; i < 5 && *p; i++) {
        fields[i] = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
    }
    if (i < 5 || sscanf(fields[2], "%u:%u%c", &maj, &min, &end) != 2 ||
        sscanf(fields[0], "%llu%c", &id, &end) != 1)
        return false;
    p = sep + 3;
    for (i = 0; i < 3; i++) {
        rest[i] = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
    }
    unescape(fields[4]);
    if (strlen(fields[4]) >= sizeof(e->mountpoint))
        return false;
    e->id = id;
    e->dev = makedev(maj, min);
    memcpy(e->mountpoint, fields[4], strlen(fields[4]) + 1);
    snprintf(e->fstype, sizeof(e->fstype), "%s", rest[0]);
    e->has_user_id = parse_user_id(rest[2], &e->user_id);
    return true;
}

int fs_mountinfo_foreach(int (*fn)(const struct fs_mount_entry *e, void *arg), void *arg)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    struct fs_mount_entry *e = malloc(sizeof(*e));
    char *line = NULL;
    size_t cap = 0;
    int r = 0;

    if (!f || !e) {
        r = f ? -ENOMEM : -errno;
        goto out;
    }
    while (getline(&line, &cap, f) > 0) {
        if (parse_line(line, e) && fn(e, arg))
            break;
    }
out:
    free(line);
    free(e);
    if (f)
        fclose(f);
    return r;
}

struct find_ctx {
    const char *path;
    dev_t dev;
    struct fs_mount_entry *ret;
    int found;
};

static int match_path(const struct fs_mount_entry *e, void *arg)
{
    struct find_ctx *c = arg;
    if (!strcmp(e->mountpoint, c->path)) {
        *c->ret = *e; /* later lines are newer mounts stacked on the same path */
        c->found = 1;
    }
    return 0;
}

static int match_dev(const struct fs_mount_entry *e, void *arg)
{
    struct find_ctx *c = arg;
    if (e->dev == c->dev) {
        *c->ret = *e;
        c->found = 1;
    }
    return 0;
}

int fs_mountinfo_find(const char *path, struct fs_mount_entry *ret)
{
    struct find_ctx c = {.path = path, .ret = ret};
    int r = fs_mountinfo_foreach(match_path, &c);
    return r < 0 ? r : c.found;
}

int fs_mountinfo_find_dev(dev_t dev, struct fs_mount_entry *ret)
{
    struct find_ctx c = {.dev = dev, .ret = ret};
    int r = fs_mountinfo_foreach(match_dev, &c);
    return r < 0 ? r : c.found;
}

int fs_mountinfo_dev(const char *mountpoint, dev_t *ret)
{
    struct fs_mount_entry e;
    int r = fs_mountinfo_find(mountpoint, &e);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    *ret = e.dev;
    return 0;
}

struct prefix_ctx {
    const char *path; /* absolute, lexically normalized */
    size_t best;
    dev_t dev;
    bool found;
};

/* The longest mountpoint above the path; of equal ones the last (on top). */
static int longest_prefix(const struct fs_mount_entry *e, void *arg)
{
    struct prefix_ctx *c = arg;
    size_t ml = strlen(e->mountpoint);
    if (!(ml == 1 ||
          (!strncmp(c->path, e->mountpoint, ml) && (c->path[ml] == '/' || !c->path[ml]))))
        return 0;
    if (ml >= c->best) {
        c->best = ml;
        c->dev = e->dev;
        c->found = true;
    }
    return 0;
}

int fs_mountinfo_lookup(const char *path, dev_t *ret)
{
    char abs[PATH_MAX], norm[PATH_MAX];
    struct prefix_ctx c = {.path = norm};
    size_t o = 0;
    int r;

    if (path[0] == '/') {
        if (snprintf(abs, sizeof(abs), "%s", path) >= (int)sizeof(abs))
            return -ENAMETOOLONG;
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return -errno;
        if (snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= (int)sizeof(abs))
            return -ENAMETOOLONG;
    }
    /* lexically: ".", ".." and repeated slashes (symlinks cannot be followed here) */
    for (char *p = abs; *p;) {
        size_t n;
        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n == 1 && p[0] == '.') {
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && norm[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else {
            norm[o++] = '/';
            memcpy(norm + o, p, n);
            o += n;
        }
        p += n;
    }
    if (o == 0)
        norm[o++] = '/';
    norm[o] = '\0';

    r = fs_mountinfo_foreach(longest_prefix, &c);
    if (r < 0)
        return r;
    if (!c.found)
        return -ENOENT;
    *ret = c.dev;
    return 0;
}
