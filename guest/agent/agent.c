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
#include "agent.h"
#include <mntent.h>

/* The signal handler's only way to reach the poll loop. */
static int sigchld_write_fd = -1;

/*
 * Extra disks are data users keep. Their writes reach the disk (sync), and each writable ext4
 * mount is made read-only, which marks its journal clean: the next sandbox may then attach the
 * disk read-only (a journal left needing recovery cannot be replayed on a read-only device).
 * In a micro-VM nothing unmounts them otherwise; in gVisor the host does. Only the sandbox's own
 * disks are touched: the agent is PID 1 there, and they are the micro-VM's virtio disks. An agent
 * started anywhere else (a test on the host, as root) must never remount the host's file systems.
 */
static void settle_disks(void)
{
    sync();
    if (getpid() != 1) return;
    FILE *f = setmntent("/proc/self/mounts", "re");
    if (!f) return;
    struct mntent *m;
    while ((m = getmntent(f)))
        if (!strcmp(m->mnt_type, "ext4") && !strncmp(m->mnt_fsname, "/dev/vd", 7) && !hasmntopt(m, "ro"))
            mount(NULL, m->mnt_dir, NULL, MS_REMOUNT | MS_RDONLY, NULL);
    endmntent(f);
}

/* EOF on the channel (or a fatal error): kill every exec's process group and exit. */
_Noreturn void shutdown_agent(struct agent *a, int code)
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
    settle_disks();
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

/* The poll set's fixed head: channel, SIGCHLD pipe, the port-forward sockets' epoll set, file events. */
#define FIXED_PFDS 4

/*
 * Rebuilds the poll set: the fixed head, then every open exec pipe that is not napping.
 * *wake_ns is set to the end of the earliest nap, or -1 when no pipe naps.
 */
static size_t build_pollset(struct agent *a, int64_t *wake_ns)
{
    size_t need = FIXED_PFDS;
    for (struct exec_op *e = a->execs; e; e = e->next) need += 3;
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
    a->pfds[n++] = (struct pollfd){.fd = ports_poll_fd(), .events = POLLIN};
    a->pfds[n++] = (struct pollfd){.fd = vfs_events_fd(), .events = POLLIN}; /* -1 (ignored) without interception */
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
        int in_fd = input_poll_fd(e->input); /* stdin waiting for the command to take it */
        if (in_fd >= 0) {
            a->pfd_exec[n] = e;
            a->pfds[n++] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
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

/*
 * `--cpus N`: the guest's processes may run on N of its CPUs, their affinity, which nproc and
 * most runtimes (Go, Node, Java, Python's process_cpu_count) read to size their parallelism.
 * For gVisor, whose runsc shows at least 2 CPUs: it runs its own kernel on as many threads as
 * it shows, and at 1 an exec's round trip took about 1.5x as long. Inherited by every command.
 */
static void limit_cpus(const char *count)
{
    unsigned long n;
    if (!parse_decimal(count, CPU_SETSIZE, &n) || n < 1) die(2, "--cpus: not a CPU count: %s", count);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0) die(1, "sched_getaffinity: %s", strerror(errno));
    if ((unsigned long)CPU_COUNT(&set) <= n) return;
    cpu_set_t first;
    CPU_ZERO(&first);
    for (unsigned long cpu = 0, taken = 0; cpu < CPU_SETSIZE && taken < n; cpu++)
        if (CPU_ISSET(cpu, &set)) {
            CPU_SET(cpu, &first);
            taken++;
        }
    if (sched_setaffinity(0, sizeof first, &first) < 0) die(1, "sched_setaffinity: %s", strerror(errno));
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
        else if (!strcmp(argv[i], "--tty-signals")) tty_signals = true;
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc) limit_cpus(argv[++i]);
        else die(2, "usage: matchlock-agent [--channel DEVICE] [--exec-memory-cgroup [--exec-tasks-max N]] [--privileged] [--tty-signals] [--cpus N] (default: stdin/stdout)");
    }
    if (workload_cgroup) setup_workload_memory_cgroup(tasks_max);
    read_bounding_set();
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
        for (size_t i = FIXED_PFDS; i < n; i++) {
            if (!(a->pfds[i].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR | POLLNVAL))) continue;
            struct exec_op *e = a->pfd_exec[i];
            if (a->pfds[i].fd == e->out_fd) pump(a, e->id, &e->out_fd, T_STDOUT, &e->out_nap_until);
            else if (a->pfds[i].fd == e->err_fd) pump(a, e->id, &e->err_fd, T_STDERR, &e->err_nap_until);
            else if (a->pfds[i].events & POLLOUT) pump_input(a, e);
        }
        if (a->pfds[0].revents) read_channel(a);
        if (a->pfds[2].revents) step_ports(a);
        if (a->pfds[3].revents) forward_vfs_events(a);
        step_reads(a);
        if (a->pfds[1].revents) {
            char buf[256];
            while (read(a->sigchld_fd, buf, sizeof buf) > 0) {}
            reap_children(a);
        }
    }
}
