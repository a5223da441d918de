/*
 * matchlock-private-mounts ROOT IMAGE HIDE_NET DISK_MB NBINDS NDISKS
 *                          [HELD ro|rw NAME]...  (NDISKS times)
 *                          [ro|rw PATH IDENTITY]...  (NBINDS times)
 *                          CMD [ARGS...]
 *
 * Runs CMD (runsc) in a mount namespace of its own, private to one sandbox, holding:
 *   ROOT            a small tmpfs with everything below;
 *   ROOT/merged     the sandbox's root: an overlay of IMAGE (bound read-only at ROOT/lower)
 *                   under ROOT/upper, which takes the mount points runsc's gofer creates;
 *   ROOT/writes     a tmpfs of DISK_MB MiB for the root's writes (runsc's --overlay2 medium);
 *   ROOT/disk/N     the Nth extra disk: the ext4 image HELD (a /proc/<pid>/fd path, opened as
 *                   it is) on a loop device of its own, freed when its mount goes;
 *   ROOT/ro/N, ROOT/rw/N   the Nth host path, bound with its submounts; each must be the object
 *                   the engine checked (IDENTITY, "dev:ino" as Node's stat gives them; "-" for
 *                   paths the engine owns), and a read-only one is read-only with every submount.
 * With HIDE_NET 1, /proc/sys/net is hidden under a tmpfs: runsc refuses --network=sandbox when
 * it thinks it is in the root network namespace, and on kernels from about 6.7 every namespace
 * looks like the root one to it.
 *
 * Nothing is ever unmounted: the namespace, with every mount in it, goes with its last process.
 * A failure prints one line on stderr and exits 1 before CMD runs.
 *
 * Why C: this is on every gVisor sandbox's start path; done by a shell script, it took ~30 ms in
 * the dozen processes (mount, mkdir, awk, subshells) the script started. Needs Linux 5.12
 * (mount_setattr, which makes a mount read-only with its submounts and keeps its other flags).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Mount points are empty files and directories, and runsc writes nothing else in the upper
 * layer (the guest's own changes stay in the Sentry's overlay): a small cap is plenty. */
#define ROOT_TMPFS "size=16m,nr_inodes=16384,mode=700"

static _Noreturn void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("matchlock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* The same words as the shell's path_changed (SAME_OBJECT_SH), which the engine reports. */
static _Noreturn void path_changed(const char *path)
{
    fprintf(stderr, "host path %s changed while it was being mounted (it went away, or a symbolic link or "
                    "another object took its place); host paths must not contain symlinks\n", path);
    exit(1);
}

/* A decimal number of digits only, ending at `stop`; *next points past it. */
static int parse_decimal(const char *s, char stop, unsigned long long *out, const char **next)
{
    if (*s < '0' || *s > '9') return 0;
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (errno || *end != stop) return 0;
    *next = end;
    return 1;
}

/* Whether `path` (followed, as mount(2) follows it) is the object of IDENTITY "dev:ino". */
static int is_object(const char *path, const char *identity)
{
    unsigned long long dev, ino;
    const char *rest;
    if (!parse_decimal(identity, ':', &dev, &rest) || !parse_decimal(rest + 1, '\0', &ino, &rest)) {
        fail("bad host path identity %s", identity);
    }
    struct stat st;
    return stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

/* "ro" or "rw", nothing else: a bind or disk is read-only only when said so, never by a typo. */
static int is_readonly(const char *mode)
{
    if (strcmp(mode, "ro") == 0) return 1;
    if (strcmp(mode, "rw") == 0) return 0;
    fail("bad mode %s (ro or rw)", mode);
}

/* Read-only for this mount (and with `flags` AT_RECURSIVE, every submount), keeping its other flags. */
static int make_readonly(const char *target, unsigned flags)
{
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
    return syscall(SYS_mount_setattr, AT_FDCWD, target, flags, &attr, sizeof attr) == 0;
}

static void mount_or_fail(const char *source, const char *target, const char *type, unsigned long flags, const char *data)
{
    if (mount(source, target, type, flags, data) != 0) fail("cannot mount %s on %s: %s", source, target, strerror(errno));
}

static void mkdir_or_fail(const char *path)
{
    if (mkdir(path, 0755) != 0) fail("cannot make %s: %s", path, strerror(errno));
}

static long count_arg(const char *s, const char *what)
{
    unsigned long long n;
    const char *end;
    if (!parse_decimal(s, '\0', &n, &end) || n > LONG_MAX) fail("bad %s: %s", what, s);
    return (long)n;
}

static _Noreturn void cannot_mount_disk(const char *name, const char *step, int err)
{
    fail("cannot mount the extra disk %s (an ext4 image, on a loop device): %s: %s%s", name, step, strerror(err),
         err == EPERM || err == EACCES ? " (needs root)" : "");
}

/* Binds `dev` to `image_fd`, going when its last user (the mount) does: LOOP_CONFIGURE (Linux
 * 5.8), else the two older calls. */
static int configure_loop(int dev, int image_fd, int readonly)
{
    struct loop_config config = { .fd = (unsigned)image_fd };
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (readonly ? LO_FLAGS_READ_ONLY : 0);
    if (ioctl(dev, LOOP_CONFIGURE, &config) == 0) return 0;
    if (errno != EINVAL && errno != ENOTTY) return -1;
    if (ioctl(dev, LOOP_SET_FD, image_fd) != 0) return -1;
    struct loop_info64 info = { .lo_flags = LO_FLAGS_AUTOCLEAR };
    if (ioctl(dev, LOOP_SET_STATUS64, &info) == 0) return 0;
    int err = errno;
    ioctl(dev, LOOP_CLR_FD);
    errno = err;
    return -1;
}

/* A free loop device bound to `image_fd`; -1 with *step naming what failed. */
static int attach_loop(int image_fd, int readonly, char *dev_path, size_t dev_path_len, const char **step)
{
    *step = "open /dev/loop-control";
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) return -1;
    int dev = -1;
    for (int attempt = 0; attempt < 64; attempt++) {
        *step = "find a free loop device";
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        snprintf(dev_path, dev_path_len, "/dev/loop%d", n);
        *step = dev_path;
        dev = open(dev_path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (dev < 0) break;
        if (configure_loop(dev, image_fd, readonly) == 0) break;
        int err = errno;
        close(dev);
        dev = -1;
        errno = err;
        if (err != EBUSY) break; /* another process took this device first: take the next free one */
    }
    int err = errno;
    close(ctl);
    errno = err;
    return dev;
}

static void mount_disk(int index, const char *held, const char *mode, const char *name)
{
    int readonly = is_readonly(mode);
    char dir[32], dev_path[32];
    snprintf(dir, sizeof dir, "disk/%d", index);
    mkdir_or_fail(dir);
    int image = open(held, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (image < 0) cannot_mount_disk(name, "open the image", errno);
    const char *step;
    int dev = attach_loop(image, readonly, dev_path, sizeof dev_path, &step);
    if (dev < 0) cannot_mount_disk(name, step, errno);
    unsigned long flags = MS_NOSUID | MS_NODEV | (readonly ? MS_RDONLY : 0);
    if (mount(dev_path, dir, "ext4", flags, "noinit_itable") != 0) {
        int err = errno;
        ioctl(dev, LOOP_CLR_FD);
        cannot_mount_disk(name, "mount ext4", err);
    }
    /* The mount holds the device now; autoclear frees it when the mount goes. */
    close(dev);
    close(image);
}

static void bind_host_path(int index, const char *mode, const char *src, const char *identity)
{
    int readonly = is_readonly(mode);
    int owned = strcmp(identity, "-") == 0;
    char target[32];
    snprintf(target, sizeof target, "%s/%d", readonly ? "ro" : "rw", index);
    struct stat st;
    if (stat(src, &st) == 0 && S_ISDIR(st.st_mode)) {
        mkdir_or_fail(target);
    } else {
        int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) fail("cannot make %s: %s", target, strerror(errno));
        close(fd);
    }
    if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) != 0) {
        int err = errno;
        /* Blamed on the path only when it is no longer the checked object; else mount's reason. */
        if (!owned && !is_object(src, identity)) path_changed(src);
        fail("cannot bind-mount host path %s: %s", src, strerror(err));
    }
    if (!owned && !is_object(target, identity)) path_changed(src);
    /* Read-only with every submount: a plain read-only bind leaves submounts writable. */
    if (readonly && !make_readonly(target, AT_RECURSIVE)) {
        fail("cannot make host path %s read-only: %s%s", src, strerror(errno), errno == ENOSYS ? " (needs Linux 5.12 or later)" : "");
    }
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: matchlock-private-mounts ROOT IMAGE HIDE_NET DISK_MB NBINDS NDISKS [DISK...] [BIND...] CMD [ARGS...]\n");
        return 2;
    }
    const char *root = argv[1], *image = argv[2];
    if (strcmp(argv[3], "0") != 0 && strcmp(argv[3], "1") != 0) fail("bad HIDE_NET %s (0 or 1)", argv[3]);
    int hide_net = argv[3][0] == '1';
    long disk_mb = count_arg(argv[4], "disk size");
    long nbinds = count_arg(argv[5], "host path count");
    long ndisks = count_arg(argv[6], "disk count");
    if (disk_mb == 0) fail("bad disk size: 0");
    if (ndisks > 1024 || nbinds > 1024) fail("too many disks (%ld) or host paths (%ld): at most 1024 each", ndisks, nbinds);
    if (argc < 8 + 3 * (ndisks + nbinds)) fail("too few arguments for %ld disks and %ld host paths", ndisks, nbinds);
    char **arg = argv + 7;

    if (unshare(CLONE_NEWNS) != 0) {
        fail("cannot make a mount namespace: %s%s", strerror(errno), errno == EPERM ? " (needs root: CAP_SYS_ADMIN)" : "");
    }
    mount_or_fail("none", "/", NULL, MS_REC | MS_PRIVATE, NULL);
    mount_or_fail("matchlock-rootfs", root, "tmpfs", 0, ROOT_TMPFS);
    /* Relative names from here: a comma or colon in ROOT cannot change an option's meaning. */
    if (chdir(root) != 0) fail("cannot enter %s: %s", root, strerror(errno));
    static const char *const dirs[] = { "lower", "upper", "work", "merged", "ro", "rw", "disk", "writes" };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) mkdir_or_fail(dirs[i]);
    char writes_opts[64];
    snprintf(writes_opts, sizeof writes_opts, "size=%ldm,mode=700", disk_mb);
    mount_or_fail("matchlock-root-writes", "writes", "tmpfs", 0, writes_opts);

    for (long i = 0; i < ndisks; i++, arg += 3) mount_disk((int)i, arg[0], arg[1], arg[2]);
    for (long i = 0; i < nbinds; i++, arg += 3) bind_host_path((int)i, arg[0], arg[1], arg[2]);

    /* The image read-only even below the overlay: nothing in this namespace can write to it. */
    mount_or_fail(image, "lower", NULL, MS_BIND, NULL);
    if (!make_readonly("lower", 0)) fail("cannot make the image %s read-only: %s%s", image, strerror(errno), errno == ENOSYS ? " (needs Linux 5.12 or later)" : "");
    mount_or_fail("matchlock-rootfs", "merged", "overlay", 0, "lowerdir=lower,upperdir=upper,workdir=work");
    if (hide_net) mount_or_fail("matchlock", "/proc/sys/net", "tmpfs", 0, "size=4k");

    if (chdir("/") != 0) fail("cannot enter /: %s", strerror(errno));
    execvp(arg[0], arg);
    fail("cannot run %s: %s", arg[0], strerror(errno));
}
