// A stand-in for `matchlock` used by the SDK tests. It speaks the engine's wire protocol
// (spec §1–2) over stdio, and its exec commands are tiny scripts that make it misbehave on
// purpose (delays, split UTF-8, huge lines, junk output, crashes).
//
// Environment (set by the wrapper script from fake-binary.ts):
//   FAKE_LOG         append every received request line here
//   FAKE_PID_FILE    write the engine's pid here at startup
//   FAKE_ARGV_FILE   append argv (as JSON) here on every invocation
//   FAKE_IGNORE_EOF  "1": keep running after stdin EOF (to test SIGKILL on close)
//   FAKE_RM_FAIL     "1": `rm` fails the way the real CLI does
//   FAKE_HANDSHAKE   JSON result for `handshake` (without it: Method not found, as a seed engine)
//   FAKE_EXIT_AT_START  print this to stderr and exit 3 at once, reading nothing (a foreign engine)
//
// exec / exec_stream command = whitespace-separated tokens, run in order:
//   echo:TEXT  stdout TEXT\n      out:HEX / err:HEX  raw bytes      big:N  N bytes of "x" to stdout
//   sleep:MS   wait (cancellable)  exit:N  exit code                 cwd    stdout working_dir\n
//   until:PATH wait until PATH exists (cancellable): a test decides when the call may go on
//   noise:N    N bytes to the engine's own stderr                   event  emit an `event` notification
//   garbage    junk lines on stdout                                  split  send the response in pieces
//   fail       answer -32001                                         failmsg:TEXT  answer -32001 with TEXT
//   die        print to stderr and exit 3 without answering
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

type Json = Record<string, unknown>;

const env = process.env;
const argv = process.argv.slice(2);
if (env.FAKE_ARGV_FILE) appendFileSync(env.FAKE_ARGV_FILE, JSON.stringify(argv) + "\n");

if (argv[0] === "rm") {
  if (env.FAKE_RM_FAIL === "1") {
    process.stderr.write(`Error: cannot remove running VM ${argv[1]}, kill it first\n`);
    process.exit(1);
  }
  process.stdout.write(`Removed ${argv[1]}\n`);
  process.exit(0);
} else if (argv[0] === "rpc") {
  serve();
} else {
  process.stderr.write(`fake engine: unknown command ${JSON.stringify(argv)}\n`);
  process.exit(1);
}

function send(message: Json): void {
  process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
}

class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function serve(): void {
  if (env.FAKE_EXIT_AT_START) {
    process.stderr.write(env.FAKE_EXIT_AT_START + "\n");
    process.exit(3);
  }
  if (env.FAKE_PID_FILE) writeFileSync(env.FAKE_PID_FILE, String(process.pid));
  const files = new Map<string, { content: Buffer; mode: number }>();
  const inflight = new Map<number, AbortController>();
  const running = new Set<Promise<void>>();
  let closed = false;

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    if (env.FAKE_LOG) appendFileSync(env.FAKE_LOG, line + "\n");
    if (closed) return rl.close(); // spec §1.6: after close, the next line ends the session
    if (line.trim() === "") return;
    let request: Json;
    try {
      request = JSON.parse(line) as Json;
    } catch {
      return send({ error: { code: -32700, message: "Parse error" } });
    }
    const id = request.id as number;
    const params = (request.params ?? {}) as Json;
    if (request.method === "cancel") {
      const target = inflight.get(params.id as number);
      target?.abort();
      return send({ result: { cancelled: target !== undefined }, id });
    }
    if (request.method === "close") closed = true;
    const ac = new AbortController();
    inflight.set(id, ac);
    const task = handle(request.method as string, params, id, ac.signal)
      .then(
        (out) => {
          if (out.split) sendSplit({ result: out.result, id });
          else send({ result: out.result, id });
        },
        (err: unknown) => {
          if (ac.signal.aborted) return send({ error: { code: -32003, message: "context canceled" }, id });
          const failure = err instanceof RpcFailure ? err : new RpcFailure(-32603, String(err));
          const reply = { error: { code: failure.code, message: failure.message }, id };
          if ((err as { split?: boolean }).split) sendSplit(reply);
          else send(reply);
        },
      )
      .finally(() => {
        inflight.delete(id);
        running.delete(task);
      });
    running.add(task);
  });
  rl.on("close", async () => {
    await Promise.all(running);
    if (env.FAKE_IGNORE_EOF === "1") {
      setInterval(() => undefined, 1000); // stay alive until SIGKILLed
      return;
    }
    process.exit(0);
  });

  async function handle(method: string, params: Json, id: number, signal: AbortSignal): Promise<{ result: Json; split?: boolean }> {
    switch (method) {
      case "create":
        if (params.image === "fail-image") throw new RpcFailure(-32000, "failed to build rootfs: pull failed");
        return { result: { id: "vm-0123abcd" } };
      case "exec":
      case "exec_stream":
        return runScript(method === "exec_stream", params, id, signal);
      case "write_file":
        files.set(params.path as string, { content: Buffer.from(params.content as string, "base64"), mode: params.mode as number });
        return { result: {} };
      case "read_file": {
        const file = files.get(params.path as string);
        if (!file) throw new RpcFailure(-32002, "no such file or directory");
        return { result: { content: file.content.toString("base64") } };
      }
      case "list_files": {
        const dir = (params.path as string).replace(/\/$/, "");
        const entries = new Map<string, Json>();
        for (const [path, file] of files) {
          if (!path.startsWith(dir + "/")) continue;
          const [name, ...rest] = path.slice(dir.length + 1).split("/");
          entries.set(name!, rest.length > 0
            ? { name, size: 0, mode: 2 ** 31 + 0o755, mod_time: "0001-01-01T00:00:00Z", is_dir: true }
            : { name, size: file.content.length, mode: file.mode, mod_time: "0001-01-01T00:00:00Z", is_dir: false });
        }
        return { result: { files: [...entries.values()] } };
      }
      case "close":
        return { result: {} };
      case "port_forward": {
        // As the spec's result: one binding per forward x address, forward-major.
        const addresses = (params.addresses as string[] | undefined) ?? ["127.0.0.1"];
        const forwards = params.forwards as Array<{ local_port: number; remote_port: number }>;
        return { result: { bindings: forwards.flatMap((f) => addresses.map((address) => ({ address, ...f }))) } };
      }
      case "handshake":
        if (env.FAKE_HANDSHAKE) return { result: JSON.parse(env.FAKE_HANDSHAKE) as Json };
        throw new RpcFailure(-32601, "Method not found");
      default:
        throw new RpcFailure(-32601, "Method not found");
    }
  }

  async function runScript(streaming: boolean, params: Json, id: number, signal: AbortSignal) {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let exitCode = 0;
    let split = false;
    const started = Date.now();
    const output = (stream: "stdout" | "stderr", bytes: Buffer) => {
      if (streaming) send({ method: `exec_stream.${stream}`, params: { id, data: bytes.toString("base64") } });
      else (stream === "stdout" ? stdout : stderr).push(bytes);
    };
    for (const token of String(params.command ?? "").split(/\s+/).filter(Boolean)) {
      const colon = token.indexOf(":");
      const [op, arg] = colon === -1 ? [token, ""] : [token.slice(0, colon), token.slice(colon + 1)];
      switch (op) {
        case "echo": output("stdout", Buffer.from(arg + "\n")); break;
        case "out": output("stdout", Buffer.from(arg, "hex")); break;
        case "err": output("stderr", Buffer.from(arg, "hex")); break;
        case "big": output("stdout", Buffer.alloc(Number(arg), "x")); break;
        case "cwd": output("stdout", Buffer.from(`${String(params.working_dir ?? "")}\n`)); break;
        case "sleep": await sleep(Number(arg), undefined, { signal }); break;
        case "until": while (!existsSync(arg)) await sleep(10, undefined, { signal }); break;
        case "exit": exitCode = Number(arg); break;
        case "noise": process.stderr.write(Buffer.alloc(Number(arg), "n")); break;
        case "event":
          send({ method: "event", params: { type: "network", timestamp: 1739091234, network: { method: "GET", host: "example.com", blocked: false } } });
          break;
        case "garbage":
          for (const junk of [
            "this is not json",
            '{"jsonrpc":"2.0","result":{"exit_code":99},"id":987654}',
            '{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"}}',
            "[1,2,3]",
            '"just a string"',
            "null",
            '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":987654,"data":"eA=="}}',
            '{"jsonrpc":"2.0","method":"exec_stream.stdout","params":{"id":null,"data":"eA=="}}',
            "{broken json",
            "",
          ]) process.stdout.write(junk + "\n");
          break;
        case "split": split = true; break;
        case "fail": throw Object.assign(new RpcFailure(-32001, "exec error: chdir /nope: no such file or directory"), { split });
        case "failmsg": throw Object.assign(new RpcFailure(-32001, arg), { split });
        case "die":
          process.stderr.write("fake engine: fatal crash\n");
          process.exit(3);
        default: throw new RpcFailure(-32602, `fake engine: unknown script token ${token}`);
      }
    }
    const result: Json = { exit_code: exitCode, duration_ms: Date.now() - started };
    if (!streaming) {
      result.stdout = Buffer.concat(stdout).toString("base64");
      result.stderr = Buffer.concat(stderr).toString("base64");
    }
    return { result, split };
  }
}

/** Writes one message in three pieces, cutting inside a multi-byte character if there is one. */
function sendSplit(message: Json): void {
  const bytes = Buffer.from(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
  const wide = bytes.findIndex((b) => b >= 0x80);
  const cut1 = wide === -1 ? bytes.length >> 2 : wide + 1;
  const cut2 = Math.max(cut1, bytes.length >> 1);
  process.stdout.write(bytes.subarray(0, cut1));
  setTimeout(() => process.stdout.write(bytes.subarray(cut1, cut2)), 20);
  setTimeout(() => process.stdout.write(bytes.subarray(cut2)), 40);
}
