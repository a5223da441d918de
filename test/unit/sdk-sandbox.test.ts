import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { MatchlockError, Sandbox, createSandbox, type MountConfig } from "../../src/sdk/index.js";
import { checkCreateOptions } from "../../src/sdk/validate.js";
import { toCreateParams } from "../../src/sdk/wire.js";

const wire = (s: Sandbox) => toCreateParams(s.options());

function throwsMatchlock(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof MatchlockError, `expected MatchlockError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("Sandbox builder → create params", () => {
  it("a bare image sends only the image", () => {
    assert.deepEqual(wire(new Sandbox("alpine:latest")), { image: "alpine:latest" });
    assert.deepEqual(new Sandbox("alpine:latest").options(), { image: "alpine:latest" });
  });

  it("serialises the README example exactly like the seed Python SDK", () => {
    const sandbox = new Sandbox("python:3.12-alpine")
      .withCPUs(2)
      .withMemory(512)
      .withDiskSize(2048)
      .withTimeout(300)
      .withWorkspace("/home/user/code")
      .allowHost("api.openai.com", "pypi.org")
      .blockPrivateIPs()
      .addSecret("API_KEY", "sk-real", "api.openai.com")
      .withDNSServers("1.1.1.1", "2606:4700:4700::1111");
    assert.deepEqual(wire(sandbox), {
      image: "python:3.12-alpine",
      resources: { cpus: 2, memory_mb: 512, disk_size_mb: 2048, timeout_seconds: 300, enforce_timeout: true },
      network: {
        allowed_hosts: ["api.openai.com", "pypi.org"],
        block_private_ips: true,
        secrets: { API_KEY: { value: "sk-real", hosts: ["api.openai.com"] } },
        dns_servers: ["1.1.1.1", "2606:4700:4700::1111"],
      },
      vfs: { workspace: "/home/user/code" },
    });
  });

  it("sends only the non-zero resources", () => {
    assert.deepEqual(wire(new Sandbox("a").withMemory(1024)), { image: "a", resources: { memory_mb: 1024 } });
    assert.deepEqual(wire(new Sandbox("a").withTimeout(0)), { image: "a" });
  });

  it("network: allowHost alone keeps private ranges blocked (secure default, unlike the seed SDK)", () => {
    assert.deepEqual(wire(new Sandbox("a").allowHost("x.com").allowHost("*.y.org")), {
      image: "a",
      network: { allowed_hosts: ["x.com", "*.y.org"], block_private_ips: true },
    });
    assert.equal((wire(new Sandbox("a").allowHost("x.com").allowPrivateIPs()).network as { block_private_ips: boolean }).block_private_ips, false);
  });

  it("network: blockPrivateIPs alone sends an empty allow-list", () => {
    assert.deepEqual(wire(new Sandbox("a").blockPrivateIPs()), {
      image: "a",
      network: { allowed_hosts: [], block_private_ips: true },
    });
    assert.deepEqual(wire(new Sandbox("a").blockPrivateIPs().allowPrivateIPs()), {
      image: "a",
      network: { allowed_hosts: [], block_private_ips: false },
    });
  });

  it("network: secrets become a name-keyed map; no hosts means any host", () => {
    const params = wire(new Sandbox("a").addSecret("TOKEN", "t0k", "a.com", "*.b.com").addSecret("OTHER", "v"));
    assert.deepEqual(params.network, {
      allowed_hosts: [],
      block_private_ips: true,
      secrets: { TOKEN: { value: "t0k", hosts: ["a.com", "*.b.com"] }, OTHER: { value: "v", hosts: [] } },
    });
  });

  it("network: a secret's cleartext opt-in (options form) is sent only when on", () => {
    const params = wire(new Sandbox("a").addSecret("PLAIN", "p", { hosts: ["a.com"], allowCleartext: true }).addSecret("TLS", "t", { allowCleartext: false }));
    assert.deepEqual((params.network as Record<string, unknown>).secrets, {
      PLAIN: { value: "p", hosts: ["a.com"], allow_cleartext: true },
      TLS: { value: "t", hosts: [] },
    });
  });

  it("a secret's options are checked strictly", () => {
    throwsMatchlock(() => new Sandbox("a").addSecret("K", "v", { allowClearText: true } as never), /secret K: unknown option allowClearText \(known: hosts, allowCleartext\)/);
    throwsMatchlock(() => new Sandbox("a").addSecret("K", "v", { allowCleartext: "yes" } as never), /secret K: allowCleartext must be a boolean/);
    throwsMatchlock(() => new Sandbox("a").addSecret("K", "v", { hosts: "a.com" } as never), /secret K: hosts must be an array/);
    throwsMatchlock(() => checkCreateOptions({ image: "a", secrets: [{ name: "K", value: "v", hosts: [], cleartext: true } as never] }), /secret K: unknown field cleartext/);
  });

  it("network: DNS servers alone", () => {
    assert.deepEqual(wire(new Sandbox("a").withDNSServers("9.9.9.9")).network, {
      allowed_hosts: [],
      block_private_ips: true,
      dns_servers: ["9.9.9.9"],
    });
  });

  it("network: add-hosts, hostname and mtu; no network sends only the guest's names", () => {
    assert.deepEqual(wire(new Sandbox("a").addHost("db.internal", "10.0.0.5").withHostname("box")).network, {
      allowed_hosts: [], block_private_ips: true, add_hosts: [{ host: "db.internal", ip: "10.0.0.5" }], hostname: "box",
    });
    assert.deepEqual(wire(new Sandbox("a").allowHost("x.test").withNetworkMTU(1400)).network, { allowed_hosts: ["x.test"], block_private_ips: true, mtu: 1400 });
    assert.deepEqual(wire(new Sandbox("a").withNoNetwork().addHost("db", "fd00::1").withHostname("box")).network, {
      no_network: true, add_hosts: [{ host: "db", ip: "fd00::1" }], hostname: "box",
    });
    throwsMatchlock(() => new Sandbox("a").addHost("db:1", "10.0.0.5"), /^invalid add-host mapping: host "db:1" must not contain ':'/);
    throwsMatchlock(() => new Sandbox("a").addHost("db", "x"), /^invalid add-host mapping: ip "x" of host db is not an IP address/);
    throwsMatchlock(() => new Sandbox("a").withNetworkMTU(-1), /^network mtu must be > 0$/);
    throwsMatchlock(() => new Sandbox("a").withHostname("a b"), /^invalid hostname/);
    throwsMatchlock(() => checkCreateOptions(new Sandbox("a").withNoNetwork().allowHost("x.test").withNetworkInterception().options()),
      /^no network cannot be combined with allowed hosts, network interception$/);
  });

  it("mount helpers map to wire MountConfigs", () => {
    const sandbox = new Sandbox("alpine:latest")
      .mountHostDir("/workspace/src", "/home/user/project/src")
      .mountHostDirReadonly("/workspace/config", "/home/user/project/config")
      .mountMemory("/workspace/tmp")
      .mountOverlay("/workspace/data", "/home/user/project/data")
      .mount("/workspace/custom", { type: "host_fs", hostPath: "/tmp/custom", readonly: false });
    assert.deepEqual(wire(sandbox), {
      image: "alpine:latest",
      vfs: {
        mounts: {
          "/workspace/src": { type: "real_fs", host_path: "/home/user/project/src" },
          "/workspace/config": { type: "real_fs", host_path: "/home/user/project/config", readonly: true },
          "/workspace/tmp": { type: "memory" },
          "/workspace/data": { type: "overlay", host_path: "/home/user/project/data" },
          "/workspace/custom": { type: "host_fs", host_path: "/tmp/custom" },
        },
      },
    });
  });

  it("mounts: guest paths are cleaned, relative host paths resolved, later mounts replace earlier ones", () => {
    const opts = new Sandbox("a")
      .mountMemory("/workspace/data/")
      .mountHostDir("/workspace//data", "rel/dir")
      .options();
    assert.deepEqual(opts.mounts, {
      "/workspace/data": { type: "real_fs", hostPath: path.resolve("rel/dir") },
    });
  });

  it("workspace alone gives vfs.workspace without mounts", () => {
    assert.deepEqual(wire(new Sandbox("a").withWorkspace("/code/")), { image: "a", vfs: { workspace: "/code" } });
  });

  it("options() returns a deep copy", () => {
    const sandbox = new Sandbox("a").allowHost("x.com").addSecret("K", "v", "x.com").mountMemory("/workspace");
    const copy = sandbox.options();
    copy.allowedHosts!.push("evil.com");
    copy.secrets![0]!.hosts.push("evil.com");
    (copy.mounts!["/workspace"] as MountConfig).type = "overlay";
    copy.image = "other";
    assert.deepEqual(sandbox.options(), {
      image: "a",
      allowedHosts: ["x.com"],
      secrets: [{ name: "K", value: "v", hosts: ["x.com"] }],
      mounts: { "/workspace": { type: "memory" } },
    });
  });

  it("withDNSServers replaces, allowHost appends", () => {
    const opts = new Sandbox("a").withDNSServers("1.1.1.1").withDNSServers("8.8.8.8").allowHost("a").allowHost("b").options();
    assert.deepEqual(opts.dnsServers, ["8.8.8.8"]);
    assert.deepEqual(opts.allowedHosts, ["a", "b"]);
  });
});

describe("Sandbox builder: upstream SDK's names", () => {
  it("createSandbox, withCPUs, withDNSServers and the private-IP switches", () => {
    const net = (s: Sandbox) => (wire(s.allowHost("x.test")).network as { block_private_ips: boolean }).block_private_ips;
    assert.deepEqual(wire(createSandbox("a").withCPUs(2).withDNSServers("1.1.1.1")), { image: "a", resources: { cpus: 2 }, network: { allowed_hosts: [], block_private_ips: true, dns_servers: ["1.1.1.1"] } });
    assert.equal(net(new Sandbox("a").allowPrivateIPs()), false);
    assert.equal(net(new Sandbox("a").withBlockPrivateIPs(false)), false);
    assert.equal(net(new Sandbox("a").blockPrivateIPs()), true);
    assert.equal(net(new Sandbox("a").allowPrivateIPs().unsetBlockPrivateIPs()), true);
    assert.equal(new Sandbox("a").allowPrivateIPs().unsetBlockPrivateIPs().options().blockPrivateIPs, undefined);
  });
});

describe("Sandbox builder: env and image config", () => {
  it("withEnv and withEnvMap merge into env; withUser, withEntrypoint and withImageConfig into image_config", () => {
    const s = new Sandbox("a")
      .withEnv("A", "1")
      .withEnvMap({ B: "2", A: "3" })
      .withUser("nobody")
      .withEntrypoint("/bin/sh", "-c")
      .withImageConfig({ workingDir: "/srv", cmd: ["echo hi"], user: "" });
    assert.deepEqual(wire(s), {
      image: "a",
      env: { A: "3", B: "2" },
      image_config: { user: "nobody", working_dir: "/srv", entrypoint: ["/bin/sh", "-c"], cmd: ["echo hi"] },
    });
    assert.deepEqual(wire(new Sandbox("a").withImageConfig(null)), { image: "a" });
    assert.deepEqual(wire(new Sandbox("a").withImageConfig({ env: { X: "y" } })), { image: "a", image_config: { env: { X: "y" } } });
  });

  it("refuses bad names, values and fields", () => {
    throwsMatchlock(() => new Sandbox("a").withEnv("1BAD", "x"), /invalid environment variable name "1BAD"/);
    throwsMatchlock(() => new Sandbox("a").withEnvMap({ A: 1 as unknown as string }), /env\.A must be a string/);
    throwsMatchlock(() => new Sandbox("a").withImageConfig({ workingDir: "rel" }), /imageConfig\.workingDir must be an absolute guest path/);
    throwsMatchlock(() => new Sandbox("a").withImageConfig({ User: "x" } as never), /unknown imageConfig field User/);
    throwsMatchlock(() => checkCreateOptions({ image: "a", extraVolumes: [] } as never), /unknown create option extraVolumes: not supported by this SDK/);
    throwsMatchlock(() => checkCreateOptions({ image: "a", extraDisks: [{ hostPath: "/a", guestMount: "/d", readonly: "yes" }] } as never), /extra disk readonly must be true or false/);
  });
});

describe("Sandbox validation", () => {
  it("requires an image", () => {
    throwsMatchlock(() => new Sandbox(""), /^image is required \(e\.g\., alpine:latest\)$/);
    throwsMatchlock(() => new Sandbox("   "), /^image is required/);
    throwsMatchlock(() => new Sandbox(undefined as unknown as string), /^image is required/);
  });

  it("rejects non-positive, fractional and non-finite resources", () => {
    const s = new Sandbox("a");
    for (const bad of [0, -1, 0.005, Number.NaN, Number.POSITIVE_INFINITY]) {
      throwsMatchlock(() => s.withCPUs(bad), /^cpus must be a number of CPUs, at least 0\.01/);
    }
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      throwsMatchlock(() => s.withMemory(bad), /^memory \(MB\) must be a positive integer/);
      throwsMatchlock(() => s.withDiskSize(bad), /^disk size \(MB\) must be a positive integer/);
    }
    throwsMatchlock(() => s.withCPUs("2" as unknown as number), /cpus must be a number of CPUs, at least 0\.01 \(fractions are a CPU quota\), got 2/);
    assert.equal(s.withCPUs(0.5).options().cpus, 0.5, "a fraction is a CPU quota");
  });

  it("rejects negative or fractional timeouts but accepts 0", () => {
    throwsMatchlock(() => new Sandbox("a").withTimeout(-1), /^timeout \(seconds\) must be a non-negative integer/);
    throwsMatchlock(() => new Sandbox("a").withTimeout(0.5), /non-negative integer/);
    assert.equal(new Sandbox("a").withTimeout(0).options().timeoutSeconds, 0);
  });

  it("rejects empty or whitespace host patterns", () => {
    throwsMatchlock(() => new Sandbox("a").allowHost(""), /invalid host pattern ""/);
    throwsMatchlock(() => new Sandbox("a").allowHost("ok.com", "bad host"), /invalid host pattern "bad host"/);
    throwsMatchlock(() => new Sandbox("a").addSecret("K", "v", ""), /invalid host pattern/);
  });

  it("rejects secret names that are not env var names, empty values and duplicates", () => {
    for (const name of ["", "1ABC", "MY-KEY", "A B", "ÉTÉ"]) {
      throwsMatchlock(() => new Sandbox("a").addSecret(name, "v"), /invalid secret name .*valid environment variable name/);
    }
    assert.doesNotThrow(() => new Sandbox("a").addSecret("_ok_9", "v"));
    throwsMatchlock(() => new Sandbox("a").addSecret("K", ""), /secret K has an empty or non-string value/);
    throwsMatchlock(() => new Sandbox("a").addSecret("K", undefined as unknown as string), /empty or non-string/);
    throwsMatchlock(() => new Sandbox("a").addSecret("K", "1").addSecret("K", "2"), /secret K is already added/);
  });

  it("rejects DNS servers that are not IP addresses", () => {
    throwsMatchlock(() => new Sandbox("a").withDNSServers("dns.google"), /invalid DNS server "dns.google"/);
    throwsMatchlock(() => new Sandbox("a").withDNSServers("1.1.1.1", "999.1.1.1"), /invalid DNS server "999.1.1.1"/);
  });

  it("rejects relative guest paths and bad mount configs", () => {
    throwsMatchlock(() => new Sandbox("a").withWorkspace("workspace"), /^workspace must be an absolute guest path/);
    throwsMatchlock(() => new Sandbox("a").mountMemory("data"), /^mount guest path must be an absolute guest path/);
    throwsMatchlock(() => new Sandbox("a").mountHostDir("/w", ""), /mount \/w: hostPath is required/);
    throwsMatchlock(() => new Sandbox("a").mount("/w", { type: "overlay" }), /mount \/w: hostPath is required/);
    throwsMatchlock(() => new Sandbox("a").mount("/w", { type: "nfs" as "memory" }), /mount \/w: type must be one of memory, real_fs, host_fs, overlay/);
    throwsMatchlock(() => new Sandbox("a").mount("/w", { type: "memory", hostPath: "/x" }), /memory mounts take no hostPath/);
  });

  it("a failed setter leaves the builder unchanged", () => {
    const s = new Sandbox("a").withCPUs(2);
    assert.throws(() => s.withCPUs(-1));
    assert.throws(() => s.allowHost("ok", ""));
    assert.deepEqual(s.options(), { image: "a", cpus: 2 });
  });
});

describe("checkCreateOptions (hand-written CreateOptions)", () => {
  it("accepts 0 as 'engine default' and normalises paths", () => {
    assert.deepEqual(checkCreateOptions({ image: "a", cpus: 0, memoryMb: 0, workspace: "/w/", mounts: { "/w/x/": { type: "memory" } } }), {
      image: "a",
      workspace: "/w",
      mounts: { "/w/x": { type: "memory" } },
    });
  });

  it("carries a per-sandbox backend to the wire, and refuses what cannot be a name (the engine refuses unknown names)", () => {
    assert.equal(wire(new Sandbox("img").withBackend("microvm")).backend, "microvm");
    assert.equal(wire(new Sandbox("img")).backend, undefined);
    assert.equal(wire(new Sandbox("img").withBackend("firecracker")).backend, "firecracker");
    throwsMatchlock(() => new Sandbox("img").withBackend("Fire cracker"), /backend must be a backend name such as "microvm", "gvisor" or "auto", not "Fire cracker"/);
    assert.equal(checkCreateOptions({ image: "a", backend: "gvisor" }).backend, "gvisor");
    throwsMatchlock(() => checkCreateOptions({ image: "a", backend: 7 as never }), /backend must be/);
  });

  it("withPrivileged() sends privileged: true; anything but a boolean is refused", () => {
    assert.equal(wire(new Sandbox("img").withPrivileged()).privileged, true);
    assert.equal(wire(new Sandbox("img").withPrivileged(false)).privileged, undefined);
    assert.equal(wire(new Sandbox("img")).privileged, undefined);
    throwsMatchlock(() => new Sandbox("img").withPrivileged("yes" as never), /privileged must be true or false, not "yes"/);
    assert.equal(checkCreateOptions({ image: "a", privileged: true }).privileged, true);
    throwsMatchlock(() => checkCreateOptions({ image: "a", privileged: 1 as never }), /privileged must be true or false/);
  });

  it("applies the builder's rules", () => {
    throwsMatchlock(() => checkCreateOptions({ image: "" }), /^image is required/);
    throwsMatchlock(() => checkCreateOptions({ image: "a", cpus: Number.NaN }), /cpus must be a number of CPUs/);
    throwsMatchlock(() => checkCreateOptions({ image: "a", timeoutSeconds: -5 }), /timeoutSeconds must be a non-negative integer/);
    throwsMatchlock(
      () => checkCreateOptions({ image: "a", secrets: [{ name: "K", value: "v", hosts: [] }, { name: "K", value: "w", hosts: [] }] }),
      /secret K is defined twice/,
    );
    throwsMatchlock(() => checkCreateOptions({ image: "a", mounts: { rel: { type: "memory" } } }), /absolute guest path/);
  });
});
