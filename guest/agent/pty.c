/*
 * EXEC_TTY and RESIZE: a command on a pseudo-terminal of its own. It is the command's stdin,
 * stdout, stderr and controlling terminal (setsid + TIOCSCTTY in the child); the agent holds the
 * master: it reads the command's output (one stream) from it, writes STDIN into it, and sets
 * the window size on it (the kernel then sends SIGWINCH to the foreground process group).
 */
#include "agent.h"

/*
 * --tty-signals: the kernel's terminals do not send SIGINT, SIGQUIT and SIGTSTP for the keys
 * typed (gVisor's before 2023 do not), so the agent does, as n_tty would: to the terminal's
 * foreground process group (the command's own group when the terminal cannot say).
 */
bool tty_signals = false;

void tty_signal_keys(struct exec_op *e, const unsigned char *p, size_t len)
{
    struct termios t;
    int fd = e->input->fd;
    if (!tty_signals || fd < 0 || tcgetattr(fd, &t) < 0 || !(t.c_lflag & ISIG)) return;
    for (size_t i = 0; i < len; i++) {
        int sig = p[i] == t.c_cc[VINTR] ? SIGINT : p[i] == t.c_cc[VQUIT] ? SIGQUIT : p[i] == t.c_cc[VSUSP] ? SIGTSTP : 0;
        if (!sig || p[i] == _POSIX_VDISABLE) continue;
        pid_t group = tcgetpgrp(fd);
        kill(-(group > 0 ? group : e->pid), sig);
    }
}

/*
 * Neither engine mounts devpts for us everywhere (the micro-VM's /dev is a devtmpfs), so the
 * first terminal mounts a private instance at /dev/pts when there is none. Where that is not
 * allowed (gVisor's agent has no CAP_SYS_ADMIN) the engine mounts it from the sandbox's spec.
 */
static int open_master(void)
{
    int fd = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT) return fd;
    mkdir("/dev/pts", 0755);
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0) return -1;
    return open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
}

static bool parse_size(const char *s, unsigned short *out)
{
    unsigned long v;
    if (!parse_decimal(s, 0xffff, &v) || v == 0) return false;
    *out = (unsigned short)v;
    return true;
}

void start_tty_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    int n = count_strings(p, len);
    const char *s[2];
    struct winsize ws = {0};
    if (n < 5) {
        send_error(a, id, "malformed EXEC_TTY payload");
        return;
    }
    s[0] = (const char *)p; /* rows\0cols\0 then an EXEC payload */
    s[1] = s[0] + strlen(s[0]) + 1;
    if (!parse_size(s[0], &ws.ws_row) || !parse_size(s[1], &ws.ws_col)) {
        send_error(a, id, "invalid terminal size %s x %s", s[0], s[1]);
        return;
    }
    size_t skip = strlen(s[0]) + 1 + strlen(s[1]) + 1;

    int master = open_master(), slave = -1, writer = -1;
    char name[64];
    int unlock = 0;
    if (master < 0) {
        send_error(a, id, "opening a pseudo-terminal: %s", strerror(errno));
        return;
    }
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ptsname_r(master, name, sizeof name) != 0 ||
        (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0 ||
        (writer = fcntl(master, F_DUPFD_CLOEXEC, 3)) < 0) {
        send_error(a, id, "setting up the pseudo-terminal: %s", strerror(errno));
        close_fd(&master);
        close_fd(&slave);
        return;
    }
    struct exec_stdio io = {.child_in = slave, .tty = true, .out_r = master, .input = new_input(writer, true)};
    start_exec(a, id, p + skip, len - skip, &io);
    close(slave); /* the command has its own: the master reads EIO once it and its children are gone */
    close_fd(&io.out_r); /* still ours only if the command did not start */
    free_input(io.input);
}

void resize_tty(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    if (len != 4) return; /* like SIGNAL: a malformed RESIZE must not end a live exec */
    for (struct exec_op *e = a->execs; e; e = e->next) {
        if (e->id != id || !e->input || !e->input->tty) continue;
        struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]), .ws_col = (unsigned short)(p[2] << 8 | p[3])};
        /* The master may be closed after STDIN_EOF; the output side is the same terminal. */
        int fd = e->input->fd >= 0 ? e->input->fd : e->out_fd;
        if (ws.ws_row && ws.ws_col && fd >= 0) ioctl(fd, TIOCSWINSZ, &ws);
    }
}
