// The SDK's side of a command's input: exec_write pacing, EOF, resizes, signals, stdin sources,
// and the local terminal (raw mode, size), against a recording transport.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { ExecInputChannel, pumpResizes, pumpStdin, signalNumber } from "../../src/sdk/exec-input.js";
import { RPCError } from "../../src/sdk/errors.js";
import { enterRawMode, followResizes, sizeOf } from "../../src/sdk/terminal.js";
import type { Transport } from "../../src/sdk/transport.js";

interface Sent {
  method: string;
  params: Record<string, unknown>;
  answer?: (err?: Error) => void;
}

/** A transport that records what is sent; requests stay unanswered until the test answers them. */
function recorder() {
  const sent: Sent[] = [];
  const transport = {
    request(method: string, params: Record<string, unknown>) {
      return new Promise((resolve, reject) => {
        sent.push({ method, params, answer: (err) => (err ? reject(err) : resolve({})) });
      });
    },
    post(method: string, params: Record<string, unknown>) {
      sent.push({ method, params });
    },
  } as unknown as Transport;
  const data = () => Buffer.concat(sent.filter((s) => s.method === "exec_write").map((s) => (s.params.data as { bytes: Buffer }).bytes));
  return { sent, transport, data };
}

const tick = () => new Promise((r) => setImmediate(r));
const notRunning = () => new RPCError(-32001, "no running exec_pipe", { kind: "not_found" });

describe("SDK: a command's input", () => {
  it("exec_write: big writes are split, a few are in flight at once, the rest wait for replies", async () => {
    const { sent, transport, data } = recorder();
    const input = new ExecInputChannel(transport, false, 7);
    const big = Buffer.alloc(6 * 1024 * 1024 + 5, 3);
    let done = false;
    const writing = input.write(big).then((more) => ((done = true), more));
    await tick();
    assert.equal(sent.length, 4, "four pieces in flight");
    assert.ok(sent.every((s) => s.params.id === 7));
    sent[0]!.answer!();
    await tick();
    assert.equal(sent.length, 5);
    for (const s of sent) s.answer!();
    await tick();
    for (const s of sent.slice(5)) s.answer!();
    assert.equal(await writing, true);
    assert.ok(done);
    assert.ok(data().equals(big));
  });

  it("a command that ended: writes say false, signals say false, nothing more is sent", async () => {
    const { sent, transport } = recorder();
    const input = new ExecInputChannel(transport, true, 9);
    assert.equal(await input.write(Buffer.from("x")), true, "sent: more may follow before its reply");
    sent[0]!.answer!(notRunning());
    await tick();
    assert.equal(await input.write(Buffer.from("y")), false);
    assert.equal(input.stopped, true);
    assert.equal(await input.signal("SIGTERM"), false);
    input.end();
    input.resize(10, 10);
    assert.equal(sent.length, 1);
  });

  it("EOF once, with the method of the exec's kind; resizes only on a terminal and only sane ones", () => {
    const { sent, transport } = recorder();
    const pipe = new ExecInputChannel(transport, false, 1);
    pipe.end();
    pipe.end();
    pipe.resize(30, 100);
    const tty = new ExecInputChannel(transport, true, 2);
    tty.resize(30.7, 100);
    tty.resize(0, 100);
    tty.resize(NaN, 100);
    tty.resize(70000, 100);
    tty.end();
    assert.deepEqual(sent.map((s) => [s.method, s.params]), [
      ["exec_pipe.stdin_eof", { id: 1 }],
      ["exec_tty.resize", { id: 2, rows: 30, cols: 100 }],
      ["exec_tty.stdin_eof", { id: 2 }],
    ]);
  });

  it("signals by name or number", () => {
    assert.equal(signalNumber("SIGKILL"), 9);
    assert.equal(signalNumber("TERM"), 15);
    assert.equal(signalNumber(2), 2);
    assert.throws(() => signalNumber("SIGNOPE"), /unknown signal/);
    assert.throws(() => signalNumber(0), /unknown signal/);
    assert.throws(() => signalNumber(65), /unknown signal/);
  });

  it("pumpStdin: chunks of any binary kind, then EOF; an empty source is EOF at once", async () => {
    const { sent, transport, data } = recorder();
    const input = new ExecInputChannel(transport, false, 3);
    const pumping = pumpStdin(input, ["a", Buffer.from("b"), new Uint8Array([0x63]), new Uint8Array([0x64]).buffer]);
    for (let i = 0; i < 20; i++) {
      await tick();
      sent.filter((s) => s.answer).forEach((s) => s.answer!());
    }
    await pumping;
    assert.equal(data().toString(), "abcd");
    assert.equal(sent.at(-1)!.method, "exec_pipe.stdin_eof");
    await assert.rejects(pumpStdin(input, 42 as never), /stdin must be a Readable/);
  });

  it("pumpStdin: a Readable is paused, not destroyed, when the command ends", async () => {
    const { sent, transport } = recorder();
    const input = new ExecInputChannel(transport, true, 4);
    const source = new PassThrough();
    const pumping = pumpStdin(input, source);
    source.write("typed");
    await tick();
    sent[0]!.answer!();
    input.stop();
    await pumping;
    assert.equal(source.destroyed, false);
    assert.equal(source.isPaused(), true);
    assert.equal(sent.filter((s) => s.method.endsWith("stdin_eof")).length, 0, "a stopped command gets no EOF");
  });

  it("pumpResizes sends each size until the command ends", async () => {
    const { sent, transport } = recorder();
    const input = new ExecInputChannel(transport, true, 5);
    await pumpResizes(input, [[10, 20], [11, 21]]);
    assert.deepEqual(sent.map((s) => s.params), [{ id: 5, rows: 10, cols: 20 }, { id: 5, rows: 11, cols: 21 }]);
  });

  it("the local terminal: raw mode while it runs, its size, its resizes", () => {
    const modes: boolean[] = [];
    const stdin = { isTTY: true, isRaw: false, setRawMode: (on: boolean) => modes.push(on) };
    const leave = enterRawMode(stdin as never);
    leave();
    assert.deepEqual(modes, [true, false]);
    assert.deepEqual(modes.length, 2);
    enterRawMode(new PassThrough())(); // not a terminal: nothing to do

    const stdout = Object.assign(new EventEmitter(), { isTTY: true, rows: 40, columns: 120 });
    assert.deepEqual(sizeOf(stdout as never), [40, 120]);
    assert.equal(sizeOf(new PassThrough()), undefined);
    const { sent, transport } = recorder();
    const input = new ExecInputChannel(transport, true, 6);
    input.whenStopped(followResizes(stdout as never, (rows, cols) => input.resize(rows, cols)));
    stdout.rows = 41;
    stdout.emit("resize");
    input.stop();
    stdout.emit("resize");
    assert.deepEqual(sent.map((s) => s.params), [{ id: 6, rows: 41, cols: 120 }]);
    assert.equal(stdout.listenerCount("resize"), 0);
  });
});
