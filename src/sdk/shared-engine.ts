// The shared engine: a resident engine (`matchlock serve`) that the first client starts and the
// next ones reuse, so that a sandbox's cold start does not wait for Node.js to start an engine
// and load it. There is one per user, build of this package, Node.js and engine environment:
// all of them are in its socket's name, so a client never talks to an engine that would act
// otherwise than its own `matchlock rpc`. It leaves once idle (MATCHLOCK_SHARED_ENGINE_IDLE).
// Each connection is one `matchlock rpc` session: when a client's connection closes (the client
// closed, or its process died), the engine tears that client's sandbox down.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { constants, existsSync, statSync } from "node:fs";
import { lstat, open, readFile, rename, stat } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { matchlockHome } from "../protocol/engine-home.js";
import { HANDSHAKE_METHOD } from "../protocol/handshake.js";
import { checkSocketDirectory } from "../engine/resident/socket-claim.js";
import { settings, settingsTable } from "../settings/settings.js";
import { OWN_ENGINE } from "./engine-command.js";
import { connectEngine, type EngineLink } from "./engine-link.js";
import { MatchlockError } from "./errors.js";
import type { Config } from "./types.js";

/** sun_path holds 107 bytes and a NUL; the server first binds the name plus 7 bytes ("~" + 6 hex). */
const MAX_SOCKET_PATH = 100;
/** A start takes a Node.js start and the engine's own checks: seconds on a loaded machine. */
const START_TIMEOUT_MS = 120_000;
/** The log of the shared engine is begun afresh past this size (the previous one is kept as .old). */
const LOG_KEEP_BYTES = 1 << 20;
/** Connections a dying engine may drop before the client gives up. */
const CONNECT_ATTEMPTS = 3;

/** What the engine reads from its environment beside its settings: it defaults paths from these. */
const ENGINE_ENV = ["HOME", "PATH", "TMPDIR", "DOCKER_CONFIG"];
/** Settings that name a file or directory, which the engine would resolve against its cwd. */
const PATH_VARIABLES = new Set([
  "MATCHLOCK_HOME", "MATCHLOCK_IMAGES", "MATCHLOCK_CACHE", "MATCHLOCK_AGENT", "MATCHLOCK_REGISTRY_CA", "MATCHLOCK_UPSTREAM_CA",
  "MATCHLOCK_TEST_HOSTS", "MATCHLOCK_NET_STATE", "HOME", "TMPDIR", "DOCKER_CONFIG",
]);

export interface SharedEngine {
  /** $MATCHLOCK_HOME/run/shared-<key>.sock, the key naming build, Node.js, user and environment. */
  socketPath: string;
  /** The engine's environment: the client's, with relative paths made absolute (it runs in /). */
  env: NodeJS.ProcessEnv;
  idleSeconds: number;
}

/**
 * The shared engine this client should use, or undefined when it runs an engine of its own:
 * sharedEngine false (or MATCHLOCK_SHARED_ENGINE=0), a resident engine's socket, useSudo (the
 * engine runs as root), a binaryPath (an engine whose build we cannot know), no engine in this
 * package, or a home whose socket path is too long for a unix socket. sharedEngine: true in any
 * of those cases is an error.
 */
export function sharedEngineFor(
  config: Config,
  engineSocket: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  ownEngine: string | null = existsSync(OWN_ENGINE) ? OWN_ENGINE : null,
): SharedEngine | undefined {
  if (!(config.sharedEngine ?? envSwitch(env))) return undefined;
  const refuse = (why: string): undefined => {
    if (config.sharedEngine !== true) return undefined;
    throw new MatchlockError(`sharedEngine: true cannot be used ${why}`, { kind: "invalid_argument" });
  };
  if (engineSocket !== undefined) return refuse("with an engine socket (Config.engineSocket or MATCHLOCK_ENGINE_SOCKET): that resident engine is used");
  if (config.useSudo) return refuse("with useSudo: the engine would run as root for this client alone");
  if (config.binaryPath) return refuse("with binaryPath: only the engine of the SDK's own package is shared");
  if (!ownEngine) return refuse(`without the engine of the SDK's own package (${OWN_ENGINE} is missing)`);
  const idleSeconds = idleSetting(env);
  const engineEnv = absolutePaths(env);
  const key = createHash("sha256").update(JSON.stringify({
    build: buildStamp(ownEngine, engineEnv),
    node: [process.execPath, process.version],
    user: [process.getuid?.(), process.getgid?.()],
    env: [...engineSettingNames(), ...ENGINE_ENV].map((name) => [name, engineEnv[name] ?? ""]),
  })).digest("hex").slice(0, 16);
  const socketPath = join(matchlockHome(engineEnv), "run", `shared-${key}.sock`);
  if (socketPath.length > MAX_SOCKET_PATH) {
    return refuse(`with this MATCHLOCK_HOME: its socket ${socketPath} is longer than a unix socket path may be (${MAX_SOCKET_PATH} bytes)`);
  }
  return { socketPath, env: engineEnv, idleSeconds };
}

/**
 * Connects to the shared engine, starting it first if none serves. Two clients starting it at
 * once take turns on a lock file: the second finds the first one's engine serving. An engine
 * that is dying (killed, or stopping) may still accept a connection and then drop it unanswered:
 * then the client tries again, and finds its socket stale or gone.
 */
export async function connectSharedEngine(engine: SharedEngine): Promise<EngineLink> {
  for (let attempt = 1; ; attempt++) {
    const link = await connectOrStart(engine);
    if (await answers(link)) return link;
    link.kill();
    if (attempt === CONNECT_ATTEMPTS) {
      throw new MatchlockError(`The shared matchlock engine at ${engine.socketPath} closed ${CONNECT_ATTEMPTS} connections in a row unanswered (its log: ${engine.socketPath.replace(/\.sock$/, ".log")})`, { kind: "unavailable" });
    }
    await sleep(50 * attempt);
  }
}

async function connectOrStart(engine: SharedEngine): Promise<EngineLink> {
  await checkOwnSocket(engine.socketPath);
  const served = await connectIfServed(engine.socketPath);
  if (served) return served;
  // Loaded only here: a client that finds the engine running never needs it.
  const { withLock } = await import("../engine/image/lock.js");
  return withLock(`${engine.socketPath}.start`, async () => {
    return (await connectIfServed(engine.socketPath)) ?? (await startAndConnect(engine));
  }, "another client is starting the shared engine");
}

/**
 * Whether the engine at the other end serves this connection: it answers a handshake (id 0,
 * which the transport never uses, so its reply is consumed here and nowhere else).
 */
function answers(link: EngineLink): Promise<boolean> {
  return new Promise((resolve) => {
    let received = "";
    const done = (served: boolean) => {
      link.output.off("data", onData);
      link.output.off("end", onEnd);
      link.output.off("close", onEnd);
      resolve(served);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.toString("utf8");
      if (received.includes("\n")) done(true);
    };
    const onEnd = () => done(false);
    link.output.on("data", onData);
    link.output.once("end", onEnd);
    link.output.once("close", onEnd);
    link.input.write(`${JSON.stringify({ jsonrpc: "2.0", method: HANDSHAKE_METHOD, id: 0 })}\n`);
  });
}

/**
 * The client hands the engine its secrets: it talks only to a socket that this user (or root)
 * made, in a directory no other user can change (one under a shared MATCHLOCK_HOME could hold an
 * impostor's socket).
 */
async function checkOwnSocket(socketPath: string): Promise<void> {
  try {
    await checkSocketDirectory(dirname(socketPath));
  } catch (err) {
    throw new MatchlockError(`cannot use the shared engine's directory: ${(err as Error).message}`, { kind: "unavailable" });
  }
  const st = await lstat(socketPath).catch(() => undefined);
  const uid = process.getuid?.() ?? 0;
  if (st && (!st.isSocket() || (st.uid !== uid && st.uid !== 0))) {
    throw new MatchlockError(`${socketPath} is not a socket of this user (uid ${uid}): refusing to talk to it`, { kind: "unavailable" });
  }
}

async function connectIfServed(socketPath: string): Promise<EngineLink | undefined> {
  try {
    return await connectEngine(socketPath);
  } catch (err) {
    const code = ((err as MatchlockError).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ENOENT" || code === "ECONNREFUSED") return undefined; // none, or a stale socket
    throw err;
  }
}

/** Starts the engine detached (its own session: a Ctrl-C meant for one client does not reach it) and connects. */
async function startAndConnect(engine: SharedEngine): Promise<EngineLink> {
  const logPath = engine.socketPath.replace(/\.sock$/, ".log");
  const logStart = await freshLog(logPath);
  const argv = [process.execPath, "--", OWN_ENGINE, "serve", "--socket", engine.socketPath, "--idle-exit", String(engine.idleSeconds), "--notify-ready"];
  const log = await open(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  let child;
  try {
    child = spawn(argv[0]!, argv.slice(1), { detached: true, cwd: "/", env: engine.env, stdio: ["ignore", "pipe", log.fd] });
  } finally {
    await log.close(); // the child has its own copy
  }
  const failure = await new Promise<string | undefined>((settle) => {
    const timer = setTimeout(() => settle(`not serving after ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    const done = (why?: string) => {
      clearTimeout(timer);
      settle(why);
    };
    child.stdout!.once("data", () => done());
    child.once("exit", (code, signal) => done(signal ? `killed by ${signal}` : `exit code ${code}`));
    child.once("error", (err) => done(err.message));
  });
  child.stdout!.destroy();
  child.unref();
  if (failure === undefined) {
    const link = await connectIfServed(engine.socketPath);
    if (link) return link;
  }
  // An engine that could not take the socket because another one serves there is no failure.
  const other = await connectIfServed(engine.socketPath);
  if (other) return other;
  if (failure?.startsWith("not serving")) child.kill("SIGKILL");
  const tail = (await readFile(logPath, "utf8").catch(() => "")).slice(logStart).trim().split("\n").slice(-5).join("\n");
  throw new MatchlockError(
    `Cannot start the shared matchlock engine ${argv.join(" ")} (${failure ?? "it stopped serving at once"})${tail ? `: ${tail}` : ""}\n` +
      `(its log: ${logPath}; new Client({ sharedEngine: false }) or MATCHLOCK_SHARED_ENGINE=0 runs an engine per client instead)`,
    { kind: "unavailable" },
  );
}

/** Keeps the log short: past LOG_KEEP_BYTES it moves to <log>.old. Returns where this start's lines begin. */
async function freshLog(logPath: string): Promise<number> {
  const size = (await stat(logPath).catch(() => undefined))?.size ?? 0;
  if (size <= LOG_KEEP_BYTES) return size;
  await rename(logPath, `${logPath}.old`).catch(() => undefined);
  return 0;
}

function envSwitch(env: NodeJS.ProcessEnv): boolean {
  const value = settings.sharedEngine.read(env);
  if (value === "0" || value === "1") return value === "1";
  throw new MatchlockError(`MATCHLOCK_SHARED_ENGINE must be 0 or 1, got ${JSON.stringify(value)}`, { kind: "invalid_argument" });
}

function idleSetting(env: NodeJS.ProcessEnv): number {
  const text = settings.sharedEngineIdle.read(env);
  const seconds = Number(text);
  if (text.trim() === "" || !(seconds > 0) || !Number.isFinite(seconds)) {
    throw new MatchlockError(`MATCHLOCK_SHARED_ENGINE_IDLE must be a number of seconds > 0, got ${JSON.stringify(text)}`, { kind: "invalid_argument" });
  }
  return seconds;
}

function engineSettingNames(): string[] {
  return settingsTable.filter((s) => s.readBy === "engine").map((s) => s.name);
}

/**
 * The environment with every path the engine would resolve against its working directory made
 * absolute against ours: the shared engine runs in `/`, and clients in other directories share it.
 */
function absolutePaths(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of [...engineSettingNames(), ...ENGINE_ENV]) {
    const value = env[name];
    if (!value) continue;
    if (name === "PATH") out[name] = value.split(delimiter).map((dir) => resolve(dir)).join(delimiter);
    else if (!isAbsolute(value) && (PATH_VARIABLES.has(name) || value.includes("/"))) out[name] = resolve(value);
  }
  return out;
}

/**
 * Which build of the package this is, as files on disk: its engine's entry and bundle, its
 * package.json and the guest binaries the engine checks when it starts (an engine that checked
 * other ones must not be reused).
 */
function buildStamp(ownEngine: string, env: NodeJS.ProcessEnv): string[] {
  const root = resolve(dirname(ownEngine), "..", "..", "..");
  const files = [
    ownEngine, join(root, "dist", "bundle", "rpc", "rpc.js"), join(root, "package.json"), join(root, "guest", "manifest.json"),
    settings.agent.read(env) ?? join(root, "guest", "agent", "build", "matchlock-agent"), join(root, "guest", "microvm", "build", "matchlock-init"),
  ];
  return files.map((file) => {
    try {
      const st = statSync(file);
      return `${file} ${st.ino} ${st.size} ${st.mtimeMs}`;
    } catch {
      return `${file} missing`;
    }
  });
}
