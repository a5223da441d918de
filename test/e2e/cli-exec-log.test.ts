// `matchlock run -d`, `exec` and `log [-f]` as Docker's: a detached sandbox lives in the resident
// engine (`matchlock serve`), `exec` runs commands in it with its exit status as its own, `log -f`
// follows its log until it stops (killed, or its timeout), and `log` reads a stopped one's;
// `exec -i/-t/-it` gives the command our stdin and a terminal, driven here through a real one.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { BUSYBOX, CLI, cli, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";
import { startServer, type Server } from "../helpers/resident.js";
import { TerminalSession } from "../helpers/terminal-session.js";
import { eventually } from "../helpers/sdk-fixture.js";

const WAIT_MS = 120_000;

/** `matchlock log -f ID` running: what it printed so far, and its exit. */
function follow(id: string) {
  const p = spawn(process.execPath, [CLI, "log", "-f", id], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on("exit", (code) => resolve(code)));
  return { stdout: () => stdout, stderr: () => stderr, exited };
}

describe("matchlock run -d, exec and log", () => {
  let server: Server;
  before(async () => {
    const home = await setUpE2E();
    server = await startServer(join(home, "run", "engine.sock"));
  });
  after(async () => {
    await server?.stop();
  });

  test("run -d prints the id; exec runs in the sandbox with -u, -w, -e and its status; log -f follows until kill", async () => {
    const started = await cli(["run", "-d", "--image", BUSYBOX, "--",
      "sh", "-c", "echo started; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo gate passed; exec sleep 600"]);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /^vm-[0-9a-f]{8}\n$/);
    const id = started.stdout.trim();
    const listed = JSON.parse((await cli(["list", "--running", "--json"])).stdout) as Array<{ id: string }>;
    assert.ok(listed.some((v) => v.id === id), "the sandbox runs after run -d returned");

    const log = follow(id);
    await eventually(() => assert.match(log.stdout(), /started\n/), WAIT_MS);
    assert.doesNotMatch(log.stdout(), /gate passed/);

    const ran = await cli(["exec", "-u", "nobody", "-w", "/tmp", "-e", "FOO=from -e", id, "--", "sh", "-c", 'echo "$(id -u) $FOO $(pwd)"; exit 7']);
    assert.equal(ran.code, 7, ran.stderr);
    assert.equal(ran.stdout, "65534 from -e /tmp\n");
    const opened = await cli(["exec", id, "--", "touch", "/tmp/go"]);
    assert.equal(opened.code, 0, opened.stderr);
    await eventually(() => assert.match(log.stdout(), /started\ngate passed\n/), WAIT_MS);

    const missing = await cli(["exec", id, "nosuchcommand"]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /^Error: "nosuchcommand": executable file not found in \$PATH\n$/);
    const own = await cli(["exec", id, "--", "sh", "-c", "exit 127"]);
    assert.equal(own.code, 127, "the command's own 127");
    assert.equal(own.stderr, "", "a status the command chose comes with no error of matchlock's");
    const notExecutable = await cli(["exec", id, "/etc/passwd"]);
    assert.equal(notExecutable.code, 126);

    const killed = await cli(["kill", id]);
    assert.equal(killed.stdout, `Killed ${id}\n`, killed.stderr);
    assert.equal(await log.exited, 0, "log -f ends when the sandbox stops");
    assert.match(log.stdout(), /started\ngate passed\n/);

    const late = await cli(["exec", id, "true"]);
    assert.equal(late.code, 125);
    assert.match(late.stderr, new RegExp(`VM ${id} is not running \\(status: stopped\\)`));
    const kept = await cli(["log", id]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stdout, /started\ngate passed\n/);
    assert.equal((await cli(["rm", id])).code, 0);
  });

  test("exec -i pipes our stdin, -t runs on a terminal, -it is a shell at our terminal: raw, resized, ctrl-C the command's", async () => {
    const started = await cli(["run", "-d", "--image", BUSYBOX, "--", "sleep", "600"]);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    let terminal: TerminalSession | undefined;
    try {
      const piped = await cli(["exec", "-i", id, "--", "sh", "-c", "tr a-z A-Z; echo eof; echo err >&2"], "hello\nworld\n");
      assert.equal(piped.code, 0, piped.stderr);
      assert.equal(piped.stdout, "HELLO\nWORLD\neof\n");
      assert.equal(piped.stderr, "err\n");
      const onTerminal = await cli(["exec", "-t", id, "--", "sh", "-c", "tty; stty size; echo err >&2; exit 4"]);
      assert.equal(onTerminal.code, 4, onTerminal.stderr);
      assert.match(onTerminal.stdout, /^\/dev\/pts\/\d+\r\n24 80\r\nerr\r\n$/);

      terminal = new TerminalSession([process.execPath, "--", CLI, "exec", "-it", id, "sh"], { rows: 30, cols: 100 });
      // Our terminal in Node's raw mode still turns \n into \r\n, so lines end in \r\r\n here.
      // busybox's prompt may end with a cursor-position query (ESC [6n) that nobody answers.
      const prompt = "# (\\x1b\\[6n)?$";
      let at = await terminal.waitFor(new RegExp(prompt));
      terminal.type("stty size\r");
      at = await terminal.waitFor(new RegExp(`30 100\\r+\\n.*${prompt}`, "s"), at);
      terminal.resize(40, 120);
      // The resize reaches the command before what is typed after it.
      terminal.type("stty size\r");
      at = await terminal.waitFor(new RegExp(`40 120\\r+\\n.*${prompt}`, "s"), at);
      // Raw mode: ctrl-C is a keystroke for the sandbox's terminal, which interrupts its command.
      // Once it prints, the command is the terminal's foreground job (a ctrl-C before would be the shell's).
      terminal.type("sh -c 'echo sleeping; exec sleep 600'\r");
      at = await terminal.waitFor(/\nsleeping\r+\n/, at);
      terminal.type("\x03");
      at = await terminal.waitFor(new RegExp(prompt), at);
      terminal.type("echo after-$((6*7)); exit 3\r");
      assert.equal(await terminal.exited, 3, terminal.printed);
      assert.match(terminal.printed.slice(at), /after-42\r+\n/);
    } finally {
      terminal?.kill();
      await cli(["kill", id]);
      await cli(["rm", id]);
    }
  });

  test("run -d with no command starts the image's; --timeout stops it and log -f ends with it", async () => {
    const started = await cli(["run", "-d", "--timeout", "3", "--image", BUSYBOX, "--entrypoint", "sh", "--", "-c", "echo from the entrypoint; exec sleep 600"]);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    const log = follow(id);
    assert.equal(await log.exited, 0, log.stderr());
    assert.match(log.stdout(), /from the entrypoint\n/);
    const record = JSON.parse((await cli(["get", id])).stdout) as { status: string };
    assert.equal(record.status, "stopped");
    assert.equal((await cli(["rm", id])).code, 0);
  });

  test("exec reaches a foreground run's sandbox while its command runs; --rm=false prints the id first", async () => {
    const run = spawn(process.execPath, ["--", CLI, "run", "--rm=false", "--image", BUSYBOX, "--", "sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo released"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    run.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    run.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => run.on("exit", (code) => resolve(code)));
    await eventually(() => assert.match(stderr, /^vm-[0-9a-f]{8}\n/), WAIT_MS);
    const id = stderr.slice(0, 11);
    // The id is printed before the socket is up: the first exec may come too early for it.
    await eventually(async () => {
      const r = await cli(["exec", "-e", "WHO=exec", id, "--", "sh", "-c", "echo $WHO in the run; touch /tmp/go"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "exec in the run\n");
    }, WAIT_MS);
    assert.equal(await exited, 0, stderr);
    assert.equal(stdout, "released\n");
    const late = await cli(["exec", id, "true"]);
    assert.equal(late.code, 125);
    assert.match(late.stderr, /is not running \(status: stopped\)/);
    assert.equal((await cli(["rm", id])).code, 0);
  });

  test("exec refuses an SDK client's own engine and unknown ids; run -d needs the resident engine; a stdio engine refuses attach", async () => {
    const client = newClient(); // its own `matchlock rpc`, not the resident engine
    try {
      const id = await client.launch(new Sandbox(BUSYBOX));
      const r = await cli(["exec", id, "true"]);
      assert.equal(r.code, 125);
      assert.match(r.stderr, /runs in an engine that serves only the client that started it/);
    } finally {
      await client.close();
      await client.remove();
    }
    const unknown = await cli(["exec", "vm-00000000", "true"]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /VM vm-00000000 not found/);

    const noEngine = await cli(["run", "-d", "--image", BUSYBOX, "true"], undefined, { MATCHLOCK_ENGINE_SOCKET: join(server.socketPath, "..", "absent.sock") });
    assert.equal(noEngine.code, 125);
    assert.match(noEngine.stderr, /run -d keeps the sandbox in the resident engine: .*no engine is serving there/);

    const s = new RawSession();
    try {
      const attach = await s.call("attach", { id: "vm-00000000" }, 1);
      assert.equal(attach.error?.code, -32000);
      assert.match(attach.error?.message, /attach needs a resident engine/);
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
  });
});
