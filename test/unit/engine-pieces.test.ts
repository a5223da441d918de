// Unit tests of the engine's pure pieces: line splitting, create params, modes, mount rules.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { shellQuote } from "../../src/engine/sandbox/shell-quote.js";
import { applyImageConfig, createParamsSchema, describeZodError, mergeDefaults } from "../../src/engine/sandbox/create-config.js";
import { toGoFileMode } from "../../src/engine/sandbox/file-mode.js";
import { consumeLines, idOfSkippedLine } from "../../src/engine/rpc/line-reader.js";
import { MountConfigError, checkGuestPath } from "../../src/engine/vfs/mounts.js";
import { resolveUser } from "../../src/engine/sandbox/users.js";

const heads: Array<[string, string]> = [];
async function collect(chunks: string[], max: number): Promise<Array<string | number>> {
  const out: Array<string | number> = [];
  await consumeLines(Readable.from(chunks.map((c) => Buffer.from(c))), max, (e) => {
    out.push("line" in e ? e.line.toString() : e.oversized);
    if ("oversized" in e) heads.push([e.head, e.tail]);
    return undefined;
  });
  return out;
}

describe("consumeLines", () => {
  test("splits across chunk boundaries and keeps a last unterminated line", async () => {
    assert.deepEqual(await collect(["ab", "c\nde", "f\n\ng"], 100), ["abc", "def", "", "g"]);
  });
  test("reports an oversized line once, with its size, and goes on", async () => {
    assert.deepEqual(await collect(["12345", "6789\nok\n"], 5), [9, "ok"]);
    assert.deepEqual(await collect(["123456"], 5), [6]);
  });
  test("keeps the ends of a skipped line, where its id is found", async () => {
    heads.length = 0;
    const big = "x".repeat(1000);
    await collect([`{"jsonrpc":"2.0","id":42,"method":"write_file","params":{"content":"${big}`, `${big}"}}\n`], 100);
    await collect([`{"method":"write_file","params":{"content":"${big}"},"id":7}\n`], 100);
    assert.equal(idOfSkippedLine(...heads[0]!), 42);
    assert.equal(idOfSkippedLine(...heads[1]!), 7);
    assert.equal(idOfSkippedLine(`{"params":{"id":1`, `"}`), undefined);
  });
});

describe("create params", () => {
  const merge = (p: unknown) => mergeDefaults(createParamsSchema.parse(p));

  test("defaults as the protocol spec gives them", () => {
    const c = merge({ image: "alpine" });
    assert.equal(c.cpus, 1);
    assert.equal(c.memoryMb, 512);
    assert.equal(c.diskSizeMb, 5120);
    assert.equal(c.timeoutSeconds, 300);
    assert.equal(c.workspace, "/workspace");
    assert.deepEqual(c.mounts, { "/workspace": { type: "memory" } });
    assert.equal(c.network.blockPrivateIps, true);
    assert.deepEqual(c.network.dnsServers, []); // the host's resolver, not the spec's 8.8.8.8
  });

  test("a present network object replaces the default wholesale", () => {
    const c = merge({ image: "a", network: { allowed_hosts: ["x.com"] } });
    assert.equal(c.network.blockPrivateIps, false);
    assert.deepEqual(c.network.allowedHosts, ["x.com"]);
  });

  test("zero means default; negative is refused; secrets lose their values", () => {
    assert.equal(merge({ image: "a", resources: { cpus: 0, memory_mb: 256 } }).cpus, 1);
    assert.equal(merge({ image: "a", resources: { memory_mb: 256 } }).memoryMb, 256);
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { cpus: -1 } }).success, false);
    assert.equal(merge({ image: "a", resources: { cpus: 1.5 } }).cpus, 1.5, "a fraction is a CPU quota");
    assert.match(JSON.stringify(createParamsSchema.safeParse({ image: "a", resources: { cpus: 0.001 } }).error?.issues), /resources.cpus must be 0 \(the default\) or at least 0.01/);
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { cpus: 256 } }).success, false);
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { memory_mb: 1.5 } }).success, false);
    assert.equal(createParamsSchema.safeParse({ image: "" }).success, false);
    assert.equal(createParamsSchema.safeParse({ image: "a", id: "vm-12345678" }).success, false);
    const dns = createParamsSchema.safeParse({ image: "a", network: { allowed_hosts: ["x.test"], dns_servers: ["1.1.1.1", "dns.example"] } });
    assert.match(dns.error?.issues[0]?.message ?? "", /invalid DNS server "dns.example": must be an IP address/);
    assert.deepEqual(merge({ image: "a", network: { allowed_hosts: ["x.test"], dns_servers: ["10.0.0.53", "fd00::53"] } }).network.dnsServers, ["10.0.0.53", "fd00::53"]);
    const c = merge({ image: "a", network: { secrets: { K: { value: "real", hosts: ["h"] } } } });
    assert.deepEqual(c.network.secrets, { K: { hosts: ["h"], allowCleartext: false } });
    assert.ok(!JSON.stringify(c).includes("real"));
  });

  const refusal = (p: unknown) => {
    const r = createParamsSchema.safeParse(p);
    assert.equal(r.success, false, JSON.stringify(p));
    return describeZodError(r.error!);
  };

  test("an unknown field is refused by name, at any depth", () => {
    assert.equal(refusal({ image: "a", future_field: { x: 1 } }), "unknown field future_field: not part of the protocol this engine speaks");
    assert.match(refusal({ image: "a", network: { allowed_hosts: [], proxy: "x" } }), /^unknown field network\.proxy:/);
    assert.match(refusal({ image: "a", resources: { gpus: 1 } }), /^unknown field resources\.gpus:/);
    assert.match(refusal({ image: "a", vfs: { mounts: { "/w": { type: "memory", size: 5 } } } }), /^unknown field vfs\.mounts\.\/w\.size:/);
    assert.match(refusal({ image: "a", network: { secrets: { K: { value: "v", scope: "x" } } } }), /^unknown field network\.secrets\.K\.scope:/);
  });

  test("protocol fields this engine does not implement pass only when they ask for nothing", () => {
    // What upstream's SDKs send for a plain create: all four resources, an empty network block.
    const plain = {
      image: "a", privileged: false, launch_entrypoint: false, extra_disks: [], image_config: {},
      resources: { cpus: 1, memory_mb: 512, disk_size_mb: 5120, timeout_seconds: 300 },
      network: { allowed_hosts: [], block_private_ips: true, intercept: false, add_hosts: [], hostname: "", mtu: 0, policy_script: "" },
      vfs: { direct_mounts: {}, interception: null },
    };
    assert.equal(createParamsSchema.safeParse(plain).success, true);
    assert.equal(createParamsSchema.safeParse({ image: "a", network: { mtu: 1500 } }).success, true);
    for (const [p, name] of [
      [{ network: { policy_script: "deny all" } }, "network.policy_script"],
      [{ vfs: { direct_mounts: { "/x": { host_path: "/x" } } } }, "vfs.direct_mounts"],
    ] as const) {
      assert.match(refusal({ image: "a", ...p }), new RegExp(`^${name.replace(".", "\\.")} is not supported by this engine yet$`));
    }
  });

  test("extra_disks: absolute host paths, plain guest paths outside the sandbox's own mounts, no two disks at one path", () => {
    const ok = createParamsSchema.safeParse({ image: "a", extra_disks: [{ host_path: "/v/a.ext4", guest_mount: "/data", readonly: true }] });
    assert.equal(ok.success, true);
    assert.deepEqual(mergeDefaults(ok.data!).extraDisks, [{ hostPath: "/v/a.ext4", guestMount: "/data", readonly: true }]);
    for (const [disk, message] of [
      [{ host_path: "/v/a", guest_mount: "data" }, /invalid extra disk config: invalid guest mount path "data"/],
      [{ host_path: "/v/a", guest_mount: "/a b" }, /invalid guest mount path "\/a b"/],
      [{ host_path: "/v/a", guest_mount: "/a/../etc" }, /no "\.", "\.\." or empty steps/],
      [{ host_path: "/v/a", guest_mount: "/" }, /invalid guest mount path "\/"/],
      [{ host_path: "/v/a", guest_mount: "/proc/x" }, /inside \/proc/],
      [{ host_path: "v/a", guest_mount: "/d" }, /host_path "v\/a" must be an absolute path/],
      [{ host_path: "/v/a", guest_mount: "/d", size: 1 }, /unknown field extra_disks\.0\.size/],
    ] as const) {
      assert.match(refusal({ image: "a", extra_disks: [disk] }), message);
    }
    assert.match(refusal({ image: "a", extra_disks: [{ host_path: "/a", guest_mount: "/d" }, { host_path: "/b", guest_mount: "/d" }] }), /two disks at \/d/);
  });

  test("network's add_hosts, hostname and mtu are checked as upstream's SDKs check them", () => {
    const ok = mergeDefaults(createParamsSchema.parse({
      image: "a", network: { allowed_hosts: ["x.test"], add_hosts: [{ host: "db.internal", ip: " 10.0.0.5 " }, { host: "v6", ip: "fd00::1" }], hostname: "box-1.local", mtu: 1400 },
    }));
    assert.deepEqual(ok.network.addHosts, [{ host: "db.internal", ip: "10.0.0.5" }, { host: "v6", ip: "fd00::1" }]);
    assert.equal(ok.network.hostname, "box-1.local");
    assert.equal(ok.network.mtu, 1400);
    assert.equal(mergeDefaults(createParamsSchema.parse({ image: "a" })).network.mtu, 1500);
    for (const [network, message] of [
      [{ add_hosts: [{ host: "", ip: "10.0.0.1" }] }, /invalid add-host mapping: host is required/],
      [{ add_hosts: [{ host: "a b", ip: "10.0.0.1" }] }, /must not contain whitespace/],
      [{ add_hosts: [{ host: "a:1", ip: "10.0.0.1" }] }, /must not contain ':'/],
      [{ add_hosts: [{ host: "a", ip: "" }] }, /ip is required for host a/],
      [{ add_hosts: [{ host: "a", ip: "10.0.0.300" }] }, /is not an IP address/],
      [{ add_hosts: [{ host: "a" }] }, /ip must be a string/],
      [{ hostname: "-box" }, /invalid hostname "-box"/],
      [{ hostname: "x".repeat(65) }, /invalid hostname/],
      [{ allowed_hosts: ["x.test"], mtu: 67 }, /from 68 to 65535/],
      [{ allowed_hosts: ["x.test"], mtu: 1400.5 }, /from 68 to 65535/],
      [{ mtu: 9000 }, /network\.mtu has no effect without/],
      [{ no_network: true, mtu: 9000 }, /network\.mtu has no effect without/],
    ] as const) {
      assert.match(refusal({ image: "a", network }), message, JSON.stringify(network));
    }
  });

  test("timeout_seconds alone is stored, as upstream does; enforce_timeout asks for the deadline", () => {
    assert.equal(merge({ image: "a", resources: { timeout_seconds: 300 } }).deadlineSeconds, undefined);
    assert.equal(merge({ image: "a", resources: { timeout_seconds: 30, enforce_timeout: true } }).deadlineSeconds, 30);
    assert.match(refusal({ image: "a", resources: { enforce_timeout: true } }), /enforce_timeout needs a positive resources\.timeout_seconds/);
    assert.equal(merge({ image: "a", launch_entrypoint: true }).launchEntrypoint, true);
  });

  test("image_config replaces as spec 5.2 says: a non-empty user or working_dir, any given list or env", () => {
    const image = { user: "app", workingDir: "/srv", entrypoint: ["/init"], cmd: ["serve"], env: ["A=1"] };
    const apply = (c: unknown) => applyImageConfig(image, merge({ image: "a", image_config: c }).imageConfig);
    assert.deepEqual(apply(undefined), image);
    assert.deepEqual(apply({ user: "", working_dir: "" }), image);
    assert.deepEqual(apply({ user: "1000", working_dir: "/w", cmd: [], env: { B: "2" } }), { user: "1000", workingDir: "/w", entrypoint: ["/init"], cmd: [], env: ["B=2"] });
    assert.deepEqual(apply({ entrypoint: ["sh", "-c"] }).entrypoint, ["sh", "-c"]);
    assert.match(refusal({ image: "a", image_config: { User: "x" } }), /^unknown field image_config\.User:/);
  });

  test("no_network is what a sandbox without hosts or secrets has; with them it is a contradiction", () => {
    assert.equal(createParamsSchema.safeParse({ image: "a", network: { no_network: true } }).success, true);
    // Resolvers without a network would do nothing: refused, not dropped.
    assert.match(refusal({ image: "a", network: { no_network: true, dns_servers: ["10.0.0.53"] } }), /dns_servers has no effect without network\.allowed_hosts, network\.secrets or network\.intercept/);
    assert.match(refusal({ image: "a", network: { dns_servers: ["10.0.0.53"] } }), /dns_servers has no effect/);
    assert.match(refusal({ image: "a", network: { no_network: true, allowed_hosts: ["x.test"] } }), /network\.no_network cannot be combined with network\.allowed_hosts/);
    assert.match(refusal({ image: "a", network: { no_network: true, secrets: { K: { value: "v" } } } }), /network\.no_network cannot be combined with network\.secrets/);
  });

  test("an allowed private address that block_private_ips would block is refused, naming it", () => {
    assert.match(refusal({ image: "a", network: { allowed_hosts: ["x.test", "10.0.0.5"], block_private_ips: true } }), /network\.allowed_hosts: 10\.0\.0\.5 is a private address, which block_private_ips blocks/);
    assert.match(refusal({ image: "a", network: { allowed_hosts: ["[::1]"], block_private_ips: true } }), /\[::1\] is a private address/);
    assert.match(refusal({ image: "a", network: { secrets: { K: { value: "v", hosts: ["192.168.1.9"] } }, block_private_ips: true } }), /network\.secrets\.K\.hosts: 192\.168\.1\.9 is a private address/);
    assert.equal(createParamsSchema.safeParse({ image: "a", network: { allowed_hosts: ["10.0.0.5"], block_private_ips: false } }).success, true);
    assert.equal(createParamsSchema.safeParse({ image: "a", network: { allowed_hosts: ["198.18.0.5", "10.*"], block_private_ips: true } }).success, true);
  });

  test("a secret's allow_cleartext (an extension) is a boolean; a misspelt opt-in is refused by name", () => {
    const secret = (s: unknown) => createParamsSchema.safeParse({ image: "a", network: { secrets: { K: { value: "v", ...(s as object) } } } });
    assert.match(describeZodError(secret({ allow_cleartxt: true }).error!), /^unknown field network\.secrets\.K\.allow_cleartxt: /);
    assert.match(describeZodError(secret({ allow_cleartext: "yes" }).error!), /^network\.secrets\.K\.allow_cleartext: must be a boolean$/);
    assert.deepEqual(mergeDefaults(secret({ allow_cleartext: true }).data!).network.secrets, { K: { hosts: [], allowCleartext: true } });
  });
});

describe("toGoFileMode", () => {
  test("maps st_mode type bits to Go's os.FileMode layout", () => {
    assert.equal(toGoFileMode(0o100644), 0o644);
    assert.equal(toGoFileMode(0o040755), 2147484141);
    assert.equal(toGoFileMode(0o120777), 2 ** 27 + 0o777);
    assert.equal(toGoFileMode(0o041777), 2 ** 31 + 2 ** 20 + 0o777);
    assert.equal(toGoFileMode(0o104755), 2 ** 23 + 0o755);
  });
});

describe("checkGuestPath", () => {
  test("accepts normal absolute paths", () => {
    for (const p of ["/workspace", "/workspace/src", "/data", "/devices"]) checkGuestPath(p, "mount path");
  });
  test("refuses relative, unnormalised and system paths", () => {
    for (const p of ["workspace", "/workspace/../etc", "/a//b", "/a/", "/", "/proc", "/proc/x", "/sys", "/dev/shm", "/.matchlock"]) {
      assert.throws(() => checkGuestPath(p, "mount path"), MountConfigError, p);
    }
  });
});

describe("shellQuote", () => {
  test("keeps plain words and quotes the rest", () => {
    assert.equal(shellQuote("echo"), "echo");
    assert.equal(shellQuote("a b"), "'a b'");
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
    assert.equal(shellQuote("$HOME"), "'$HOME'");
  });
});

describe("resolveUser", () => {
  const files: Record<string, string> = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    "/etc/group": "root:x:0:\nstaff:x:50:\n",
  };
  const read = async (p: string) => {
    if (!(p in files)) throw new Error("No such file or directory");
    return Buffer.from(files[p]!);
  };
  test("names and numbers, with the passwd group for a bare user and the passwd home", async () => {
    assert.deepEqual(await resolveUser(read, ""), { id: "", home: "/root" });
    assert.deepEqual(await resolveUser(read, "app"), { id: "1000:1001", home: "/home/app" });
    assert.deepEqual(await resolveUser(read, "1000"), { id: "1000:1001", home: "/home/app" });
    assert.deepEqual(await resolveUser(read, "4242"), { id: "4242", home: "/" });
    assert.deepEqual(await resolveUser(read, "app:staff"), { id: "1000:50", home: "/home/app" });
    assert.deepEqual(await resolveUser(read, "7:8"), { id: "7:8", home: "/" });
    assert.deepEqual(await resolveUser(read, "0:50"), { id: "0:50", home: "/root" });
  });
  test("numeric users need no account files", async () => {
    const none = async () => { throw new Error("No such file or directory"); };
    assert.deepEqual(await resolveUser(none, "7:8"), { id: "7:8", home: "/" });
    assert.deepEqual(await resolveUser(none, "0"), { id: "0", home: "/root" });
  });
  test("unknown names are clear errors", async () => {
    await assert.rejects(resolveUser(read, "ghost"), /"ghost" is not defined in the sandbox's \/etc\/passwd/);
    await assert.rejects(resolveUser(read, "app:nogroup"), /"nogroup" is not defined in the sandbox's \/etc\/group/);
    await assert.rejects(resolveUser(async () => { throw new Error("gone"); }, "app"), /cannot resolve user "app": reading \/etc\/passwd in the image failed/);
  });
});

describe("timeouts are bounded", () => {
  test("the engine refuses a timeout a timer cannot hold", () => {
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { timeout_seconds: 604800 } }).success, true);
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { timeout_seconds: 3_000_000 } }).success, false);
  });
});
