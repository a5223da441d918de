// Unit tests of the pure pieces behind `matchlock run`/`exec`/`log`: -e and --env-file, the
// command words, the flags' create params, the invocability probe, the log follower and appender,
// and the resident engine's sandbox hub.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFile, mkdtemp, readFile, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { envOptions } from "../../src/cli/env-options.js";
import { commandWords } from "../../src/cli/run-options.js";
import { runParams } from "../../src/cli/run.js";
import { probeScript } from "../../src/cli/command-check.js";
import { CappedLogAppender, MAX_LOGGED_OUTPUT, followVmLog } from "../../src/engine/sandbox/vm-log.js";
import { SandboxHub } from "../../src/engine/resident/sandbox-hub.js";
import type { Sandbox } from "../../src/engine/sandbox/sandbox.js";

const scratch = () => mkdtemp(join(tmpdir(), "matchlock-unit-cli-"));

describe("-e and --env-file", () => {
  test("KEY=VALUE, bare KEY from the host (left out when unset), files first, later wins", async () => {
    const dir = await scratch();
    const file = join(dir, "a.env");
    await writeFile(file, "# comment\n\n  A=1\nB=two words = and more\nFROM_HOST\nUNSET_ON_HOST\nQ=\"as written\"\r\n");
    assert.deepEqual(envOptions(["B=flag", "C"], [file], { FROM_HOST: "h", C: "c" }), {
      A: "1", B: "flag", FROM_HOST: "h", Q: "\"as written\"", C: "c",
    });
    assert.equal(envOptions([], []), undefined);
    assert.deepEqual(envOptions(["E="], []), { E: "" });
  });

  test("bad names and unreadable files are clear errors", async () => {
    const dir = await scratch();
    const file = join(dir, "bad.env");
    await writeFile(file, "OK=1\nBAD NAME=2\n");
    assert.throws(() => envOptions(["=v"], []), /invalid environment variable "=v"/);
    assert.throws(() => envOptions([], [file]), /invalid environment variable "BAD NAME=2" \(.*bad\.env line 2\)/);
    assert.throws(() => envOptions([], [join(dir, "missing")]), /cannot read env file .*missing/);
    assert.throws(() => envOptions(["A=x\0y"], []), /NUL/);
  });
});

describe("run's flags", () => {
  const base = { image: "img", workspace: "/workspace", volume: [], mount: [], env: [], envFile: [], allowHost: [], secret: [], dnsServer: [], rm: true };

  test("a `--` that passed through with the command words is dropped", () => {
    assert.deepEqual(commandWords(["--", "sh", "-c", "x"]), ["sh", "-c", "x"]);
    assert.deepEqual(commandWords(["echo", "--"]), ["echo", "--"]);
  });

  test("-u, -w and --entrypoint are image_config (--entrypoint drops CMD); -d's command is the image's CMD and launched", () => {
    assert.equal(runParams(base, {}).image_config, undefined);
    assert.deepEqual(runParams({ ...base, user: "nobody", workdir: "/w" }, {}).image_config, { user: "nobody", working_dir: "/w" });
    assert.deepEqual(runParams({ ...base, entrypoint: "echo" }, {}).image_config, { entrypoint: ["echo"], cmd: [] });
    assert.deepEqual(runParams({ ...base, entrypoint: "" }, {}).image_config, { entrypoint: [], cmd: [] });
    const detached = runParams({ ...base, entrypoint: "sh" }, {}, ["-c", "echo hi"]);
    assert.deepEqual(detached.image_config, { entrypoint: ["sh"], cmd: ["-c", "echo hi"] });
    assert.equal(detached.launch_entrypoint, true);
    assert.equal(runParams(base, {}, []).launch_entrypoint, true, "-d without a command starts the image's own");
  });

  test("the probe exits 0, 126 or 127 as the shell finds the command", async () => {
    const dir = await scratch();
    await writeFile(join(dir, "plain"), "");
    const status = (name: string) => {
      try {
        execFileSync("sh", ["-c", probeScript(name)], { cwd: dir, stdio: "ignore" });
        return 0;
      } catch (err) {
        return (err as { status: number }).status;
      }
    };
    assert.equal(status("sh"), 0);
    assert.equal(status("cd"), 0, "a builtin");
    assert.equal(status("no-such-command-here"), 127);
    assert.equal(status("./missing"), 127);
    assert.equal(status("./plain"), 126, "not executable");
    assert.equal(status(dir), 126, "a directory");
    assert.equal(status("it's; rm -rf x"), 127, "quoted, never run");
  });
});

describe("the sandbox log", () => {
  test("followVmLog: the content, then what is appended, then the end once stopped", async () => {
    const dir = await scratch();
    const path = join(dir, "vm.log");
    const got: string[] = [];
    let stop = false;
    const following = followVmLog(path, { onData: (d) => void got.push(d.toString()), stopped: () => stop });
    await appendFile(path, "one\n");
    while (got.join("") !== "one\n") await new Promise((r) => setTimeout(r, 20));
    await appendFile(path, "two\n");
    stop = true; // bytes written before the stop are still handed over
    await following;
    assert.equal(got.join(""), "one\ntwo\n");
  });

  test("followVmLog: a log that shrank is read again from its start; an abort throws", async () => {
    const dir = await scratch();
    const path = join(dir, "vm.log");
    await writeFile(path, "0123456789\n");
    const got: string[] = [];
    const abort = new AbortController();
    const following = followVmLog(path, { onData: (d) => void got.push(d.toString()), stopped: () => false, signal: abort.signal });
    while (got.join("") !== "0123456789\n") await new Promise((r) => setTimeout(r, 20));
    await truncate(path, 0);
    await writeFile(path, "new\n");
    while (!got.join("").endsWith("new\n")) await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    await assert.rejects(following, { name: "AbortError" });
  });

  test("CappedLogAppender keeps at most MAX_LOGGED_OUTPUT of the guest's bytes and says so", async () => {
    const dir = await scratch();
    const path = join(dir, "vm.log");
    const log = await CappedLogAppender.open(path, "command");
    void log.write(Buffer.alloc(MAX_LOGGED_OUTPUT - 2, 0x61));
    void log.write(Buffer.from("bcdef"));
    void log.write(Buffer.from("never"));
    await log.note("a line of ours");
    await log.close();
    const text = await readFile(path, "latin1");
    assert.equal(text.length, MAX_LOGGED_OUTPUT + `\n[command output past ${MAX_LOGGED_OUTPUT} bytes is not logged]\n`.length + "a line of ours\n".length);
    assert.ok(text.endsWith(`bc\n[command output past ${MAX_LOGGED_OUTPUT} bytes is not logged]\na line of ours\n`));
    assert.ok(!text.includes("never"));
  });
});

describe("SandboxHub", () => {
  const fake = (id: string) => {
    const sb = { id, stopped: false, closed: 0, close: async () => void ((sb.stopped = true), sb.closed++) };
    return sb;
  };

  test("finds running sandboxes; forgets stopped and removed ones; a detached one outlives its session's removal", async () => {
    const hub = new SandboxHub();
    const a = fake("vm-0000000a");
    const b = fake("vm-0000000b");
    hub.add(a as unknown as Sandbox);
    hub.add(b as unknown as Sandbox);
    assert.equal(hub.find(a.id), a as unknown as Sandbox);
    hub.remove(a.id);
    assert.equal(hub.find(a.id), undefined);
    hub.detach(b as unknown as Sandbox);
    hub.remove(b.id); // its session ended: the hub keeps it
    assert.equal(hub.find(b.id), b as unknown as Sandbox);
    assert.deepEqual(hub.detachedIds(), [b.id]);
    await hub.stop(b.id);
    assert.equal(b.closed, 1);
    assert.equal(hub.find(b.id), undefined);
    assert.deepEqual(hub.detachedIds(), []);
    const c = fake("vm-0000000c");
    hub.add(c as unknown as Sandbox);
    c.stopped = true; // its timeout stopped it
    assert.equal(hub.find(c.id), undefined);
  });
});
