// Micro-VM timings side by side with gVisor and with a bare QEMU boot of the same kernel, kernel
// command line and QEMU devices, but a minimal initramfs (busybox only, init = `busybox
// poweroff -f`: no modules, no agent), measured in one run on this machine. Rounds interleave
// bare boot, micro-VM and gVisor, so that other load on the machine hits all three alike.
// Prints medians and ratios.
//   npm run bench:microvm    (needs root, QEMU, the guest kernel and the local images from `npm run setup`)
import { execFile, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { chooseAccel, hostFacts } from "../src/engine/backends/microvm/accel.js";
import { findGuestKernel, initramfsFor } from "../src/engine/backends/microvm/guest-kernel.js";
import { qemuBinary } from "../src/engine/backends/microvm/microvm.js";
import { qemuArgs } from "../src/engine/backends/microvm/qemu-args.js";
import { rootImageFor } from "../src/engine/backends/microvm/root-image.js";
import { ImageStore } from "../src/engine/image/store.js";
import { paths } from "../src/engine/paths.js";
import { BUSYBOX, setUpE2E } from "../test/helpers/e2e.js";
import { median, sdkColdStart, sdkExecRoundTrips } from "./measure.js";
import { startServer } from "../test/helpers/resident.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const EXECS = Number(process.env.BENCH_EXECS ?? 50);
const HOST_BUSYBOX = process.env.MATCHLOCK_BUSYBOX || "/bin/busybox";

/** An initramfs holding only a static busybox, in a fresh temporary directory. */
async function minimalInitramfs(dir: string): Promise<string> {
  await mkdir(join(dir, "root", "bin"), { recursive: true });
  await copyFile(HOST_BUSYBOX, join(dir, "root", "bin", "busybox"));
  const out = join(dir, "minimal.cpio");
  await promisify(execFile)("sh", ["-c", `cd "$1" && find . | cpio --quiet -o -H newc -R 0:0 > "$2"`, "sh", join(dir, "root"), out]);
  return out;
}

/** QEMU's arguments for a boot whose init powers off at once: the engine's, minus init and its instructions. */
async function bareBootArgs(initramfs: string): Promise<string[]> {
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const kernel = await findGuestKernel();
  const accel = chooseAccel(await hostFacts());
  const args = qemuArgs({
    id: "bench", cpus: 1, memoryMb: 512, diskSizeMb: 512, hostname: "bench", accel, vmlinux: kernel.vmlinux,
    initramfs: await initramfsFor(kernel, paths.agentBinary()), rootImage: await rootImageFor(image.rootfs), agentFd: 3, mounts: [],
  });
  args[args.indexOf("-initrd") + 1] = initramfs;
  const append = args.indexOf("-append") + 1;
  const kept = args[append]!.split(" ").filter((w) => !w.startsWith("matchlock.") && !w.startsWith("rdinit="));
  args[append] = [...kept, "rdinit=/bin/busybox", "--", "poweroff", "-f"].join(" ");
  return args;
}

/** Spawn -> QEMU exit. */
async function bareBoot(args: string[]): Promise<number> {
  const t = performance.now();
  await new Promise<void>((resolve, reject) => {
    const p = spawn(qemuBinary(), args, { stdio: ["ignore", "ignore", "inherit", "pipe"] });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`bare boot: QEMU exited ${code}`))));
  });
  return performance.now() - t;
}

async function coldStart(backend: string): Promise<number> {
  process.env.MATCHLOCK_BACKEND = backend;
  return (await sdkColdStart()).total;
}

async function execRoundTrips(backend: string): Promise<number[]> {
  process.env.MATCHLOCK_BACKEND = backend;
  return sdkExecRoundTrips(EXECS);
}

async function main(): Promise<void> {
  await setUpE2E();
  const accel = chooseAccel(await hostFacts());
  const tmp = await mkdtemp(join(tmpdir(), "matchlock-bench-"));
  const bare: number[] = [];
  const vmCold: number[] = [];
  const vmResident: number[] = [];
  const gvCold: number[] = [];
  try {
    const args = await bareBootArgs(await minimalInitramfs(tmp));
    await coldStart("microvm"); // builds the initramfs and the root image outside the measured rounds
    // A resident engine (`matchlock serve`) takes the engine's own start out of the launch.
    const server = await startServer(join(tmp, "engine.sock"), { MATCHLOCK_BACKEND: "microvm" });
    try {
      await sdkColdStart(server.socketPath); // its first VM fills the server's caches
      for (let i = 0; i < ROUNDS; i++) {
        bare.push(await bareBoot(args));
        vmCold.push(await coldStart("microvm"));
        vmResident.push((await sdkColdStart(server.socketPath)).total);
        gvCold.push(await coldStart("gvisor"));
        console.error(`round ${i + 1}/${ROUNDS}: bare ${bare[i]!.toFixed(0)} ms, micro-VM ${vmCold[i]!.toFixed(0)} ms, ` +
          `micro-VM resident ${vmResident[i]!.toFixed(0)} ms, gVisor ${gvCold[i]!.toFixed(0)} ms`);
      }
    } finally {
      await server.stop();
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const vmExec = await execRoundTrips("microvm");
  const gvExec = await execRoundTrips("gvisor");
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; ${accel.reason}; rounds ${ROUNDS}, execs ${EXECS}`);
  console.log("| measure | median ms | vs bare QEMU boot to init | vs gVisor |");
  console.log("|---|---:|---:|---:|");
  const row = (what: string, ms: number, base: number | undefined, other: number | undefined) =>
    console.log(`| ${what} | ${ms.toFixed(1)} | ${base ? `${(ms / base).toFixed(2)}x` : ""} | ${other ? `${(ms / other).toFixed(2)}x` : ""} |`);
  row("bare QEMU boot, same kernel, busybox-only initramfs, init = poweroff", median(bare), undefined, undefined);
  row("micro-VM: SDK launch + first exec", median(vmCold), median(bare), median(gvCold));
  row("micro-VM: SDK launch + first exec, resident engine (`matchlock serve`)", median(vmResident), median(bare), undefined);
  row("gVisor: SDK launch + first exec", median(gvCold), undefined, undefined);
  row("micro-VM: exec `true` round trip (SDK)", median(vmExec), undefined, median(gvExec));
  row("gVisor: exec `true` round trip (SDK)", median(gvExec), undefined, undefined);
}

await main();
