/* READ, READ_STREAM, CREDIT and CANCEL: files read for the engine, and ending transfers early. */
#include "agent.h"

void start_read(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool metered)
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
void step_reads(struct agent *a)
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

bool reads_can_step(const struct agent *a)
{
    for (const struct read_op *r = a->reads; r; r = r->next)
        if (r->credit != 0) return true;
    return false;
}

/* CREDIT: lets a READ_STREAM send that many more chunks. */
void add_credit(struct agent *a, uint32_t id, const unsigned char *p, size_t len)
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
void cancel_op(struct agent *a, uint32_t id)
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
