/*
 * Starting a command's process cheaply: clone(CLONE_VM | CLONE_VFORK) on a stack of its own
 * instead of fork(). fork() copies the agent's address space (page tables, its large buffers),
 * which gVisor's Sentry does slowly (on systrap most of an exec's round trip went there); with
 * CLONE_VM the child borrows the agent's memory, and the agent waits (CLONE_VFORK) until the
 * child has called execve() or exited, as posix_spawn() does.
 *
 * What the child may do until then, since it shares the agent's memory: only system calls and
 * writes to the spawn's own record (never malloc, stdio or anything with a lock), on
 * spawn_stack. Its creds, signal dispositions and mask, file table, cwd and umask are its own
 * (no CLONE_THREAD, CLONE_SIGHAND, CLONE_FILES or CLONE_FS), so what it changes there is not
 * the agent's. A signal handler of the agent's that ran in the child would run on the agent's
 * memory: every signal stays blocked from before the clone until the child has set every
 * signal the agent handles or ignores back to its default.
 */
#include "agent.h"

#define SPAWN_STACK_BYTES (128 * 1024)
/* One spawn at a time (the agent is one thread and waits for each): one stack serves all. */
static _Alignas(16) unsigned char spawn_stack[SPAWN_STACK_BYTES];

/* Signals whose disposition the agent changed (a handler, or ignored); found at the first spawn. */
static int changed_signals[NSIG];
static int changed_count = -1;

static void find_changed_signals(void)
{
    changed_count = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL) changed_signals[changed_count++] = sig;
    }
}

pid_t spawn_process(int (*child)(void *), void *arg)
{
    if (changed_count < 0) find_changed_signals();
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(child, spawn_stack + sizeof spawn_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}

void spawned_child_signals_to_default(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < changed_count; i++) sigaction(changed_signals[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}
