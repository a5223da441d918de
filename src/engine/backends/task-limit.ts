// How many tasks (processes and threads) a sandbox's guest may run, the same on both engines.
// A guest fork bomb must stop at this count, inside the sandbox, long before the host runs out
// of PIDs: on gVisor every guest process costs several host tasks (the Sentry's threads that
// run it, its ptrace stub process), measured at ~6-10 host tasks per live guest process.
// gVisor enforces it as the RLIMIT_NPROC the sandbox starts with (per guest user, threads
// counted, root included; raising it needs CAP_SYS_RESOURCE, which the guest lacks); the
// micro-VM as the pids.max of the cgroup every command runs in (its guest kernel exempts root
// from RLIMIT_NPROC).
export const GUEST_TASK_LIMIT = 256;
