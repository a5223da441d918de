/* REMOVE, MKDIR, RENAME and STAT: the file operations beside reads, writes and listings. */
#include "agent.h"
#include <ftw.h>

#define REMOVE_RECURSIVE 1u

/*
 * The fields every file record carries, after its name in ENTRIES and alone in STAT_RESULT:
 * size, st_mode and the modification time (seconds, nanoseconds), each in decimal and ended by a
 * NUL. Returns the bytes written (at most STAT_FIELDS_MAX).
 */
size_t stat_fields(char *out, const struct stat *st)
{
    int n = snprintf(out, STAT_FIELDS_MAX, "%lld%c%u%c%lld%c%ld", (long long)st->st_size, 0, (unsigned)st->st_mode, 0,
                     (long long)st->st_mtim.tv_sec, 0, (long)st->st_mtim.tv_nsec);
    return (size_t)n + 1; /* snprintf's terminating NUL ends the last field */
}

/* The first failure of a recursive removal, kept for the error message (nftw's callback has no context). */
static char remove_failure[PATH_MAX + 64];

static int remove_entry(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* FTW_DP: a directory whose contents are gone; FTW_DNR: one we could not read (its rmdir says why) */
    int r = kind == FTW_DP || kind == FTW_DNR ? rmdir(path) : unlink(path);
    if (r < 0) {
        snprintf(remove_failure, sizeof remove_failure, "%s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* REMOVE path\0flags\0: a file, a symlink (not what it points to), an empty directory, or with REMOVE_RECURSIVE a whole tree. */
static void remove_path(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    const char *s[2];
    unsigned long flags;
    if (count_strings(p, len) != 2) {
        send_error(a, id, "malformed REMOVE payload");
        return;
    }
    split_strings(p, len, s);
    if (!parse_decimal(s[1], UINT32_MAX, &flags)) {
        send_error(a, id, "invalid REMOVE flags: %s", s[1]);
        return;
    }
    struct stat st;
    if (lstat(s[0], &st) < 0) {
        send_error(a, id, "remove %s: %s", s[0], strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(s[0]) < 0) send_error(a, id, "remove %s: %s", s[0], strerror(errno));
        else send_frame(a, T_OK, id, NULL, 0);
        return;
    }
    if (!(flags & REMOVE_RECURSIVE)) {
        if (rmdir(s[0]) < 0) {
            int e = errno;
            send_error(a, id, "remove %s: %s%s", s[0], strerror(e), e == ENOTEMPTY ? " (remove it recursively)" : "");
        } else {
            send_frame(a, T_OK, id, NULL, 0);
        }
        return;
    }
    /* depth first, symlinks not followed: a link to / inside the tree removes the link only */
    remove_failure[0] = 0;
    int r = nftw(s[0], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (r == 0) send_frame(a, T_OK, id, NULL, 0);
    else if (remove_failure[0]) send_error(a, id, "remove %s: %s", s[0], remove_failure);
    else send_error(a, id, "remove %s: %s", s[0], strerror(errno));
}

/* mkdir that takes an existing directory as success (for MKDIR's parents). */
static bool mkdir_or_exists(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0) return true;
    int e = errno;
    struct stat st;
    /* EEXIST, or e.g. EROFS/EACCES for a directory that already exists on some file systems */
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return true;
        e = ENOTDIR; /* a file where a directory should be: say that, not "File exists" */
    }
    errno = e;
    return false;
}

/*
 * MKDIR path\0mode\0parents\0: one directory with exactly `mode` (the agent's umask is 0); with
 * parents "1", the missing directories above it too (0755), and an existing directory is no error.
 */
static void make_dir(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    const char *s[3];
    unsigned long mode, parents;
    if (count_strings(p, len) != 3) {
        send_error(a, id, "malformed MKDIR payload");
        return;
    }
    split_strings(p, len, s);
    if (!parse_decimal(s[1], 07777, &mode) || !parse_decimal(s[2], 1, &parents)) {
        send_error(a, id, "invalid MKDIR mode or parents: %s %s", s[1], s[2]);
        return;
    }
    if (parents) {
        char *dir = xstrdup(s[0]);
        for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
            if (slash[-1] == '/') continue; /* "a//b" */
            *slash = 0;
            if (!mkdir_or_exists(dir, 0755)) {
                send_error(a, id, "mkdir %s: %s", dir, strerror(errno));
                free(dir);
                return;
            }
            *slash = '/';
        }
        free(dir);
    }
    if (mkdir(s[0], mode) < 0) {
        int e = errno;
        struct stat st;
        if (!(parents && e == EEXIST && stat(s[0], &st) == 0 && S_ISDIR(st.st_mode))) {
            send_error(a, id, "mkdir %s: %s", s[0], strerror(e));
            return;
        }
    } else if (mode & 07000 && chmod(s[0], mode) < 0) { /* mkdir() may drop set-id and sticky bits */
        send_error(a, id, "chmod %s: %s", s[0], strerror(errno));
        return;
    }
    send_frame(a, T_OK, id, NULL, 0);
}

/* RENAME from\0to\0: rename(2), so a file replaces a file and an empty directory a directory, atomically. */
static void rename_path(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    const char *s[2];
    if (count_strings(p, len) != 2) {
        send_error(a, id, "malformed RENAME payload");
        return;
    }
    split_strings(p, len, s);
    if (rename(s[0], s[1]) < 0) send_error(a, id, "rename %s to %s: %s", s[0], s[1], strerror(errno));
    else send_frame(a, T_OK, id, NULL, 0);
}

/* STAT path\0: the path itself (lstat: a symlink is reported as a link), as one STAT_RESULT. */
static void stat_path(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    if (count_strings(p, len) != 1) {
        send_error(a, id, "malformed STAT payload");
        return;
    }
    struct stat st;
    if (lstat((const char *)p, &st) < 0) {
        send_error(a, id, "stat %s: %s", (const char *)p, strerror(errno));
        return;
    }
    char rec[STAT_FIELDS_MAX];
    send_frame(a, T_STAT_RESULT, id, rec, stat_fields(rec, &st));
}

/* Runs one of this file's operations; other frame types are ignored (forward compatibility). */
void file_op(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len)
{
    switch (type) {
    case T_REMOVE: remove_path(a, id, p, len); break;
    case T_MKDIR: make_dir(a, id, p, len); break;
    case T_RENAME: rename_path(a, id, p, len); break;
    case T_STAT: stat_path(a, id, p, len); break;
    default: break;
    }
}
