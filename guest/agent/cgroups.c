/* Micro-VM only: the workload's memory and task caps. */
#include "agent.h"

/*
 * How many processes the kernel's OOM killer has killed since boot (/proc/vmstat oom_kill), or
 * -1 where that is not available (gVisor, whose memory limit is enforced on the host side).
 */
long oom_kill_count(void)
{
    return proc_number("/proc/vmstat", "\noom_kill ");
}

/*
 * Micro-VM only (the agent is the guest's PID 1 there): the memory the sandbox's workload may
 * hold is capped a little under the memory the guest has free when the agent starts. Why: a
 * command that outgrows the VM otherwise drives the guest kernel into global reclaim, which
 * under TCG thrashes on the image's file pages (everyone's executables) for 19 s to 9 minutes,
 * measured, before the OOM killer fires. At a cgroup's limit only the cgroup's own pages are
 * reclaimable, so the OOM killer comes within a second or so and picks the largest command.
 *
 * The workload is two things, so the cap sits on a parent cgroup with two leaves:
 *   WORKLOAD_CGROUP/exec   every command (and what commands write to the tmpfs mounts);
 *   WORKLOAD_CGROUP/files  the tmpfs pages of the files the agent writes for the engine.
 * tmpfs pages are charged to the cgroup of the process that writes them, for as long as they
 * exist; charged to the agent's, an upload would take memory the commands' cap still counts as
 * free, and a hog could again push the guest into global reclaim. So the agent steps into
 * `files` around each write(2) of file data (write_charged_to_workload) and back out at once.
 *
 * The agent itself lives in the root cgroup, outside the cap: its own allocations must never
 * be the ones failing (a page fault at a memcg limit with nothing left to kill is retried
 * forever), and the reserve the cap leaves is where the agent and the kernel find room. The
 * OOM killer never picks PID 1 anyway, so memory.min/low for the agent would add nothing.
 * When uploads fill the cap: the OOM killer takes the largest command if there is one, else
 * the write fails, reported as ENOSPC (a full disk is what an upload into tmpfs looks like).
 * memory.oom.group stays 0: one hog, not every command, is killed. Best effort: without the cgroups, commands run under the VM's limit alone.
 */
#define CGROUP_ROOT "/sys/fs/cgroup"
#define WORKLOAD_CGROUP CGROUP_ROOT "/matchlock"
#define EXEC_CGROUP WORKLOAD_CGROUP "/exec"
#define FILES_CGROUP WORKLOAD_CGROUP "/files"

/* cgroup.procs of the cgroups above (see setup_workload_memory_cgroup), or -1 without them. */
int exec_cgroup_procs_fd = -1;
static int files_cgroup_procs_fd = -1;
static int root_cgroup_procs_fd = -1;

static bool write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

/* Moves the calling process into the cgroup whose cgroup.procs is `procs_fd`. */
bool join_cgroup(int procs_fd)
{
    ssize_t w;
    do w = write(procs_fd, "0", 1); /* "0": the writer */
    while (w < 0 && errno == EINTR);
    return w == 1;
}

/*
 * The workload's task cap (`--exec-tasks-max`): a fork bomb in a command stops at it with
 * EAGAIN, inside the guest, and the agent (outside the cgroup) can still start commands and
 * kill what is running. The guest kernel exempts root from RLIMIT_NPROC, so a cgroup it is.
 */
static void limit_workload_tasks(const char *tasks_max)
{
    if (!write_text(CGROUP_ROOT "/cgroup.subtree_control", "+pids") ||
        !write_text(WORKLOAD_CGROUP "/pids.max", tasks_max))
        fprintf(stderr, "matchlock-agent: no task limit for commands (%s)\n", strerror(errno));
}

void setup_workload_memory_cgroup(const char *tasks_max)
{
    long total_kb = proc_number("/proc/meminfo", "MemTotal:");
    long avail_kb = proc_number("/proc/meminfo", "\nMemFree:");
    /* Left for the agent, the kernel's own growth and the page cache of what commands run. */
    long reserve_kb = 4096 + total_kb / 32;
    char limit[32];
    const char *step = "read /proc/meminfo";
    errno = 0;
    if (total_kb <= 0 || avail_kb <= reserve_kb) goto fail;
    snprintf(limit, sizeof limit, "%ld", (avail_kb - reserve_kb) * 1024);
    step = "mount cgroup2";
    /* favordynmods: the agent moves itself per file write; without it each move waits for RCU. */
    if (mount("cgroup2", CGROUP_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods") != 0 &&
        mount("cgroup2", CGROUP_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) goto fail;
    step = "enable the memory controller";
    if (!write_text(CGROUP_ROOT "/cgroup.subtree_control", "+memory")) goto fail;
    step = "create " WORKLOAD_CGROUP;
    if (mkdir(WORKLOAD_CGROUP, 0755) != 0 && errno != EEXIST) goto fail;
    step = "set memory.max";
    if (!write_text(WORKLOAD_CGROUP "/memory.max", limit)) goto fail;
    step = "enable the memory controller below " WORKLOAD_CGROUP;
    if (!write_text(WORKLOAD_CGROUP "/cgroup.subtree_control", "+memory")) goto fail;
    step = "create the exec and files cgroups";
    if ((mkdir(EXEC_CGROUP, 0755) != 0 && errno != EEXIST) || (mkdir(FILES_CGROUP, 0755) != 0 && errno != EEXIST)) goto fail;
    step = "open cgroup.procs";
    int exec_fd = open(EXEC_CGROUP "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    int files_fd = open(FILES_CGROUP "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    int root_fd = open(CGROUP_ROOT "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (exec_fd >= 0 && files_fd >= 0 && root_fd >= 0) {
        exec_cgroup_procs_fd = exec_fd, files_cgroup_procs_fd = files_fd, root_cgroup_procs_fd = root_fd;
        if (tasks_max) limit_workload_tasks(tasks_max);
        return;
    }
    close_fd(&exec_fd);
    close_fd(&files_fd);
    close_fd(&root_fd);
fail:
    fprintf(stderr, "matchlock-agent: no memory cgroup for commands (%s: %s); they run under the VM's limit alone\n",
            step, errno ? strerror(errno) : "too little memory");
}

/*
 * write(2) of file data for the engine, the new pages charged to the workload's cap (see
 * above). Memory refused at the cap is reported as ENOSPC: the upload ran out of room.
 */
ssize_t write_charged_to_workload(int fd, const void *p, size_t len)
{
    /* The SIGCHLD handler's self-pipe write would be charged to `files` too: it waits. */
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    bool moved = files_cgroup_procs_fd >= 0 && sigprocmask(SIG_BLOCK, &chld, &old) == 0;
    if (moved && !join_cgroup(files_cgroup_procs_fd)) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        moved = false;
    }
    ssize_t n = write(fd, p, len);
    int saved = errno;
    if (moved) {
        if (!join_cgroup(root_cgroup_procs_fd)) {
            /*
             * Not expected (the root cgroup takes any process). The agent must not live under
             * the cap (see above), so the cap goes instead: commands then run under the VM's
             * limit alone, as without the cgroups.
             */
            int why = errno;
            bool lifted = write_text(WORKLOAD_CGROUP "/memory.max", "max");
            fprintf(stderr, "matchlock-agent: cannot leave %s (%s); %s\n", FILES_CGROUP, strerror(why),
                    lifted ? "lifted the workload's memory cap"
                           : "could not lift the workload's memory cap either: the agent may stall at it");
            close_fd(&files_cgroup_procs_fd);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    errno = n < 0 && saved == ENOMEM ? ENOSPC : saved;
    return n;
}
