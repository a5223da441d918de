/*
 * The intercepting file system (vfs-intercept.c starts it): a pass-through FUSE server, one
 * process, serving every intercepted mount over the raw /dev/fuse protocol. Each mount's real
 * directory is reached only through a directory descriptor (its mount point was detached, so
 * the guest's commands cannot go around us). Before an operation runs, the engine's `block`
 * rules are checked against its guest path (EPERM when one matches); after it, a file event is
 * queued for the agent, which sends it on to the engine.
 *
 * Nothing is cached by the kernel (entry and attribute lifetimes are 0): every operation comes
 * here, so a rule or an event sees it. It runs apart from the agent because the agent's own
 * file operations on these mounts come here too.
 */
#include "agent.h"
#include <fnmatch.h>
#include <linux/fuse.h>
#include <sys/statvfs.h>

#define FUSE_MAX_WRITE (128 * 1024)
#define FUSE_BUF (FUSE_MAX_WRITE + 4096)
#define EVENT_QUEUE_CAP (64 * 1024 * 1024)
#define BUCKETS 4096

const char *const vfs_op_names[VFS_OPS] = {
    "stat", "readdir", "open", "create", "mkdir", "chmod", "remove", "remove_all",
    "rename", "symlink", "readlink", "read", "write", "close", "sync", "truncate",
};

struct node {
    char *path; /* relative to the mount's root ("" for the root); NULL when the slot is free */
    uint64_t lookups;
    int64_t next; /* hash chain */
};

/* A mount inside another: paths at or below `rel` (relative to the outer mount) are its. */
struct sub_mount {
    const char *rel;
    int fd;
};

/*
 * One FUSE mount: a top-level mount, with the mounts nested in it served inside it (a FUSE mount
 * inside another FUSE mount hangs on gVisor), each path going to the innermost one.
 */
struct vfs_mount {
    int fuse_fd;
    int root_fd;
    const char *guest; /* the mount's guest path */
    struct sub_mount *subs; /* innermost (longest) first */
    size_t nsubs;
    struct node *nodes; /* indexed by node id; 0 unused, 1 the root */
    size_t node_cap, node_len;
    int64_t buckets[BUCKETS];
    bool done;
};

struct dir_handle {
    char *buf; /* fuse_dirent records, FUSE_DIRENT_ALIGN-padded, in readdir order */
    size_t len;
};

static const struct vfs_rule *rules;
static size_t rule_count;
static int event_fd;
static char *queue;
static size_t queue_len, queue_cap;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h % BUCKETS;
}

static uint64_t find_node(struct vfs_mount *m, const char *path)
{
    for (int64_t i = m->buckets[hash(path)]; i >= 0; i = m->nodes[i].next)
        if (m->nodes[i].path && !strcmp(m->nodes[i].path, path)) return (uint64_t)i;
    return 0;
}

static void link_node(struct vfs_mount *m, uint64_t id)
{
    uint64_t b = hash(m->nodes[id].path);
    m->nodes[id].next = m->buckets[b];
    m->buckets[b] = (int64_t)id;
}

static void unlink_node(struct vfs_mount *m, uint64_t id)
{
    for (int64_t *p = &m->buckets[hash(m->nodes[id].path)]; *p >= 0; p = &m->nodes[*p].next)
        if ((uint64_t)*p == id) { *p = m->nodes[id].next; return; }
}

/* The node for a path, made if new; each LOOKUP reply counts one lookup the kernel will FORGET. */
static uint64_t node_for(struct vfs_mount *m, const char *path)
{
    uint64_t id = find_node(m, path);
    if (!id) {
        for (id = 2; id < m->node_len && m->nodes[id].path; id++) {}
        if (id == m->node_len) {
            if (m->node_len == m->node_cap) {
                m->node_cap *= 2;
                m->nodes = realloc(m->nodes, m->node_cap * sizeof *m->nodes);
                if (!m->nodes) die(1, "out of memory");
            }
            m->node_len++;
        }
        m->nodes[id] = (struct node){.path = xstrdup(path), .lookups = 0, .next = -1};
        link_node(m, id);
    }
    m->nodes[id].lookups++;
    return id;
}

static void forget(struct vfs_mount *m, uint64_t id, uint64_t n)
{
    if (id < 2 || id >= m->node_len || !m->nodes[id].path) return;
    if (m->nodes[id].lookups > n) { m->nodes[id].lookups -= n; return; }
    unlink_node(m, id);
    free(m->nodes[id].path);
    m->nodes[id].path = NULL;
}

/* After a rename: every node at or below `from` moves under `to`. */
static void rename_nodes(struct vfs_mount *m, const char *from, const char *to)
{
    size_t fl = strlen(from);
    for (uint64_t id = 2; id < m->node_len; id++) {
        char *p = m->nodes[id].path;
        if (!p || strncmp(p, from, fl) || (p[fl] && p[fl] != '/')) continue;
        unlink_node(m, id);
        size_t n = strlen(to) + strlen(p + fl) + 1;
        char *moved = xmalloc(n);
        snprintf(moved, n, "%s%s", to, p + fl);
        free(p);
        m->nodes[id].path = moved;
        link_node(m, id);
    }
}

static const char *node_path(struct vfs_mount *m, uint64_t id)
{
    return id >= 1 && id < m->node_len ? m->nodes[id].path : NULL;
}

/* A child's relative path; false when it does not fit. "." stands for the root in *at calls. */
static bool child_path(char *out, const char *parent, const char *name)
{
    int n = parent[0] ? snprintf(out, PATH_MAX, "%s/%s", parent, name) : snprintf(out, PATH_MAX, "%s", name);
    return n > 0 && n < PATH_MAX;
}

/* Where a relative path lives: the directory descriptor of its innermost mount, and the path under it. */
struct loc {
    int fd;
    const char *path;
};

static struct loc loc(const struct vfs_mount *m, const char *rel)
{
    for (size_t i = 0; i < m->nsubs; i++) {
        size_t n = strlen(m->subs[i].rel);
        if (strncmp(rel, m->subs[i].rel, n) || (rel[n] && rel[n] != '/')) continue;
        return (struct loc){m->subs[i].fd, rel[n] ? rel + n + 1 : "."};
    }
    return (struct loc){m->root_fd, rel[0] ? rel : "."};
}

static void guest_path(char *out, const struct vfs_mount *m, const char *rel)
{
    snprintf(out, PATH_MAX + 256, rel[0] ? "%s/%s" : "%s", m->guest, rel);
}

static bool blocked(enum vfs_op op, const char *gpath)
{
    for (size_t i = 0; i < rule_count; i++)
        if ((rules[i].ops & (1u << op)) && (!rules[i].glob[0] || fnmatch(rules[i].glob, gpath, FNM_PATHNAME) == 0)) return true;
    return false;
}

/*
 * Whether a block rule (of any op) covers gpath or names below it: such a name is never renamed
 * or hard-linked, since under another name it would be out of the rule's reach. A directory is
 * covered when the rule's glob, cut to the directory's depth, matches it.
 */
static bool covered(const char *gpath)
{
    size_t depth = 0;
    for (const char *c = gpath; *c; c++) depth += *c == '/';
    for (size_t i = 0; i < rule_count; i++) {
        const char *glob = rules[i].glob;
        if (!glob[0]) return true;
        char prefix[PATH_MAX + 256];
        size_t n = 0, seen = 0;
        for (; glob[n] && n < sizeof prefix - 1; n++) {
            if (glob[n] == '/' && seen++ == depth) break;
            prefix[n] = glob[n];
        }
        prefix[n] = 0;
        if (fnmatch(prefix, gpath, FNM_PATHNAME) == 0) return true;
    }
    return false;
}

/* Queues one event: u32 length, then op, path, size, mode, uid, gid as NUL-ended strings. */
static void emit(enum vfs_op op, const char *gpath, uint64_t size, uint32_t mode, uint32_t uid, uint32_t gid)
{
    char rec[PATH_MAX + 512];
    int n = snprintf(rec + 4, sizeof rec - 4, "%s%c%s%c%llu%c%u%c%u%c%u", vfs_op_names[op], 0, gpath, 0,
                     (unsigned long long)size, 0, mode, 0, uid, 0, gid);
    if (n < 0 || (size_t)n + 1 > sizeof rec - 4) return;
    uint32_t len = (uint32_t)n + 1;
    rec[0] = len >> 24; rec[1] = len >> 16; rec[2] = len >> 8; rec[3] = len;
    /* The agent may be busy (even waiting on us): past the cap, events are dropped, never waited for. */
    if (queue_len + len + 4 > EVENT_QUEUE_CAP) return;
    if (queue_len + len + 4 > queue_cap) {
        queue_cap = (queue_len + len + 4) * 2;
        queue = realloc(queue, queue_cap);
        if (!queue) die(1, "out of memory");
    }
    memcpy(queue + queue_len, rec, len + 4);
    queue_len += len + 4;
}

static void flush_events(void)
{
    while (queue_len > 0) {
        ssize_t w = write(event_fd, queue, queue_len);
        if (w <= 0) return;
        memmove(queue, queue + w, queue_len - (size_t)w);
        queue_len -= (size_t)w;
    }
}

/*
 * Events go to the agent before the reply that lets the operation finish, so the agent sends
 * an operation's events before the answer of the call (or the exit of the command) that made it.
 */
static void reply(struct vfs_mount *m, uint64_t unique, int error, const void *a, size_t alen, const void *b, size_t blen)
{
    flush_events();
    struct fuse_out_header h = {.len = (uint32_t)(sizeof h + alen + blen), .error = error, .unique = unique};
    struct iovec iov[3] = {{&h, sizeof h}, {(void *)a, alen}, {(void *)b, blen}};
    if (error) h.len = sizeof h;
    /* ENOENT: the request was interrupted and is gone; nothing to do. */
    if (writev(m->fuse_fd, iov, error ? 1 : 3) < 0 && errno != ENOENT) fprintf(stderr, "matchlock-agent: fuse reply: %s\n", strerror(errno));
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
    *a = (struct fuse_attr){
        .ino = st->st_ino, .size = st->st_size, .blocks = st->st_blocks,
        .atime = st->st_atim.tv_sec, .mtime = st->st_mtim.tv_sec, .ctime = st->st_ctim.tv_sec,
        .atimensec = st->st_atim.tv_nsec, .mtimensec = st->st_mtim.tv_nsec, .ctimensec = st->st_ctim.tv_nsec,
        .mode = st->st_mode, .nlink = st->st_nlink, .uid = st->st_uid, .gid = st->st_gid,
        .rdev = st->st_rdev, .blksize = st->st_blksize,
    };
}

/* Replies a LOOKUP/MKDIR/CREATE-style entry for `rel`, counting one lookup; `op`'s event goes first. */
static bool entry_reply(struct vfs_mount *m, const struct fuse_in_header *in, const char *rel, const void *extra, size_t extra_len,
                        enum vfs_op op, const char *gpath)
{
    struct stat st;
    if (fstatat(loc(m, rel).fd, loc(m, rel).path, &st, AT_SYMLINK_NOFOLLOW) < 0) { reply(m, in->unique, -errno, NULL, 0, NULL, 0); return false; }
    struct fuse_entry_out e;
    memset(&e, 0, sizeof e);
    e.nodeid = node_for(m, rel);
    fill_attr(&e.attr, &st);
    emit(op, gpath, st.st_size, st.st_mode, in->uid, in->gid);
    reply(m, in->unique, 0, &e, sizeof e, extra, extra_len);
    return true;
}

/* Replies a GETATTR/SETATTR-style attribute answer for `rel`; `op`'s event goes first. */
static void attr_reply(struct vfs_mount *m, const struct fuse_in_header *in, const char *rel, enum vfs_op op, const char *gpath)
{
    struct stat st;
    if (fstatat(loc(m, rel).fd, loc(m, rel).path, &st, AT_SYMLINK_NOFOLLOW) < 0) { reply(m, in->unique, -errno, NULL, 0, NULL, 0); return; }
    struct fuse_attr_out o;
    memset(&o, 0, sizeof o);
    fill_attr(&o.attr, &st);
    emit(op, gpath, st.st_size, st.st_mode, in->uid, in->gid);
    reply(m, in->unique, 0, &o, sizeof o, NULL, 0);
}

/* Files made for a caller belong to it, as on a local file system (we run as root). */
static int own(struct vfs_mount *m, const char *rel, const struct fuse_in_header *in)
{
    if (in->uid == 0 && in->gid == 0) return 0;
    return fchownat(loc(m, rel).fd, loc(m, rel).path, in->uid, in->gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static void read_dir(struct vfs_mount *m, uint64_t unique, const char *rel)
{
    int fd = openat(loc(m, rel).fd, loc(m, rel).path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) { int e = errno; if (fd >= 0) close(fd); reply(m, unique, -e, NULL, 0, NULL, 0); return; }
    struct dir_handle *h = xmalloc(sizeof *h);
    *h = (struct dir_handle){0};
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t namelen = strlen(de->d_name);
        size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
        if (h->len + rec > cap) {
            cap = (h->len + rec) * 2;
            h->buf = realloc(h->buf, cap);
            if (!h->buf) die(1, "out of memory");
        }
        struct fuse_dirent *fd_ = (struct fuse_dirent *)(h->buf + h->len);
        memset(fd_, 0, rec);
        fd_->ino = de->d_ino;
        fd_->off = h->len + rec; /* the offset of the next record: where a later READDIR resumes */
        fd_->namelen = (uint32_t)namelen;
        fd_->type = de->d_type;
        memcpy(fd_->name, de->d_name, namelen);
        h->len += rec;
    }
    closedir(d);
    struct fuse_open_out o = {.fh = (uint64_t)(uintptr_t)h};
    reply(m, unique, 0, &o, sizeof o, NULL, 0);
}

static void dir_page(struct vfs_mount *m, uint64_t unique, const struct fuse_read_in *r)
{
    struct dir_handle *h = (struct dir_handle *)(uintptr_t)r->fh;
    size_t off = r->offset < h->len ? (size_t)r->offset : h->len, end = off;
    /* whole records only */
    while (end < h->len) {
        const struct fuse_dirent *d = (const struct fuse_dirent *)(h->buf + end);
        size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d->namelen);
        if (end + rec - off > r->size) break;
        end += rec;
    }
    reply(m, unique, 0, h->buf + off, end - off, NULL, 0);
}

static int set_attr(struct vfs_mount *m, const char *rel, const struct fuse_setattr_in *s)
{
    if ((s->valid & FATTR_MODE) && fchmodat(loc(m, rel).fd, loc(m, rel).path, s->mode & 07777, 0) < 0) return -errno;
    if (s->valid & (FATTR_UID | FATTR_GID)) {
        uid_t u = s->valid & FATTR_UID ? s->uid : (uid_t)-1;
        gid_t g = s->valid & FATTR_GID ? s->gid : (gid_t)-1;
        if (fchownat(loc(m, rel).fd, loc(m, rel).path, u, g, AT_SYMLINK_NOFOLLOW) < 0) return -errno;
    }
    if (s->valid & FATTR_SIZE) {
        int r = (s->valid & FATTR_FH) ? ftruncate((int)s->fh, (off_t)s->size) : -1;
        if (!(s->valid & FATTR_FH)) {
            int fd = openat(loc(m, rel).fd, loc(m, rel).path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0) return -errno;
            r = ftruncate(fd, (off_t)s->size);
            int e = errno;
            close(fd);
            errno = e;
        }
        if (r < 0) return -errno;
    }
    if (s->valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
        if (s->valid & FATTR_ATIME_NOW) ts[0].tv_nsec = UTIME_NOW;
        else if (s->valid & FATTR_ATIME) ts[0] = (struct timespec){(time_t)s->atime, s->atimensec};
        if (s->valid & FATTR_MTIME_NOW) ts[1].tv_nsec = UTIME_NOW;
        else if (s->valid & FATTR_MTIME) ts[1] = (struct timespec){(time_t)s->mtime, s->mtimensec};
        if (utimensat(loc(m, rel).fd, loc(m, rel).path, ts, AT_SYMLINK_NOFOLLOW) < 0) return -errno;
    }
    return 0;
}

/* One request. `p` is the body after the header, `len` its length. */
static void handle(struct vfs_mount *m, const struct fuse_in_header *in, const char *p, size_t len)
{
    uint64_t u = in->unique;
    const char *rel = node_path(m, in->nodeid);
    char child[PATH_MAX], child2[PATH_MAX], gpath[PATH_MAX + 256], gpath2[PATH_MAX + 256];
    struct stat st;
    memset(&st, 0, sizeof st);
#define FAIL(e) do { reply(m, u, (e), NULL, 0, NULL, 0); return; } while (0)
#define GUARD(op, path) do { if (blocked((op), (path))) { emit((op), (path), 0, 0, in->uid, in->gid); FAIL(-EPERM); } } while (0)
    if (in->opcode == FUSE_INIT) {
        const struct fuse_init_in *i = (const void *)p;
        struct fuse_init_out o = {.major = FUSE_KERNEL_VERSION, .minor = i->minor < FUSE_KERNEL_MINOR_VERSION ? i->minor : FUSE_KERNEL_MINOR_VERSION,
                                  .max_readahead = i->max_readahead, .flags = i->flags & (FUSE_BIG_WRITES | FUSE_MAX_PAGES),
                                  .max_write = FUSE_MAX_WRITE, .max_pages = FUSE_MAX_WRITE / 4096};
        reply(m, u, 0, &o, sizeof o, NULL, 0);
        return;
    }
    if (in->opcode == FUSE_FORGET) { forget(m, in->nodeid, ((const struct fuse_forget_in *)p)->nlookup); return; }
    if (in->opcode == FUSE_BATCH_FORGET) {
        const struct fuse_batch_forget_in *b = (const void *)p;
        const struct fuse_forget_one *one = (const void *)(b + 1);
        for (uint32_t i = 0; i < b->count && (const char *)(one + i + 1) <= p + len; i++) forget(m, one[i].nodeid, one[i].nlookup);
        return;
    }
    if (in->opcode == FUSE_INTERRUPT) return;
    if (in->opcode == FUSE_DESTROY) { m->done = true; return; }
    if (!rel) FAIL(-ESTALE);
    guest_path(gpath, m, rel);
    switch (in->opcode) {
    case FUSE_LOOKUP:
        if (!child_path(child, rel, p)) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        GUARD(VFS_STAT, gpath);
        entry_reply(m, in, child, NULL, 0, VFS_STAT, gpath);
        return;
    case FUSE_GETATTR:
        GUARD(VFS_STAT, gpath);
        attr_reply(m, in, rel, VFS_STAT, gpath);
        return;
    case FUSE_SETATTR: {
        const struct fuse_setattr_in *s = (const void *)p;
        enum vfs_op op = s->valid & FATTR_SIZE ? VFS_TRUNCATE : VFS_CHMOD;
        GUARD(op, gpath);
        int r = set_attr(m, rel, s);
        if (r < 0) FAIL(r);
        attr_reply(m, in, rel, op, gpath);
        return;
    }
    case FUSE_READLINK: {
        GUARD(VFS_READLINK, gpath);
        ssize_t n = readlinkat(loc(m, rel).fd, loc(m, rel).path, child, sizeof child);
        if (n < 0) FAIL(-errno);
        emit(VFS_READLINK, gpath, (uint64_t)n, S_IFLNK | 0777, in->uid, in->gid);
        reply(m, u, 0, child, (size_t)n, NULL, 0);
        return;
    }
    case FUSE_SYMLINK: {
        const char *target = p + strlen(p) + 1;
        if (!child_path(child, rel, p)) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        GUARD(VFS_SYMLINK, gpath);
        if (symlinkat(target, loc(m, child).fd, loc(m, child).path) < 0) FAIL(-errno);
        int r = own(m, child, in);
        if (r < 0) FAIL(r);
        entry_reply(m, in, child, NULL, 0, VFS_SYMLINK, gpath);
        return;
    }
    case FUSE_MKNOD:
    case FUSE_MKDIR: {
        bool dir = in->opcode == FUSE_MKDIR;
        const char *name = p + (dir ? sizeof(struct fuse_mkdir_in) : sizeof(struct fuse_mknod_in));
        if (!child_path(child, rel, name)) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        enum vfs_op op = dir ? VFS_MKDIR : VFS_CREATE;
        GUARD(op, gpath);
        int r = dir ? mkdirat(loc(m, child).fd, loc(m, child).path, ((const struct fuse_mkdir_in *)p)->mode)
                    : mknodat(loc(m, child).fd, loc(m, child).path, ((const struct fuse_mknod_in *)p)->mode, ((const struct fuse_mknod_in *)p)->rdev);
        if (r < 0) FAIL(-errno);
        if ((r = own(m, child, in)) < 0) FAIL(r);
        entry_reply(m, in, child, NULL, 0, op, gpath);
        return;
    }
    case FUSE_UNLINK:
    case FUSE_RMDIR:
        if (!child_path(child, rel, p)) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        GUARD(VFS_REMOVE, gpath);
        GUARD(VFS_REMOVE_ALL, gpath);
        if (!strcmp(loc(m, child).path, ".")) FAIL(-EBUSY); /* a nested mount's mount point */
        if (fstatat(loc(m, child).fd, loc(m, child).path, &st, AT_SYMLINK_NOFOLLOW) < 0) FAIL(-errno);
        if (unlinkat(loc(m, child).fd, loc(m, child).path, in->opcode == FUSE_RMDIR ? AT_REMOVEDIR : 0) < 0) FAIL(-errno);
        emit(VFS_REMOVE, gpath, st.st_size, st.st_mode, in->uid, in->gid);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    case FUSE_RENAME:
    case FUSE_RENAME2: {
        bool two = in->opcode == FUSE_RENAME2;
        uint64_t newdir = two ? ((const struct fuse_rename2_in *)p)->newdir : ((const struct fuse_rename_in *)p)->newdir;
        unsigned flags = two ? ((const struct fuse_rename2_in *)p)->flags : 0;
        const char *oldname = p + (two ? sizeof(struct fuse_rename2_in) : sizeof(struct fuse_rename_in));
        const char *newname = oldname + strlen(oldname) + 1;
        const char *newparent = node_path(m, newdir);
        if (!newparent) FAIL(-ESTALE);
        if (!child_path(child, rel, oldname) || !child_path(child2, newparent, newname)) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        guest_path(gpath2, m, child2);
        GUARD(VFS_RENAME, gpath);
        GUARD(VFS_RENAME, gpath2);
        if (covered(gpath) || covered(gpath2)) { emit(VFS_RENAME, gpath, 0, 0, in->uid, in->gid); FAIL(-EPERM); }
        if (!strcmp(loc(m, child).path, ".") || !strcmp(loc(m, child2).path, ".")) FAIL(-EBUSY);
        if (loc(m, child).fd != loc(m, child2).fd) FAIL(-EXDEV);
        if (syscall(SYS_renameat2, loc(m, child).fd, loc(m, child).path, loc(m, child2).fd, loc(m, child2).path, flags) < 0) FAIL(-errno);
        rename_nodes(m, child, child2);
        if (fstatat(loc(m, child2).fd, loc(m, child2).path, &st, AT_SYMLINK_NOFOLLOW) < 0) memset(&st, 0, sizeof st);
        emit(VFS_RENAME, gpath, st.st_size, st.st_mode, in->uid, in->gid);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    }
    case FUSE_LINK: {
        const char *target = node_path(m, ((const struct fuse_link_in *)p)->oldnodeid);
        if (!target) FAIL(-ESTALE);
        if (!child_path(child, rel, p + sizeof(struct fuse_link_in))) FAIL(-ENAMETOOLONG);
        guest_path(gpath, m, child);
        guest_path(gpath2, m, target);
        GUARD(VFS_CREATE, gpath);
        if (covered(gpath) || covered(gpath2)) { emit(VFS_CREATE, gpath, 0, 0, in->uid, in->gid); FAIL(-EPERM); }
        if (linkat(loc(m, target).fd, loc(m, target).path, loc(m, child).fd, loc(m, child).path, 0) < 0) FAIL(-errno);
        entry_reply(m, in, child, NULL, 0, VFS_CREATE, gpath);
        return;
    }
    case FUSE_OPEN:
    case FUSE_CREATE: {
        bool create = in->opcode == FUSE_CREATE;
        uint32_t flags = create ? ((const struct fuse_create_in *)p)->flags : ((const struct fuse_open_in *)p)->flags;
        if (create) {
            if (!child_path(child, rel, p + sizeof(struct fuse_create_in))) FAIL(-ENAMETOOLONG);
            guest_path(gpath, m, child);
        } else {
            snprintf(child, sizeof child, "%s", rel);
        }
        enum vfs_op op = create ? VFS_CREATE : VFS_OPEN;
        GUARD(op, gpath);
        if ((flags & O_TRUNC) && !create) GUARD(VFS_TRUNCATE, gpath);
        int fd = openat(loc(m, child).fd, loc(m, child).path, (int)(flags & ~(O_NOCTTY | O_NOFOLLOW)) | O_NOFOLLOW | O_CLOEXEC,
                        create ? ((const struct fuse_create_in *)p)->mode : 0);
        if (fd < 0) FAIL(-errno);
        struct fuse_open_out o = {.fh = (uint64_t)fd};
        if (create) {
            int r = own(m, child, in);
            if (r < 0) { close(fd); FAIL(r); }
            if (!entry_reply(m, in, child, &o, sizeof o, op, gpath)) close(fd);
            return;
        }
        if (fstat(fd, &st) < 0) memset(&st, 0, sizeof st);
        emit(op, gpath, st.st_size, st.st_mode, in->uid, in->gid);
        reply(m, u, 0, &o, sizeof o, NULL, 0);
        return;
    }
    case FUSE_READ: {
        const struct fuse_read_in *r = (const void *)p;
        GUARD(VFS_READ, gpath);
        static char buf[FUSE_BUF];
        ssize_t n = pread((int)r->fh, buf, r->size < sizeof buf ? r->size : sizeof buf, (off_t)r->offset);
        if (n < 0) FAIL(-errno);
        emit(VFS_READ, gpath, (uint64_t)n, 0, in->uid, in->gid);
        reply(m, u, 0, buf, (size_t)n, NULL, 0);
        return;
    }
    case FUSE_WRITE: {
        const struct fuse_write_in *w = (const void *)p;
        GUARD(VFS_WRITE, gpath);
        ssize_t n = pwrite((int)w->fh, p + sizeof *w, w->size, (off_t)w->offset);
        if (n < 0) FAIL(-errno);
        emit(VFS_WRITE, gpath, (uint64_t)n, 0, in->uid, in->gid);
        struct fuse_write_out o = {.size = (uint32_t)n};
        reply(m, u, 0, &o, sizeof o, NULL, 0);
        return;
    }
    case FUSE_FLUSH:
        GUARD(VFS_CLOSE, gpath);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    case FUSE_RELEASE: {
        int fd = (int)((const struct fuse_release_in *)p)->fh;
        if (fstat(fd, &st) < 0) memset(&st, 0, sizeof st);
        close(fd);
        emit(VFS_CLOSE, gpath, st.st_size, st.st_mode, in->uid, in->gid);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    }
    case FUSE_FSYNC:
        GUARD(VFS_SYNC, gpath);
        if (fsync((int)((const struct fuse_fsync_in *)p)->fh) < 0) FAIL(-errno);
        emit(VFS_SYNC, gpath, 0, 0, in->uid, in->gid);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    case FUSE_FSYNCDIR:
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    case FUSE_OPENDIR:
        GUARD(VFS_READDIR, gpath);
        emit(VFS_READDIR, gpath, 0, S_IFDIR, in->uid, in->gid);
        read_dir(m, u, rel);
        return;
    case FUSE_READDIR:
        dir_page(m, u, (const void *)p);
        return;
    case FUSE_RELEASEDIR: {
        struct dir_handle *h = (struct dir_handle *)(uintptr_t)((const struct fuse_release_in *)p)->fh;
        free(h->buf);
        free(h);
        reply(m, u, 0, NULL, 0, NULL, 0);
        return;
    }
    case FUSE_STATFS: {
        struct statvfs s;
        if (fstatvfs(loc(m, rel).fd, &s) < 0) FAIL(-errno);
        struct fuse_statfs_out o = {.st = {.blocks = s.f_blocks, .bfree = s.f_bfree, .bavail = s.f_bavail, .files = s.f_files,
                                           .ffree = s.f_ffree, .bsize = (uint32_t)s.f_bsize, .namelen = (uint32_t)s.f_namemax, .frsize = (uint32_t)s.f_frsize}};
        reply(m, u, 0, &o, sizeof o, NULL, 0);
        return;
    }
    default:
        /* xattrs, locks, fallocate, ioctl...: ENOSYS tells the kernel not to ask again */
        FAIL(-ENOSYS);
    }
#undef FAIL
#undef GUARD
}

_Noreturn void serve_vfs(struct vfs_mount_spec *specs, size_t n, const struct vfs_rule *r, size_t nr, int events)
{
    rules = r;
    rule_count = nr;
    event_fd = events;
    set_nonblock(events, true);
    signal(SIGPIPE, SIG_IGN);
    struct vfs_mount *m = xmalloc(n * sizeof *m);
    struct pollfd *pfds = xmalloc((n + 1) * sizeof *pfds);
    size_t tops = 0;
    for (size_t t = 0; t < n; t++) {
        if (specs[t].top >= 0) continue;
        struct vfs_mount *mt = &m[tops++];
        *mt = (struct vfs_mount){.fuse_fd = specs[t].fuse_fd, .root_fd = specs[t].root_fd, .guest = specs[t].guest, .node_cap = 64, .node_len = 2};
        mt->subs = xmalloc(n * sizeof *mt->subs);
        size_t gl = strlen(specs[t].guest);
        /* specs come parents first, so walking them backwards puts the innermost first */
        for (size_t j = n; j-- > 0;)
            if (specs[j].top == (int)t) mt->subs[mt->nsubs++] = (struct sub_mount){specs[j].guest + gl + 1, specs[j].root_fd};
    }
    n = tops;
    for (size_t i = 0; i < n; i++) {
        m[i].nodes = xmalloc(m[i].node_cap * sizeof *m[i].nodes);
        for (size_t b = 0; b < BUCKETS; b++) m[i].buckets[b] = -1;
        m[i].nodes[1] = (struct node){.path = xstrdup(""), .lookups = 1, .next = -1};
        link_node(&m[i], 1);
    }
    char *buf = xmalloc(FUSE_BUF + 1);
    for (;;) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            pfds[i] = (struct pollfd){.fd = m[i].done ? -1 : m[i].fuse_fd, .events = POLLIN};
            if (!m[i].done) live++;
        }
        if (!live) exit(0);
        pfds[n] = (struct pollfd){.fd = queue_len ? event_fd : -1, .events = POLLOUT};
        if (poll(pfds, n + 1, -1) < 0 && errno != EINTR) die(1, "fuse poll: %s", strerror(errno));
        for (size_t i = 0; i < n; i++) {
            if (!pfds[i].revents) continue;
            ssize_t got = read(m[i].fuse_fd, buf, FUSE_BUF);
            if (got < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
                m[i].done = true; /* ENODEV: unmounted */
                continue;
            }
            if ((size_t)got < sizeof(struct fuse_in_header)) continue;
            const struct fuse_in_header *in = (const void *)buf;
            size_t body = (size_t)got - sizeof *in;
            /* names in the body are NUL-ended by the kernel; a malformed one must still not run off the end */
            buf[got] = '\0';
            handle(&m[i], in, buf + sizeof *in, body);
        }
        flush_events();
    }
}
