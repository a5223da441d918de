// Nothing the engine does not do is accepted: unknown fields are refused by name at any depth,
// and protocol fields this engine does not implement pass only with the value that asks for
// nothing, so an upstream SDK's plain create still works and a real request is never dropped.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BUSYBOX, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

describe("strict params, raw", () => {
  let home: string;
  let s: RawSession;
  let id = 0;
  const call = (method: string, params: object | undefined) => s.call(method, params, ++id);

  before(async () => {
    home = await setUpE2E();
    s = new RawSession();
  });
  after(() => {
    s.proc.kill("SIGKILL");
  });

  test("create refuses what it would not do, by name, and makes nothing", async () => {
    const refused: Array<[object, RegExp]> = [
      [{ image: BUSYBOX, future: 1 }, /^unknown field future: /],
      [{ image: BUSYBOX, network: { allowed_hosts: ["a.test"], proxy: "x" } }, /^unknown field network\.proxy: /],
      [{ image: BUSYBOX, network: { allowed_hosts: [], hostname: "a box" } }, /^network\.hostname: invalid hostname "a box"/],
      [{ image: BUSYBOX, network: { add_hosts: [{ host: "db:5432", ip: "10.0.0.5" }] } }, /^network\.add_hosts\.0: invalid add-host mapping: host "db:5432" must not contain ':'/],
      [{ image: BUSYBOX, network: { add_hosts: [{ host: "db", ip: "nope" }] } }, /^network\.add_hosts\.0: invalid add-host mapping: ip "nope" of host db is not an IP address/],
      [{ image: BUSYBOX, network: { allowed_hosts: ["a.test"], mtu: 40 } }, /^network\.mtu: network mtu must be an integer from 68 to 65535/],
      [{ image: BUSYBOX, network: { mtu: 1400 } }, /^network\.mtu has no effect without network\.allowed_hosts/],
      [{ image: BUSYBOX, network: { interception: { rules: [{ set_headers: { "Content-Length": "0" } }] } } }, /^network\.interception\.rules\.0\.set_headers: Content-Length is stated by the proxy/],
      [{ image: BUSYBOX, vfs: { interception: { rules: [{ ops: ["delete"], action: "block" }] } } }, /^vfs\.interception\.rules\.0\.ops\.0: unknown op "delete"/],
      [{ image: BUSYBOX, vfs: { interception: { rules: [{ path: "*.env", action: "block" }] } } }, /^vfs\.interception\.rules\.0\.path: "\*\.env" is not absolute/],
      [{ image: BUSYBOX, network: { no_network: true, allowed_hosts: ["a.test"] } }, /no_network cannot be combined with network\.allowed_hosts/],
      [{ image: BUSYBOX, vfs: { mounts: { "/workspace": { type: "memory", readonly: true } } } }, /readonly applies to host_fs\/real_fs mounts only/],
      [{ image: BUSYBOX, vfs: { mounts: { "/workspace": { type: "memory", host_path: "/tmp" } } } }, /host_path does not apply to a memory mount/],
    ];
    for (const [params, message] of refused) {
      const r = await call("create", params);
      assert.equal(r.error?.code, -32602, JSON.stringify(params));
      assert.match(r.error.message, message);
    }
    assert.deepEqual(await readdir(join(home, "vms")).catch(() => []), []);
  });

  test("an upstream SDK's plain create, with every field at its do-nothing value, makes a sandbox without network", async () => {
    const r = await call("create", {
      image: BUSYBOX, privileged: false, launch_entrypoint: false,
      resources: { cpus: 1, memory_mb: 512, disk_size_mb: 5120, timeout_seconds: 300 },
      network: { no_network: true, hostname: "", mtu: 0 },
    });
    assert.match(r.result?.id ?? JSON.stringify(r), /^vm-[0-9a-f]{8}$/);
    // No interface but loopback (gVisor's newer sysfs lists none at all without a network).
    const ex = await call("exec", { command: "ls /sys/class/net" });
    assert.deepEqual(Buffer.from(ex.result.stdout, "base64").toString().split("\n").filter((n) => n && n !== "lo"), []);
  });

  test("every method refuses unknown fields and bad values by name, and the session goes on", async () => {
    for (const [method, params, message] of [
      ["exec", { command: "true", shell: "bash" }, /^unknown field shell: /],
      ["exec_stream", { command: "true", stdin: "" }, /^unknown field stdin: /],
      ["write_file", { path: "/tmp/x", content: "", owner: "root" }, /^unknown field owner: /],
      ["read_file", { path: "/tmp/x", offset: 3 }, /^unknown field offset: /],
      ["list_files", { path: "/tmp", recursive: true }, /^unknown field recursive: /],
      ["cancel", { id: 1, reason: "x" }, /^unknown field reason: /],
      ["close", { timeout_seconds: -1 }, /timeout_seconds/],
      ["close", { timeout_seconds: 1, force: true }, /^unknown field force: /],
    ] as const) {
      const r = await call(method, params);
      assert.equal(r.error?.code, -32602, `${method} ${JSON.stringify(params)}`);
      assert.match(r.error.message, message);
    }
    const ex = await call("exec", { command: "echo still here" });
    assert.equal(Buffer.from(ex.result.stdout, "base64").toString(), "still here\n");
  });
});
