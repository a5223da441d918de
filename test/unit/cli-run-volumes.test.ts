// `matchlock run -v` and `--mount` as upstream's CLI reads them: a copy-on-write snapshot by
// default, host_fs/rw read-write, ro read-only; a relative guest path is an error, never placed
// under the workspace.
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { test } from "node:test";
import { parseVolume, runParams } from "../../src/cli/run.js";

test("-v HOST:GUEST is an overlay snapshot; host_fs and rw mount the host path read-write, ro read-only", () => {
  assert.deepEqual(parseVolume("/src:/workspace/src"), ["/workspace/src", { type: "overlay", host_path: "/src" }]);
  assert.deepEqual(parseVolume("/src:/workspace/src:overlay"), ["/workspace/src", { type: "overlay", host_path: "/src" }]);
  assert.deepEqual(parseVolume("/src:/data:host_fs"), ["/data", { type: "host_fs", host_path: "/src" }]);
  assert.deepEqual(parseVolume("/src:/data:rw"), ["/data", { type: "host_fs", host_path: "/src" }]);
  assert.deepEqual(parseVolume("/etc/hosts:/etc/hosts.host:ro"), ["/etc/hosts.host", { type: "host_fs", host_path: "/etc/hosts", readonly: true }]);
});

test("-v: a relative host path is the current directory's; a relative guest path is refused", () => {
  assert.deepEqual(parseVolume("project/sub:/w"), ["/w", { type: "overlay", host_path: resolve("project/sub") }]);
  assert.throws(() => parseVolume("/src:src"), /invalid volume mount "\/src:src": the guest path "src" must be absolute \(e\.g\. \/workspace\/src\)/);
  assert.throws(() => parseVolume("/src:./src:ro"), /the guest path "\.\/src" must be absolute/);
});

test("-v: a malformed spec or an unknown mode says what it accepts", () => {
  for (const spec of ["/src", "/src:/a:rx", "/src:/a:ro:x", ":/a", "/src:/a:"]) {
    assert.throws(() => parseVolume(spec), /invalid volume mount .*: use HOST:GUEST \(a copy-on-write snapshot\), HOST:GUEST:host_fs or HOST:GUEST:rw \(read-write\), or HOST:GUEST:ro \(read-only\)/, spec);
  }
});

const base = { image: "img", workspace: "/workspace", volume: [], mount: [], env: [], allowHost: [], secret: [], dnsServer: [], rm: true };

test("run's create params: -v and --mount mounts beside the workspace's memory mount", () => {
  const params = runParams({ ...base, volume: ["/h:/workspace/src", "/h:/cfg:ro"], mount: ["/scratch:memory"] });
  assert.deepEqual(params.vfs, {
    workspace: "/workspace",
    mounts: {
      "/workspace": { type: "memory" },
      "/workspace/src": { type: "overlay", host_path: "/h" },
      "/cfg": { type: "host_fs", host_path: "/h", readonly: true },
      "/scratch": { type: "memory" },
    },
  });
});

test("--mount: a relative guest path is refused too", () => {
  assert.throws(() => runParams({ ...base, mount: ["scratch:memory"] }), /invalid mount "scratch:memory": the guest path "scratch" must be absolute/);
});

test("network flags: --network-intercept seals, --add-host/--hostname/--mtu go into network, --no-network sends only the names", () => {
  assert.equal(runParams(base).network, undefined);
  assert.deepEqual(runParams({ ...base, networkIntercept: true, mtu: "1400", hostname: "box", addHost: ["db:10.0.0.5", "v6:fd00::1"] }).network, {
    allowed_hosts: [], block_private_ips: true, secrets: {}, dns_servers: [], intercept: true, mtu: 1400, hostname: "box",
    add_hosts: [{ host: "db", ip: "10.0.0.5" }, { host: "v6", ip: "fd00::1" }],
  });
  assert.deepEqual(runParams({ ...base, network: false, blockPrivateIps: true, addHost: ["db:10.0.0.5"] }).network, { no_network: true, add_hosts: [{ host: "db", ip: "10.0.0.5" }] });
  assert.throws(() => runParams({ ...base, network: false, dnsServer: ["1.1.1.1"], secret: [] }), /--no-network cannot be combined with --dns-server/);
  assert.throws(() => runParams({ ...base, mtu: "big" }), /--mtu big: network mtu must be an integer/);
});
