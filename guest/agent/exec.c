/* EXEC and SIGNAL: commands in their own sessions, their output, their exits. */
#include "agent.h"

/*
 * Exec output is coalesced (OUT_CHUNK frames, PIPE_BYTES pipes, OUT_NAP_NS naps) only on the
 * stdio channel, i.e. under gVisor, where it was measured to double throughput. In a TCG
 * micro-VM (--channel) reading the clock costs enough that a clock read per wakeup made
 * streams 2-3x slower, and the naps were not measured there, so the agent reads each pipe in
 * CHUNK pieces as soon as it is readable, as before, and never reads the clock for it.
 */
bool coalesce_output = true;

/* What the child reports through its error pipe when it cannot get to execve(). */
enum child_stage { ST_SETSID, ST_TTY, ST_DEVNULL, ST_DUP, ST_CHDIR, ST_CAPS, ST_SETGROUPS, ST_SETGID, ST_SETUID, ST_SECCOMP, ST_EXEC };
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
    int out_w, err_w;
    int in_fd; /* the command's stdin (EXEC_PIPE, EXEC_TTY), -1: /dev/null */
    bool tty;  /* in_fd is a terminal: it is also fds 1 and 2, and the controlling terminal */
    char *const *argv;
    char *const *envp;
    /* Written by the child (it shares the agent's memory, spawn.c) when it cannot get to execve(). */
    volatile bool failed;
    struct child_error error;
};

static _Noreturn void child_fail(struct child_setup *cs, int stage)
{
    cs->error = (struct child_error){stage, errno};
    cs->failed = true;
    _exit(127);
}

/*
 * Runs in the spawned child, on the agent's memory until execve(): only system calls and writes
 * to *cs (spawn.c). The set-id calls are raw system calls: libc's would coordinate with the
 * agent's threads, and this is not one of them.
 */
static int run_child(void *arg)
{
    struct child_setup *cs = arg;
    /* The command starts with every signal at its default and none blocked. */
    spawned_child_signals_to_default();
    umask(cs->umask);
    if (exec_cgroup_procs_fd >= 0) join_cgroup(exec_cgroup_procs_fd); /* best effort, see setup_workload_memory_cgroup */

    if (setsid() < 0) child_fail(cs, ST_SETSID);
    if (cs->tty) {
        if (ioctl(cs->in_fd, TIOCSCTTY, 0) < 0) child_fail(cs, ST_TTY);
        if (dup2(cs->in_fd, 0) < 0 || dup2(cs->in_fd, 1) < 0 || dup2(cs->in_fd, 2) < 0) child_fail(cs, ST_DUP);
    } else {
        int in = cs->in_fd;
        if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) child_fail(cs, ST_DEVNULL);
        /* All three sources are >= 3 (fds 0-2 are always open in the agent), so no overlap. */
        if (dup2(in, 0) < 0 || dup2(cs->out_w, 1) < 0 || dup2(cs->err_w, 2) < 0) child_fail(cs, ST_DUP);
    }

    /* Like runc: chdir as root first; if that is refused, retry as the target user. */
    bool chdir_later = false;
    if (chdir(cs->cwd) < 0) {
        if (!cs->as_user || (errno != EACCES && errno != EPERM)) child_fail(cs, ST_CHDIR);
        chdir_later = true;
    }
    if (confine_execs && !drop_capabilities()) child_fail(cs, ST_CAPS);
    if (cs->as_user) {
        if (syscall(SYS_setgroups, 0, NULL) < 0) child_fail(cs, ST_SETGROUPS);
        if (syscall(SYS_setgid, cs->gid) < 0) child_fail(cs, ST_SETGID);
        if (syscall(SYS_setuid, cs->uid) < 0) child_fail(cs, ST_SETUID);
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
    case ST_TTY: send_error(a, id, "making the terminal the controlling terminal: %s", why); break;
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

void start_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len, struct exec_stdio *io)
{
    int n = count_strings(p, len);
    if (n < 3) {
        send_error(a, id, "malformed EXEC payload");
        return;
    }
    const char **s = xmalloc((n + 1) * sizeof *s);
    split_strings(p, len, s);
    s[n] = NULL;

    bool tty = io && io->tty;
    struct child_setup cs = {.cwd = s[0][0] ? s[0] : "/", .as_user = s[1][0] != 0, .umask = a->exec_umask,
                             .in_fd = io ? io->child_in : -1, .tty = tty, .out_w = -1, .err_w = -1};
    const char *argv[] = {"sh", "-c", s[2], NULL};
    cs.argv = (char *const *)argv;
    cs.envp = (char *const *)(s + 3);

    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    if (cs.as_user && !parse_user(s[1], &cs.uid, &cs.gid)) {
        send_error(a, id, "invalid user: %s", s[1]);
        goto out;
    }
    if (!tty && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)) {
        send_error(a, id, "pipe: %s", strerror(errno));
        goto out;
    }
    cs.out_w = outp[1];
    cs.err_w = errp[1];

    /*
     * Returns once the child has called execve() (so setsid() is done and SIGNAL can target the
     * group right away) or has exited; cs.failed says which.
     */
    pid_t pid = spawn_process(run_child, &cs);
    if (pid < 0) {
        send_error(a, id, "clone: %s", strerror(errno));
        goto out;
    }
    close_fd(&outp[1]);
    close_fd(&errp[1]);
    if (cs.failed) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        report_child_error(a, id, &cs, &cs.error);
        goto out;
    }

    struct exec_op *e = xmalloc(sizeof *e);
    *e = (struct exec_op){.next = a->execs, .id = id, .pid = pid, .out_fd = outp[0], .err_fd = errp[0],
                          .oom_kills_at_start = oom_kill_count()};
    if (tty) { /* a terminal's output is one stream, read from its master */
        e->out_fd = io->out_r;
        io->out_r = -1;
    }
    set_nonblock(e->out_fd, true);
    if (e->err_fd >= 0) set_nonblock(e->err_fd, true);
    if (coalesce_output && !tty) { /* best effort: a smaller pipe only costs throughput */
        fcntl(e->out_fd, F_SETPIPE_SZ, PIPE_BYTES);
        fcntl(e->err_fd, F_SETPIPE_SZ, PIPE_BYTES);
    }
    a->execs = e;
    outp[0] = errp[0] = -1; /* now owned by e */
    if (io) {
        e->input = io->input;
        io->input = NULL;
        exec_started(a, e);
    }
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&outp[i]);
        close_fd(&errp[i]);
    }
    free(s);
}

/* How much of an exec's pipe one read takes (see coalesce_output). */
static size_t out_chunk(void)
{
    return coalesce_output ? OUT_CHUNK : CHUNK;
}

/*
 * Forwards one chunk from an exec's pipe; closes the pipe on EOF or error. After data that did
 * not fill the buffer, sets *nap_until: the writer is slower than us, so let it write more first.
 */
enum pump_result pump(struct agent *a, uint32_t id, int *fd, uint8_t type, int64_t *nap_until)
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
void reap_children(struct agent *a)
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
        free_input(e->input);
        free(e);
    }
}

void signal_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    /* A malformed SIGNAL gets no ERROR: that would end the engine's view of a live exec. */
    if (len != 1) return;
    for (struct exec_op *e = a->execs; e; e = e->next)
        if (e->id == id) kill(-e->pid, p[0]);
}
