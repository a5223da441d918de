// The conntrack lookup of a DNAT'ed connection's real destination (src/engine/net/
// original-destination.ts): asked for this one connection only, its output bounded, every
// failure a clear error; and against the real kernel, in a network namespace of the test's own,
// many DNAT'ed connections each placed right.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import {
  conntrackArgs, LOOKUPS_AT_ONCE, LookupTurns, MAX_OUTPUT, MAX_WAITING_PER_SANDBOX, originalDestination, OriginalDestinationError, parseEntry,
} from "../../src/engine/net/original-destination.js";

const tuple = { localAddress: "10.200.0.1", localPort: 42222, remoteAddress: "10.200.0.2", remotePort: 40001 };
const LINE = "tcp      6 431999 ESTABLISHED src=10.200.0.2 dst=10.201.0.3 sport=40001 dport=7777 src=10.200.0.1 dst=10.200.0.2 sport=42222 dport=40001 [ASSURED] mark=0 use=1";
const failsWith = (re: RegExp) => (e: unknown) => e instanceof OriginalDestinationError && re.test(e.message);

describe("original destination: the query and its answer", () => {
  test("conntrack is asked for this connection's entry only: both directions' addresses and ports", () => {
    assert.deepEqual(conntrackArgs(tuple), [
      "-L", "-p", "tcp", "--orig-src", "10.200.0.2", "--orig-port-src", "40001",
      "--reply-src", "10.200.0.1", "--reply-port-src", "42222", "--reply-dst", "10.200.0.2", "--reply-port-dst", "40001",
    ]);
    assert.throws(() => conntrackArgs({ ...tuple, remoteAddress: "::ffff:10.200.0.2" }), failsWith(/not an IPv4 address/));
    assert.throws(() => conntrackArgs({ ...tuple, localPort: 0 }), failsWith(/not a port: 0/));
  });

  test("the entry's original destination; another connection's entry, several, or junk are errors", () => {
    assert.deepEqual(parseEntry(`${LINE}\n`, tuple), { address: "10.201.0.3", port: 7777 });
    assert.equal(parseEntry("", tuple), undefined);
    assert.throws(() => parseEntry(`${LINE}\n${LINE}\n`, tuple), failsWith(/listed 2 entries for one connection/));
    assert.throws(() => parseEntry(LINE, { ...tuple, remotePort: 40002 }), failsWith(/listed another connection/));
    assert.throws(() => parseEntry("hello", tuple), failsWith(/printed something unexpected: "hello"/));
  });
});

describe("original destination: running conntrack", () => {
  let dir: string;
  /** An executable standing in for conntrack. */
  const fake = (name: string, script: string): string => {
    const file = join(dir, name);
    writeFileSync(file, `#!/bin/sh\n${script}\n`);
    chmodSync(file, 0o755);
    return file;
  };
  before(() => void (dir = mkdtempSync(join(tmpdir(), "matchlock-conntrack-test-"))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("no entry, a missing command, a failure, a flood and a hang are each a clear error", async () => {
    await assert.rejects(originalDestination(tuple, { command: fake("none", "echo '0 flow entries have been shown.' >&2") }),
      failsWith(/^connection tracking has no entry for 10\.200\.0\.2:40001 -> 10\.200\.0\.1:42222$/));
    await assert.rejects(originalDestination(tuple, { command: join(dir, "absent") }), failsWith(/is not installed \(Debian: apt-get install conntrack\)/));
    await assert.rejects(originalDestination(tuple, { command: fake("fails", "echo 'conntrack v1.4.7: Operation failed: no such thing' >&2; exit 1") }),
      failsWith(/failed \(status 1\): conntrack v1\.4\.7: Operation failed: no such thing$/));
    // A table's worth of output is cut off, not read: the engine never holds more than MAX_OUTPUT.
    await assert.rejects(originalDestination(tuple, { command: fake("flood", `yes '${LINE}'`) }), failsWith(new RegExp(`printed more than ${MAX_OUTPUT} bytes`)));
    await assert.rejects(originalDestination(tuple, { command: fake("hangs", "exec sleep 30"), timeoutMs: 300 }), failsWith(/did not answer within 300 ms/));
    await assert.rejects(originalDestination({ ...tuple, remotePort: undefined }), failsWith(/already closed/));
  });

  test(`a burst of lookups runs at most ${LOOKUPS_AT_ONCE} conntrack processes at once, and every one is answered`, async () => {
    const log = join(dir, "concurrency.log");
    // Each lookup holds its slot until every lookup of its batch of LOOKUPS_AT_ONCE has started
    // (was: a 0.2 s sleep, which a loaded machine's slow spawns can outlast, so fewer overlapped).
    // The wait has its own limit, so that a scheduler running fewer at once fails the count below
    // instead of hanging.
    const cmd = fake("slow", [
      `echo start >> ${log}`,
      `batchEnd=$(( ($(grep -c start ${log}) + ${LOOKUPS_AT_ONCE - 1}) / ${LOOKUPS_AT_ONCE} * ${LOOKUPS_AT_ONCE} ))`,
      `i=0; while [ $(grep -c start ${log}) -lt $batchEnd ] && [ $i -lt 1500 ]; do sleep 0.01; i=$((i+1)); done`,
      `echo end >> ${log}`,
      `echo '${LINE}'`,
    ].join("\n"));
    const lookups = 3 * LOOKUPS_AT_ONCE;
    // A long per-lookup limit: a loaded machine's spawns of 12 shells must not reach it.
    const answers = await Promise.all(Array.from({ length: lookups }, () => originalDestination(tuple, { command: cmd, timeoutMs: 120_000 })));
    assert.deepEqual(answers, Array(lookups).fill({ address: "10.201.0.3", port: 7777 }));
    let now = 0;
    let most = 0;
    for (const l of readFileSync(log, "utf8").split("\n").filter(Boolean)) {
      now += l === "start" ? 1 : -1;
      most = Math.max(most, now);
    }
    assert.equal(most, LOOKUPS_AT_ONCE, `${most} ran at once`);
  });
  test("a sandbox flooding the lookups waits behind itself: another sandbox's lookup is answered long before the flood, the flood's overflow a clear error", async () => {
    // Answers for whichever connection it is asked about ($5 orig-src, $7 orig-port-src, $9 reply-src, $11 reply-port-src).
    // Which process writes first is up to the host's scheduler, so only what no spawn order can change is checked
    // here: the exact order of turns is checked on LookupTurns below.
    const cmd = fake("fair", `sleep 0.05; echo "tcp 6 1 ESTABLISHED src=$5 dst=10.201.0.3 sport=$7 dport=7777 src=$9 dst=$5 sport=\${11} dport=$7 [ASSURED]"`);
    const flooder = {};
    const other = {};
    const flood = LOOKUPS_AT_ONCE + MAX_WAITING_PER_SANDBOX;
    let floodAnswered = 0;
    // All asked in the same tick: the flooder's lookups fill every slot and its whole waiting line first.
    const flooding = Array.from({ length: flood }, (_, i) =>
      originalDestination({ ...tuple, remotePort: 20000 + i }, { command: cmd, owner: flooder, timeoutMs: 120_000 }).then((d) => (floodAnswered++, d)));
    const overflow = originalDestination({ ...tuple, remotePort: 30000 }, { command: cmd, owner: flooder });
    const mine = originalDestination({ ...tuple, remotePort: 40000 }, { command: cmd, owner: other, timeoutMs: 120_000 });
    await assert.rejects(overflow, failsWith(new RegExp(`^more than ${MAX_WAITING_PER_SANDBOX} of this sandbox's connections are waiting`)));
    assert.deepEqual(await mine, { address: "10.201.0.3", port: 7777 });
    // First come first served, it would wait for all 68; by turns it starts in the second round. Half is a
    // bound a slow host's scheduler cannot reach (the flood holds at most 3 slots while it runs).
    assert.ok(floodAnswered < flood / 2, `${floodAnswered} of the flood's ${flood} lookups were answered first`);
    assert.deepEqual(await Promise.all(flooding), Array(flood).fill({ address: "10.201.0.3", port: 7777 }));
  });

  test("turns: a freed slot goes to the next owner in line, not the oldest lookup; each owner's own lookups keep their order", async () => {
    const turns = new LookupTurns(2, 10);
    const started: string[] = [];
    const finish = new Map<string, () => void>();
    const ask = (owner: object, name: string) =>
      turns.run(owner, () => new Promise<string>((resolve) => {
        started.push(name);
        finish.set(name, () => resolve(name));
      }));
    const a = {};
    const b = {};
    const c = {};
    const all = [ask(a, "a1"), ask(a, "a2"), ask(a, "a3"), ask(a, "a4"), ask(b, "b1"), ask(c, "c1"), ask(b, "b2")];
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await settle();
    assert.deepEqual(started, ["a1", "a2"]);
    // a has lookups waiting and was first in line, so it gets the first freed slot; then b, c, and round again.
    for (const name of ["a1", "a2", "a3", "b1", "c1", "a4", "b2"]) {
      finish.get(name)!();
      await settle();
    }
    assert.deepEqual(started, ["a1", "a2", "a3", "b1", "c1", "a4", "b2"]);
    assert.deepEqual(await Promise.all(all), ["a1", "a2", "a3", "a4", "b1", "c1", "b2"]);
  });
});

describe("original destination: against the kernel, in a namespace of the test's own", () => {
  const ns = `mlodst-${process.pid}`;
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
  before(() => {
    ip("netns", "add", ns);
    const inNs = (...args: string[]) => ip("netns", "exec", ns, ...args);
    inNs("ip", "link", "set", "lo", "up");
    // 10.97.0.2 plays the guest, 10.98.0.0/24 the synthetic addresses, 10.99.0.2:4000 the listener.
    for (const a of ["10.97.0.2/32", "10.98.0.0/24", "10.99.0.2/32"]) inNs("ip", "addr", "add", a, "dev", "lo");
    execFileSync("ip", ["netns", "exec", ns, "nft", "-f", "-"], {
      input: "table ip odst {\n chain out {\n  type nat hook output priority -100;\n  ip daddr 10.98.0.0/24 meta l4proto tcp dnat to 10.99.0.2:4000\n }\n}\n",
    });
  });
  after(() => void execFileSync("ip", ["netns", "delete", ns], { stdio: "ignore" }));

  test("each of many DNAT'ed connections, looked up at once, is found at the address and port it dialled", async () => {
    const module = fileURLToPath(new URL("../../src/engine/net/original-destination.js", import.meta.url));
    // The listener and the connections live in the namespace, so the lookup runs there: a child.
    const script = `
      import net from "node:net";
      import { originalDestination } from ${JSON.stringify(module)};
      const N = 60, found = [];
      const server = net.createServer({ pauseOnConnect: true }, async (s) => {
        try { found.push({ from: s.remotePort, to: await originalDestination(s) }); } catch (e) { found.push({ from: s.remotePort, error: e.message }); }
        s.destroy();
        if (found.length === N) { console.log(JSON.stringify(found)); server.close(); }
      });
      server.listen(4000, "10.99.0.2", () => {
        for (let i = 0; i < N; i++) {
          const c = net.connect({ host: "10.98.0." + (1 + (i % 5)), port: 7000 + i, localAddress: "10.97.0.2" });
          c.on("connect", () => console.error(JSON.stringify({ from: c.localPort, dialled: "10.98.0." + (1 + (i % 5)) + ":" + (7000 + i) })));
          c.on("error", () => {});
        }
      });`;
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const code = await new Promise((resolve) => child.once("close", resolve));
    assert.equal(code, 0, err);
    const dialled = new Map(err.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { from: number; dialled: string }).map((d) => [d.from, d.dialled]));
    const found = JSON.parse(out) as Array<{ from: number; to?: { address: string; port: number }; error?: string }>;
    assert.equal(found.length, 60);
    for (const f of found) {
      assert.equal(f.error, undefined);
      assert.equal(`${f.to!.address}:${f.to!.port}`, dialled.get(f.from), `connection from port ${f.from}`);
    }
  });
});
