/*
 * matchlock-setid-guard CMD [ARGS...]: runs CMD under a seccomp filter, inherited by everything
 * it starts, that refuses (EPERM) every host syscall that would set a set-user-ID or
 * set-group-ID bit: chmod and its kin, and the file-creating calls whose mode has one.
 *
 * Why: gVisor's gofer (runsc 2022) runs as host root and applies a guest's chmod to the files
 * of a read-write host mount as asked, so a guest root could leave a setuid-root executable in
 * a host directory. The guest's own syscalls never reach this filter (on the ptrace platform
 * they are intercepted before seccomp runs); only runsc's, on the host, do.
 *
 * Calls whose mode cannot be read by a filter (openat2's struct, io_uring) are refused too:
 * runsc does not use them. x32 system calls, a second syscall table on x86-64, are refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_ARCH AUDIT_ARCH_AARCH64
#else
#error "matchlock-setid-guard supports x86-64 and arm64"
#endif

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif

#define SETID (S_ISUID | S_ISGID)
/* The low 32 bits of argument i (mode_t is 32 bits; both arches are little-endian). */
#define ARG_LO(i) offsetof(struct seccomp_data, args[i])

/* if (nr == NR && (arg[i] & SETID)) return EPERM; four instructions. */
#define REFUSE_SETID_ARG(NR, I)                                              \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (NR), 0, 3),                         \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(I)),                           \
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SETID, 0, 1),                        \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),                     \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))

#define REFUSE(NR, ERR)                                                      \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (NR), 0, 1),                         \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ERR))

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: matchlock-setid-guard CMD [ARGS...]\n");
        return 2;
    }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        REFUSE_SETID_ARG(__NR_chmod, 1),
        REFUSE_SETID_ARG(__NR_open, 2),
        REFUSE_SETID_ARG(__NR_creat, 1),
        REFUSE_SETID_ARG(__NR_mknod, 1),
#endif
        REFUSE_SETID_ARG(__NR_fchmod, 1),
        REFUSE_SETID_ARG(__NR_fchmodat, 2),
        REFUSE_SETID_ARG(__NR_fchmodat2, 2),
        REFUSE_SETID_ARG(__NR_openat, 3),
        REFUSE_SETID_ARG(__NR_mknodat, 2),
        REFUSE(__NR_openat2, ENOSYS),
        REFUSE(__NR_io_uring_setup, ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    /*
     * No no_new_privs: the engine runs as root (CAP_SYS_ADMIN), which may install a filter
     * without it, and runsc must keep the capabilities it hands its gofer and sandbox.
     */
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        fprintf(stderr, "matchlock-setid-guard: cannot install the seccomp filter: %s%s\n", strerror(errno),
                errno == EACCES ? " (needs CAP_SYS_ADMIN: run the engine as root)" : "");
        return 126;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "matchlock-setid-guard: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
