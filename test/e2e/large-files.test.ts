// End to end: large files stream in chunks with bounded memory on a real sandbox (gVisor or
// micro-VM, from $MATCHLOCK_BACKEND), and transfers that go wrong end clearly, leaving no
// partial file at the target. The big file goes to a host-dir mount, so it lands on the
// host's disk and not in the sandbox's memory.
import assert from "node:assert/strict";
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { ErrorCode } from "../../src/protocol/rpc.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

const MiB = 1024 * 1024;
// The micro-VM runs under TCG here (no KVM): ~20 MB/s, so it moves less, keeping this file well
// inside the suite's 5-minute limit per test file on a loaded machine.
const BIG = BACKEND === "microvm" ? 128 * MiB : 1024 * MiB;
/**
 * Growth of peak RSS we accept for the whole transfer: far below the file size. File data in
 * flight is a few MiB; the rest is garbage (base64 strings) the JS heap collects lazily.
 */
const RSS_ALLOWANCE = 256 * MiB;

/** `size` deterministic pseudo-random bytes (AES-CTR keystream), generated piece by piece. */
async function* pseudoRandom(size: number, seed = 1): AsyncGenerator<Buffer> {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(256 * 1024);
  for (let left = size; left > 0; left -= zeros.length) {
    yield cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
  }
}

async function sha256Of(source: AsyncIterable<Buffer | string>): Promise<string> {
  const h = createHash("sha256");
  for await (const piece of source) h.update(piece);
  return h.digest("hex");
}

/** Peak resident memory (VmHWM) of a process, in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status);
  assert.ok(kb, `no VmHWM for ${pid}`);
  return Number(kb[1]) * 1024;
}

/** The `matchlock rpc` engine this test process started: its only child with "rpc" in its argv. */
function enginePid(): number {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").includes("rpc")) return Number(name);
    } catch {
      // the process ended meanwhile
    }
  }
  throw new Error("the engine process was not found");
}

describe(`large files on a ${BACKEND} sandbox`, { timeout: 30 * 60_000 }, () => {
  let client: Client;
  let hostDir: string;
  let roDir: string;

  before(async () => {
    await setUpE2E();
    hostDir = await mkdtemp(join(tmpdir(), "matchlock-large-"));
    roDir = await mkdtemp(join(tmpdir(), "matchlock-large-ro-"));
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX).mountHostDir("/data", hostDir).mountHostDirReadonly("/ro", roDir));
  });
  after(async () => {
    await client.close();
    await client.remove();
    await rm(hostDir, { recursive: true, force: true });
    await rm(roDir, { recursive: true, force: true });
  });

  test(`${BIG / MiB} MiB written from a stream and read back as a stream: same checksum, bounded memory`, { timeout: 15 * 60_000 }, async () => {
    const engine = enginePid();
    const before = { sdk: process.resourceUsage().maxRSS * 1024, engine: await peakRss(engine) };
    const want = await sha256Of(pseudoRandom(BIG));

    await client.writeFile("/data/big.bin", Readable.from(pseudoRandom(BIG)));
    assert.equal((await client.exec("stat -c %s /data/big.bin")).stdout.trim(), String(BIG));
    assert.equal(await sha256Of(client.readFileStream("/data/big.bin")), want);

    const peak = { sdk: process.resourceUsage().maxRSS * 1024, engine: await peakRss(engine) };
    const grew = { sdk: peak.sdk - before.sdk, engine: peak.engine - before.engine };
    console.log(`peak RSS growth over a ${BIG / MiB} MiB round trip: SDK ${(grew.sdk / MiB).toFixed(0)} MiB, engine ${(grew.engine / MiB).toFixed(0)} MiB`);
    assert.ok(grew.sdk < RSS_ALLOWANCE, `SDK peak RSS grew by ${grew.sdk} bytes`);
    assert.ok(grew.engine < RSS_ALLOWANCE, `engine peak RSS grew by ${grew.engine} bytes`);
    // The host file is the same, and the temporary file is gone.
    assert.equal(await sha256Of(createReadStream(join(hostDir, "big.bin"))), want);
    assert.deepEqual(await readdir(hostDir), ["big.bin"]);
    await rm(join(hostDir, "big.bin"));
  });

  test("readFile of a few MiB returns the exact bytes; writeFile of a large Buffer streams it", async () => {
    const pieces: Buffer[] = [];
    for await (const piece of pseudoRandom(9 * MiB + 5, 2)) pieces.push(piece);
    const data = Buffer.concat(pieces);
    await client.writeFile("/tmp/nine.bin", data, { mode: 0o600 });
    assert.deepEqual(await client.readFile("/tmp/nine.bin"), data);
    assert.equal((await client.exec("stat -c %a /tmp/nine.bin")).stdout, "600\n");
  });

  test("bad paths fail clearly, at once, and leave nothing behind", async () => {
    const isFileError = (re: RegExp) => (err: unknown) => err instanceof RPCError && err.code === ErrorCode.FILE_FAILED && re.test(err.message);
    await assert.rejects(client.writeFile("/tmp", Readable.from(pseudoRandom(4 * MiB))), isFileError(/open \/tmp: Is a directory/));
    await assert.rejects(client.writeFile("/ro/x.bin", Readable.from(pseudoRandom(4 * MiB))), isFileError(/Read-only file system/));
    await assert.rejects(client.writeFile("/etc/passwd/x", Buffer.alloc(2 * MiB)), isFileError(/Not a directory/));
    await assert.rejects(client.readFile("/nope/missing"), isFileError(/read \/nope\/missing: No such file or directory/));
    await assert.rejects(sha256Of(client.readFileStream("/nope/missing")), isFileError(/No such file or directory/));
    await assert.rejects(sha256Of(client.readFileStream("/tmp")), isFileError(/Is a directory/));
    assert.deepEqual(await readdir(roDir), []);
    assert.equal((await client.exec("ls -a /tmp | grep -c matchlock- || true")).stdout.trim(), "0");
  });

  test("a write aborted mid-transfer is dropped: the old file stays, no temporary file", async () => {
    await client.writeFile("/data/keep.txt", "old version");
    const ac = new AbortController();
    let pieces = 0;
    async function* abortsPartWay() {
      for await (const piece of pseudoRandom(64 * MiB, 3)) {
        if (++pieces === 40) ac.abort(); // ~10 MiB in: several chunks already in the guest
        yield piece;
      }
    }
    await assert.rejects(client.writeFile("/data/keep.txt", abortsPartWay(), { signal: ac.signal }),
      (err: unknown) => err instanceof RPCError && err.code === ErrorCode.CANCELLED);
    assert.ok(pieces < 64 * 4, "the source was not read to its end");
    assert.equal((await client.readFile("/data/keep.txt")).toString(), "old version");
    // The engine drops the transfer right after the abort; a listing after any later call sees that.
    await client.exec("true");
    assert.deepEqual(await readdir(hostDir), ["keep.txt"]);
  });

  test("a source stream that fails mid-way fails the write with its error, leaving nothing", async () => {
    async function* failing() {
      yield Buffer.alloc(3 * MiB, 7);
      throw new Error("the source broke");
    }
    await assert.rejects(client.writeFile("/data/broken.bin", failing()), /the source broke/);
    await client.exec("true");
    assert.ok(!(await readdir(hostDir)).some((n) => n.includes("broken")));
  });

  test("a read stream destroyed part-way stops the transfer; the sandbox carries on", async () => {
    await client.writeFile("/data/r.bin", Readable.from(pseudoRandom(32 * MiB, 4)));
    const stream = client.readFileStream("/data/r.bin");
    let got = 0;
    for await (const piece of stream) {
      got += (piece as Buffer).length;
      if (got >= 2 * MiB) break; // destroys the stream
    }
    assert.ok(got < 32 * MiB);
    assert.equal((await client.exec("echo still here")).stdout, "still here\n");
    assert.equal(await sha256Of(client.readFileStream("/data/r.bin")), await sha256Of(pseudoRandom(32 * MiB, 4)));
  });

  test("closing the sandbox mid-transfer fails the transfer clearly instead of hanging", async () => {
    let pieces = 0;
    let closing: Promise<void> | undefined;
    async function* endless() {
      for await (const piece of pseudoRandom(Number.MAX_SAFE_INTEGER, 5)) {
        if (++pieces === 20) closing = client.close();
        yield piece;
      }
    }
    await assert.rejects(client.writeFile("/data/endless.bin", endless()), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /sandbox was closed during the transfer|session ended during the transfer|Matchlock client closed|not running/);
      return true;
    });
    await closing;
    assert.ok(!(await readdir(hostDir)).some((n) => n.includes("endless")), "no partial file on the host");
  });
});
