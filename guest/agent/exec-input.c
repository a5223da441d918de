/*
 * EXEC_PIPE, STDIN, STDIN_EOF: a command whose stdin comes from the channel.
 *
 * The agent is single-threaded, so it never blocks on a command's stdin: what the engine sends
 * waits in the exec's buffer until the pipe (or terminal) takes it, and the poll loop writes it
 * when the descriptor is writable. The buffer is bounded by the engine's credit: the engine
 * sends at most STDIN_WINDOW bytes the agent has not acknowledged, and every byte the command
 * took (or that was dropped because it stopped reading) is acknowledged with STDIN_ACK.
 */
#include "agent.h"

struct exec_input *new_input(int fd, bool tty)
{
    struct exec_input *in = xmalloc(sizeof *in);
    *in = (struct exec_input){.fd = fd, .tty = tty, .line_start = true, .buf = xmalloc(STDIN_WINDOW)};
    set_nonblock(fd, true);
    return in;
}

void free_input(struct exec_input *in)
{
    if (!in) return;
    close_fd(&in->fd);
    free(in->buf);
    free(in);
}

void start_piped_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    int inp[2];
    if (pipe2(inp, O_CLOEXEC) < 0) {
        send_error(a, id, "pipe: %s", strerror(errno));
        return;
    }
    struct exec_stdio io = {.child_in = inp[0], .out_r = -1, .input = new_input(inp[1], false)};
    start_exec(a, id, p, len, &io);
    close(inp[0]);
    free_input(io.input); /* still ours only if the command did not start */
}

/* The command runs: tell the engine its pid (in the sandbox's pid namespace). */
void exec_started(struct agent *a, struct exec_op *e)
{
    uint32_t pid = (uint32_t)e->pid;
    unsigned char payload[4] = {pid >> 24, pid >> 16, pid >> 8, pid};
    send_frame(a, T_STARTED, e->id, payload, sizeof payload);
}

static struct exec_op *find_input(struct agent *a, uint32_t id)
{
    for (struct exec_op *e = a->execs; e; e = e->next)
        if (e->id == id && e->input) return e;
    return NULL;
}

static void send_ack(struct agent *a, uint32_t id, size_t n)
{
    uint32_t v = (uint32_t)n;
    unsigned char payload[4] = {v >> 24, v >> 16, v >> 8, v};
    send_frame(a, T_STDIN_ACK, id, payload, sizeof payload);
}

/* Once everything before it was written: a pipe is closed; a terminal gets its EOF character. */
static void finish_eof(struct exec_input *in)
{
    if (in->fd >= 0 && in->tty) {
        struct termios t;
        /* A partial line needs one VEOF to be passed on and a second to read as end of input. */
        if (tcgetattr(in->fd, &t) == 0) {
            unsigned char veof[2] = {t.c_cc[VEOF], t.c_cc[VEOF]};
            ssize_t r = write(in->fd, veof, in->line_start ? 1 : 2);
            (void)r; /* a terminal nobody reads any more: nothing to end */
        }
    }
    close_fd(&in->fd);
}

/* Writes what the command can take now, and acknowledges it. */
void pump_input(struct agent *a, struct exec_op *e)
{
    struct exec_input *in = e->input;
    size_t done = 0;
    while (in->len > 0 && in->fd >= 0) {
        ssize_t n = write(in->fd, in->buf + done, in->len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) { /* EPIPE, EIO: the command stopped reading; the rest is dropped */
            close_fd(&in->fd);
            done = in->len;
            break;
        }
        if (in->tty) tty_signal_keys(e, in->buf + done, n);
        in->line_start = in->buf[done + n - 1] == '\n';
        done += n;
        if (done == in->len) break;
    }
    if (done > 0) {
        memmove(in->buf, in->buf + done, in->len - done);
        in->len -= done;
        send_ack(a, e->id, done);
    }
    if (in->eof && in->len == 0 && in->fd >= 0) finish_eof(in);
}

int input_poll_fd(const struct exec_input *in)
{
    return in && in->fd >= 0 && in->len > 0 ? in->fd : -1;
}

void stdin_data(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    struct exec_op *e = find_input(a, id);
    if (!e) return; /* the command is over: its EXIT tells the engine */
    struct exec_input *in = e->input;
    if (in->fd < 0 || in->eof) { /* nobody reads it: drop it, the engine's credit still flows */
        send_ack(a, id, len);
        return;
    }
    size_t take = len;
    if (take > STDIN_WINDOW - in->len) {
        /* The engine broke the window (see PROTOCOL.md): keep what fits, never grow the buffer. */
        take = STDIN_WINDOW - in->len;
        fprintf(stderr, "matchlock-agent: STDIN beyond the window for exec %u: %zu bytes dropped\n", (unsigned)id, len - take);
        send_ack(a, id, len - take);
    }
    memcpy(in->buf + in->len, p, take);
    in->len += take;
    pump_input(a, e);
}

void stdin_eof(struct agent *a, uint32_t id)
{
    struct exec_op *e = find_input(a, id);
    if (!e) return;
    e->input->eof = true;
    pump_input(a, e);
}
