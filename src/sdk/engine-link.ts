// The byte streams between the SDK and an engine: either an engine process the client spawns
// (`matchlock rpc`, its stdio), or a connection to a resident engine (`matchlock serve`, a unix
// socket). The transport speaks the same NDJSON over either.
import { spawn } from "node:child_process";
import { lstat } from "node:fs/promises";
import { connect } from "node:net";
import type { Readable, Writable } from "node:stream";
import { MatchlockError } from "./errors.js";

/** After the process exits, how long a grandchild may keep stdout open before we stop reading. */
const STDOUT_AFTER_EXIT_MS = 1000;

export interface EngineLink {
  /** Requests go here. */
  readonly input: Writable;
  /** Responses and notifications come from here; its 'close' means no more will. */
  readonly output: Readable;
  /** The engine's diagnostics, when it is our child process. */
  readonly stderr?: Readable;
  /** Settles once the engine (or the connection) is gone, with how it went ("exit code 1"). */
  readonly ended: Promise<string>;
  /** Says "no more requests": stdin EOF, or the socket's write side shut. */
  endInput(): void;
  /** Cuts the link now (SIGKILL the process, or destroy the connection). */
  kill(): void;
}

/** Spawns `argv` (the engine's `rpc` command); resolves once the process runs. */
export async function spawnEngine(argv: readonly string[]): Promise<EngineLink> {
  const [command, ...args] = argv;
  const child = spawn(command!, args, { stdio: ["pipe", "pipe", "pipe"] });
  const ended = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => {
      // If a grandchild inherited stdout it could hold it open forever; stop waiting for EOF.
      setTimeout(() => child.stdout.destroy(), STDOUT_AFTER_EXIT_MS).unref();
      resolve(signal ? `killed by ${signal}` : `exit code ${code}`);
    });
  });
  child.stdin.on("error", () => undefined); // EPIPE once the engine is gone: stdout close reports it
  try {
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  } catch (err) {
    throw spawnError(argv, err as NodeJS.ErrnoException);
  }
  child.on("error", () => undefined); // kill errors are moot
  return {
    input: child.stdin,
    output: child.stdout,
    stderr: child.stderr,
    ended,
    endInput: () => child.stdin.end(),
    kill: () => child.kill("SIGKILL"),
  };
}

/** Connects to a resident engine's socket; resolves once connected. */
export async function connectEngine(socketPath: string): Promise<EngineLink> {
  await checkEngineSocket(socketPath);
  const socket = connect(socketPath);
  const ended = new Promise<string>((resolve) => socket.once("close", () => resolve("connection closed")));
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
  } catch (err) {
    socket.destroy();
    throw connectError(socketPath, err as NodeJS.ErrnoException);
  }
  socket.on("error", () => undefined); // a reset connection shows as 'close', which the transport reports
  return {
    input: socket,
    output: socket,
    ended,
    endInput: () => socket.end(),
    kill: () => socket.destroy(),
  };
}

function spawnError(argv: readonly string[], err: NodeJS.ErrnoException): MatchlockError {
  const command = argv.join(" ");
  if (err.code === "ENOENT") {
    return new MatchlockError(
      `Cannot start the matchlock engine (${command}): ${argv[0]} not found. ` +
        "Install matchlock, or set Config.binaryPath or the MATCHLOCK_BIN environment variable to its path.",
      { cause: err, kind: "unavailable" },
    );
  }
  return new MatchlockError(`Cannot start the matchlock engine (${command}): ${err.message}`, { cause: err, kind: "unavailable" });
}

function connectError(socketPath: string, err: NodeJS.ErrnoException): MatchlockError {
  const why: Record<string, string> = {
    ENOENT: "no engine is serving there: start one with `matchlock serve`, or unset Config.engineSocket / MATCHLOCK_ENGINE_SOCKET",
    ECONNREFUSED: "the engine that served there is not running any more (a stale socket): start `matchlock serve` again",
    EACCES: "permission denied: the socket is owner-only; connect as the user that runs `matchlock serve`",
    ENOTSOCK: "that path is not a socket",
  };
  const reason = why[err.code ?? ""] ?? err.message;
  return new MatchlockError(`Cannot connect to the matchlock engine at ${socketPath}: ${reason}`, { cause: err, kind: "unavailable" });
}

/**
 * Only a socket owned by this user or root is an engine: a socket another user bound at the
 * path would receive every secret and file the client sends.
 */
async function checkEngineSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    throw connectError(socketPath, err as NodeJS.ErrnoException);
  }
  const uid = process.getuid?.() ?? 0;
  if (!st.isSocket()) throw new MatchlockError(`Cannot connect to the matchlock engine at ${socketPath}: that path is not a socket`, { kind: "unavailable" });
  if (st.uid !== uid && st.uid !== 0) {
    throw new MatchlockError(`Cannot connect to the matchlock engine at ${socketPath}: the socket belongs to uid ${st.uid}, not to this user (uid ${uid}) or root; refusing to send it anything`, { kind: "policy_refused" });
  }
}
