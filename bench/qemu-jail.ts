// What QEMU's confinement (src/engine/backends/microvm/jail.ts) costs at boot: the same VM (the
// engine's kernel, initramfs, agent and root image; no shares, no network) spawned bare (QEMU
// under `setpriv --pdeathsig KILL`, as the engine did before the jail) and jailed (namespaces,
// chroot, unprivileged user, no capabilities, QEMU's seccomp filter), in interleaved rounds, each
// timed from spawn to the agent's READY frame. Prints both medians and their difference.
//   npm run bench:qemu-jail    (needs root, QEMU, the guest kernel and the local images)
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { chooseAccel, hostFacts } from "../src/engine/backends/microvm/accel.js";
import { findGuestKernel, initramfsFor } from "../src/engine/backends/microvm/guest-kernel.js";
import { JAIL_PATHS, QEMU_SANDBOX, jailedCommand, qemuUser, usrRootLinks } from "../src/engine/backends/microvm/jail.js";
import { qemuBinary } from "../src/engine/backends/microvm/microvm.js";
import { qemuArgs, type VmPlan } from "../src/engine/backends/microvm/qemu-args.js";
import { rootImageFor } from "../src/engine/backends/microvm/root-image.js";
import { findOnPath } from "../src/engine/backends/process-helpers.js";
import { ImageStore } from "../src/engine/image/store.js";
import { paths } from "../src/engine/paths.js";
import { BUSYBOX, setUpE2E } from "../test/helpers/e2e.js";
import { median } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);

/** Spawn -> the first bytes on the agent channel (the READY frame); then the VM is killed. */
async function toReady(cmd: string, args: string[]): Promise<number> {
  const t = performance.now();
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe", "pipe"] });
  let console_ = "";
  p.stdout!.on("data", (d: Buffer) => (console_ += d.toString("latin1")));
  p.stderr!.on("data", (d: Buffer) => (console_ += d.toString("latin1")));
  const closed = new Promise<void>((resolve) => p.once("close", () => resolve()));
  const ms = await new Promise<number>((resolve, reject) => {
    (p.stdio[3] as Readable).once("data", () => resolve(performance.now() - t));
    p.once("close", (code) => reject(new Error(`QEMU exited (${code}) before the agent was ready:\n${console_.slice(-2000)}`)));
  });
  p.kill("SIGKILL");
  await closed;
  return ms;
}

async function main(): Promise<void> {
  await setUpE2E();
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const kernel = await findGuestKernel();
  const files = { vmlinux: kernel.vmlinux, initramfs: await initramfsFor(kernel, paths.agentBinary()), rootImage: await rootImageFor(image.rootfs) };
  const plan: VmPlan = {
    id: "vm-jailbench", cpus: 1, memoryMb: 512, diskSizeMb: 512, hostname: "bench", privileged: false,
    accel: chooseAccel(await hostFacts()), agentFd: 3, mounts: [], ...files,
  };
  const qemu = await realpath((await findOnPath(qemuBinary()))!);
  const bare: [string, string[]] = ["setpriv", ["--pdeathsig", "KILL", "--", qemu, ...qemuArgs(plan)]];
  const tmp = await mkdtemp(join(tmpdir(), "matchlock-jail-bench-"));
  const dir = join(tmp, "jail");
  await mkdir(dir);
  const jailedArgs = [...qemuArgs({ ...plan, vmlinux: JAIL_PATHS.vmlinux, initramfs: JAIL_PATHS.initramfs, rootImage: JAIL_PATHS.rootImage }), "-sandbox", QEMU_SANDBOX];
  const jailed = jailedCommand({
    dir, qemu, ...qemuUser(), groups: [],
    files: [{ host: files.vmlinux, jail: JAIL_PATHS.vmlinux }, { host: files.initramfs, jail: JAIL_PATHS.initramfs }, { host: files.rootImage, jail: JAIL_PATHS.rootImage }],
    shares: [], devices: ["/dev/null"], ownDevices: [], rootLinks: await usrRootLinks(), capabilities: [], netns: undefined,
  }, jailedArgs);
  const before: number[] = [];
  const after: number[] = [];
  const loads: number[] = [];
  try {
    await toReady(...bare); // warms the page cache for both
    for (let i = 0; i < ROUNDS; i++) {
      // Alternate which goes first, so a trend in the machine's load hits both alike.
      const [first, second] = i % 2 === 0 ? [bare, jailed] : [jailed, bare];
      const a = await toReady(...first);
      const b = await toReady(...second);
      before.push(i % 2 === 0 ? a : b);
      after.push(i % 2 === 0 ? b : a);
      loads.push(loadavg()[0]!);
      console.error(`round ${i + 1}/${ROUNDS}: bare ${before[i]!.toFixed(0)} ms, jailed ${after[i]!.toFixed(0)} ms, load ${loads[i]!.toFixed(1)}`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const mb = median(before);
  const ma = median(after);
  console.log(`spawn to agent READY, median of ${ROUNDS} interleaved rounds (load ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}):`);
  console.log(`  bare QEMU  ${mb.toFixed(0)} ms`);
  console.log(`  jailed     ${ma.toFixed(0)} ms  (${ma - mb >= 0 ? "+" : ""}${(ma - mb).toFixed(0)} ms, ${(ma / mb).toFixed(3)}x)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
