// End to end: kill the SDK's process, the engine, or the isolation engine (runsc, QEMU) at a
// random point (during create, exec or a file write), in a loop. After each kill, the next
// engine start's gc must leave nothing of the killed sandbox (process, runsc state, cgroup,
// mount, network namespace, link, allocation, overlay), and the next sandbox must work.
// The loop is seeded; the seed is printed, and $MATCHLOCK_FAULT_SEED replays a run.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, CLI, ROOT, cli, eventually, leftovers, networkLeftovers, newClient, setUpE2E } from "../helpers/e2e.js";

const execFileP = promisify(execFile);

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Victim = "sdk" | "engine" | "vmm";
type Phase = "create" | "exec" | "write";

/** The user's program: create, then exec and write files until something dies. */
function userScript(network: boolean): string {
  const sandbox = `new Sandbox(${JSON.stringify(BUSYBOX)})${network ? '.allowHost("example.com")' : ""}`;
  return `
    import { Client, Sandbox } from ${JSON.stringify(join(ROOT, "dist/src/sdk/index.js"))};
    const say = (m) => process.stdout.write(m + "\\n");
    const c = new Client({ binaryPath: ${JSON.stringify(CLI)} });
    try {
      say("phase create");
      say("id " + await c.launch(${sandbox}));
      for (;;) {
        say("phase exec");
        await c.exec("i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo $i");
        say("phase write");
        await c.writeFile("/tmp/big", new Uint8Array(4 << 20).fill(97));
      }
    } catch (e) {
      say("error " + e.message.split("\\n")[0]);
      process.exit(1);
    }`;
}

/** pid, parent pid and command line of every process. */
async function processTable(): Promise<Array<{ pid: number; ppid: number; args: string }>> {
  const { stdout } = await execFileP("ps", ["-eo", "pid=,ppid=,args="], { maxBuffer: 16 << 20 });
  return stdout.split("\n").filter(Boolean).map((l) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)!;
    return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! };
  });
}

/** The first descendant of `root` whose command line matches. */
async function descendant(root: number, match: RegExp): Promise<number | undefined> {
  const table = await processTable();
  const mine = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of table) if (mine.has(p.ppid) && !mine.has(p.pid)) { mine.add(p.pid); grew = true; }
  }
  return table.find((p) => mine.has(p.pid) && p.pid !== root && match.test(p.args))?.pid;
}

async function mountsOf(id: string): Promise<string[]> {
  return (await readFile("/proc/mounts", "utf8")).split("\n").filter((l) => l.includes(id));
}

describe("fault loop", () => {
  let home: string;
  before(async () => {
    home = await setUpE2E();
    await mkdir(join(home, "vms"), { recursive: true });
  });

  // TCG boots are slow: fewer rounds on micro-VMs.
  const iterations = BACKEND === "microvm" ? 5 : 8;
  test(`${iterations} random kills of SDK, engine or VMM: nothing left, the next sandbox works`, { timeout: 20 * 60_000 }, async (t) => {
    const seed = Number(process.env.MATCHLOCK_FAULT_SEED) || Math.floor(Math.random() * 2 ** 31);
    t.diagnostic(`seed ${seed} (replay with MATCHLOCK_FAULT_SEED=${seed})`);
    const random = prng(seed);
    const network = BACKEND !== "microvm"; // gVisor sandboxes get a sealed network, so there is more to leak
    const victims: Victim[] = ["sdk", "engine", "vmm"];
    const phases: Phase[] = ["create", "exec", "write"];
    let leaks = 0;

    for (let i = 0; i < iterations; i++) {
      const victim = victims[Math.floor(random() * victims.length)]!;
      const phase = phases[Math.floor(random() * phases.length)]!;
      const delayMs = Math.floor(random() * (phase === "create" ? 1500 : 150));

      const seen = new Set<string>();
      const w = watch(join(home, "vms"), (_e, name) => { if (name && /^vm-[0-9a-f]{8}$/.test(String(name))) seen.add(String(name)); });
      const user = spawn(process.execPath, ["--input-type=module", "-e", userScript(network)], { stdio: ["ignore", "pipe", "ignore"] });
      const userExit = new Promise<void>((r) => user.once("exit", () => r()));
      let lastPhase = "";
      const phaseSeen = new Promise<void>((resolve) => {
        let buf = "";
        user.stdout!.on("data", (d: Buffer) => {
          buf += d;
          for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) {
            const line = buf.slice(0, nl);
            if (line.startsWith("phase ")) lastPhase = line.slice(6);
            if (line.startsWith("id ")) seen.add(line.slice(3));
            if (line === `phase ${phase}`) resolve();
          }
        });
        void userExit.then(() => resolve());
      });
      await phaseSeen;
      await new Promise((r) => setTimeout(r, delayMs));

      // Find the victim; the VMM may not have been started yet (early in create): wait a little for it.
      let pid: number | undefined = user.pid;
      let killed: string = victim;
      if (victim !== "sdk") {
        const engine = await descendant(user.pid!, /main\.js rpc/);
        pid = engine;
        if (victim === "vmm" && engine) {
          const vmm = BACKEND === "microvm" ? /qemu-system/ : /runsc .* run /;
          for (let tries = 0; tries < 30 && (pid = await descendant(engine, vmm)) === undefined; tries++) await new Promise((r) => setTimeout(r, 100));
          if (pid === undefined) { pid = engine; killed = "engine (no VMM yet)"; }
        }
      }
      if (pid !== undefined) {
        try { process.kill(pid, "SIGKILL"); } catch { killed += " (already gone)"; }
      } else {
        killed += " (not found)";
      }
      // The user's program ends by itself when its engine or sandbox dies; never wait forever.
      const ended = await Promise.race([userExit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]);
      if (!ended) user.kill("SIGKILL");
      await userExit;
      w.close();

      // The next engine start runs gc; its sandbox must work.
      {
        await using next = newClient();
        await next.launch(new Sandbox(BUSYBOX));
        assert.equal((await next.exec("echo next")).stdout, "next\n", `iteration ${i}`);
      }
      const found: string[] = [];
      for (const id of seen) {
        found.push(...(await eventually(() => leftovers(id, home))));
        found.push(...(await eventually(() => mountsOf(id))));
        found.push(...(await eventually(async () => (await networkLeftovers(id)).map((n) => `${id} ${n}`))));
        if (existsSync(join(home, "vms", id, "overlay"))) found.push(`${id}/overlay`);
        // An engine that outlived its user tears down on its own, in its own time.
        found.push(...(await eventually(async () => {
          const record = (await readFile(join(home, "vms", id, "status"), "utf8").catch(() => "")).trim();
          return record === "running" && (await processTable()).some((p) => p.args.includes(id)) ? [`${id}: still running`] : [];
        })));
      }
      leaks += found.length;
      t.diagnostic(`#${i}: killed ${killed} during ${lastPhase || "start"} (wanted ${phase}, +${delayMs} ms); sandboxes ${[...seen].join(",") || "none yet"}; leaks ${found.length}${found.length ? `: ${found.join("; ")}` : ""}`);
    }

    // Records of killed sandboxes are "crashed" or "stopped"; prune removes them all.
    const pruned = await cli(["prune"]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.deepEqual((await readdir(join(home, "vms"))).filter((n) => n.startsWith("vm-")), []);
    t.diagnostic(`fault loop: ${iterations} iterations, seed ${seed}, leaks found ${leaks}`);
    assert.equal(leaks, 0);
  });
});
