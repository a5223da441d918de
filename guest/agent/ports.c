/*
 * Port forwarding: TCP connections the engine opens to the guest's 127.0.0.1:<port>, carried
 * over the channel (PORT_* frames in PROTOCOL.md).
 *
 * Flow control is by byte windows in both directions, so no connection makes either side
 * buffer without bound and a stalled one stalls nothing else:
 *  - guest -> engine: we read the guest socket only while the engine's credit allows, and send
 *    at most that much. A slow host reader stops our reads of its socket, not the channel.
 *  - engine -> guest: the engine sends at most PORT_WINDOW bytes we have not credited back; what
 *    the guest socket does not take at once waits in a per-connection buffer of that size, and
 *    is credited back as it is written.
 * The sockets live in an epoll set of their own, whose one fd sits in the main poll loop: the
 * loop stays as it is whatever the number of connections.
 */
#include "agent.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* Bytes the engine may send on one connection before we credit them back. */
#define PORT_WINDOW (1024 * 1024)
/* Credit is returned once this much was written to the guest (or when the buffer empties). */
#define CREDIT_BATCH (PORT_WINDOW / 4)
#define EVENTS_PER_STEP 64

struct port_conn {
    struct port_conn *next;
    uint32_t id;
    int fd;
    uint16_t port;
    bool connecting;
    bool guest_eof;  /* the guest peer finished sending; PORT_EOF was sent */
    bool engine_eof; /* PORT_SHUTDOWN arrived: shut our write side once `out` is written */
    bool wr_shut;
    int64_t credit;  /* bytes we may still send to the engine */
    unsigned char *out; /* engine bytes not yet taken by the guest socket (PORT_WINDOW bytes) */
    size_t out_off, out_len;
    uint32_t unacked; /* written to the guest socket, not yet credited back */
    uint32_t events;  /* what the epoll set watches for; 0: not in the set */
};

static struct port_conn *conns;
static int epoll_fd = -1;

int ports_poll_fd(void)
{
    if (epoll_fd < 0) {
        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0) die(1, "epoll_create1: %s", strerror(errno));
    }
    return epoll_fd;
}

bool ports_has_id(uint32_t id)
{
    for (struct port_conn *c = conns; c; c = c->next)
        if (c->id == id) return true;
    return false;
}

static struct port_conn *find(uint32_t id)
{
    for (struct port_conn *c = conns; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void send_u32(struct agent *a, uint8_t type, uint32_t id, uint32_t v)
{
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    send_frame(a, type, id, b, sizeof b);
}

/* Watches the socket for exactly what this connection can act on now. */
static void update_events(struct port_conn *c)
{
    uint32_t want = 0;
    if (c->connecting) want = EPOLLOUT;
    else {
        if (c->credit > 0 && !c->guest_eof) want |= EPOLLIN;
        if (c->out_len > c->out_off) want |= EPOLLOUT;
    }
    if (want == c->events) return;
    /*
     * Nothing to do: out of the set, so that a hung-up socket does not wake us in a loop while
     * we wait for credit. Its state is looked at again when the engine's next frame changes ours.
     */
    int op = want == 0 ? EPOLL_CTL_DEL : c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(ports_poll_fd(), op, c->fd, &ev) < 0) die(1, "epoll_ctl: %s", strerror(errno));
    c->events = want;
}

/* Ends the connection: the socket is closed (with a RST when `reset`) and the record freed. */
static void drop(struct port_conn *c, bool reset)
{
    for (struct port_conn **pp = &conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->events) epoll_ctl(ports_poll_fd(), EPOLL_CTL_DEL, c->fd, NULL);
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    free(c->out);
    free(c);
}

/* The guest side failed (reset, connect refused): ERROR ends the operation; the peer gets a RST. */
static void fail(struct agent *a, struct port_conn *c, const char *what, int err)
{
    send_error(a, c->id, "%s 127.0.0.1:%u: %s", what, (unsigned)c->port, strerror(err));
    drop(c, true);
}

/* Both directions are done: the connection ends well. */
static void maybe_finish(struct agent *a, struct port_conn *c)
{
    if (!(c->guest_eof && c->wr_shut)) {
        update_events(c);
        return;
    }
    uint32_t id = c->id;
    drop(c, false);
    send_frame(a, T_PORT_CLOSED, id, NULL, 0);
}

static void return_credit(struct agent *a, struct port_conn *c, bool force)
{
    if (c->unacked == 0 || (!force && c->unacked < CREDIT_BATCH)) return;
    send_u32(a, T_PORT_CREDIT_OUT, c->id, c->unacked);
    c->unacked = 0;
}

/* Writes what waits for the guest socket; false when the connection failed (and is gone). */
static bool flush_out(struct agent *a, struct port_conn *c)
{
    while (c->out_len > c->out_off) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            fail(a, c, "write to", errno);
            return false;
        }
        c->out_off += n;
        c->unacked += n;
    }
    bool empty = c->out_off == c->out_len;
    if (empty) c->out_off = c->out_len = 0;
    return_credit(a, c, empty);
    if (empty && c->engine_eof && !c->wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    return true;
}

static void connected(struct agent *a, struct port_conn *c)
{
    c->connecting = false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send_u32(a, T_PORT_CONNECTED, c->id, PORT_WINDOW);
    if (c->engine_eof && flush_out(a, c)) maybe_finish(a, c); /* PORT_SHUTDOWN came while connecting */
    else if (!c->engine_eof) update_events(c);
}

/* PORT_CONNECT: uint16 port, uint32 window (what we may send before credit). Loopback only. */
static void port_connect(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
{
    unsigned port = len == 6 ? (unsigned)p[0] << 8 | p[1] : 0;
    if (port == 0) {
        send_error(a, id, "malformed PORT_CONNECT payload");
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        send_error(a, id, "socket: %s", strerror(errno));
        return;
    }
    struct port_conn *c = xmalloc(sizeof *c);
    *c = (struct port_conn){.id = id, .fd = fd, .port = port, .credit = be32(p + 2), .next = conns};
    conns = c;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&to, sizeof to) == 0) {
        connected(a, c);
    } else if (errno == EINPROGRESS) {
        c->connecting = true;
        update_events(c);
    } else {
        fail(a, c, "connect", errno);
    }
}

/* PORT_DATA from the engine: written at once if the socket takes it, else buffered (bounded by the window). */
static void port_data(struct agent *a, struct port_conn *c, const unsigned char *p, size_t len)
{
    size_t held = c->out_len - c->out_off;
    if (c->connecting || c->engine_eof || held + len > PORT_WINDOW) {
        send_error(a, c->id, "PORT_DATA beyond the window or after PORT_SHUTDOWN");
        drop(c, true);
        return;
    }
    if (held == 0) {
        ssize_t n;
        do n = write(c->fd, p, len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN) {
            fail(a, c, "write to", errno);
            return;
        }
        if (n > 0) {
            p += n;
            len -= n;
            c->unacked += n;
        }
    }
    if (len > 0) {
        if (!c->out) c->out = xmalloc(PORT_WINDOW);
        if (c->out_len + len > PORT_WINDOW) { /* compact: held + len fits, checked above */
            memmove(c->out, c->out + c->out_off, held);
            c->out_off = 0;
            c->out_len = held;
        }
        memcpy(c->out + c->out_len, p, len);
        c->out_len += len;
    }
    return_credit(a, c, c->out_len == c->out_off);
    update_events(c);
}

void port_frame(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len)
{
    if (type == T_PORT_CONNECT) {
        port_connect(a, id, p, len);
        return;
    }
    /* Frames for a connection that already ended cross our final frame on the way: ignored. */
    struct port_conn *c = find(id);
    if (!c) return;
    switch (type) {
    case T_PORT_DATA: port_data(a, c, p, len); break;
    case T_PORT_CREDIT:
        if (len != 4) break;
        c->credit += be32(p);
        if (c->credit > UINT32_MAX) c->credit = UINT32_MAX;
        update_events(c);
        break;
    case T_PORT_SHUTDOWN:
        c->engine_eof = true;
        if (!c->connecting && flush_out(a, c)) maybe_finish(a, c); /* else once connected */
        break;
    case T_PORT_CLOSE:
        drop(c, len == 1 && p[0] == 1);
        send_frame(a, T_PORT_CLOSED, id, NULL, 0);
        break;
    default: break;
    }
}

/* Reads what the guest sent, within the engine's credit; false when the connection failed (and is gone). */
static bool pull_guest(struct agent *a, struct port_conn *c)
{
    size_t room = c->credit < OUT_CHUNK ? (size_t)c->credit : OUT_CHUNK;
    ssize_t n = read(c->fd, a->chunk, room);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) return true;
        fail(a, c, "read from", errno);
        return false;
    }
    if (n == 0) {
        c->guest_eof = true;
        send_frame(a, T_PORT_EOF, c->id, NULL, 0);
        return true;
    }
    c->credit -= n;
    send_frame(a, T_PORT_DATA_OUT, c->id, a->chunk, n);
    return true;
}

/* One turn for every connection that can move: a busy one does not starve the others. */
void step_ports(struct agent *a)
{
    struct epoll_event evs[EVENTS_PER_STEP];
    int n = epoll_wait(ports_poll_fd(), evs, EVENTS_PER_STEP, 0);
    for (int i = 0; i < n; i++) {
        struct port_conn *c = evs[i].data.ptr;
        uint32_t ev = evs[i].events;
        if (c->connecting) {
            int err = 0;
            socklen_t sl = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0) err = errno;
            if (err) fail(a, c, "connect", err);
            else connected(a, c);
            continue;
        }
        if (ev & EPOLLERR) {
            int err = 0;
            socklen_t sl = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
            /* gVisor flags EPOLLERR with no error pending once the peer closes after our
             * shutdown: then read on, which sees the end or the real error. */
            if (err) {
                fail(a, c, "connection to", err);
                continue;
            }
        }
        if ((ev & EPOLLOUT) && !flush_out(a, c)) continue;
        if ((ev & (EPOLLIN | EPOLLHUP)) && c->credit > 0 && !c->guest_eof && !pull_guest(a, c)) continue;
        maybe_finish(a, c);
    }
}
