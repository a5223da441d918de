/* WRITE_OPEN, WRITE_OPEN_TEMP and WRITE_DATA: files written for the engine. */
#include "agent.h"

/* mkdir -p of the directories above path. On failure fills err and returns false. */
static bool make_parents(const char *path, char *err, size_t errlen)
{
    if (!*path) return true; /* open("") reports ENOENT */
    char *dir = xstrdup(path);
    bool ok = true;
    for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        if (slash[-1] == '/') continue; /* "a//b" */
        *slash = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            struct stat st;
            /* e.g. EROFS or EACCES for a directory that already exists on some filesystems */
            if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "mkdir %s: %s", dir, strerror(e));
                ok = false;
                break;
            }
        }
        *slash = '/';
    }
    free(dir);
    return ok;
}

/* Longest piece of the target's name kept in a temporary file's name: the whole stays far below NAME_MAX. */
#define TEMP_NAME_PREFIX 40

/*
 * Creates the temporary file of a WRITE_OPEN_TEMP next to path (same directory, so the final
 * rename is atomic): ".NAME.matchlock-XXXXXX", NAME cut to TEMP_NAME_PREFIX bytes (at a UTF-8
 * character boundary) so that a 255-byte target name still gives a valid one.
 * Returns the fd and sets *temp, or -1 with errno.
 */
static int open_temp(const char *path, char **temp)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
    const char *base = path + dirlen;
    if (!*base) {
        errno = EISDIR;
        return -1;
    }
    size_t keep = strlen(base);
    if (keep > TEMP_NAME_PREFIX) {
        keep = TEMP_NAME_PREFIX;
        while (keep > 0 && ((unsigned char)base[keep] & 0xc0) == 0x80) keep--; /* not inside a character */
    }
    size_t n = dirlen + 1 + keep + sizeof ".matchlock-XXXXXX";
    char *t = xmalloc(n);
    snprintf(t, n, "%.*s.%.*s.matchlock-XXXXXX", (int)dirlen, path, (int)keep, base);
    int fd = mkostemp(t, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(t);
        errno = e;
        return -1;
    }
    *temp = t;
    return fd;
}

/*
 * The file a write to path lands in: symlinks at path are followed, as open() does for an
 * in-place WRITE_OPEN, so that a WRITE_OPEN_TEMP replaces the link's target and not the link.
 * A dangling link gives the path it points to (the write creates that file, as open() would).
 * Returns a new string, or NULL with errno (ELOOP after 40 links, or readlink's error).
 */
static char *resolve_target(const char *path)
{
    char *cur = xstrdup(path);
    for (int links = 0;; links++) {
        struct stat st;
        if (lstat(cur, &st) < 0 || !S_ISLNK(st.st_mode)) return cur; /* a missing path is created */
        char link[PATH_MAX];
        ssize_t len = links < 40 ? readlink(cur, link, sizeof link) : -1;
        int e = links < 40 ? errno : ELOOP;
        if (len < 0 || len == (ssize_t)sizeof link) {
            free(cur);
            errno = len < 0 ? e : ENAMETOOLONG;
            return NULL;
        }
        const char *slash = strrchr(cur, '/');
        /* a relative link is relative to the directory holding it */
        size_t dirlen = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur + 1);
        char *next = xmalloc(dirlen + (size_t)len + 1);
        memcpy(next, cur, dirlen);
        memcpy(next + dirlen, link, (size_t)len);
        next[dirlen + (size_t)len] = 0;
        free(cur);
        cur = next;
    }
}

/*
 * Gives the temporary file of a write over an existing file that file's owner and group, as an
 * in-place write (which keeps the inode) would. Called before fchmod: chown clears set-id bits.
 */
static bool keep_owner(int fd, const struct stat *old)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return false;
    /* no call when nothing changes: some filesystems refuse chown altogether */
    if (st.st_uid == old->st_uid && st.st_gid == old->st_gid) return true;
    return fchown(fd, old->st_uid, old->st_gid) == 0;
}

void write_open(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool to_temp)
{
    const char *s[2];
    unsigned long mode;
    char err[8192];
    if (count_strings(p, len) != 2) {
        send_error(a, id, "malformed WRITE_OPEN payload");
        return;
    }
    split_strings(p, len, s);
    const char *path = s[0];
    if (!parse_decimal(s[1], 07777, &mode)) {
        send_error(a, id, "invalid mode: %s", s[1]);
        return;
    }
    if (!make_parents(path, err, sizeof err)) {
        send_error(a, id, "%s", err);
        return;
    }
    char *temp = NULL;
    char *target = NULL; /* WRITE_OPEN_TEMP: the file the temporary one replaces at the end */
    int fd;
    if (to_temp) {
        target = resolve_target(path);
        if (!target) {
            send_error(a, id, "open %s: %s", path, strerror(errno));
            return;
        }
        struct stat st;
        bool exists = stat(target, &st) == 0;
        /* fail now, not after the whole transfer, when the target cannot be replaced by a file */
        if (exists && S_ISDIR(st.st_mode)) {
            send_error(a, id, "open %s: %s", path, strerror(EISDIR));
            free(target);
            return;
        }
        fd = open_temp(target, &temp);
        if (fd >= 0 && exists && !keep_owner(fd, &st)) {
            send_error(a, id, "chown %s: %s", path, strerror(errno));
            close(fd);
            unlink(temp);
            free(temp);
            free(target);
            return;
        }
    } else {
        /* O_NONBLOCK so that a FIFO without a reader fails (ENXIO) instead of hanging the agent */
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
    }
    if (fd < 0) {
        send_error(a, id, "open %s: %s", path, strerror(errno));
        free(target);
        return;
    }
    set_nonblock(fd, false);
    /* open() applies the umask and keeps the mode of an existing file; fchmod() is exact */
    if (fchmod(fd, mode) < 0) {
        send_error(a, id, "chmod %s: %s", path, strerror(errno));
        close(fd);
        if (temp) unlink(temp);
        free(temp);
        free(target);
        return;
    }
    struct write_op *w = xmalloc(sizeof *w);
    *w = (struct write_op){.next = a->writes, .id = id, .fd = fd, .path = target ? target : xstrdup(path), .temp = temp};
    a->writes = w;
}

/* Forgets a write; a temporary file still there (failed or cancelled write) is removed. */
void free_write(struct write_op *w)
{
    close_fd(&w->fd);
    if (w->temp) unlink(w->temp);
    free(w->temp);
    free(w->path);
    free(w->error);
    free(w);
}

static bool write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write_charged_to_workload(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

void write_data(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    struct write_op **pp = &a->writes;
    while (*pp && (*pp)->id != id) pp = &(*pp)->next;
    struct write_op *w = *pp;
    if (!w) return; /* the rest of a write whose WRITE_OPEN failed */
    char err[8192];
    if (len > 0) {
        if (w->fd >= 0 && !write_all(w->fd, p, len)) {
            snprintf(err, sizeof err, "write %s: %s", w->path, strerror(errno));
            w->error = xstrdup(err);
            close_fd(&w->fd); /* drop the remaining data, report at the end */
        }
        return;
    }
    if (w->fd >= 0 && close(w->fd) < 0 && !w->error) {
        snprintf(err, sizeof err, "close %s: %s", w->path, strerror(errno));
        w->error = xstrdup(err);
    }
    w->fd = -1;
    if (w->temp && !w->error && rename(w->temp, w->path) < 0) {
        snprintf(err, sizeof err, "rename to %s: %s", w->path, strerror(errno));
        w->error = xstrdup(err);
    } else if (w->temp && !w->error) {
        free(w->temp);
        w->temp = NULL; /* renamed: nothing left to clean up */
    }
    if (w->error) send_error(a, id, "%s", w->error);
    else send_frame(a, T_OK, id, NULL, 0);
    *pp = w->next;
    free_write(w);
}
