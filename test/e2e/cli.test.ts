// End to end: the `matchlock` command line.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, CLI, cli, setUpE2E } from "../helpers/e2e.js";
import { chooseAccel, hostFacts } from "../../src/engine/backends/microvm/accel.js";

describe("matchlock CLI", () => {
  before(async () => {
    await setUpE2E();
  });

  test("--help lists the commands; --version names matchlock", async () => {
    const help = await cli(["--help"]);
    assert.equal(help.code, 0);
    for (const c of ["run", "list", "get", "kill", "rm", "prune", "rpc", "version", "image", "doctor", "setup"]) assert.match(help.stdout, new RegExp(`\\b${c}\\b`));
    assert.match((await cli(["--version"])).stdout, /matchlock/);
    assert.match((await cli(["version"])).stdout, /^matchlock .*commit:/);
  });

  test("doctor says which engines work, KVM or TCG and why, and which one is selected", async () => {
    const r = await cli(["doctor", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { backends: Array<{ name: string; available: boolean; detail?: string }>; selected: { name: string; reason: string } };
    assert.deepEqual(report.backends.map((b) => b.name), ["microvm", "gvisor"]);
    // This suite boots sandboxes on both engines, so both must be available here.
    assert.ok(report.backends.every((b) => b.available), r.stdout);
    const accel = chooseAccel(await hostFacts());
    assert.equal(report.backends[0]!.detail, accel.reason);
    assert.match(accel.reason, /^(KVM|TCG)/);
    if (BACKEND !== "auto") assert.equal(report.selected.name, BACKEND);
    assert.match(report.selected.reason, /MATCHLOCK_BACKEND|auto/);
    const text = await cli(["doctor"]);
    assert.match(text.stdout, /^microvm: available\n  .*\n  here: (KVM|TCG)/m);
    assert.match(text.stdout, /^selected: /m);
    // An unknown MATCHLOCK_BACKEND is reported, not a crash. cli() reads the env when it spawns.
    const saved = process.env.MATCHLOCK_BACKEND;
    process.env.MATCHLOCK_BACKEND = "bogus";
    const pending = cli(["doctor"]);
    if (saved === undefined) delete process.env.MATCHLOCK_BACKEND;
    else process.env.MATCHLOCK_BACKEND = saved;
    const bogus = await pending;
    assert.match(bogus.stdout, /^selected: none \(unknown backend "bogus" in MATCHLOCK_BACKEND \(use microvm, gvisor, auto\)\)$/m);
    assert.equal(bogus.code, 1, "no engine would run: doctor fails");
  });

  test("doctor run by another user says first that gVisor needs root", async () => {
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const p = spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, "doctor"], { stdio: ["ignore", "pipe", "inherit"] });
      let stdout = "";
      p.stdout.on("data", (d: Buffer) => (stdout += d));
      p.once("error", reject);
      p.once("close", (code) => resolve({ code, stdout }));
    });
    assert.match(r.stdout, /^running as uid 65534: gVisor needs root \(run as root, or use Config\.useSudo in the SDK\)\n/);
    assert.match(r.stdout, /^gvisor: NOT available\n  the gVisor backend needs root/m);
  });

  test("run streams output and exits with the command's code", async () => {
    const ok = await cli(["run", "--image", BUSYBOX, "echo", "hello"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "hello\n");
    const sh = await cli(["run", "--image", BUSYBOX, "--", "sh", "-c", "echo foo bar; echo oops >&2; exit 5"]);
    assert.equal(sh.code, 5);
    assert.equal(sh.stdout, "foo bar\n");
    assert.equal(sh.stderr, "oops\n");
  });

  test("run: missing image, unknown image (run's own failures exit 125, as Docker's)", async () => {
    const noImage = await cli(["run", "echo", "hi"]);
    assert.equal(noImage.code, 125);
    assert.match(noImage.stderr, /--image/);
    const unknown = await cli(["run", "--image", "local/nope:1", "true"]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /^Error: image local\/nope:1 is not in the local store and pulling is off/);
  });

  test("run --rm=false keeps a stopped record; list, get and rm handle it", async () => {
    const r = await cli(["run", "--rm=false", "--image", BUSYBOX, "true"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^vm-[0-9a-f]{8}\n$/, "the id of the kept sandbox");
    const vms = JSON.parse((await cli(["list", "--json"])).stdout) as Array<{ id: string; status: string; image: string }>;
    const vm = vms.find((v) => v.status === "stopped");
    assert.ok(vm, JSON.stringify(vms));
    assert.equal(vm.image, BUSYBOX);
    const table = (await cli(["list"])).stdout;
    assert.match(table, /^ID\s{2,}STATUS\s{2,}IMAGE\s{2,}CREATED\s{2,}PID/);
    assert.match(table, new RegExp(`${vm.id}\\s+stopped`));
    const got = JSON.parse((await cli(["get", vm.id])).stdout);
    assert.equal(got.id, vm.id);
    assert.equal(got.status, "stopped");
    assert.equal((await cli(["rm", vm.id])).stdout, `Removed ${vm.id}\n`);
    assert.equal((await cli(["list", "--json"])).stdout.includes(vm.id), false);
  });

  test("id-taking commands: missing ids and unknown ids", async () => {
    for (const c of ["kill", "rm"]) {
      const r = await cli([c]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /VM ID required/);
    }
    const r = await cli(["get", "vm-nonexistent"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /VM vm-nonexistent not found/);
    assert.match((await cli(["prune"])).stdout, /Pruned \d+ VMs/);
  });
});
