/* What a command may do: capabilities, no_new_privs and the seccomp filter. */
#include "agent.h"

/*
 * Unless the sandbox is privileged (--privileged), every command starts as a container would
 * under Docker's defaults, on both engines: the capability set below (bounding, permitted and
 * effective; nothing inheritable or ambient), no_new_privs, and a seccomp filter. The agent
 * itself keeps what it has: it is the sandbox's PID 1, and a command cannot ptrace or signal a
 * process whose capabilities exceed its own.
 */
bool confine_execs = true;

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
void build_exec_filter(void)
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

/*
 * The agent's bounding set, read once: it never changes (the agent drops nothing itself), so a
 * command's child drops only what is in it and not in the default set. Each drop is a system
 * call, which gVisor traps: asking for all ~40 cost a measurable share of an exec.
 */
static uint64_t bounding_caps;

void read_bounding_set(void)
{
    for (int c = 0; c < 64; c++) {
        int in = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        if (in < 0) break; /* past the highest capability this kernel knows (gVisor's may know fewer) */
        if (in) bounding_caps |= CAPS(c);
    }
}

/* In the child, as root, before any user change: bounding set, then permitted/effective, to the default set. */
bool drop_capabilities(void)
{
    uint64_t drop = bounding_caps & ~DEFAULT_CAPS;
    for (int c = 0; c < 64; c++)
        if ((drop & CAPS(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) return false;
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
bool restrict_syscalls(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &exec_filter_prog, 0, 0) == 0;
}
