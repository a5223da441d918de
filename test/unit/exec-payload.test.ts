// The EXEC frame's payload (cwd, user, command, env; NUL-terminated): a sandbox's frozen env is
// encoded once for all its execs, and an env that can change is encoded anew each time.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeStrings, FrameType } from "../../src/protocol/agent-frames.js";
import { fakeAgentChannel, settle } from "../helpers/fake-agent-channel.js";

const sink = { stdout() {}, stderr() {} };

test("each EXEC carries its own command and the env as it is at that exec", async () => {
  const { conn, sent, exit } = fakeAgentChannel();
  await conn.ready;
  const frozen = Object.freeze(["PATH=/bin", "HOME=/root"]);
  const mutable = ["A=1"];
  const run = async (command: string, env: readonly string[]) => {
    const done = conn.exec({ command, cwd: "/work", user: "1000", env }, sink);
    await settle();
    const frame = sent.at(-1)!;
    assert.equal(frame.type, FrameType.EXEC);
    exit(frame.id, 0);
    await done;
    return decodeStrings(frame.payload);
  };
  assert.deepEqual(await run("echo one", frozen), ["/work", "1000", "echo one", "PATH=/bin", "HOME=/root"]);
  assert.deepEqual(await run("echo two", frozen), ["/work", "1000", "echo two", "PATH=/bin", "HOME=/root"]);
  assert.deepEqual(await run("x", mutable), ["/work", "1000", "x", "A=1"]);
  mutable.push("B=2");
  assert.deepEqual(await run("y", mutable), ["/work", "1000", "y", "A=1", "B=2"]);
  assert.deepEqual(await run("z", []), ["/work", "1000", "z"]);
});

test("a NUL in the command or the env is refused before anything is sent", async () => {
  const { conn, sent } = fakeAgentChannel();
  await conn.ready;
  await assert.rejects(conn.exec({ command: "a\0b", cwd: "/", user: "", env: [] }, sink), /NUL/);
  await assert.rejects(conn.exec({ command: "ok", cwd: "/", user: "", env: Object.freeze(["X=\0"]) }, sink), /NUL/);
  await settle();
  assert.equal(sent.length, 0);
});
