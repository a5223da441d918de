// `matchlock run` takes every create option the RPC has, through the same create pipeline:
// the network seal (--allow-host, --secret NAME@host with the value from the environment,
// --block-private-ips, --dns-server), -e, --mount, --timeout; bad flags and what the backend
// cannot do fail before anything is made. Network traffic goes only to a lab in a network
// namespace this test creates (test/helpers/net-lab.ts).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BUSYBOX, CLI, PYTHON, ROOT, cli, setUpE2E } from "../helpers/e2e.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";

const execFileP = promisify(execFile);

const SECRET = "sk-run-" + "5".repeat(24);

/** Sandbox records the engine knows (a create that failed early must add none). */
async function recordIds(): Promise<string[]> {
  const r = await cli(["list", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ id: string }>).map((v) => v.id).sort();
}

/** Runs `cli(args)` with extra environment variables for the spawned CLI only. */
async function cliWithEnv(env: Record<string, string>, args: string[]) {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  const pending = cli(args); // the child's environment is copied when it is spawned
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return pending;
}

describe("matchlock run: create options", () => {
  let lab: NetLab;
  before(async () => {
    await setUpE2E();
    lab = await startNetLab();
  });
  after(async () => {
    await lab?.stop();
  });

  test("--allow-host, --secret NAME@host from the environment, -e: the secret reaches its host, names not allowed do not resolve", async () => {
    const script = `
import json, os, urllib.request, urllib.error
key = os.environ["API_KEY"]
print("placeholder" if key.startswith("SANDBOX_SECRET_") and "${SECRET}" not in key else "LEAK")
req = urllib.request.Request("https://secret.test/echo", headers={"Authorization": "Bearer " + key})
print(json.loads(urllib.request.urlopen(req, timeout=30).read())["authSha"])
try: urllib.request.urlopen("http://other.test/hello", timeout=30); print("other: answered")
except urllib.error.HTTPError as e: print("other:", e.code)
except urllib.error.URLError as e: print("other: not resolved")
print(os.environ["GREETING"])`;
    const r = await cliWithEnv({ API_KEY: SECRET }, [
      "run", "--image", PYTHON, "--allow-host", "secret.test", "--secret", "API_KEY@secret.test",
      "--block-private-ips=false", "-e", "GREETING=hello from -e", "--", "python3", "-c", script,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const bearer = createHash("sha256").update(`Bearer ${SECRET}`).digest("hex");
    assert.deepEqual(r.stdout.trim().split("\n"), ["placeholder", bearer, "other: not resolved", "hello from -e"]);
  });

  test("--block-private-ips is on by default with a sealed network: an allowed host at a private address is refused", async () => {
    const r = await cli(["run", "--image", PYTHON, "--allow-host", "allowed.test", "--", "python3", "-c", `
import urllib.request, urllib.error
try: urllib.request.urlopen("http://allowed.test/hello", timeout=30); print("answered")
except urllib.error.HTTPError as e: print(e.code)`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "403\n");
  });

  test("--dns-server: the engine resolves allowed names through it", async () => {
    const r = await cli(["run", "--image", PYTHON, "--allow-host", "dnsonly.test", "--dns-server", lab.serverIp, "--block-private-ips=false", "--",
      "python3", "-c", `import urllib.request; print(urllib.request.urlopen("http://dnsonly.test/hello", timeout=30).read().decode().strip())`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello from dnsonly.test\n");
  });

  test("--mount GUEST:TYPE[:HOST]: memory and overlay mounts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-run-mount-"));
    await writeFile(join(dir, "f.txt"), "from-host");
    const r = await cli(["run", "--image", BUSYBOX, "--mount", "/scratch:memory", "--mount", `/ov:overlay:${dir}`, "--",
      "sh", "-c", "echo x > /scratch/a && cat /scratch/a && echo changed > /ov/f.txt && cat /ov/f.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "x\nchanged\n");
  });

  test("--timeout stops the sandbox and says why", async () => {
    const r = await cli(["run", "--image", BUSYBOX, "--timeout", "3", "--", "sleep", "600"]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^Error: .*timeout of 3 s/m);
  });

  test("bad flags are clear errors and make nothing", async () => {
    const before = await recordIds();
    const cases: Array<[string[], RegExp]> = [
      [["--secret", "NOT_SET_ANYWHERE_X@secret.test"], /secret NOT_SET_ANYWHERE_X: set the environment variable NOT_SET_ANYWHERE_X/],
      [["--secret", "bad name@x"], /invalid secret "bad name@x"/],
      [["--timeout", "soon"], /resources\.timeout_seconds must be a number/],
      [["--mount", "/x"], /invalid mount "\/x"/],
      [["--mount", "/x:tmpfs"], /unknown type "tmpfs"/],
      [["-e", "=v"], /invalid environment variable "=v"/],
      [["--dns-server", "resolver.example"], /invalid DNS server "resolver\.example"/],
      [["--backend", "firecracker"], /backend must be microvm, gvisor or auto/],
    ];
    for (const [flags, error] of cases) {
      const r = await cli(["run", "--image", BUSYBOX, ...flags, "--", "true"]);
      assert.equal(r.code, 1, `${flags.join(" ")}: ${r.stdout}`);
      assert.match(r.stderr, error, flags.join(" "));
    }
    assert.deepEqual(await recordIds(), before);
  });

  test("-v HOST:GUEST is a copy-on-write snapshot: the sandbox changes its copy, the host never changes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-run-v-"));
    await writeFile(join(dir, "f.txt"), "from-host");
    const r = await cli(["run", "--image", BUSYBOX, "-v", `${dir}:/workspace/src`, "--",
      "sh", "-c", "cat /workspace/src/f.txt && echo changed > /workspace/src/f.txt && echo new > /workspace/src/new.txt && cat /workspace/src/f.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "from-hostchanged\n");
    assert.equal(await readFile(join(dir, "f.txt"), "utf8"), "from-host");
    assert.deepEqual(await readdir(dir), ["f.txt"]);
  });

  test("-v HOST:GUEST:host_fs and :rw write through to the host; :ro refuses writes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-run-v-"));
    await writeFile(join(dir, "f.txt"), "from-host");
    const r = await cli(["run", "--image", BUSYBOX, "-v", `${dir}:/a:host_fs`, "-v", `${dir}:/b:rw`, "-v", `${dir}:/c:ro`, "--",
      "sh", "-c", "echo via-a > /a/a.txt && echo via-b > /b/b.txt && cat /c/a.txt /c/b.txt && (echo x > /c/c.txt || echo refused)"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "via-a\nvia-b\nrefused\n");
    assert.match(r.stderr, /Read-only file system/);
    assert.deepEqual((await readdir(dir)).sort(), ["a.txt", "b.txt", "f.txt"]);
  });

  test("-v with a relative guest path is refused, naming it; nothing is made", async () => {
    const before = await recordIds();
    const r = await cli(["run", "--image", BUSYBOX, "-v", `${tmpdir()}:src`, "--", "true"]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^Error: invalid volume mount ".*:src": the guest path "src" must be absolute \(e\.g\. \/workspace\/src\)/m);
    assert.deepEqual(await recordIds(), before);
  });

  test("a host file mounts on both engines: -v FILE:GUEST:ro read-only, -v FILE:GUEST a snapshot", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-run-file-"));
    await writeFile(join(dir, "config.txt"), "from-host-file");
    const r = await cli(["run", "--image", BUSYBOX, "-v", `${join(dir, "config.txt")}:/etc/config.txt:ro`, "-v", `${join(dir, "config.txt")}:/etc/copy.txt`, "--",
      "sh", "-c", "cat /etc/config.txt; echo; echo mine > /etc/copy.txt && cat /etc/copy.txt; echo x > /etc/config.txt || echo refused"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "from-host-file\nmine\nrefused\n");
    assert.equal(await readFile(join(dir, "config.txt"), "utf8"), "from-host-file");
  });

  test("docs/cli.md: the -v examples run as written", async () => {
    const doc = await readFile(join(ROOT, "docs", "cli.md"), "utf8");
    const block = /## `matchlock run`: mounts[\s\S]*?```sh\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(block, "the -v examples block of docs/cli.md");
    const lines = block.trim().split("\n");
    assert.equal(lines.length, 3);
    // A project directory with an out/ beside it, and `matchlock` on PATH as a user has it.
    const project = await mkdtemp(join(tmpdir(), "matchlock-cli-doc-"));
    await mkdir(join(project, "out"));
    const bin = await mkdtemp(join(tmpdir(), "matchlock-cli-bin-"));
    await writeFile(join(bin, "matchlock"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
    const sh = (line: string) => execFileP("sh", ["-c", line], { cwd: project, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    await sh(lines[0]!);
    assert.deepEqual((await readdir(project)).sort(), ["out"], "the copy was changed, not the project");
    await sh(lines[1]!);
    assert.equal(await readFile(join(project, "out", "result"), "utf8"), "done\n");
    const hostname = await sh(lines[2]!);
    assert.equal(hostname.stdout, await readFile("/etc/hostname", "utf8"));
  });
});
