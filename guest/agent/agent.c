/*
 * matchlock-agent: the one process the engine starts in every sandbox.
 *
 * It speaks the frame protocol of PROTOCOL.md on its stdin (engine -> agent) and stdout
 * (agent -> engine): runs commands, streams their output, reads, writes and lists files.
 * With `--channel PATH` (the micro-VM's virtio-serial port) it opens PATH read-write and uses
 * it for both directions instead; stderr stays where it was (the VM's console).
 * Single-threaded: one poll() loop multiplexes the channel, every exec's output pipes, the
 * SIGCHLD self-pipe and pending file reads. Writes to stdout block when the engine does not
 * read; that is the protocol's flow control.
 *
 * Build: gcc -std=c11 -O2 -static (glibc; nothing here needs NSS).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_VERSION "matchlock-agent 1"
#define HEADER_BYTES 9
#define MAX_PAYLOAD (1024 * 1024)
#define CHUNK (64 * 1024)
/*
 * Exec output throughput. Under gVisor's ptrace platform every syscall of the agent costs tens
 * of microseconds, and a command writing 4 KiB at a time would otherwise wake us for every
 * write: one poll, one read and one frame per 4 KiB. So an exec's pipes get a bigger buffer,
 * output is read in frames of up to OUT_CHUNK, and after a read that returned data the pipe
 * naps for OUT_NAP_NS before it is read again, so what the command writes meanwhile is read and
 * sent in one frame. The first output after a quiet spell is read at once; output written right
 * after earlier output is sent at most OUT_NAP_NS later. The nap never blocks the command: at
 * the rates a sandbox reaches, PIPE_BYTES takes far longer than a nap to fill.
 */
#define OUT_CHUNK (256 * 1024)
#define PIPE_BYTES (1024 * 1024)
#define OUT_NAP_NS 2000000LL
/*
 * When an exec's shell exits we read what is left in its pipes, but a background process that
 * inherited them may keep writing forever. Whatever the shell itself wrote fits in the pipe
 * buffer (at most pipe-max-size, 1 MiB by default), so a few MiB is a safe upper bound.
 */
#define DRAIN_CAP (4 * 1024 * 1024)
#define SHUTDOWN_REAP_MS 2000
#define EXIT_FLAG_OOM 1u

enum frame_type {
    T_EXEC = 0x01, T_SIGNAL = 0x02, T_WRITE_OPEN = 0x03, T_WRITE_DATA = 0x04,
    T_READ = 0x05, T_LIST = 0x06, T_PING = 0x07, T_WRITE_OPEN_TEMP = 0x08, T_CANCEL = 0x09,
    T_READ_STREAM = 0x0a, T_CREDIT = 0x0b,
    T_STDOUT = 0x10, T_STDERR = 0x11, T_EXIT = 0x12, T_OK = 0x13,
    T_ENTRIES = 0x14, T_ERROR = 0x15, T_READY = 0x16,
};

struct exec_op {
    struct exec_op *next;
    uint32_t id;
    pid_t pid;  /* also the process group id: the child calls setsid() */
    int out_fd; /* read ends of the child's stdout/stderr pipes, -1 once closed */
    int err_fd;
    int64_t out_nap_until; /* CLOCK_MONOTONIC ns before which the pipe is not read (see OUT_NAP_NS) */
    int64_t err_nap_until;
    long oom_kills_at_start; /* the kernel's OOM-kill count when the exec started, -1 if unknown */
};

struct write_op {
    struct write_op *next;
    uint32_t id;
    int fd;      /* -1 after a failed write */
    char *path;
    char *temp;  /* WRITE_OPEN_TEMP: the file being written, renamed over path at the end */
    char *error; /* first failure, reported when the write ends */
};

struct read_op {
    struct read_op *next;
    uint32_t id;
    int fd;
    char *path;
    int64_t credit; /* chunks it may still send; -1: unlimited (plain READ) */
};

struct agent {
    unsigned char *in; /* bytes read from the channel, not yet parsed */
    size_t in_len;
    unsigned char *chunk; /* scratch buffer for pipe and file reads, OUT_CHUNK bytes */
    struct exec_op *execs;
    struct write_op *writes;
    struct read_op *reads;
    int sigchld_fd;    /* read end of the SIGCHLD self-pipe */
    mode_t exec_umask; /* the umask we were started with; the agent itself runs with 0 */
    struct pollfd *pfds;
    struct exec_op **pfd_exec;
    size_t pfd_cap;
};

/* The signal handler's only way to reach the poll loop. */
static int sigchld_write_fd = -1;

/*
 * Exec output is coalesced (OUT_CHUNK frames, PIPE_BYTES pipes, OUT_NAP_NS naps) only on the
 * stdio channel, i.e. under gVisor, where it was measured to double throughput. In a TCG
 * micro-VM (--channel) reading the clock costs enough that a clock read per wakeup made
 * streams 2-3x slower, and the naps were not measured there, so the agent reads each pipe in
 * CHUNK pieces as soon as it is readable, as before, and never reads the clock for it.
 */
static bool coalesce_output = true;

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("matchlock-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die(1, "out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* The number after the first `key` in a small /proc file, or -1 if the file or the key is missing. */
static long proc_number(const char *path, const char *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    static char buf[16384];
    ssize_t n, len = 0;
    while (len < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += n;
    close(fd);
    buf[len] = 0;
    const char *at = strstr(buf, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

/*
 * How many processes the kernel's OOM killer has killed since boot (/proc/vmstat oom_kill), or
 * -1 where that is not available (gVisor, whose memory limit is enforced on the host side).
 */
static long oom_kill_count(void)
{
    return proc_number("/proc/vmstat", "\noom_kill ");
}

/*
 * Micro-VM only (the agent is the guest's PID 1 there): the memory the sandbox's workload may
 * hold is capped a little under the memory the guest has free when the agent starts. Why: a
 * command that outgrows the VM otherwise drives the guest kernel into global reclaim, which
 * under TCG thrashes on the image's file pages (everyone's executables) for 19 s to 9 minutes,
 * measured, before the OOM killer fires. At a cgroup's limit only the cgroup's own pages are
 * reclaimable, so the OOM killer comes within a second or so and picks the largest command.
 *
 * The workload is two things, so the cap sits on a parent cgroup with two leaves:
 *   WORKLOAD_CGROUP/exec   every command (and what commands write to the tmpfs mounts);
 *   WORKLOAD_CGROUP/files  the tmpfs pages of the files the agent writes for the engine.
 * tmpfs pages are charged to the cgroup of the process that writes them, for as long as they
 * exist; charged to the agent's, an upload would take memory the commands' cap still counts as
 * free, and a hog could again push the guest into global reclaim. So the agent steps into
 * `files` around each write(2) of file data (write_charged_to_workload) and back out at once.
 *
 * The agent itself lives in the root cgroup, outside the cap: its own allocations must never
 * be the ones failing (a page fault at a memcg limit with nothing left to kill is retried
 * forever), and the reserve the cap leaves is where the agent and the kernel find room. The
 * OOM killer never picks PID 1 anyway, so memory.min/low for the agent would add nothing.
 * When uploads fill the cap: the OOM killer takes the largest command if there is one, else
 * the write fails, reported as ENOSPC (a full disk is what an upload into tmpfs looks like).
 * memory.oom.group stays 0: one hog, not every command, is killed. Best effort: without the cgroups, commands run under the VM's limit alone.
 */
#define CGROUP_ROOT "/sys/fs/cgroup"
#define WORKLOAD_CGROUP CGROUP_ROOT "/matchlock"
#define EXEC_CGROUP WORKLOAD_CGROUP "/exec"
#define FILES_CGROUP WORKLOAD_CGROUP "/files"

/* cgroup.procs of the cgroups above (see setup_workload_memory_cgroup), or -1 without them. */
static int exec_cgroup_procs_fd = -1;
static int files_cgroup_procs_fd = -1;
static int root_cgroup_procs_fd = -1;

static bool write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

/* Moves the calling process into the cgroup whose cgroup.procs is `procs_fd`. */
static bool join_cgroup(int procs_fd)
{
    ssize_t w;
    do w = write(procs_fd, "0", 1); /* "0": the writer */
    while (w < 0 && errno == EINTR);
    return w == 1;
}

/*
 * The workload's task cap (`--exec-tasks-max`): a fork bomb in a command stops at it with
 * EAGAIN, inside the guest, and the agent (outside the cgroup) can still start commands and
 * kill what is running. The guest kernel exempts root from RLIMIT_NPROC, so a cgroup it is.
 */
static void limit_workload_tasks(const char *tasks_max)
{
    if (!write_text(CGROUP_ROOT "/cgroup.subtree_control", "+pids") ||
        !write_text(WORKLOAD_CGROUP "/pids.max", tasks_max))
        fprintf(stderr, "matchlock-agent: no task limit for commands (%s)\n", strerror(errno));
}

static void setup_workload_memory_cgroup(const char *tasks_max)
{
    long total_kb = proc_number("/proc/meminfo", "MemTotal:");
    long avail_kb = proc_number("/proc/meminfo", "\nMemFree:");
    /* Left for the agent, the kernel's own growth and the page cache of what commands run. */
    long reserve_kb = 4096 + total_kb / 32;
    char limit[32];
    const char *step = "read /proc/meminfo";
    errno = 0;
    if (total_kb <= 0 || avail_kb <= reserve_kb) goto fail;
    snprintf(limit, sizeof limit, "%ld", (avail_kb - reserve_kb) * 1024);
    step = "mount cgroup2";
    /* favordynmods: the agent moves itself per file write; without it each move waits for RCU. */
    if (mount("cgroup2", CGROUP_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods") != 0 &&
        mount("cgroup2", CGROUP_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) goto fail;
    step = "enable the memory controller";
    if (!write_text(CGROUP_ROOT "/cgroup.subtree_control", "+memory")) goto fail;
    step = "create " WORKLOAD_CGROUP;
    if (mkdir(WORKLOAD_CGROUP, 0755) != 0 && errno != EEXIST) goto fail;
    step = "set memory.max";
    if (!write_text(WORKLOAD_CGROUP "/memory.max", limit)) goto fail;
    step = "enable the memory controller below " WORKLOAD_CGROUP;
    if (!write_text(WORKLOAD_CGROUP "/cgroup.subtree_control", "+memory")) goto fail;
    step = "create the exec and files cgroups";
    if ((mkdir(EXEC_CGROUP, 0755) != 0 && errno != EEXIST) || (mkdir(FILES_CGROUP, 0755) != 0 && errno != EEXIST)) goto fail;
    step = "open cgroup.procs";
    int exec_fd = open(EXEC_CGROUP "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    int files_fd = open(FILES_CGROUP "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    int root_fd = open(CGROUP_ROOT "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (exec_fd >= 0 && files_fd >= 0 && root_fd >= 0) {
        exec_cgroup_procs_fd = exec_fd, files_cgroup_procs_fd = files_fd, root_cgroup_procs_fd = root_fd;
        if (tasks_max) limit_workload_tasks(tasks_max);
        return;
    }
    close_fd(&exec_fd);
    close_fd(&files_fd);
    close_fd(&root_fd);
fail:
    fprintf(stderr, "matchlock-agent: no memory cgroup for commands (%s: %s); they run under the VM's limit alone\n",
            step, errno ? strerror(errno) : "too little memory");
}

/*
 * write(2) of file data for the engine, the new pages charged to the workload's cap (see
 * above). Memory refused at the cap is reported as ENOSPC: the upload ran out of room.
 */
static ssize_t write_charged_to_workload(int fd, const void *p, size_t len)
{
    /* The SIGCHLD handler's self-pipe write would be charged to `files` too: it waits. */
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    bool moved = files_cgroup_procs_fd >= 0 && sigprocmask(SIG_BLOCK, &chld, &old) == 0;
    if (moved && !join_cgroup(files_cgroup_procs_fd)) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        moved = false;
    }
    ssize_t n = write(fd, p, len);
    int saved = errno;
    if (moved) {
        if (!join_cgroup(root_cgroup_procs_fd)) {
            /*
             * Not expected (the root cgroup takes any process). The agent must not live under
             * the cap (see above), so the cap goes instead: commands then run under the VM's
             * limit alone, as without the cgroups.
             */
            int why = errno;
            bool lifted = write_text(WORKLOAD_CGROUP "/memory.max", "max");
            fprintf(stderr, "matchlock-agent: cannot leave %s (%s); %s\n", FILES_CGROUP, strerror(why),
                    lifted ? "lifted the workload's memory cap"
                           : "could not lift the workload's memory cap either: the agent may stall at it");
            close_fd(&files_cgroup_procs_fd);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    errno = n < 0 && saved == ENOMEM ? ENOSPC : saved;
    return n;
}

/* ---------- channel output ---------- */

static _Noreturn void shutdown_agent(struct agent *a, int code);

/* Writes one whole frame to fd 1, blocking as long as the engine does not read. */
static void send_frame(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len)
{
    unsigned char hdr[HEADER_BYTES] = {
        type, id >> 24, id >> 16, id >> 8, id,
        (uint32_t)len >> 24, (uint32_t)len >> 16, (uint32_t)len >> 8, (uint32_t)len,
    };
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    struct iovec *v = iov;
    int cnt = len ? 2 : 1;
    while (cnt > 0) {
        ssize_t n = writev(1, v, cnt);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { /* someone made the shared file description non-blocking */
                struct pollfd p = {.fd = 1, .events = POLLOUT};
                poll(&p, 1, -1);
                continue;
            }
            fprintf(stderr, "matchlock-agent: channel write failed: %s\n", strerror(errno));
            shutdown_agent(a, 1);
        }
        while (cnt > 0 && (size_t)n >= v->iov_len) {
            n -= v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
        }
    }
}

static void send_error(struct agent *a, uint32_t id, const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    send_frame(a, T_ERROR, id, msg, n);
}

/* ---------- payload helpers ---------- */

/* Number of NUL-terminated strings in a payload, or -1 if it does not end with a NUL. */
static int count_strings(const unsigned char *p, size_t len)
{
    if (len == 0) return 0;
    if (p[len - 1] != 0) return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += p[i] == 0;
    return n;
}

/* Points out[i] at each string of a payload that count_strings() accepted (no copies). */
static void split_strings(const unsigned char *p, size_t len, const char **out)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == 0) {
            *out++ = (const char *)p + start;
            start = i + 1;
        }
    }
}

/* Strict unsigned decimal: digits only, no sign or blanks, value <= max. */
static bool parse_decimal(const char *s, unsigned long max, unsigned long *out)
{
    if (!*s) return false;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = *s - '0';
        if (v > (max - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/*
 * "uid" or "uid:gid", numeric. A bare uid runs with gid 0, as OCI runtimes do for a uid
 * without a passwd entry: the engine resolves names and primary groups on the host side.
 */
static bool parse_user(const char *s, uid_t *uid, gid_t *gid)
{
    char buf[64];
    size_t n = strlen(s);
    if (n >= sizeof buf) return false;
    memcpy(buf, s, n + 1);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    unsigned long u, g = 0;
    /* (uid_t)-1 means "unchanged" to setuid(), so it is not a valid id */
    if (!parse_decimal(buf, UINT32_MAX - 1, &u)) return false;
    if (colon && !parse_decimal(colon + 1, UINT32_MAX - 1, &g)) return false;
    *uid = u;
    *gid = g;
    return true;
}

static bool id_in_use(const struct agent *a, uint32_t id)
{
    for (const struct exec_op *e = a->execs; e; e = e->next)
        if (e->id == id) return true;
    for (const struct write_op *w = a->writes; w; w = w->next)
        if (w->id == id) return true;
    for (const struct read_op *r = a->reads; r; r = r->next)
        if (r->id == id) return true;
    return false;
}

/* ---------- exec confinement ---------- */

/*
 * Unless the sandbox is privileged (--privileged), every command starts as a container would
 * under Docker's defaults, on both engines: the capability set below (bounding, permitted and
 * effective; nothing inheritable or ambient), no_new_privs, and a seccomp filter. The agent
 * itself keeps what it has: it is the sandbox's PID 1, and a command cannot ptrace or signal a
 * process whose capabilities exceed its own.
 */
static bool confine_execs = true;

#define CAPS(c) (1ULL << (c))
/*
 * Docker's default set without CAP_NET_RAW (0xa80405fb), as gVisor runs Docker's (it withholds
 * raw sockets); the network seal drops raw IP anyway. The engine's gVisor spec has the same list.
 */
static const uint64_t DEFAULT_CAPS =
    CAPS(CAP_CHOWN) | CAPS(CAP_DAC_OVERRIDE) | CAPS(CAP_FOWNER) | CAPS(CAP_FSETID) | CAPS(CAP_KILL) |
    CAPS(CAP_SETGID) | CAPS(CAP_SETUID) | CAPS(CAP_SETPCAP) | CAPS(CAP_NET_BIND_SERVICE) |
    CAPS(CAP_SYS_CHROOT) | CAPS(CAP_MKNOD) | CAPS(CAP_AUDIT_WRITE) | CAPS(CAP_SETFCAP);

/*
 * System calls a confined command gets EPERM for (upstream's list, plus what Docker's default
 * profile keeps from containers and no capability guards): other processes' memory, kernel
 * keyrings, BPF, userfaultfd, perf, io_uring, kexec, new user namespaces (clone/unshare with
 * CLONE_NEWUSER; clone3 says ENOSYS so that libc falls back to clone, whose flags we can see),
 * and any system call of another ABI (i386, x32), whose numbers this list does not cover.
 */
static const int DENIED_SYSCALLS[] = {
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kexec_load, SYS_kexec_file_load,
    SYS_add_key, SYS_request_key, SYS_keyctl, SYS_bpf, SYS_userfaultfd, SYS_perf_event_open,
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register, SYS_open_by_handle_at,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_acct, SYS_swapon, SYS_swapoff,
    SYS_reboot, SYS_pivot_root, SYS_setns,
};
#define X32_SYSCALL_BIT 0x40000000
#define DENY SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)
#define NR_DENIED (sizeof DENIED_SYSCALLS / sizeof *DENIED_SYSCALLS)
#define FILTER_LEN (2 * NR_DENIED + 16)

static struct sock_filter exec_filter[FILTER_LEN];
static struct sock_fprog exec_filter_prog;

/* Built once at start: the child only installs it (no allocation after fork). */
static void build_exec_filter(void)
{
    struct sock_filter *f = exec_filter;
    size_t n = 0;
#define ADD(stmt) (f[n++] = (struct sock_filter)stmt)
    ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    ADD(BPF_STMT(BPF_RET | BPF_K, DENY));
    ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    ADD(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
    ADD(BPF_STMT(BPF_RET | BPF_K, DENY));
    for (size_t i = 0; i < NR_DENIED; i++) {
        ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)DENIED_SYSCALLS[i], 0, 1));
        ADD(BPF_STMT(BPF_RET | BPF_K, DENY));
    }
    ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1));
    ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
    /* clone and unshare: flags are the first argument (its low 32 bits hold every CLONE_NEW*). */
    ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0));
    ADD(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 3));
    ADD(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
    ADD(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1));
    ADD(BPF_STMT(BPF_RET | BPF_K, DENY));
    ADD(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef ADD
    exec_filter_prog = (struct sock_fprog){.len = (unsigned short)n, .filter = exec_filter};
}

/* The highest capability number this kernel knows (gVisor's may know fewer than Linux's). */
static int last_cap = -1;

static void find_last_cap(void)
{
    while (prctl(PR_CAPBSET_READ, last_cap + 1, 0, 0, 0) >= 0) last_cap++;
}

/* In the child, as root, before any user change: bounding set, then permitted/effective, to the default set. */
static bool drop_capabilities(void)
{
    for (int c = 0; c <= last_cap; c++)
        if (!(DEFAULT_CAPS & CAPS(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) return false;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return false;
    uint64_t keep = (((uint64_t)data[1].permitted << 32) | data[0].permitted) & DEFAULT_CAPS;
    for (int i = 0; i < 2; i++) {
        data[i].permitted = data[i].effective = (uint32_t)(keep >> (32 * i));
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) != 0) return false;
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0 || errno == EINVAL;
}

/* Last before execve: no_new_privs (which also lets an unprivileged process install the filter), then the filter. */
static bool restrict_syscalls(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &exec_filter_prog, 0, 0) == 0;
}

/* ---------- EXEC ---------- */

/* What the child reports through its error pipe when it cannot get to execve(). */
enum child_stage { ST_SETSID, ST_DEVNULL, ST_DUP, ST_CHDIR, ST_CAPS, ST_SETGROUPS, ST_SETGID, ST_SETUID, ST_SECCOMP, ST_EXEC };
struct child_error {
    int stage;
    int err;
};

struct child_setup {
    const char *cwd;
    bool as_user;
    uid_t uid;
    gid_t gid;
    mode_t umask;
    int out_w, err_w, errpipe_w;
    char *const *argv;
    char *const *envp;
};

static _Noreturn void child_fail(const struct child_setup *cs, int stage)
{
    struct child_error ce = {stage, errno};
    ssize_t r = write(cs->errpipe_w, &ce, sizeof ce);
    (void)r; /* nothing else to do: the parent sees EOF and a dead child */
    _exit(127);
}

/* Runs in the forked child; only async-signal-safe calls (we fork from a single thread). */
static _Noreturn void run_child(const struct child_setup *cs)
{
    /* The agent ignores SIGPIPE and handles SIGCHLD; the command must start with defaults. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    umask(cs->umask);
    if (exec_cgroup_procs_fd >= 0) join_cgroup(exec_cgroup_procs_fd); /* best effort, see setup_workload_memory_cgroup */

    if (setsid() < 0) child_fail(cs, ST_SETSID);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) child_fail(cs, ST_DEVNULL);
    /* All three sources are >= 3 (fds 0-2 are always open in the agent), so no overlap. */
    if (dup2(null_fd, 0) < 0 || dup2(cs->out_w, 1) < 0 || dup2(cs->err_w, 2) < 0) child_fail(cs, ST_DUP);

    /* Like runc: chdir as root first; if that is refused, retry as the target user. */
    bool chdir_later = false;
    if (chdir(cs->cwd) < 0) {
        if (!cs->as_user || (errno != EACCES && errno != EPERM)) child_fail(cs, ST_CHDIR);
        chdir_later = true;
    }
    if (confine_execs && !drop_capabilities()) child_fail(cs, ST_CAPS);
    if (cs->as_user) {
        if (setgroups(0, NULL) < 0) child_fail(cs, ST_SETGROUPS);
        if (setgid(cs->gid) < 0) child_fail(cs, ST_SETGID);
        if (setuid(cs->uid) < 0) child_fail(cs, ST_SETUID);
    }
    if (chdir_later && chdir(cs->cwd) < 0) child_fail(cs, ST_CHDIR);
    if (confine_execs && !restrict_syscalls()) child_fail(cs, ST_SECCOMP);
    execve("/bin/sh", cs->argv, cs->envp);
    child_fail(cs, ST_EXEC);
}

static void report_child_error(struct agent *a, uint32_t id, const struct child_setup *cs,
                               const struct child_error *ce)
{
    const char *why = strerror(ce->err);
    switch (ce->stage) {
    case ST_SETSID: send_error(a, id, "setsid: %s", why); break;
    case ST_CAPS: send_error(a, id, "dropping capabilities: %s", why); break;
    case ST_SECCOMP: send_error(a, id, "no_new_privs and seccomp filter: %s", why); break;
    case ST_DEVNULL: send_error(a, id, "open /dev/null: %s", why); break;
    case ST_DUP: send_error(a, id, "dup2: %s", why); break;
    case ST_CHDIR: send_error(a, id, "chdir %s: %s", cs->cwd, why); break;
    case ST_SETGROUPS: send_error(a, id, "setgroups: %s", why); break;
    case ST_SETGID: send_error(a, id, "setgid %u: %s", (unsigned)cs->gid, why); break;
    case ST_SETUID: send_error(a, id, "setuid %u: %s", (unsigned)cs->uid, why); break;
    default: send_error(a, id, "exec /bin/sh: %s", why); break;
    }
}

static void start_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    int n = count_strings(p, len);
    if (n < 3) {
        send_error(a, id, "malformed EXEC payload");
        return;
    }
    const char **s = xmalloc((n + 1) * sizeof *s);
    split_strings(p, len, s);
    s[n] = NULL;

    struct child_setup cs = {.cwd = s[0][0] ? s[0] : "/", .as_user = s[1][0] != 0, .umask = a->exec_umask};
    const char *argv[] = {"sh", "-c", s[2], NULL};
    cs.argv = (char *const *)argv;
    cs.envp = (char *const *)(s + 3);

    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, ep[2] = {-1, -1};
    if (cs.as_user && !parse_user(s[1], &cs.uid, &cs.gid)) {
        send_error(a, id, "invalid user: %s", s[1]);
        goto out;
    }
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
        send_error(a, id, "pipe: %s", strerror(errno));
        goto out;
    }
    cs.out_w = outp[1];
    cs.err_w = errp[1];
    cs.errpipe_w = ep[1];

    pid_t pid = fork();
    if (pid < 0) {
        send_error(a, id, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) run_child(&cs);
    close_fd(&outp[1]);
    close_fd(&errp[1]);
    close_fd(&ep[1]);

    /*
     * Classic CLOEXEC error pipe: EOF means execve() succeeded (so setsid() is done and SIGNAL
     * can target the group right away); a record means the child failed and is exiting.
     */
    struct child_error ce;
    ssize_t r;
    do r = read(ep[0], &ce, sizeof ce);
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)sizeof ce) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        report_child_error(a, id, &cs, &ce);
        goto out;
    }

    struct exec_op *e = xmalloc(sizeof *e);
    *e = (struct exec_op){.next = a->execs, .id = id, .pid = pid, .out_fd = outp[0], .err_fd = errp[0],
                          .oom_kills_at_start = oom_kill_count()};
    set_nonblock(e->out_fd, true);
    set_nonblock(e->err_fd, true);
    if (coalesce_output) { /* best effort: a smaller pipe only costs throughput */
        fcntl(e->out_fd, F_SETPIPE_SZ, PIPE_BYTES);
        fcntl(e->err_fd, F_SETPIPE_SZ, PIPE_BYTES);
    }
    a->execs = e;
    outp[0] = errp[0] = -1; /* now owned by e */
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&outp[i]);
        close_fd(&errp[i]);
        close_fd(&ep[i]);
    }
    free(s);
}

enum pump_result { PUMP_DATA, PUMP_EMPTY, PUMP_CLOSED };

/* How much of an exec's pipe one read takes (see coalesce_output). */
static size_t out_chunk(void)
{
    return coalesce_output ? OUT_CHUNK : CHUNK;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Forwards one chunk from an exec's pipe; closes the pipe on EOF or error. After data that did
 * not fill the buffer, sets *nap_until: the writer is slower than us, so let it write more first.
 */
static enum pump_result pump(struct agent *a, uint32_t id, int *fd, uint8_t type, int64_t *nap_until)
{
    if (*fd < 0) return PUMP_CLOSED;
    size_t room = out_chunk();
    ssize_t n = read(*fd, a->chunk, room);
    if (n > 0) {
        send_frame(a, type, id, a->chunk, n);
        if (nap_until && coalesce_output) *nap_until = (size_t)n < room ? now_ns() + OUT_NAP_NS : 0;
        return PUMP_DATA;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return PUMP_EMPTY;
    close_fd(fd);
    return PUMP_CLOSED;
}

/* After the shell exited: forward what is already in the pipe, never wait for more. */
static void drain(struct agent *a, uint32_t id, int *fd, uint8_t type)
{
    for (size_t total = 0; total < DRAIN_CAP; total += out_chunk())
        if (pump(a, id, fd, type, NULL) != PUMP_DATA) break;
    close_fd(fd);
}

/* We are PID 1: reap everything, and turn the death of an exec's shell into its EXIT. */
static void reap_children(struct agent *a)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct exec_op **pp = &a->execs;
        while (*pp && (*pp)->pid != pid) pp = &(*pp)->next;
        struct exec_op *e = *pp;
        if (!e) continue; /* an orphan we inherited */
        *pp = e->next;
        drain(a, e->id, &e->out_fd, T_STDOUT);
        drain(a, e->id, &e->err_fd, T_STDERR);
        int32_t code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        int32_t sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        /*
         * The OOM killer's SIGKILL looks like any other; a SIGKILL while the guest's OOM-kill
         * count went up is taken as the OOM killer's (see PROTOCOL.md, EXIT flags).
         */
        bool killed = sig == SIGKILL || (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
        long oom_now = killed && e->oom_kills_at_start >= 0 ? oom_kill_count() : -1;
        uint32_t flags = oom_now > e->oom_kills_at_start ? EXIT_FLAG_OOM : 0;
        unsigned char exit_payload[12] = {
            (uint32_t)code >> 24, (uint32_t)code >> 16, (uint32_t)code >> 8, (uint32_t)code,
            (uint32_t)sig >> 24, (uint32_t)sig >> 16, (uint32_t)sig >> 8, (uint32_t)sig,
            flags >> 24, flags >> 16, flags >> 8, flags,
        };
        send_frame(a, T_EXIT, e->id, exit_payload, sizeof exit_payload);
        free(e);
    }
}

static void signal_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    /* A malformed SIGNAL gets no ERROR: that would end the engine's view of a live exec. */
    if (len != 1) return;
    for (struct exec_op *e = a->execs; e; e = e->next)
        if (e->id == id) kill(-e->pid, p[0]);
}

/* ---------- WRITE_OPEN / WRITE_DATA ---------- */

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

static void write_open(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool to_temp)
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
static void free_write(struct write_op *w)
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

static void write_data(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
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

/* ---------- READ ---------- */

static void start_read(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool metered)
{
    if (count_strings(p, len) != 1) {
        send_error(a, id, "malformed READ payload");
        return;
    }
    const char *path = (const char *)p;
    /* O_NONBLOCK: opening a FIFO must not block; it is rejected by the S_ISREG check anyway */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        send_error(a, id, "read %s: %s", path, strerror(errno));
        return;
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) < 0) bad = strerror(errno);
    else if (S_ISDIR(st.st_mode)) bad = strerror(EISDIR);
    else if (!S_ISREG(st.st_mode)) bad = "not a regular file";
    if (bad) {
        send_error(a, id, "read %s: %s", path, bad);
        close(fd);
        return;
    }
    set_nonblock(fd, false);
    struct read_op *r = xmalloc(sizeof *r);
    *r = (struct read_op){.id = id, .fd = fd, .path = xstrdup(path), .credit = metered ? 0 : -1};
    /* append, so reads are served in the order they were asked for */
    struct read_op **pp = &a->reads;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
}

/* One chunk of every pending read per loop turn: a huge file does not starve anything. */
static void step_reads(struct agent *a)
{
    struct read_op **pp = &a->reads;
    while (*pp) {
        struct read_op *r = *pp;
        if (r->credit == 0) { /* the engine has not asked for more yet */
            pp = &r->next;
            continue;
        }
        /* Big reads on both channels: under ptrace every read and frame is a syscall stop, and the
         * engine's credit counts chunks, so 64 KiB chunks would quarter its 2 MiB read-ahead. */
        ssize_t n = read(r->fd, a->chunk, OUT_CHUNK);
        if (n < 0 && errno == EINTR) {
            pp = &r->next;
            continue;
        }
        if (n > 0) {
            if (r->credit > 0) r->credit--;
            send_frame(a, T_STDOUT, r->id, a->chunk, n);
            pp = &r->next;
            continue;
        }
        if (n == 0) send_frame(a, T_OK, r->id, NULL, 0);
        else send_error(a, r->id, "read %s: %s", r->path, strerror(errno));
        *pp = r->next;
        close(r->fd);
        free(r->path);
        free(r);
    }
}

static bool reads_can_step(const struct agent *a)
{
    for (const struct read_op *r = a->reads; r; r = r->next)
        if (r->credit != 0) return true;
    return false;
}

/* CREDIT: lets a READ_STREAM send that many more chunks. */
static void add_credit(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    if (len != 4) return;
    uint32_t more = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    for (struct read_op *r = a->reads; r; r = r->next) {
        if (r->id != id || r->credit < 0) continue;
        r->credit += more;
        if (r->credit > UINT32_MAX) r->credit = UINT32_MAX;
    }
}

/* ---------- CANCEL ---------- */

/* Ends a write (its temporary file is removed) or a read early; it reports ERROR "cancelled". */
static void cancel_op(struct agent *a, uint32_t id)
{
    for (struct write_op **pp = &a->writes; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        struct write_op *w = *pp;
        *pp = w->next;
        free_write(w);
        send_error(a, id, "cancelled");
        return;
    }
    for (struct read_op **pp = &a->reads; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        struct read_op *r = *pp;
        *pp = r->next;
        close(r->fd);
        free(r->path);
        free(r);
        send_error(a, id, "cancelled");
        return;
    }
}

/* ---------- LIST ---------- */

static void list_dir(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    if (count_strings(p, len) != 1) {
        send_error(a, id, "malformed LIST payload");
        return;
    }
    const char *path = (const char *)p;
    DIR *d = opendir(path);
    if (!d) {
        send_error(a, id, "list %s: %s", path, strerror(errno));
        return;
    }
    unsigned char *buf = xmalloc(MAX_PAYLOAD);
    size_t used = 0;
    struct dirent *de;
    for (;;) {
        errno = 0;
        if (!(de = readdir(d))) break;
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* gone meanwhile */
        char rec[NAME_MAX + 64];
        size_t nl = strlen(name);
        if (nl > NAME_MAX) continue; /* cannot happen on Linux; keeps rec safe */
        memcpy(rec, name, nl + 1);
        int nums = snprintf(rec + nl + 1, sizeof rec - nl - 1, "%lld%c%u", (long long)st.st_size, 0,
                            (unsigned)st.st_mode);
        size_t rl = nl + 1 + nums + 1; /* snprintf's terminating NUL ends the mode field */
        if (used + rl > MAX_PAYLOAD) {
            send_frame(a, T_ENTRIES, id, buf, used);
            used = 0;
        }
        memcpy(buf + used, rec, rl);
        used += rl;
    }
    int err = errno;
    if (used > 0) send_frame(a, T_ENTRIES, id, buf, used);
    if (err) send_error(a, id, "list %s: %s", path, strerror(err));
    else send_frame(a, T_OK, id, NULL, 0);
    free(buf);
    closedir(d);
}

/* ---------- channel input ---------- */

static void dispatch(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len)
{
    bool starts_op = type == T_EXEC || type == T_WRITE_OPEN || type == T_READ || type == T_WRITE_OPEN_TEMP ||
                     type == T_READ_STREAM;
    if (starts_op && id_in_use(a, id)) {
        send_error(a, id, "operation id %u is already in use", (unsigned)id);
        return;
    }
    switch (type) {
    case T_EXEC: start_exec(a, id, p, len); break;
    case T_SIGNAL: signal_exec(a, id, p, len); break;
    case T_WRITE_OPEN: write_open(a, id, p, len, false); break;
    case T_WRITE_OPEN_TEMP: write_open(a, id, p, len, true); break;
    case T_WRITE_DATA: write_data(a, id, p, len); break;
    case T_READ: start_read(a, id, p, len, false); break;
    case T_READ_STREAM: start_read(a, id, p, len, true); break;
    case T_CREDIT: add_credit(a, id, p, len); break;
    case T_CANCEL: cancel_op(a, id); break;
    case T_LIST: list_dir(a, id, p, len); break;
    case T_PING: send_frame(a, T_OK, id, NULL, 0); break;
    default: break; /* unknown types are ignored (forward compatibility) */
    }
}

/* One read() from the channel, then every complete frame in the buffer is handled. */
static void read_channel(struct agent *a)
{
    ssize_t n = read(0, a->in + a->in_len, HEADER_BYTES + MAX_PAYLOAD - a->in_len);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) return;
        if (errno == EIO) shutdown_agent(a, 0); /* a terminal-like channel device hung up: EOF */
        fprintf(stderr, "matchlock-agent: channel read failed: %s\n", strerror(errno));
        shutdown_agent(a, 1);
    }
    if (n == 0) shutdown_agent(a, 0);
    a->in_len += n;

    size_t off = 0;
    while (a->in_len - off >= HEADER_BYTES) {
        const unsigned char *h = a->in + off;
        uint32_t id = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
        uint32_t len = (uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
        if (len > MAX_PAYLOAD) {
            fprintf(stderr, "matchlock-agent: protocol error: frame of %u bytes exceeds %d\n",
                    (unsigned)len, MAX_PAYLOAD);
            shutdown_agent(a, 2);
        }
        if (a->in_len - off < HEADER_BYTES + (size_t)len) break;
        dispatch(a, h[0], id, h + HEADER_BYTES, len);
        off += HEADER_BYTES + len;
    }
    /* The buffer holds one maximal frame, so after this there is always room to read more. */
    memmove(a->in, a->in + off, a->in_len - off);
    a->in_len -= off;
}

/* ---------- lifecycle ---------- */

/* EOF on the channel (or a fatal error): kill every exec's process group and exit. */
static _Noreturn void shutdown_agent(struct agent *a, int code)
{
    for (struct exec_op *e = a->execs; e; e = e->next) kill(-e->pid, SIGKILL);
    /* a transfer that never finished must not leave its temporary file behind */
    for (struct write_op *w = a->writes; w; w = w->next)
        if (w->temp) unlink(w->temp);
    /*
     * Reap the killed shells before exiting (bounded), so that none of them lingers as a
     * zombie when we are not PID 1. As PID 1 our exit tears the whole sandbox down anyway.
     */
    for (int waited = 0; a->execs && waited < SHUTDOWN_REAP_MS; waited += 10) {
        pid_t pid;
        int status;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (struct exec_op **pp = &a->execs; *pp; pp = &(*pp)->next) {
                if ((*pp)->pid == pid) {
                    struct exec_op *e = *pp;
                    *pp = e->next;
                    free(e);
                    break;
                }
            }
        }
        if (pid < 0 && errno == ECHILD) break;
        if (a->execs) poll(NULL, 0, 10);
    }
    exit(code);
}

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    char b = 0;
    ssize_t r = write(sigchld_write_fd, &b, 1); /* EAGAIN: a wakeup is already pending */
    (void)r;
    errno = saved;
}

static void setup(struct agent *a)
{
    /* fds 0-2 must exist, or pipes could land on them and be clobbered in the child */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) die(1, "cannot open /dev/null");

    signal(SIGPIPE, SIG_IGN);
    int sp[2];
    if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) die(1, "pipe: %s", strerror(errno));
    a->sigchld_fd = sp[0];
    sigchld_write_fd = sp[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) < 0) die(1, "sigaction: %s", strerror(errno));

    /* Files and directories we create get exact modes; commands get the umask we were given. */
    a->exec_umask = umask(0);
    a->in = xmalloc(HEADER_BYTES + MAX_PAYLOAD);
    a->chunk = xmalloc(OUT_CHUNK);
}

/*
 * Rebuilds the poll set: channel, SIGCHLD pipe, then every open exec pipe that is not napping.
 * *wake_ns is set to the end of the earliest nap, or -1 when no pipe naps.
 */
static size_t build_pollset(struct agent *a, int64_t *wake_ns)
{
    size_t need = 2;
    for (struct exec_op *e = a->execs; e; e = e->next) need += 2;
    if (need > a->pfd_cap) {
        a->pfd_cap = need * 2;
        free(a->pfds);
        free(a->pfd_exec);
        a->pfds = xmalloc(a->pfd_cap * sizeof *a->pfds);
        a->pfd_exec = xmalloc(a->pfd_cap * sizeof *a->pfd_exec);
    }
    size_t n = 0;
    int64_t now = -1; /* read only when some pipe naps: the clock is slow in a TCG guest */
    *wake_ns = -1;
    a->pfds[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
    a->pfds[n++] = (struct pollfd){.fd = a->sigchld_fd, .events = POLLIN};
    for (struct exec_op *e = a->execs; e; e = e->next) {
        int fds[2] = {e->out_fd, e->err_fd};
        int64_t *naps[2] = {&e->out_nap_until, &e->err_nap_until};
        for (int i = 0; i < 2; i++) {
            if (fds[i] < 0) continue;
            if (*naps[i] > 0 && now < 0) now = now_ns();
            if (*naps[i] > 0 && *naps[i] > now) {
                if (*wake_ns < 0 || *naps[i] < *wake_ns) *wake_ns = *naps[i];
                continue;
            }
            *naps[i] = 0; /* the nap is over: an idle pipe must not keep us reading the clock */
            a->pfd_exec[n] = e;
            a->pfds[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        }
    }
    return n;
}

/*
 * `--channel PATH`: put the device on fds 0 and 1, so the rest of the agent needs no second
 * code path. Done before setup(), which fills any fd 0-2 still missing with /dev/null.
 */
static void open_channel(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) die(1, "open %s: %s", path, strerror(errno));
    coalesce_output = false;
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0) die(1, "dup2 %s: %s", path, strerror(errno));
    if (fd > 1) close(fd);
}

int main(int argc, char **argv)
{
    bool workload_cgroup = false;
    const char *tasks_max = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--channel") && i + 1 < argc) open_channel(argv[++i]);
        else if (!strcmp(argv[i], "--exec-memory-cgroup")) workload_cgroup = true;
        else if (!strcmp(argv[i], "--exec-tasks-max") && i + 1 < argc) tasks_max = argv[++i];
        else if (!strcmp(argv[i], "--privileged")) confine_execs = false;
        else die(2, "usage: matchlock-agent [--channel DEVICE] [--exec-memory-cgroup [--exec-tasks-max N]] [--privileged] (default: stdin/stdout)");
    }
    if (workload_cgroup) setup_workload_memory_cgroup(tasks_max);
    find_last_cap();
    build_exec_filter();
    struct agent agent;
    memset(&agent, 0, sizeof agent);
    struct agent *a = &agent;
    setup(a);
    send_frame(a, T_READY, 0, AGENT_VERSION, strlen(AGENT_VERSION));

    for (;;) {
        int64_t wake_ns;
        size_t n = build_pollset(a, &wake_ns);
        struct timespec zero = {0, 0}, nap, *timeout = NULL;
        if (reads_can_step(a)) {
            timeout = &zero;
        } else if (wake_ns >= 0) {
            int64_t left = wake_ns - now_ns();
            if (left < 0) left = 0;
            nap = (struct timespec){.tv_sec = left / 1000000000LL, .tv_nsec = left % 1000000000LL};
            timeout = &nap;
        }
        if (ppoll(a->pfds, n, timeout, NULL) < 0 && errno != EINTR) die(1, "poll: %s", strerror(errno));

        /*
         * Exec output first, channel input next, exits last: only reap_children() frees exec
         * entries, so the pointers in pfd_exec stay valid while we walk the poll set.
         */
        for (size_t i = 2; i < n; i++) {
            if (!(a->pfds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
            struct exec_op *e = a->pfd_exec[i];
            if (a->pfds[i].fd == e->out_fd) pump(a, e->id, &e->out_fd, T_STDOUT, &e->out_nap_until);
            else if (a->pfds[i].fd == e->err_fd) pump(a, e->id, &e->err_fd, T_STDERR, &e->err_nap_until);
        }
        if (a->pfds[0].revents) read_channel(a);
        step_reads(a);
        if (a->pfds[1].revents) {
            char buf[256];
            while (read(a->sigchld_fd, buf, sizeof buf) > 0) {}
            reap_children(a);
        }
    }
}
