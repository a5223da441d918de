/*
 * VFS_SETUP: puts the intercepting file system (fuse-server.c) over the sandbox's intercepted
 * mounts, and forwards its file events to the engine as FILE_EVENT frames.
 *
 * The engine mounted each intercepted directory at a hidden path (under /.matchlock/vfs). For
 * each one we open that directory, mount a FUSE file system at the mount's guest path and
 * detach the hidden mount: from then on the directory is reachable only through the server's
 * descriptor, so every command's file operation there goes through the rules.
 */
#include "agent.h"

#define VFS_HIDDEN_ROOT "/.matchlock/vfs"

static bool vfs_started;
static int events_fd = -1;
static unsigned char *events_buf;
static size_t events_len;

int vfs_events_fd(void) { return events_fd; }

/* mkdir -p under `dir` (AT_FDCWD: absolute), 0755 for what it makes. */
static bool make_path_at(int dir, const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) { errno = ENAMETOOLONG; return false; }
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = '\0';
        if (mkdirat(dir, buf, 0755) < 0 && errno != EEXIST) return false;
        if (!c) return true;
        *s = c;
    }
}

/*
 * VFS_SETUP payload (NUL-ended strings): mount count, then per mount its hidden path and guest
 * path (parents before children); rule count, then per rule its op mask (decimal, bit i = op
 * vfs_op_names[i]) and its glob ("" matches every path).
 */
void vfs_setup(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    int n = count_strings(p, len);
    if (n < 2) { send_error(a, id, "malformed VFS_SETUP payload"); return; }
    const char **s = xmalloc((size_t)n * sizeof *s);
    split_strings(p, len, s);
    unsigned long mounts, nrules;
    if (!parse_decimal(s[0], 64, &mounts) || (size_t)n < 2 + 2 * mounts || !parse_decimal(s[1 + 2 * mounts], 1024, &nrules) ||
        (size_t)n != 2 + 2 * mounts + 2 * nrules) {
        free(s);
        send_error(a, id, "malformed VFS_SETUP payload");
        return;
    }
    if (vfs_started) { free(s); send_error(a, id, "the file system interception is already set up"); return; }
    struct vfs_rule *rules = xmalloc((nrules + 1) * sizeof *rules);
    for (size_t i = 0; i < nrules; i++) {
        unsigned long ops;
        if (!parse_decimal(s[2 + 2 * mounts + 2 * i], (1ul << VFS_OPS) - 1, &ops)) { free(s); free(rules); send_error(a, id, "malformed VFS_SETUP rule"); return; }
        rules[i] = (struct vfs_rule){.ops = (uint32_t)ops, .glob = xstrdup(s[3 + 2 * mounts + 2 * i])};
    }
    struct vfs_mount_spec *specs = xmalloc((mounts + 1) * sizeof *specs);
    int ev[2];
    if (pipe2(ev, O_CLOEXEC) < 0) { send_error(a, id, "pipe: %s", strerror(errno)); return; }
    /*
     * Every descriptor first. A mount nested in another is
     * served inside the outermost one's FUSE mount; its mount point is made in the directory of
     * the mount right around it, where a plain mount's would be.
     */
    for (size_t i = 0; i < mounts; i++) {
        const char *hidden = s[1 + 2 * i];
        specs[i].guest = xstrdup(s[2 + 2 * i]);
        specs[i].top = -1;
        specs[i].fuse_fd = -1;
        specs[i].root_fd = open(hidden, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (specs[i].root_fd < 0) { send_error(a, id, "open %s: %s", hidden, strerror(errno)); return; }
        int around = -1;
        for (size_t j = 0; j < i; j++) {
            size_t l = strlen(specs[j].guest);
            if (strncmp(specs[i].guest, specs[j].guest, l) || specs[i].guest[l] != '/') continue;
            if (specs[i].top < 0) specs[i].top = (int)j;
            around = (int)j;
        }
        if (around >= 0) {
            if (!make_path_at(specs[around].root_fd, specs[i].guest + strlen(specs[around].guest) + 1)) {
                send_error(a, id, "mkdir %s: %s", specs[i].guest, strerror(errno));
                return;
            }
            continue;
        }
        /* non-blocking: gVisor's /dev/fuse may poll readable before its mount exists */
        specs[i].fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (specs[i].fuse_fd < 0) {
            send_error(a, id, "open /dev/fuse: %s (the sandbox's kernel must offer FUSE)", strerror(errno));
            return;
        }
    }
    /*
     * Mount, then start the server: Linux fails reads of a /dev/fuse descriptor not mounted
     * yet. Nothing here goes through a FUSE mount, so nothing waits for the server.
     */
    for (size_t i = 0; i < mounts; i++) {
        if (specs[i].top >= 0) continue;
        struct stat st;
        char opts[160];
        if (fstat(specs[i].root_fd, &st) < 0) { send_error(a, id, "stat %s: %s", s[1 + 2 * i], strerror(errno)); return; }
        snprintf(opts, sizeof opts, "fd=%d,rootmode=%o,user_id=0,group_id=0,allow_other,default_permissions",
                 specs[i].fuse_fd, (unsigned)(st.st_mode & S_IFMT));
        if (!make_path_at(AT_FDCWD, specs[i].guest)) { send_error(a, id, "mkdir %s: %s", specs[i].guest, strerror(errno)); return; }
        if (mount("matchlock", specs[i].guest, "fuse", MS_NOSUID | MS_NODEV, opts) < 0) {
            send_error(a, id, "mount the intercepting file system at %s: %s%s", specs[i].guest, strerror(errno),
                       errno == EPERM ? " (the agent lacks CAP_SYS_ADMIN)" : "");
            return;
        }
    }
    pid_t pid = fork();
    if (pid < 0) { send_error(a, id, "fork: %s", strerror(errno)); return; }
    if (pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        close(ev[0]);
        close(0);
        close(1);
        serve_vfs(specs, mounts, rules, nrules, ev[1]);
    }
    close(ev[1]);
    vfs_started = true;
    /* The server holds every directory now: their mounts can go. */
    for (size_t i = 0; i < mounts; i++) {
        if (umount2(s[1 + 2 * i], MNT_DETACH) < 0) { send_error(a, id, "detach %s: %s", s[1 + 2 * i], strerror(errno)); return; }
        close(specs[i].root_fd);
        if (specs[i].fuse_fd >= 0) close(specs[i].fuse_fd);
    }
    /*
     * Detached is not always gone: under gVisor the root file system's lower layer still shows
     * the bound directory at its mount point (runsc binds it there on the host side). An empty,
     * read-only tmpfs over them all hides it; commands cannot unmount it (no CAP_SYS_ADMIN).
     */
    if (mount("tmpfs", VFS_HIDDEN_ROOT, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0,size=4k") < 0) {
        send_error(a, id, "hide %s: %s", VFS_HIDDEN_ROOT, strerror(errno));
        return;
    }
    events_fd = ev[0];
    set_nonblock(events_fd, true);
    events_buf = xmalloc(HEADER_BYTES + MAX_PAYLOAD);
    free(s);
    send_frame(a, T_OK, id, NULL, 0);
}

/* Reads what the server queued; each complete record becomes one FILE_EVENT frame. */
void forward_vfs_events(struct agent *a)
{
    for (;;) {
        ssize_t n = read(events_fd, events_buf + events_len, HEADER_BYTES + MAX_PAYLOAD - events_len);
        if (n == 0) { fprintf(stderr, "matchlock-agent: the intercepting file system stopped\n"); close_fd(&events_fd); return; }
        if (n < 0) return; /* EAGAIN: all read */
        events_len += (size_t)n;
        size_t off = 0;
        while (events_len - off >= 4) {
            const unsigned char *h = events_buf + off;
            uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
            if (events_len - off < 4 + (size_t)len) break;
            send_frame(a, T_FILE_EVENT, 0, h + 4, len);
            off += 4 + len;
        }
        memmove(events_buf, events_buf + off, events_len - off);
        events_len -= off;
    }
}
