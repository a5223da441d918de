// The sandbox's log (protocol spec 5.4): `log` returns it whole, `log_stream` sends it and then
// what is appended, until the sandbox stops or the request is cancelled; through the SDK
// (log, logStream) and on the raw wire.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { RPCError } from "../../src/sdk/errors.js";
import { BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";
import { eventually } from "../helpers/sdk-fixture.js";

/** Long: a loaded machine can take a while to run the guest's loop and the engine's poll. */
const WAIT_MS = 120_000;

/** The entrypoint prints a line, waits for the test's gate file, prints another and stays. */
const GATED_ENTRYPOINT = ["sh", "-c", "echo first line; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second line; exec sleep 600"];

describe("sandbox logs", () => {
  before(async () => {
    await setUpE2E();
  });

  test("log holds the entrypoint's output; logStream follows it and ends when the sandbox stops", async () => {
    const client = newClient();
    try {
      await client.launch(new Sandbox(BUSYBOX).withEntrypoint(...GATED_ENTRYPOINT));
      await eventually(async () => assert.match(await client.log(), /first line\n/), WAIT_MS);
      assert.doesNotMatch(await client.log(), /second line/);

      const streamed: Buffer[] = [];
      const target = new PassThrough();
      target.on("data", (d: Buffer) => streamed.push(d));
      const text = () => Buffer.concat(streamed).toString();
      const following = client.logStream({ stdout: target });
      await eventually(() => assert.match(text(), /first line\n/), WAIT_MS);
      assert.doesNotMatch(text(), /second line/);
      await client.writeFile("/tmp/go", "");
      await eventually(() => assert.match(text(), /first line\nsecond line\n/), WAIT_MS);

      // The sandbox stops one second from now: the stream ends by itself, nothing cancels it.
      await client.setTimeout(1);
      await following;
      assert.match(text(), /first line\nsecond line\n/);
      // The log outlives the sandbox: still readable from the session that had it.
      assert.match(await client.log(), /first line\nsecond line\n/);
    } finally {
      await client.close();
      await client.remove();
    }
  });

  test("a cancelled logStream rejects as cancelled and the session goes on", async () => {
    const client = newClient();
    try {
      await client.launch(new Sandbox(BUSYBOX).withEntrypoint(...GATED_ENTRYPOINT));
      const seen: string[] = [];
      const abort = new AbortController();
      const following = client.logStream({ stdout: (t) => seen.push(t.toString()), signal: abort.signal });
      await eventually(() => assert.match(seen.join(""), /first line/), WAIT_MS);
      abort.abort();
      await assert.rejects(following, (err: RPCError) => err.kind === "cancelled");
      assert.equal((await client.exec("echo still here")).stdout, "still here\n");
    } finally {
      await client.close();
      await client.remove();
    }
  });

  test("raw wire: log_stream needs an id, log before a sandbox is -32000, params are strict, log returns the entrypoint's output", async () => {
    const s = new RawSession();
    try {
      s.send({ jsonrpc: "2.0", method: "log_stream" });
      const noId = await s.next();
      assert.equal(noId.error?.code, -32600, JSON.stringify(noId));
      assert.equal("id" in noId, false);
      const early = await s.call("log", undefined, 1);
      assert.equal(early.error?.code, -32000);
      assert.equal(early.error?.message, "VM not created");
      const badParams = await s.call("log", { follow: true }, 2);
      assert.equal(badParams.error?.code, -32602);
      assert.match(badParams.error?.message, /follow/);

      const created = await s.call("create", { image: BUSYBOX, image_config: { entrypoint: ["echo", "said once"] }, launch_entrypoint: true }, 3);
      assert.ok(created.result?.id, JSON.stringify(created));
      await eventually(async () => {
        const r = await s.call("log", undefined, 4);
        assert.match(Buffer.from(r.result.content, "base64").toString(), /said once\nentrypoint exited with code 0\n/);
      }, WAIT_MS);
      assert.deepEqual(await s.call("close", {}, 5), { jsonrpc: "2.0", result: {}, id: 5 });
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
  });

  test("raw wire: log_stream sends the log as log_stream.data before its result, once the sandbox has stopped", async () => {
    const s = new RawSession();
    try {
      const created = await s.call("create", { image: BUSYBOX, image_config: { entrypoint: ["echo", "streamed once"] }, launch_entrypoint: true }, 1);
      assert.ok(created.result?.id, JSON.stringify(created));
      await eventually(async () => {
        const r = await s.call("log", undefined, 2);
        assert.match(Buffer.from(r.result.content, "base64").toString(), /entrypoint exited/);
      }, WAIT_MS);
      assert.deepEqual((await s.call("set_timeout", { timeout_seconds: 1 }, 3)).result, {});
      s.send({ jsonrpc: "2.0", method: "log_stream", id: 4 });
      let data = "";
      for (;;) {
        const m = await s.next();
        if (m.method === "log_stream.data") {
          assert.equal(m.params.id, 4);
          data += Buffer.from(m.params.data, "base64").toString();
          continue;
        }
        if (m.method === "event") continue;
        assert.deepEqual(m, { jsonrpc: "2.0", result: {}, id: 4 });
        break;
      }
      assert.match(data, /streamed once\nentrypoint exited with code 0\n/);
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
  });
});
