/*
 * Shared by the agent's source files: the frame protocol's constants, the operation records,
 * and what each file offers the others. One file per concern: channel.c (frames in and out),
 * exec.c (commands), spawn.c (starting their processes), exec-input.c and pty.c (a command's
 * stdin, its terminal), confine.c (what a command may do), cgroups.c (micro-VM memory and task
 * caps), file-writes.c, file-reads.c, dir-list.c, file-ops.c (file operations), ports.c (port
 * forwarding), payload.c and util.c (helpers), agent.c (start-up and the poll loop).
 */
#ifndef MATCHLOCK_AGENT_H
#define MATCHLOCK_AGENT_H

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
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
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
    T_EXEC_PIPE = 0x20, T_EXEC_TTY = 0x21, T_STDIN = 0x22, T_STDIN_EOF = 0x23, T_RESIZE = 0x24,
    T_STDOUT = 0x10, T_STDERR = 0x11, T_EXIT = 0x12, T_OK = 0x13,
    T_ENTRIES = 0x14, T_ERROR = 0x15, T_READY = 0x16,
    T_STDIN_ACK = 0x28, T_STARTED = 0x29,
    /* port forwarding (ports.c): engine -> agent 0x30-0x37, agent -> engine 0x38-0x3f */
    T_PORT_CONNECT = 0x30, T_PORT_DATA = 0x31, T_PORT_CREDIT = 0x32, T_PORT_SHUTDOWN = 0x33, T_PORT_CLOSE = 0x34,
    T_PORT_CONNECTED = 0x38, T_PORT_DATA_OUT = 0x39, T_PORT_CREDIT_OUT = 0x3a, T_PORT_EOF = 0x3b, T_PORT_CLOSED = 0x3c,
    /* file-ops.c */
    T_REMOVE = 0x40, T_MKDIR = 0x41, T_RENAME = 0x42, T_STAT = 0x43, T_STAT_RESULT = 0x48,
    /* vfs-intercept.c: engine -> agent 0x50, agent -> engine 0x58 */
    T_VFS_SETUP = 0x50, T_FILE_EVENT = 0x58,
};

/*
 * A command's stdin fed from the channel (EXEC_PIPE, EXEC_TTY): at most STDIN_WINDOW bytes the
 * command has not read yet are held here; STDIN_ACK frames give the engine its credit back.
 */
#define STDIN_WINDOW (256 * 1024)
struct exec_input {
    int fd;        /* the stdin pipe's write end, or (tty) a second descriptor of the master; -1 once closed */
    bool tty;
    bool eof;      /* STDIN_EOF came: once buf is written, the pipe is closed (tty: VEOF is typed) */
    bool line_start; /* tty: the last byte written ended a line (one VEOF then ends the input) */
    unsigned char *buf; /* STDIN_WINDOW bytes */
    size_t len;
};

/* How an exec's stdio is set up, for EXEC_PIPE and EXEC_TTY (exec-input.c, pty.c); NULL for EXEC. */
struct exec_stdio {
    int child_in;  /* the child's fd 0: a pipe's read end, or the terminal (then also fds 1, 2 and the controlling tty) */
    bool tty;
    int out_r;     /* tty: the master, read for the command's output instead of a stdout pipe */
    struct exec_input *input; /* handed to the exec_op when the command started */
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
    struct exec_input *input; /* EXEC_PIPE/EXEC_TTY: the command's stdin (exec-input.c); NULL for EXEC */
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

enum pump_result { PUMP_DATA, PUMP_EMPTY, PUMP_CLOSED };

/* util.c */
_Noreturn void die(int code, const char *fmt, ...);
void *xmalloc(size_t n);
char *xstrdup(const char *s);
void set_nonblock(int fd, bool on);
void close_fd(int *fd);
long proc_number(const char *path, const char *key);
int64_t now_ns(void);

/* payload.c */
int count_strings(const unsigned char *p, size_t len);
void split_strings(const unsigned char *p, size_t len, const char **out);
bool parse_decimal(const char *s, unsigned long max, unsigned long *out);
bool parse_user(const char *s, uid_t *uid, gid_t *gid);

/* channel.c */
void send_frame(struct agent *a, uint8_t type, uint32_t id, const void *payload, size_t len);
void send_error(struct agent *a, uint32_t id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void read_channel(struct agent *a);

/* cgroups.c */
extern int exec_cgroup_procs_fd;
long oom_kill_count(void);
bool join_cgroup(int procs_fd);
void setup_workload_memory_cgroup(const char *tasks_max);
ssize_t write_charged_to_workload(int fd, const void *p, size_t len);

/* confine.c */
extern bool confine_execs;
void read_bounding_set(void);
void build_exec_filter(void);
bool drop_capabilities(void);
bool restrict_syscalls(void);

/* exec.c */
extern bool coalesce_output;
void start_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len, struct exec_stdio *io);
enum pump_result pump(struct agent *a, uint32_t id, int *fd, uint8_t type, int64_t *nap_until);
void reap_children(struct agent *a);
void signal_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len);

/* exec-input.c */
void start_piped_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
void exec_started(struct agent *a, struct exec_op *e);
void stdin_data(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
void stdin_eof(struct agent *a, uint32_t id);
struct exec_input *new_input(int fd, bool tty);
void free_input(struct exec_input *in);
int input_poll_fd(const struct exec_input *in);
void pump_input(struct agent *a, struct exec_op *e);

/* pty.c */
extern bool tty_signals;
void tty_signal_keys(struct exec_op *e, const unsigned char *p, size_t len);
void start_tty_exec(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
void resize_tty(struct agent *a, uint32_t id, const unsigned char *p, size_t len);

/* spawn.c */
pid_t spawn_process(int (*child)(void *), void *arg);
void spawned_child_signals_to_default(void);

/* file-writes.c */
void write_open(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool to_temp);
void write_data(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
void free_write(struct write_op *w);

/* file-reads.c */
void start_read(struct agent *a, uint32_t id, const unsigned char *p, size_t len, bool metered);
void step_reads(struct agent *a);
bool reads_can_step(const struct agent *a);
void add_credit(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
void cancel_op(struct agent *a, uint32_t id);

/* file-ops.c */
#define STAT_FIELDS_MAX 96
size_t stat_fields(char *out, const struct stat *st);
void file_op(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len);

/* dir-list.c */
void list_dir(struct agent *a, uint32_t id, const unsigned char *p, size_t len);

/* ports.c */
int ports_poll_fd(void);
bool ports_has_id(uint32_t id);
void port_frame(struct agent *a, uint8_t type, uint32_t id, const unsigned char *p, size_t len);
void step_ports(struct agent *a);

/* vfs-intercept.c, fuse-server.c */
enum vfs_op {
    VFS_STAT, VFS_READDIR, VFS_OPEN, VFS_CREATE, VFS_MKDIR, VFS_CHMOD, VFS_REMOVE, VFS_REMOVE_ALL,
    VFS_RENAME, VFS_SYMLINK, VFS_READLINK, VFS_READ, VFS_WRITE, VFS_CLOSE, VFS_SYNC, VFS_TRUNCATE, VFS_OPS,
};
extern const char *const vfs_op_names[VFS_OPS];
struct vfs_rule { uint32_t ops; const char *glob; };
/* An intercepted mount: `top` is the index of the mount it is nested in (served inside that one's FUSE mount), or -1. */
struct vfs_mount_spec { int fuse_fd; int root_fd; const char *guest; int top; };
void vfs_setup(struct agent *a, uint32_t id, const unsigned char *p, size_t len);
int vfs_events_fd(void);
void forward_vfs_events(struct agent *a);
_Noreturn void serve_vfs(struct vfs_mount_spec *specs, size_t n, const struct vfs_rule *rules, size_t nrules, int events);

/* agent.c */
_Noreturn void shutdown_agent(struct agent *a, int code);

#endif
