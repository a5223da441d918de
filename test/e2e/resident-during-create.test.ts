// End to end through a resident engine (`matchlock serve`): a connection that goes away, or a
// `matchlock kill`, while its create is still in progress aborts and undoes that create at once
// (requests pipelined behind the create do not hold the reader up), and a `close` reply is
// delivered even when the client pipelines more behind it.
import assert from "node:assert/strict";
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, cli, eventually, firstVm, leftovers, networkLeftovers, setUpE2E } from "../helpers/e2e.js";
import { SocketSession, startServer, type Server } from "../helpers/resident.js";

const line = (method: string, params: object, id: number) => JSON.stringify({ jsonrpc: "2.0", method, params, id }) + "\n";

describe(`resident engine, during a create on ${BACKEND}`, { timeout: 10 * 60_000 }, () => {
  let home: string;
  let server: Server;

  before(async () => {
    home = await setUpE2E();
    await mkdir(join(home, "vms"), { recursive: true });
    server = await startServer(join(home, "run", "engine.sock"));
  });
  after(async () => {
    await server.stop();
  });

  test("the client ends its side behind a create and a pipelined exec: the create is undone, the exec never runs", async () => {
    const vms = firstVm(home);
    const s = new SocketSession(server.socketPath);
    try {
      s.socket.write(line("create", { image: BUSYBOX }, 1) + line("exec", { command: "echo never" }, 2));
      const id = await vms.id;
      s.socket.end(); // EOF, still reading: the replies come back on the open half
      const create = await s.next();
      assert.equal(create.id, 1);
      assert.equal(create.error?.code, -32003, JSON.stringify(create));
      await s.closed;
      assert.deepEqual(await eventually(() => leftovers(id, home)), []);
      assert.deepEqual(await networkLeftovers(id), []);
      assert.deepEqual(await eventually(async () => readdir(join(home, "vms"))), []);
      assert.match(server.stderr(), /abandoning the create in progress/);
    } finally {
      vms.stop();
      s.socket.destroy();
    }
  });

  test("a kill request (what `matchlock kill ID` sends) during its create aborts that create and leaves no request behind", async () => {
    const vms = firstVm(home);
    const s = new SocketSession(server.socketPath);
    try {
      s.sendLine(line("create", { image: BUSYBOX }, 1).trimEnd());
      const id = await vms.id;
      // What requestStop does for a resident owner, sent at once: the CLI's own start-up
      // would take longer than a gVisor create.
      await writeFile(join(home, "vms", id, "stop_requested"), "");
      process.kill(server.proc.pid!, "SIGUSR2");
      await s.closed; // the session ends as if the client had gone
      assert.deepEqual(await eventually(() => leftovers(id, home)), []);
      assert.deepEqual(await networkLeftovers(id), []);
      assert.doesNotMatch(server.stderr(), new RegExp(`created ${id}`), "the create ran to completion");
      assert.match(server.stderr(), new RegExp(`stopping ${id}: matchlock kill`));
      await assert.rejects(access(join(home, "vms", id, "stop_requested")), "the stop request must not outlive the session");
      assert.equal(server.proc.exitCode, null, "the server keeps running");
    } finally {
      vms.stop();
      s.socket.destroy();
    }
  });

  test("`matchlock kill ID` says Killed only once the sandbox is stopped", async () => {
    const s = new SocketSession(server.socketPath);
    try {
      const id = (await s.call("create", { image: BUSYBOX }, 1)).result.id as string;
      const killed = await cli(["kill", id]);
      assert.equal(killed.stdout, `Killed ${id}\n`, killed.stderr);
      // Checked right after the CLI returned, without waiting: it must already be so.
      const status = await readFile(join(home, "vms", id, "status"), "utf8").catch(() => "gone");
      assert.notEqual(status, "running");
      await s.closed;
      assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    } finally {
      s.socket.destroy();
    }
  });

  test("a close with another request pipelined behind it: the close reply arrives, then the server ends the connection cleanly", async () => {
    const s = new SocketSession(server.socketPath);
    let reset = false;
    s.socket.on("error", () => (reset = true));
    try {
      const created = await s.call("create", { image: BUSYBOX }, 1);
      const id = created.result.id as string;
      s.socket.write(line("close", {}, 2) + line("exec", { command: "echo never" }, 3));
      const closed = await s.next();
      assert.deepEqual({ id: closed.id, result: closed.result }, { id: 2, result: {} }, JSON.stringify(closed));
      // The line after `close` ends the session unprocessed; our side is then ended, not reset.
      await s.closed;
      assert.equal(reset, false, "the server reset the connection instead of ending it");
      assert.deepEqual(await eventually(() => leftovers(id, home)), []);
    } finally {
      s.socket.destroy();
    }
  });
});
