/*
 * matchlock-init: PID 1 of the micro-VM's initramfs.
 *
 * Loads the kernel modules the sandbox needs, builds its root file system (the image's
 * read-only ext4 under an overlay whose writable layer is a tmpfs capped at the sandbox's
 * disk size), realises its mounts, then switches root into it with the agent as the new PID 1
 * (the agent reaps orphans). Instructions come from the kernel command line (matchlock.*),
 * written by the engine (src/engine/backends/microvm/qemu-args.ts); paths there are hex-encoded.
 * Any failure powers the VM off after saying why on the console, which the engine reports.
 *
 * Why C and not a shell script: under TCG every process costs ~20-30 ms, and a shell init
 * needed ~20 of them (mount, modprobe, cp, chroot, switch_root...). Here it is one process,
 * plus one short-lived child per user mount (chrooted, so that symlinks in the image resolve
 * inside the sandbox's root) and one that warms the image's shell.
 *
 * Build: gcc -std=c11 -O2 -static (see Makefile).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMDLINE_MAX 4096
#define PATH_MAX_LEN 4096
#define DEVICE_WAIT_MS 2000

static struct {
    const char *mounts;   /* comma-separated specs: t:<hex path> | 9:<tag>:<ro|rw>:<hex path> | f:<tag>:<ro|rw>:<hex path> | d:<serial>:<ro|rw>:<hex path> */
    const char *hostname; /* hex */
    const char *disk_mb;
    const char *tasks_max; /* the commands' task cap, handed to the agent */
    const char *port;     /* virtio-serial port name of the agent's channel */
    const char *net;      /* <guest ip>/<prefix>,<gateway> */
    bool trace;
    bool privileged;      /* commands keep every capability: the agent gets --privileged */
    bool fuse;            /* intercepted mounts: the agent serves them over FUSE */
} cfg;

static void poweroff_now(void)
{
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("matchlock-init: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    poweroff_now();
    __builtin_unreachable();
}

/* matchlock.trace=1 (MATCHLOCK_TRACE_STARTUP=1 on the engine): guest uptime at each step. */
static void trace(const char *step)
{
    if (!cfg.trace) return;
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    printf("matchlock-init: +%ld.%03lds %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000, step);
    fflush(stdout);
}

static void do_mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data)
{
    if (mount(src, target, type, flags, data) != 0) fail("mount %s (%s) at %s: %s", src, type ? type : "move", target, strerror(errno));
}

static void make_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) fail("mkdir %s: %s", path, strerror(errno));
}

/* mkdir -p, in the caller's root. Returns false (errno set) on failure. */
static bool make_dirs(const char *path)
{
    char buf[PATH_MAX_LEN];
    if (strlen(path) >= sizeof buf) { errno = ENAMETOOLONG; return false; }
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
            if (c == '\0') return true;
            *p = c;
        }
    }
}

/* Decodes a hex string; false when it is not hex or does not fit. */
static bool unhex(const char *hex, char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 >= cap) return false;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return false;
        out[i] = (char)v;
    }
    out[n / 2] = '\0';
    return strlen(out) == n / 2; /* no NUL bytes inside */
}

static void read_cmdline(char *buf, size_t cap)
{
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open /proc/cmdline: %s", strerror(errno));
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) fail("read /proc/cmdline: %s", strerror(errno));
    buf[n] = '\0';
    for (char *w = strtok(buf, " \n"); w; w = strtok(NULL, " \n")) {
        const char *eq = strchr(w, '=');
        if (!eq) continue;
        const char *v = eq + 1;
        if (!strncmp(w, "matchlock.mounts=", 17)) cfg.mounts = v;
        else if (!strncmp(w, "matchlock.hostname=", 19)) cfg.hostname = v;
        else if (!strncmp(w, "matchlock.disk_mb=", 18)) cfg.disk_mb = v;
        else if (!strncmp(w, "matchlock.tasks_max=", 20)) cfg.tasks_max = v;
        else if (!strncmp(w, "matchlock.port=", 15)) cfg.port = v;
        else if (!strncmp(w, "matchlock.net=", 14)) cfg.net = v;
        else if (!strncmp(w, "matchlock.trace=", 16)) cfg.trace = !strcmp(v, "1");
        else if (!strncmp(w, "matchlock.privileged=", 21)) cfg.privileged = !strcmp(v, "1");
        else if (!strncmp(w, "matchlock.fuse=", 15)) cfg.fuse = !strcmp(v, "1");
    }
    if (!cfg.disk_mb || !cfg.tasks_max || !cfg.port || !cfg.hostname) fail("the kernel command line lacks matchlock.disk_mb, .tasks_max, .port or .hostname");
}

/* Loads the modules named (one initramfs path per line) in a list, in order. */
static void load_modules(const char *list)
{
    FILE *f = fopen(list, "re");
    if (!f) fail("open %s: %s", list, strerror(errno));
    char line[PATH_MAX_LEN];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!line[0]) continue;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("open %s: %s", line, strerror(errno));
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) fail("loading the kernel module %s: %s", line, strerror(errno));
        close(fd);
        trace(line);
    }
    fclose(f);
}

static bool has_9p_share(void)
{
    if (!cfg.mounts) return false;
    return !strncmp(cfg.mounts, "9:", 2) || strstr(cfg.mounts, ",9:") || !strncmp(cfg.mounts, "f:", 2) || strstr(cfg.mounts, ",f:");
}

/* Waits for a path that appears asynchronously after its driver loaded (a disk, a NIC). */
static void wait_for(const char *path)
{
    for (int waited = 0; access(path, F_OK) != 0; waited += 5) {
        if (waited >= DEVICE_WAIT_MS) fail("%s did not appear within %d ms", path, DEVICE_WAIT_MS);
        usleep(5000);
    }
}

static void set_flags_up(int sock, const char *ifname)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) fail("%s: get flags: %s", ifname, strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) fail("%s: up: %s", ifname, strerror(errno));
}

static void set_addr(int sock, const char *ifname, unsigned long req, in_addr_t addr)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    if (ioctl(sock, req, &ifr) != 0) fail("%s: set address: %s", ifname, strerror(errno));
}

/* Loopback always (as in gVisor); the sealed network's one NIC, its only route via the host end. */
static void setup_network(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) fail("socket: %s", strerror(errno));
    set_flags_up(sock, "lo");
    if (cfg.net) {
        char spec[128], *slash, *comma;
        snprintf(spec, sizeof spec, "%s", cfg.net);
        if (!(slash = strchr(spec, '/')) || !(comma = strchr(slash, ','))) fail("bad matchlock.net %s", cfg.net);
        *slash = *comma = '\0';
        int prefix = atoi(slash + 1);
        struct in_addr ip, gw;
        if (!inet_aton(spec, &ip) || !inet_aton(comma + 1, &gw) || prefix < 1 || prefix > 32) fail("bad matchlock.net %s", cfg.net);
        wait_for("/sys/class/net/eth0");
        set_addr(sock, "eth0", SIOCSIFADDR, ip.s_addr);
        set_addr(sock, "eth0", SIOCSIFNETMASK, htonl(~0u << (32 - prefix)));
        set_flags_up(sock, "eth0");
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
        struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
        g->sin_family = AF_INET;
        g->sin_addr = gw;
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = "eth0";
        if (ioctl(sock, SIOCADDRT, &rt) != 0) fail("default route via %s: %s", comma + 1, strerror(errno));
    }
    close(sock);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) fail("open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) fail("create %s: %s", to, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, n - off);
            if (w < 0) fail("write %s: %s", to, strerror(errno));
            off += w;
        }
    }
    if (n < 0) fail("read %s: %s", from, strerror(errno));
    close(in);
    if (fchmod(out, mode) != 0 || close(out) != 0) fail("finish %s: %s", to, strerror(errno));
}

/*
 * The /dev node of the virtio disk whose serial is `serial` (an extra disk: qemu-args.ts names
 * them), waiting for it: its driver probes the disks asynchronously.
 */
static void find_disk(const char *serial, char *dev, size_t cap)
{
    for (int waited = 0;; waited += 5) {
        DIR *d = opendir("/sys/block");
        if (!d) fail("open /sys/block: %s", strerror(errno));
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, "vd", 2)) continue;
            char file[300], got[64] = "";
            snprintf(file, sizeof file, "/sys/block/%s/serial", e->d_name);
            int fd = open(file, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t n = read(fd, got, sizeof got - 1);
            close(fd);
            if (n <= 0) continue;
            got[n] = '\0';
            got[strcspn(got, "\n")] = '\0';
            if (!strcmp(got, serial)) {
                snprintf(dev, cap, "/dev/%s", e->d_name);
                closedir(d);
                return;
            }
        }
        closedir(d);
        if (waited >= DEVICE_WAIT_MS) fail("the disk with serial %s did not appear within %d ms", serial, DEVICE_WAIT_MS);
        usleep(5000);
    }
}

/* Where a single-file share's 9p directory is mounted before its file is bound into place. */
#define FILE_SHARE_STAGE "/file-share"
/* The name of the one file in a single-file share (src/engine/backends/microvm/jail.ts). */
#define SHARED_FILE_NAME "file"

/* Makes the file `path` (and its parent directories) to bind a shared file onto; an existing file is fine. */
static bool make_file_target(const char *path)
{
    char dir[PATH_MAX_LEN];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (!make_dirs(dir)) return false;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644); /* chrooted: links resolve in the image */
    if (fd < 0) return false;
    close(fd);
    return true;
}

/*
 * One user mount, done by a child chrooted into the new root (so that symlinks in the image resolve
 * inside it); the parent waits for it. A single-file share (f:) is a 9p directory holding the one
 * file: it is mounted outside the new root, the child binds its file into place through an
 * O_PATH descriptor opened before the chroot, and the directory's own mount is then detached.
 */
static void user_mount(const char *spec)
{
    char path[PATH_MAX_LEN], tag[64] = "", dev[300];
    const char *type, *data, *src;
    unsigned long flags = MS_NOSUID | MS_NODEV;
    bool file = !strncmp(spec, "f:", 2), disk = !strncmp(spec, "d:", 2);
    if (!strncmp(spec, "t:", 2)) {
        if (!unhex(spec + 2, path, sizeof path)) fail("bad mount spec %s", spec);
        type = "tmpfs", src = "tmpfs", data = "mode=755";
    } else if (!strncmp(spec, "9:", 2) || file || disk) {
        const char *t = spec + 2, *m = strchr(t, ':'), *p = m ? strchr(m + 1, ':') : NULL;
        if (!m || !p || (size_t)(m - t) >= sizeof tag || !unhex(p + 1, path, sizeof path)) fail("bad mount spec %s", spec);
        memcpy(tag, t, m - t);
        tag[m - t] = '\0';
        /* Host shares keep nosuid/nodev: a setuid-root file on the host must not make root here. */
        if (!strncmp(m + 1, "ro:", 3)) flags |= MS_RDONLY;
        else if (strncmp(m + 1, "rw:", 3)) fail("bad mount spec %s", spec);
        if (disk) {
            /* An extra disk: an ext4 image the user keeps (journalled: a killed VM leaves it recoverable). */
            find_disk(tag, dev, sizeof dev);
            type = "ext4", src = dev, data = "noinit_itable"; /* no background zeroing: it would fill a sparse image */
        } else {
            type = "9p", src = tag, data = "trans=virtio,version=9p2000.L,msize=524288";
        }
    } else {
        fail("bad mount spec %s", spec);
    }
    if (path[0] != '/') fail("mount path %s is not absolute", path);
    int shared = -1;
    if (file) {
        make_dir(FILE_SHARE_STAGE, 0700);
        do_mount(src, FILE_SHARE_STAGE, type, flags, data);
        shared = open(FILE_SHARE_STAGE "/" SHARED_FILE_NAME, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (shared < 0) fail("open the shared file of %s: %s", tag, strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        if (chroot("/newroot") != 0 || chdir("/") != 0) fail("chroot /newroot: %s", strerror(errno));
        if (file) {
            char fd_path[64];
            snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", shared);
            if (!make_file_target(path)) { fprintf(stderr, "matchlock-init: make the file %s: %s\n", path, strerror(errno)); _exit(1); }
            if (mount(fd_path, path, NULL, MS_BIND, NULL) != 0 || mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL) != 0) {
                fprintf(stderr, "matchlock-init: bind the shared file at %s: %s\n", path, strerror(errno));
                _exit(1);
            }
            _exit(0);
        }
        if (!make_dirs(path)) { fprintf(stderr, "matchlock-init: mkdir -p %s: %s\n", path, strerror(errno)); _exit(1); }
        if (mount(src, path, type, flags, data) != 0) { fprintf(stderr, "matchlock-init: mount %s at %s: %s\n", src, path, strerror(errno)); _exit(1); }
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("%s %s at %s failed", type, src, path);
    if (file) {
        close(shared);
        /* the bound file keeps the share alive; the staging directory's mount is not needed */
        if (umount2(FILE_SHARE_STAGE, MNT_DETACH) != 0) fail("umount %s: %s", FILE_SHARE_STAGE, strerror(errno));
    }
}

/* The /dev node of the virtio-serial port named cfg.port, e.g. /dev/vport1p1. */
static void find_channel(char *out, size_t cap)
{
    const char *dir = "/newroot/sys/class/virtio-ports";
    DIR *d = opendir(dir);
    if (!d) fail("open %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512], name[256] = "";
        snprintf(p, sizeof p, "%s/%s/name", dir, e->d_name);
        FILE *f = fopen(p, "re");
        if (!f) continue;
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = '\0';
        fclose(f);
        if (!strcmp(name, cfg.port)) {
            snprintf(out, cap, "/dev/%s", e->d_name);
            closedir(d);
            return;
        }
    }
    closedir(d);
    fail("no virtio-serial port named %s", cfg.port);
}

/*
 * Every exec starts the image's /bin/sh: run it once now, in the background, so that reading it
 * (and its libraries) from the image's disk overlaps the agent's start instead of delaying the
 * first command. The agent, as PID 1, reaps it.
 */
static void warm_shell(void)
{
    pid_t pid = fork();
    if (pid != 0) return; /* a failed fork only loses the warm-up */
    int null = open("/newroot/dev/null", O_RDWR);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
    if (chroot("/newroot") == 0 && chdir("/") == 0) execl("/bin/sh", "sh", "-c", ":", (char *)NULL);
    _exit(0);
}

/* Frees the initramfs's files (they stay in RAM otherwise), as switch_root does. */
static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[PATH_MAX_LEN];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            if (e->d_type == DT_DIR) remove_tree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

int main(void)
{
    make_dir("/proc", 0555);
    do_mount("proc", "/proc", "proc", 0, NULL);
    do_mount("sysfs", "/sys", "sysfs", 0, NULL);
    do_mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);

    static char cmdline[CMDLINE_MAX];
    read_cmdline(cmdline, sizeof cmdline);
    trace("init started");

    /* Module loading is the largest part of the boot under TCG: the NIC's driver and the 9p
       stack only when needed. */
    load_modules("/lib/modules/order");
    if (cfg.net) load_modules("/lib/modules/order-net");
    if (has_9p_share()) load_modules("/lib/modules/order-9p");
    if (cfg.fuse) load_modules("/lib/modules/order-fuse");
    trace("modules loaded");

    char hostname[256];
    if (!unhex(cfg.hostname, hostname, sizeof hostname) || sethostname(hostname, strlen(hostname)) != 0) fail("bad hostname %s", cfg.hostname);
    setup_network();

    /* The virtio block device shows up asynchronously after its driver loaded. */
    wait_for("/dev/vda");
    trace("/dev/vda present");
    make_dir("/ro", 0755);
    make_dir("/rw", 0755);
    make_dir("/newroot", 0755);
    do_mount("/dev/vda", "/ro", "ext4", MS_RDONLY, "noload"); /* no journal replay on a shared, read-only image */
    char opts[64];
    snprintf(opts, sizeof opts, "size=%sm,mode=755", cfg.disk_mb);
    do_mount("tmpfs", "/rw", "tmpfs", 0, opts);
    make_dir("/rw/upper", 0755);
    make_dir("/rw/work", 0755);
    do_mount("overlay", "/newroot", "overlay", 0, "lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work");

    /* The agent in a private tmpfs at /.matchlock, read-only once in place. */
    for (const char *d = "/newroot/.matchlock\0/newroot/proc\0/newroot/sys\0/newroot/dev\0/newroot/tmp\0"; *d; d += strlen(d) + 1) make_dir(d, 0755);
    do_mount("tmpfs", "/newroot/.matchlock", "tmpfs", 0, "size=8m,mode=755");
    copy_file("/matchlock-agent", "/newroot/.matchlock/agent", 0755);
    if (cfg.fuse) make_dir("/newroot/.matchlock/vfs", 0700);
    do_mount(NULL, "/newroot/.matchlock", NULL, MS_REMOUNT | MS_RDONLY, NULL);
    /* Intercepted mounts are made here first, then served by the agent (guest/agent/vfs-intercept.c). */
    if (cfg.fuse) do_mount("tmpfs", "/newroot/.matchlock/vfs", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=700");
    /* The initramfs's /proc and /dev move into the new root; /sys is mounted afresh, read-only. */
    do_mount("/proc", "/newroot/proc", NULL, MS_MOVE, NULL);
    do_mount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL);
    do_mount("sysfs", "/newroot/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    do_mount("tmpfs", "/newroot/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");

    if (cfg.mounts) {
        char specs[CMDLINE_MAX];
        snprintf(specs, sizeof specs, "%s", cfg.mounts);
        char *save;
        for (char *s = strtok_r(specs, ",", &save); s; s = strtok_r(NULL, ",", &save)) user_mount(s);
    }

    char channel[300], node[320];
    find_channel(channel, sizeof channel);
    /* The port's sysfs entry appears a moment before its /dev node: the agent opens the node. */
    snprintf(node, sizeof node, "/newroot%s", channel);
    wait_for(node);
    warm_shell();
    trace("root and mounts ready, starting the agent");
    if (umount("/sys") != 0) fail("umount /sys: %s", strerror(errno));
    /* Yama: a process may ptrace only its own descendants unless it has CAP_SYS_PTRACE (which
       only a privileged sandbox's commands keep). Best effort: a kernel without Yama has no file. */
    int yama = open("/newroot/proc/sys/kernel/yama/ptrace_scope", O_WRONLY | O_CLOEXEC);
    if (yama >= 0) {
        if (write(yama, "1", 1) != 1) fail("set kernel.yama.ptrace_scope: %s", strerror(errno));
        close(yama);
    }

    remove_tree("/lib");
    unlink("/matchlock-agent");
    unlink("/init");
    if (chdir("/newroot") != 0) fail("chdir /newroot: %s", strerror(errno));
    do_mount(".", "/", NULL, MS_MOVE, NULL);
    if (chroot(".") != 0 || chdir("/") != 0) fail("chroot into the new root: %s", strerror(errno));
    /* A privileged sandbox's agent leaves its commands unconfined; the NULL ends the list otherwise. */
    execl("/.matchlock/agent", "agent", "--channel", channel, "--exec-memory-cgroup", "--exec-tasks-max", cfg.tasks_max,
          cfg.privileged ? "--privileged" : (char *)NULL, (char *)NULL);
    fail("exec the agent: %s", strerror(errno));
}
