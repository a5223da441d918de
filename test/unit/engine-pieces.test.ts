// Unit tests of the engine's pure pieces: line splitting, create params, modes, mount rules.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { shellQuote } from "../../src/cli/run.js";
import { createParamsSchema, describeZodError, mergeDefaults } from "../../src/engine/sandbox/create-config.js";
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
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { memory_mb: 1.5 } }).success, false);
    assert.equal(createParamsSchema.safeParse({ image: "" }).success, false);
    assert.equal(createParamsSchema.safeParse({ image: "a", id: "vm-12345678" }).success, false);
    const dns = createParamsSchema.safeParse({ image: "a", network: { dns_servers: ["1.1.1.1", "dns.example"] } });
    assert.match(dns.error?.issues[0]?.message ?? "", /invalid DNS server "dns.example": must be an IP address/);
    assert.deepEqual(merge({ image: "a", network: { dns_servers: ["10.0.0.53", "fd00::53"] } }).network.dnsServers, ["10.0.0.53", "fd00::53"]);
    const c = merge({ image: "a", network: { secrets: { K: { value: "real", hosts: ["h"] } } } });
    assert.deepEqual(c.network.secrets, { K: { hosts: ["h"], allowCleartext: false } });
    assert.ok(!JSON.stringify(c).includes("real"));
  });

  test("unknown fields are ignored, as upstream does", () => {
    assert.equal(createParamsSchema.safeParse({ image: "a", future_field: { x: 1 } }).success, true);
  });

  test("but not in a secret, where a misspelt opt-in must not pass unread; allow_cleartext is a boolean", () => {
    const secret = (s: unknown) => createParamsSchema.safeParse({ image: "a", network: { secrets: { K: { value: "v", ...(s as object) } } } });
    assert.match(describeZodError(secret({ allow_cleartxt: true }).error!), /^network\.secrets\.K: unknown secret field "allow_cleartxt" \(known: value, hosts, placeholder, allow_cleartext\)$/);
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
  test("names and numbers, with the passwd group for a bare user", async () => {
    assert.equal(await resolveUser(read, ""), "");
    assert.equal(await resolveUser(read, "app"), "1000:1001");
    assert.equal(await resolveUser(read, "1000"), "1000:1001");
    assert.equal(await resolveUser(read, "4242"), "4242");
    assert.equal(await resolveUser(read, "app:staff"), "1000:50");
    assert.equal(await resolveUser(read, "7:8"), "7:8");
  });
  test("unknown names are clear errors", async () => {
    await assert.rejects(resolveUser(read, "ghost"), /"ghost" is not defined in the image's \/etc\/passwd/);
    await assert.rejects(resolveUser(read, "app:nogroup"), /"nogroup" is not defined in the image's \/etc\/group/);
    await assert.rejects(resolveUser(async () => { throw new Error("gone"); }, "app"), /reading \/etc\/passwd in the image failed/);
  });
});

describe("timeouts are bounded", () => {
  test("the engine refuses a timeout a timer cannot hold", () => {
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { timeout_seconds: 604800 } }).success, true);
    assert.equal(createParamsSchema.safeParse({ image: "a", resources: { timeout_seconds: 3_000_000 } }).success, false);
  });
});
