// Micro-VM timings side by side with gVisor and with a bare QEMU boot of the same kernel, kernel
// command line and QEMU devices, but a minimal initramfs (busybox only, init = `busybox echo`:
// no modules, no agent), measured in one run on this machine. Issue 3's target pairs two of them:
// "agent ready" (the backend's start, QEMU spawn included, to the agent's READY frame) against
// the bare boot "to init" (QEMU spawn to init's first output). Rounds interleave all measures, so
// that other load on the machine hits them alike. Prints medians and ratios.
//   npm run bench:microvm    (needs root, QEMU, the guest kernel and the local images from `npm run setup`)
import { execFile, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { chooseAccel, hostFacts } from "../src/engine/backends/microvm/accel.js";
import { findGuestKernel, initramfsFor } from "../src/engine/backends/microvm/guest-kernel.js";
import { MicrovmBackend, qemuBinary } from "../src/engine/backends/microvm/microvm.js";
import { qemuArgs } from "../src/engine/backends/microvm/qemu-args.js";
import { rootImageFor } from "../src/engine/backends/microvm/root-image.js";
import { ImageStore } from "../src/engine/image/store.js";
import { paths } from "../src/engine/paths.js";
import { BUSYBOX, CLI, setUpE2E } from "../test/helpers/e2e.js";
import { median, sdkColdStart, sdkExecRoundTrips, spareBootsEnded } from "./measure.js";
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

/** What the bare boot's init prints: its arrival on the console is "init ran". */
const BARE_MARKER = "matchlock-bare-init";

/**
 * QEMU's arguments for a boot whose init prints a marker and exits (the kernel then panics into
 * a reboot that -no-reboot turns into QEMU's exit): the engine's, minus init and its instructions.
 */
async function bareBootArgs(initramfs: string): Promise<string[]> {
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const kernel = await findGuestKernel();
  const accel = chooseAccel(await hostFacts());
  const args = qemuArgs({
    id: "bench", cpus: 1, memoryMb: 512, diskSizeMb: 512, hostname: "bench", privileged: false, accel, vmlinux: kernel.vmlinux,
    initramfs: await initramfsFor(kernel, paths.agentBinary()), rootImage: await rootImageFor(image.rootfs), agentFd: 3, mounts: [],
  });
  args[args.indexOf("-initrd") + 1] = initramfs;
  const append = args.indexOf("-append") + 1;
  const kept = args[append]!.split(" ").filter((w) => !w.startsWith("matchlock.") && !w.startsWith("rdinit="));
  args[append] = [...kept, "rdinit=/bin/busybox", "--", "echo", BARE_MARKER].join(" ");
  return args;
}

/** Spawn -> init's marker on the console ("to init"), and spawn -> QEMU exit. */
async function bareBoot(args: string[]): Promise<{ toInit: number; exit: number }> {
  const t = performance.now();
  let toInit: number | undefined;
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const p = spawn(qemuBinary(), args, { stdio: ["ignore", "pipe", "inherit", "pipe"] });
    p.stdout!.on("data", (d: Buffer) => {
      output += d.toString("latin1");
      if (toInit === undefined && output.includes(BARE_MARKER)) toInit = performance.now() - t;
    });
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`bare boot: QEMU exited ${code}`))));
  });
  if (toInit === undefined) throw new Error(`bare boot: init's marker never reached the console:\n${output.slice(-2000)}`);
  return { toInit, exit: performance.now() - t };
}

/**
 * The backend's start() to the agent's READY frame: the guest kernel, initramfs and root image
 * are cached by then, so this is QEMU's spawn to READY plus a few ms of cache look-ups. The
 * same sandbox shape as the SDK's launch (busybox, 1 cpu, 512 MB, no mounts, no network).
 */
async function agentReady(backend: MicrovmBackend, rootfs: string, dir: string, round: number): Promise<number> {
  const id = `vm-bench${round}`;
  const stateDir = join(dir, id); // one per VM, as the engine's: the backend makes its jail there
  await mkdir(stateDir);
  const t = performance.now();
  const vm = await backend.start({
    id, image: { kind: "unpacked", ref: id, rootfs }, cpus: 1, memoryMb: 512, diskSizeMb: 512, hostname: id, privileged: false, mounts: [],
    stateDir, logFile: join(stateDir, "vm.log"),
  });
  const ms = performance.now() - t;
  await vm.stop(5000);
  return ms;
}

async function coldStart(backend: string): Promise<number> {
  process.env.MATCHLOCK_BACKEND = backend;
  return (await sdkColdStart({ binaryPath: CLI })).total; // an engine per client
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
  const bareExit: number[] = [];
  const ready: number[] = [];
  const vmCold: number[] = [];
  const vmResident: number[] = [];
  const vmSpare: number[] = [];
  const gvCold: number[] = [];
  try {
    const args = await bareBootArgs(await minimalInitramfs(tmp));
    const image = await new ImageStore().resolve(BUSYBOX);
    const backend = new MicrovmBackend();
    await coldStart("microvm"); // builds the initramfs and the root image outside the measured rounds
    // A resident engine (`matchlock serve`) takes the engine's own start out of the launch; one
    // without spares, and one whose warm spare (booted when the previous sandbox closed) the
    // launch takes. Each measure starts once that spare is up, so no boot runs beside a measure.
    const server = await startServer(join(tmp, "engine.sock"), { MATCHLOCK_BACKEND: "microvm", MATCHLOCK_WARM_POOL: "0" });
    const warm = await startServer(join(tmp, "warm.sock"), { MATCHLOCK_BACKEND: "microvm" });
    let sparesDue = 0;
    const settle = () => spareBootsEnded(async () => [warm.stderr()], sparesDue);
    try {
      await sdkColdStart({ engineSocket: server.socketPath }); // its first VM fills the server's caches
      await sdkColdStart({ engineSocket: warm.socketPath });
      sparesDue++;
      await settle();
      for (let i = 0; i < ROUNDS; i++) {
        const b = await bareBoot(args);
        bare.push(b.toInit);
        bareExit.push(b.exit);
        ready.push(await agentReady(backend, image!.rootfs, tmp, i));
        vmCold.push(await coldStart("microvm"));
        vmResident.push((await sdkColdStart({ engineSocket: server.socketPath })).total);
        vmSpare.push((await sdkColdStart({ engineSocket: warm.socketPath })).total);
        sparesDue++;
        await settle();
        gvCold.push(await coldStart("gvisor"));
        console.error(`round ${i + 1}/${ROUNDS}: bare to init ${bare[i]!.toFixed(0)} ms, agent ready ${ready[i]!.toFixed(0)} ms, micro-VM ${vmCold[i]!.toFixed(0)} ms, ` +
          `micro-VM resident ${vmResident[i]!.toFixed(0)} ms, warm spare ${vmSpare[i]!.toFixed(0)} ms, gVisor ${gvCold[i]!.toFixed(0)} ms`);
      }
    } finally {
      await Promise.all([server.stop(), warm.stop()]);
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
  row("bare QEMU boot to init (same kernel, busybox-only initramfs): spawn -> init's output", median(bare), undefined, undefined);
  row("bare QEMU boot: spawn -> QEMU exit (init exits, kernel reboots)", median(bareExit), median(bare), undefined);
  row("micro-VM: agent ready (backend start, QEMU spawn included -> READY frame)", median(ready), median(bare), undefined);
  row("micro-VM: SDK launch + first exec", median(vmCold), median(bare), median(gvCold));
  row("micro-VM: SDK launch + first exec, resident engine (`matchlock serve`, no spares)", median(vmResident), median(bare), undefined);
  row("micro-VM: SDK launch + first exec, resident engine's warm spare", median(vmSpare), median(bare), undefined);
  row("gVisor: SDK launch + first exec", median(gvCold), undefined, undefined);
  row("micro-VM: exec `true` round trip (SDK)", median(vmExec), undefined, median(gvExec));
  row("gVisor: exec `true` round trip (SDK)", median(gvExec), undefined, undefined);
}

await main();
