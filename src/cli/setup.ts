// `matchlock setup`: what a project that installed the npm package runs once to make sandboxes
// work on its machine: the Debian/Ubuntu packages the chosen engines need (apt-get, only those
// missing), gVisor's current runsc (Debian backports, into the cache; the host's apt sources stay
// as they are), the micro-VM's guest kernel (Debian's, into the cache), then a check of the result.
// Idempotent: a machine that has everything is only checked. The repository's own
// `npm run setup` runs this too, so there is one way to prepare a machine.
import { spawn } from "node:child_process";
import type { Command } from "commander";
import { runCommand } from "../engine/host-commands.js";
import { paths } from "../engine/paths.js";
import { SETUP_COMMAND } from "../engine/backends/backend.js";
import { guestBinariesProblem } from "./guest-binaries.js";
import { doctorReport, printDoctorReport } from "./doctor.js";

const ENGINES = ["gvisor", "microvm"] as const;
type Engine = (typeof ENGINES)[number];

/** Debian package names, by what needs them at run time. */
const PACKAGES: Record<Engine | "network", string[]> = {
  // The network seal (both engines): veth/tap links, the firewall, original-destination lookups.
  network: ["iproute2", "nftables", "conntrack", "ca-certificates"],
  // unshare and mount for the private mount namespace; mkfs.ext4 for overlay mounts' disk and volumes.
  gvisor: ["runsc", "util-linux", "mount", "e2fsprogs"],
  // QEMU (no recommends: they pull a GUI stack), setpriv, the root image (mkfs.ext4), the
  // initramfs (cpio, objcopy), and the kernel fetch (apt-get download + depmod + python3's lzma).
  microvm: ["qemu-system-x86", "util-linux", "e2fsprogs", "cpio", "binutils", "kmod", "python3"],
};

interface SetupOptions {
  engine: "all" | Engine;
}

/** Runs a step whose output the user follows as it happens; resolves with its exit status. */
function run(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", reject);
    child.once("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const aptEnsure = paths.packageFile("scripts", "apt-ensure.sh");
const fetchKernel = paths.packageFile("scripts", "fetch-guest-kernel.sh");
const fetchRunsc = paths.packageFile("scripts", "fetch-runsc.sh");

/** Returns the exit status: 0 when the chosen engines can run sandboxes here. */
export async function setup(opts: SetupOptions): Promise<number> {
  const engines: Engine[] = opts.engine === "all" ? [...ENGINES] : [opts.engine];
  const isRoot = process.getuid?.() === 0;
  const packages = [...PACKAGES.network, ...engines.flatMap((e) => PACKAGES[e])];
  console.log(`matchlock setup: prepares this machine for the ${engines.join(" and ")} engine${engines.length > 1 ? "s" : ""} (--engine to choose).`);
  console.log("  It installs the Debian/Ubuntu packages they need with apt-get (only missing ones; that needs root)" +
    (engines.includes("gvisor") ? `,\n  fetches a current gVisor runsc (Debian backports, with a private apt configuration, into ${paths.cache()}/gvisor; the host's apt sources and runsc stay as they are)` : "") +
    (engines.includes("microvm") ? `,\n  fetches the micro-VM guest kernel (Debian's linux-image-amd64, into ${paths.cache()}/microvm; nothing is installed)` : "") +
    ",\n  and checks that sandboxes can run.");
  if (!isRoot && engines.includes("gvisor")) {
    console.log("  Note: gVisor runs sandboxes as root only: run your program as root, or with `new Client({ useSudo: true })`.");
  }

  console.log(`==> Debian packages: ${packages.join(" ")}`);
  const missing = await runCommand("bash", [aptEnsure, "--missing", ...packages]);
  if (missing.status !== 0) {
    process.stderr.write(missing.stderr || `${aptEnsure} failed: ${missing.spawnError?.message ?? "killed"}\n`);
    return 1;
  }
  const toInstall = missing.stdout.trim();
  if (toInstall === "") {
    console.log("    all installed");
  } else if (!isRoot) {
    console.error(`matchlock setup: installing ${toInstall} needs root (apt-get): run "sudo ${SETUP_COMMAND}"`);
    return 1;
  } else {
    const code = await run(["bash", aptEnsure, ...packages]);
    if (code !== 0) return code;
  }

  if (engines.includes("gvisor")) {
    console.log("==> gVisor runsc (current, with systrap)");
    const code = await run(["bash", fetchRunsc]);
    if (code !== 0) return code;
  }

  if (engines.includes("microvm")) {
    console.log("==> micro-VM guest kernel");
    const code = await run(["bash", fetchKernel]);
    if (code !== 0) return code;
  }

  console.log("==> guest binaries (shipped prebuilt in the package)");
  const guestProblem = await guestBinariesProblem();
  console.log(guestProblem ? `    ${guestProblem}` : "    match this engine");

  console.log("==> check (matchlock doctor)");
  const report = await doctorReport();
  printDoctorReport(report);
  const ready = report.backends.filter((b) => b.available && engines.includes(b.name as Engine)).map((b) => b.name);
  if (guestProblem || ready.length === 0) {
    console.error("matchlock setup: no engine can run sandboxes here yet (see above)");
    return 1;
  }
  console.log(`ready: ${ready.join(" and ")}`);
  return 0;
}

export function registerSetupCommand(program: Command): void {
  program
    .command("setup")
    .description("install what the engines need on this machine (Debian/Ubuntu packages, the micro-VM guest kernel) and check it; idempotent")
    .option("--engine <name>", `which engines to prepare: all, ${ENGINES.join(", ")}`, "all")
    .action(async (opts: { engine: string }) => {
      if (opts.engine !== "all" && !(ENGINES as readonly string[]).includes(opts.engine)) {
        throw new Error(`unknown engine ${JSON.stringify(opts.engine)} for --engine (use all, ${ENGINES.join(", ")})`);
      }
      process.exitCode = await setup({ engine: opts.engine as SetupOptions["engine"] });
    });
}
