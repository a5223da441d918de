// End to end through the SDK, the real engine and real sandboxes (gVisor or micro-VM, from
// $MATCHLOCK_BACKEND): exec and streaming.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Writable } from "node:stream";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

describe(`exec on a ${BACKEND} sandbox`, () => {
  let client: Client;

  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  test("the quick start: stdout comes back", async () => {
    const r = await client.exec("echo hello from the sandbox");
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "hello from the sandbox\n");
    assert.equal(r.stderr, "");
    assert.ok(Number.isInteger(r.durationMs) && r.durationMs >= 0);
  });

  test("a command runs as the user asked for, with that user's HOME; by default as root", async () => {
    assert.equal((await client.exec("id -u; id -g; echo $HOME")).stdout, "0\n0\n/root\n");
    assert.equal((await client.exec("id -u; id -g; echo $HOME", { user: "nobody" })).stdout, "65534\n65534\n/nonexistent\n");
    assert.equal((await client.exec("id -u; id -g; echo $HOME", { user: "1234:5" })).stdout, "1234\n5\n/\n");
    const chunks: string[] = [];
    await client.execStream("id -u", { user: "65534", stdout: (t) => chunks.push(t.toString()) });
    assert.equal(chunks.join(""), "65534\n");
    await assert.rejects(client.exec("true", { user: "ghost" }), (e: RPCError) => e.code === -32001 && /"ghost" is not defined in the sandbox's \/etc\/passwd/.test(e.message));
  });

  test("a non-zero exit is a result, not an error", async () => {
    assert.equal((await client.exec("exit 3")).exitCode, 3);
    assert.equal((await client.exec("false")).exitCode, 1);
  });

  test("stderr is separate", async () => {
    const r = await client.exec("echo out; echo err >&2; cat /nonexistent_file_abc123");
    assert.equal(r.stdout, "out\n");
    assert.match(r.stderr, /^err\n/);
    assert.match(r.stderr, /No such file or directory/);
    assert.equal(r.exitCode, 1);
  });

  test("a command killed by a signal reports 128+signal", async () => {
    const r = await client.exec("kill -9 $$");
    assert.equal(r.exitCode, 137);
    assert.equal(r.signal, 9);
    assert.equal((await client.exec("exit 137")).signal, undefined);
  });

  test("a command leads its own session and process group, with every signal at its default and none blocked", async () => {
    const ids = (await client.exec("cut -d' ' -f1,5,6 /proc/$$/stat")).stdout.trim().split(" ");
    assert.equal(ids.length, 3, ids.join(" "));
    assert.deepEqual([ids[1], ids[2]], [ids[0], ids[0]], "pid, process group and session are one");
    // The agent ignores SIGPIPE and handles SIGCHLD: none of that may reach the command. A
    // signal the shell sends itself kills it only if it is neither ignored nor blocked.
    for (const [sig, n] of [["PIPE", 13], ["USR1", 10], ["TERM", 15]] as const) {
      const r = await client.exec(`kill -${sig} $$; sleep 0; echo survived`);
      assert.deepEqual([r.exitCode, r.signal, r.stdout], [128 + n, n, ""], `SIG${sig}`);
    }
  });

  test("UTF-8 output is decoded", async () => {
    const r = await client.exec("printf 'h\\303\\251llo \\342\\234\\223 \\360\\237\\230\\200\\n'");
    assert.equal(r.stdout, "héllo ✓ 😀\n");
  });

  test("binary output survives a file round trip", async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await client.writeFile("/tmp/all-bytes.bin", bytes);
    const r = await client.exec("md5sum /tmp/all-bytes.bin");
    assert.equal(r.stdout.split(" ")[0], createHash("md5").update(bytes).digest("hex"));
    assert.deepEqual(await client.readFile("/tmp/all-bytes.bin"), bytes);
  });

  test("a 10 MB stdout arrives whole", async () => {
    const r = await client.exec("head -c 10485760 /dev/zero | tr '\\0' 'x'");
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.length, 10 * 1024 * 1024);
    assert.ok(/^x+$/.test(r.stdout));
  });

  test("seq 1 1000 gives exactly 1000 lines", async () => {
    const r = await client.exec("seq 1 1000");
    assert.equal(r.stdout.trim().split("\n").length, 1000);
  });

  test("working directory: default is the workspace, and it can be set", async () => {
    assert.equal((await client.exec("pwd")).stdout, "/workspace\n");
    assert.equal((await client.exec("pwd", { workingDir: "/tmp" })).stdout, "/tmp\n");
  });

  test("a missing working directory is an exec error", async () => {
    await assert.rejects(client.exec("pwd", { workingDir: "/nope" }), (err: unknown) => {
      assert.ok(err instanceof RPCError);
      assert.ok(err.isExecError(), `code ${err.code}`);
      assert.match(err.message, /chdir \/nope: No such file or directory/);
      return true;
    });
  });

  test("execStream delivers lines while the command still runs, in order", async () => {
    // After its first line the command waits (at most 60 s) for a file that the test writes when
    // that line arrives; it prints "2" only if the file came, i.e. only if line 1 was delivered
    // while it still ran.
    const gate = "/tmp/stream-gate";
    const seen: string[] = [];
    let errText = "";
    let opened: Promise<void> | undefined;
    const r = await client.execStream(
      `echo 1; i=0; while [ ! -e ${gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; if [ -e ${gate} ]; then echo 2; else echo no-gate; fi; echo 3; echo done >&2`, {
        stdout: (chunk) => {
          for (const line of chunk.toString().split("\n").filter(Boolean)) {
            seen.push(line);
            if (line === "1") opened ??= client.writeFile(gate, "open");
          }
        },
        stderr: (chunk) => { errText += chunk; },
      });
    await opened;
    assert.equal(r.exitCode, 0);
    assert.deepEqual(seen, ["1", "2", "3"]);
    assert.equal(errText, "done\n");
  });

  test("execStream writes to Node writables", async () => {
    const chunks: Buffer[] = [];
    const sink = new Writable({ write(chunk, _enc, cb) { chunks.push(Buffer.from(chunk)); cb(); } });
    const r = await client.execStream("echo streamed", { stdout: sink });
    assert.equal(r.exitCode, 0);
    assert.equal(Buffer.concat(chunks).toString(), "streamed\n");
  });

  test("concurrent execs on one sandbox each get their own output", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => client.exec(`for j in 1 2 3 4 5; do echo ${i}-$j; done; exit ${i}`)),
    );
    results.forEach((r, i) => {
      assert.equal(r.exitCode, i);
      assert.equal(r.stdout, [1, 2, 3, 4, 5].map((j) => `${i}-${j}\n`).join(""));
    });
  });

  test("a background process does not hold an exec open", async () => {
    const r = await client.exec("sleep 31 & echo started");
    assert.equal(r.stdout, "started\n");
    // The exec returned while the background process it left still runs.
    assert.match((await client.exec("ps")).stdout, /sleep 31/);
  });
});
