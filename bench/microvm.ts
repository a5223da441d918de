// Micro-VM timings side by side with gVisor and with a bare QEMU boot of the same kernel and
// initramfs (init = `busybox poweroff -f`, no modules, no agent), measured in one run on this
// machine. Prints medians and ratios.
//   npm run bench:microvm    (needs root, QEMU, the guest kernel and the local images from `npm run setup`)
import { spawn } from "node:child_process";
import { cpus } from "node:os";
import { chooseAccel, hostFacts } from "../src/engine/backends/microvm/accel.js";
import { findGuestKernel, initramfsFor } from "../src/engine/backends/microvm/guest-kernel.js";
import { qemuBinary } from "../src/engine/backends/microvm/microvm.js";
import { qemuArgs } from "../src/engine/backends/microvm/qemu-args.js";
import { rootImageFor } from "../src/engine/backends/microvm/root-image.js";
import { ImageStore } from "../src/engine/image/store.js";
import { paths } from "../src/engine/paths.js";
import { BUSYBOX, setUpE2E } from "../test/helpers/e2e.js";
import { median, sdkColdStarts, sdkExecRoundTrips } from "./measure.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const EXECS = Number(process.env.BENCH_EXECS ?? 50);

/** Spawn -> QEMU exit for a boot whose init powers off at once. */
async function bareBoot(): Promise<number[]> {
  const image = await new ImageStore().resolve(BUSYBOX);
  if (!image) throw new Error(`${BUSYBOX} is not imported`);
  const kernel = await findGuestKernel();
  const accel = chooseAccel(await hostFacts());
  const args = qemuArgs({
    id: "bench", cpus: 1, memoryMb: 512, diskSizeMb: 512, hostname: "bench", accel, vmlinux: kernel.vmlinux,
    initramfs: await initramfsFor(kernel, paths.agentBinary()), rootImage: await rootImageFor(image.rootfs), agentFd: 3, mounts: [],
  });
  const append = args.indexOf("-append") + 1;
  args[append] = ["console=ttyS0", "quiet", "panic=-1", "cryptomgr.notests", `tsc_early_khz=${accel.tscKhz}`, "pci=off",
    "rdinit=/bin/busybox", "--", "poweroff", "-f"].join(" ");
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const p = spawn(qemuBinary(), args, { stdio: ["ignore", "ignore", "inherit", "pipe"] });
      p.on("error", reject);
      p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`bare boot: QEMU exited ${code}`))));
    });
    times.push(performance.now() - t);
  }
  return times;
}

async function engine(backend: string): Promise<{ cold: number[]; exec: number[] }> {
  process.env.MATCHLOCK_BACKEND = backend;
  return { cold: await sdkColdStarts(ROUNDS), exec: await sdkExecRoundTrips(EXECS) };
}

async function main(): Promise<void> {
  await setUpE2E();
  const accel = chooseAccel(await hostFacts());
  const bare = median(await bareBoot());
  const vm = await engine("microvm");
  const gv = await engine("gvisor");
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, node ${process.version}; ${accel.reason}; rounds ${ROUNDS}, execs ${EXECS}`);
  console.log("| measure | median ms | vs bare QEMU boot to init | vs gVisor |");
  console.log("|---|---:|---:|---:|");
  const row = (what: string, ms: number, base: number | undefined, other: number | undefined) =>
    console.log(`| ${what} | ${ms.toFixed(1)} | ${base ? `${(ms / base).toFixed(2)}x` : ""} | ${other ? `${(ms / other).toFixed(2)}x` : ""} |`);
  row("bare QEMU boot, same kernel + initramfs, init = poweroff", bare, undefined, undefined);
  row("micro-VM: SDK launch + first exec", median(vm.cold), bare, median(gv.cold));
  row("gVisor: SDK launch + first exec", median(gv.cold), undefined, undefined);
  row("micro-VM: exec `true` round trip (SDK)", median(vm.exec), undefined, median(gv.exec));
  row("gVisor: exec `true` round trip (SDK)", median(gv.exec), undefined, undefined);
}

await main();
