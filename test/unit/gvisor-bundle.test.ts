// The gVisor bundle: what each mount kind becomes in runsc's config.json (read-only binds through the private mount namespace), and its task limits.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { HOST_TASK_LIMIT, ociConfig } from "../../src/engine/backends/gvisor/bundle.js";
import { gvisorDriver } from "../../src/engine/backends/gvisor/runsc.js";
import { GUEST_TASK_LIMIT } from "../../src/engine/backends/task-limit.js";
import { boundOnHost, inPrivateMounts } from "../../src/engine/backends/gvisor/private-mounts.js";
import { paths } from "../../src/engine/paths.js";

const spec = (memoryMb: number) => ({
  id: "t", image: { kind: "unpacked" as const, ref: "t", rootfs: "/r" }, cpus: 1, memoryMb, diskSizeMb: 1024, hostname: "t", privileged: false, stateDir: "/s", logFile: "/l",
  mounts: [
    { kind: "bind" as const, guestPath: "/workspace/src", hostPath: "/h/src", readonly: false },
    { kind: "tmpfs" as const, guestPath: "/workspace" },
    { kind: "bind" as const, guestPath: "/workspace/cfg", hostPath: "/h/cfg", readonly: true },
  ],
});
type OciMount = { destination: string; type: string; source: string; options?: string[] };

test("tmpfs mounts and /tmp are capped at half the memory, so filling one is ENOSPC, not an OOM kill", () => {
  const mounts = ociConfig(spec(512), "/agent").mounts as OciMount[];
  for (const dest of ["/tmp", "/workspace"]) {
    assert.ok(mounts.find((m) => m.destination === dest)?.options?.includes("size=256m"), dest);
  }
});

test("capabilities: the default set with no_new_privs unless privileged; the agent is told which", () => {
  const process = (privileged: boolean) => ociConfig({ ...spec(512), privileged }, "/agent").process as {
    args: string[]; noNewPrivileges: boolean; capabilities: Record<string, string[]>;
  };
  const confined = process(false);
  assert.equal(confined.noNewPrivileges, true);
  assert.deepEqual(confined.args, ["/.matchlock/agent", "--tty-signals", "--cpus", "1"]);
  assert.equal(confined.capabilities.bounding!.length, 13);
  assert.ok(!confined.capabilities.bounding!.includes("CAP_SYS_ADMIN") && !confined.capabilities.bounding!.includes("CAP_NET_RAW"));
  assert.deepEqual(confined.capabilities.inheritable, []);
  const privileged = process(true);
  assert.equal(privileged.noNewPrivileges, false);
  assert.deepEqual(privileged.args, ["/.matchlock/agent", "--tty-signals", "--cpus", "1", "--privileged"]);
  assert.ok(privileged.capabilities.effective!.includes("CAP_SYS_ADMIN"));
});

test("intercepted mounts: the agent alone gets CAP_SYS_ADMIN to mount its FUSE server (its commands drop it)", () => {
  const caps = (fuse: boolean) => (ociConfig({ ...spec(512), fuse }, "/agent").process as { capabilities: Record<string, string[]> }).capabilities;
  assert.deepEqual(caps(true).bounding, [...caps(false).bounding!, "CAP_SYS_ADMIN"]);
  assert.ok(!caps(false).effective!.includes("CAP_SYS_ADMIN"));
});

test("host dirs are binds with their mode, parents before children", () => {
  const mounts = (ociConfig(spec(512), "/agent").mounts as OciMount[]).filter((m) => m.destination.startsWith("/workspace"));
  assert.deepEqual(mounts.map((m) => m.destination), ["/workspace", "/workspace/src", "/workspace/cfg"]);
  assert.deepEqual(mounts[1]!.options, ["rbind", "rw"]);
  assert.deepEqual(mounts[2]!.options, ["rbind", "ro"]);
  assert.equal(mounts[2]!.source, "/h/cfg");
});

test("guest tasks are capped by RLIMIT_NPROC, and the sandbox's host tasks by its pids cgroup", () => {
  const config = ociConfig(spec(512), "/agent") as {
    process: { rlimits: Array<{ type: string; soft: number; hard: number }> };
    linux: { resources: { pids: { limit: number } } };
  };
  assert.deepEqual(config.process.rlimits, [{ type: "RLIMIT_NPROC", soft: GUEST_TASK_LIMIT, hard: GUEST_TASK_LIMIT }]);
  assert.equal(config.linux.resources.pids.limit, HOST_TASK_LIMIT);
  assert.ok(HOST_TASK_LIMIT > GUEST_TASK_LIMIT * 15, "room for ~15 host tasks per guest task");
});

test("read-only binds and users' host paths reach runsc as binds made in the sandbox's mount namespace, in order; others unchanged", () => {
  const { mounts, binds } = boundOnHost("/s", [
    { kind: "bind", guestPath: "/a", hostPath: "/h/a", readonly: true, identity: "1:2" },
    { kind: "bind", guestPath: "/b", hostPath: "/h/b", readonly: false, identity: "1:3" },
    { kind: "bind", guestPath: "/e", hostPath: "/engine/e", readonly: false },
    { kind: "tmpfs", guestPath: "/c" },
    { kind: "bind", guestPath: "/d", hostPath: "/engine/d", readonly: true },
  ]);
  assert.deepEqual(binds, [
    { readonly: true, path: "/h/a", identity: "1:2" },
    { readonly: false, path: "/h/b", identity: "1:3" },
    { readonly: true, path: "/engine/d", identity: "-" },
  ]);
  assert.deepEqual(mounts, [
    { kind: "bind", guestPath: "/a", hostPath: "/s/rootfs/ro/0", readonly: true, identity: "1:2" },
    { kind: "bind", guestPath: "/b", hostPath: "/s/rootfs/rw/1", readonly: false, identity: "1:3" },
    { kind: "bind", guestPath: "/e", hostPath: "/engine/e", readonly: false },
    { kind: "tmpfs", guestPath: "/c" },
    { kind: "bind", guestPath: "/d", hostPath: "/s/rootfs/ro/2", readonly: true },
  ]);
  // The helper gets the disk size, the counts (host binds, disks), the disks, (ro|rw, host path, identity) for each bind, then runsc's command line.
  const [cmd, args] = inPrivateMounts("/s", "/img", false, 64, binds, "runsc", ["run"]);
  assert.equal(cmd, paths.privateMounts());
  assert.deepEqual(args.slice(-15), ["0", "64", "3", "0", "ro", "/h/a", "1:2", "rw", "/h/b", "1:3", "ro", "/engine/d", "-", "runsc", "run"]);
  const [, withDisks] = inPrivateMounts("/s", "/img", false, 64, binds.slice(0, 1), "runsc", ["run"], [{ hostPath: "/v/a.ext4", guestPath: "/data", readonly: true }]);
  assert.deepEqual(withDisks.slice(-12), ["0", "64", "1", "1", "/v/a.ext4", "ro", "/v/a.ext4", "ro", "/h/a", "1:2", "runsc", "run"]);
  const [, held] = inPrivateMounts("/s", "/img", false, 64, [], "runsc", ["run"], [{ hostPath: "/v/a.ext4", held: "/proc/7/fd/9", guestPath: "/data", readonly: false }]);
  assert.deepEqual(held.slice(-5), ["/proc/7/fd/9", "rw", "/v/a.ext4", "runsc", "run"]);
});

test("cpus: a quota of that many CPUs' time, no cpuset, and the agent told ceil(cpus) for its commands", () => {
  const config = ociConfig({ ...spec(512), cpus: 1.5 }, "/agent") as {
    process: { args: string[] };
    linux: { resources: { cpu: Record<string, unknown> } };
  };
  assert.deepEqual(config.linux.resources.cpu, { quota: 150_000, period: 100_000 });
  assert.deepEqual(config.process.args.slice(2, 4), ["--cpus", "2"]);
});

test("reclaiming a sandbox removes runsc's files for it, its control socket included, and no other's", async () => {
  const home = await mkdtemp(join(tmpdir(), "matchlock-reclaim-"));
  const saved = process.env.MATCHLOCK_HOME;
  process.env.MATCHLOCK_HOME = home;
  try {
    await mkdir(paths.runscRoot(), { recursive: true });
    const theirs = ["vm-a_sandbox:vm-a.state", "vm-a_sandbox:vm-a.lock", "runsc-vm-a.sock"];
    const others = ["vm-ab_sandbox:vm-ab.state", "runsc-vm-ab.sock"];
    for (const f of [...theirs, ...others]) await writeFile(join(paths.runscRoot(), f), "");
    const cleaned = await gvisorDriver.reclaim("vm-a");
    assert.ok(cleaned.includes("runsc container"), cleaned.join(", "));
    assert.deepEqual((await readdir(paths.runscRoot())).sort(), others.sort());
  } finally {
    if (saved === undefined) delete process.env.MATCHLOCK_HOME;
    else process.env.MATCHLOCK_HOME = saved;
    await rm(home, { recursive: true, force: true });
  }
});
