/* The channel to the engine: frames out (send_frame, send_error) and in (read_channel, dispatch). */
#include "agent.h"

/* Writes one whole frame to fd 1, blocking as long as the engine does not read. */
void send_frame(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len)
{
    /* file events the server queued first: they belong to operations that came before this frame */
    if (type != T_FILE_EVENT && vfs_events_fd() >= 0) forward_vfs_events(a);
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

void send_error(struct agent *a, uint32_t id, const char *fmt, ...)
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

static bool id_in_use(const struct agent *a, uint32_t id)
{
    for (const struct exec_op *e = a->execs; e; e = e->next)
        if (e->id == id) return true;
    for (const struct write_op *w = a->writes; w; w = w->next)
        if (w->id == id) return true;
    for (const struct read_op *r = a->reads; r; r = r->next)
        if (r->id == id) return true;
    return ports_has_id(id);
}

static void dispatch(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len)
{
    bool starts_op = type == T_EXEC || type == T_WRITE_OPEN || type == T_READ || type == T_WRITE_OPEN_TEMP ||
                     type == T_READ_STREAM || type == T_EXEC_PIPE || type == T_EXEC_TTY || type == T_PORT_CONNECT;
    if (starts_op && id_in_use(a, id)) {
        send_error(a, id, "operation id %u is already in use", (unsigned)id);
        return;
    }
    switch (type) {
    case T_EXEC: start_exec(a, id, p, len, NULL); break;
    case T_EXEC_PIPE: start_piped_exec(a, id, p, len); break;
    case T_EXEC_TTY: start_tty_exec(a, id, p, len); break;
    case T_STDIN: stdin_data(a, id, p, len); break;
    case T_STDIN_EOF: stdin_eof(a, id); break;
    case T_RESIZE: resize_tty(a, id, p, len); break;
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
    case T_VFS_SETUP: vfs_setup(a, id, p, len); break;
    case T_PORT_CONNECT: case T_PORT_DATA: case T_PORT_CREDIT: case T_PORT_SHUTDOWN: case T_PORT_CLOSE:
        port_frame(a, type, id, p, len);
        break;
    default: file_op(a, type, id, p, len); break; /* it ignores types it does not know */
    }
}

/* One read() from the channel, then every complete frame in the buffer is handled. */
void read_channel(struct agent *a)
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
