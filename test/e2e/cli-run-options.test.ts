// `matchlock run` takes every create option the RPC has, through the same create pipeline:
// the network seal (--allow-host, --secret NAME@host with the value from the environment,
// --block-private-ips, --dns-server), -e, --mount, --timeout; bad flags and what the backend
// cannot do fail before anything is made. Network traffic goes only to a lab in a network
// namespace this test creates (test/helpers/net-lab.ts).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, PYTHON, cli, setUpE2E } from "../helpers/e2e.js";
import { startNetLab, type NetLab } from "../helpers/net-lab.js";

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
    assert.equal(r.code, 125, r.stdout);
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
      assert.equal(r.code, 125, `${flags.join(" ")}: ${r.stdout}`);
      assert.match(r.stderr, error, flags.join(" "));
    }
    assert.deepEqual(await recordIds(), before);
  });

  test("a host file mount: gVisor mounts it; the micro-VM refuses it before anything is made", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-run-file-"));
    await writeFile(join(dir, "config.txt"), "from-host-file");
    const before = await recordIds();
    const r = await cli(["run", "--image", BUSYBOX, "--rm=false", "-v", `${join(dir, "config.txt")}:/etc/config.txt:ro`, "--", "cat", "/etc/config.txt"]);
    if (BACKEND === "microvm") {
      assert.equal(r.code, 125, r.stdout);
      assert.match(r.stderr, /^Error: mount \/etc\/config\.txt: the microvm backend shares directories only, and .*config\.txt is a file/m);
      assert.deepEqual(await recordIds(), before, "no record was made");
    } else {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "from-host-file");
      assert.match(r.stderr, /^vm-[0-9a-f]{8}\n$/);
      const made = (await recordIds()).filter((id) => !before.includes(id));
      assert.equal(made.length, 1);
      assert.equal((await cli(["rm", made[0]!])).code, 0);
    }
  });
});
