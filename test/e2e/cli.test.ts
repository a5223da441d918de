// End to end: the `matchlock` command line.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { BUSYBOX, cli, setUpE2E } from "../helpers/e2e.js";

describe("matchlock CLI", () => {
  before(async () => {
    await setUpE2E();
  });

  test("--help lists the commands; --version names matchlock", async () => {
    const help = await cli(["--help"]);
    assert.equal(help.code, 0);
    for (const c of ["run", "list", "get", "kill", "rm", "prune", "rpc", "version", "image"]) assert.match(help.stdout, new RegExp(`\\b${c}\\b`));
    assert.match((await cli(["--version"])).stdout, /matchlock/);
    assert.match((await cli(["version"])).stdout, /^matchlock .*commit:/);
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

  test("run: missing image or command, unknown image", async () => {
    const noImage = await cli(["run", "echo", "hi"]);
    assert.notEqual(noImage.code, 0);
    assert.match(noImage.stderr, /--image/);
    const noCommand = await cli(["run", "--image", BUSYBOX]);
    assert.equal(noCommand.code, 1);
    assert.match(noCommand.stderr, /command required/);
    const unknown = await cli(["run", "--image", "local/nope:1", "true"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^Error: image local\/nope:1 is not in the local store and pulling is off/);
  });

  test("run --rm=false keeps a stopped record; list, get and rm handle it", async () => {
    const r = await cli(["run", "--rm=false", "--image", BUSYBOX, "true"]);
    assert.equal(r.code, 0, r.stderr);
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
