// The shared engine without sandboxes: which clients use it and under which socket, and the
// resident server's idle exit and socket hand-over (e2e/shared-engine runs real sandboxes).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, unlink } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ResidentServer } from "../../src/engine/resident/resident-server.js";
import { probeSocket } from "../../src/engine/resident/socket-claim.js";
import { Client, MatchlockError } from "../../src/sdk/index.js";
import { sharedEngineFor } from "../../src/sdk/shared-engine.js";

const ENGINE = "/pkg/dist/src/cli/main.js";
const base = { HOME: "/home/u", PATH: "/usr/bin:/bin", MATCHLOCK_HOME: "/home/u/.matchlock" };
const socketOf = (env: NodeJS.ProcessEnv, config = {}) => sharedEngineFor(config, undefined, env, ENGINE)?.socketPath;
const quiet = () => undefined;

describe("which clients share an engine", () => {
  test("by default a client uses the shared engine under its home; opting out or any per-client setting runs its own", () => {
    assert.match(socketOf(base)!, /^\/home\/u\/\.matchlock\/run\/shared-[0-9a-f]{16}\.sock$/);
    assert.equal(socketOf(base, { sharedEngine: false }), undefined);
    assert.equal(socketOf({ ...base, MATCHLOCK_SHARED_ENGINE: "0" }), undefined);
    assert.ok(socketOf({ ...base, MATCHLOCK_SHARED_ENGINE: "0" }, { sharedEngine: true }), "the config wins over the environment");
    assert.equal(socketOf(base, { useSudo: true }), undefined);
    assert.equal(socketOf(base, { binaryPath: "/opt/matchlock" }), undefined);
    assert.equal(sharedEngineFor({}, "/run/engine.sock", base, ENGINE), undefined);
    assert.equal(sharedEngineFor({}, undefined, base, null), undefined, "an SDK without its engine");
    assert.equal(socketOf({ ...base, MATCHLOCK_HOME: `/${"x".repeat(90)}` }), undefined, "a socket path too long for a unix socket");
  });

  test("sharedEngine: true where it cannot be, and bad settings, are clear errors", () => {
    const refused = (config: object, engineSocket: string | undefined, pattern: RegExp) =>
      assert.throws(() => sharedEngineFor({ sharedEngine: true, ...config }, engineSocket, base, ENGINE), (e: unknown) => e instanceof MatchlockError && e.kind === "invalid_argument" && pattern.test(e.message));
    refused({ useSudo: true }, undefined, /sharedEngine: true cannot be used with useSudo/);
    refused({ binaryPath: "/opt/matchlock" }, undefined, /with binaryPath: only the engine of the SDK's own package is shared/);
    refused({}, "/run/engine.sock", /with an engine socket/);
    assert.throws(() => socketOf({ ...base, MATCHLOCK_SHARED_ENGINE: "yes" }), /MATCHLOCK_SHARED_ENGINE must be 0 or 1, got "yes"/);
    assert.throws(() => socketOf({ ...base, MATCHLOCK_SHARED_ENGINE_IDLE: "-1" }), /MATCHLOCK_SHARED_ENGINE_IDLE must be a number of seconds > 0, got "-1"/);
    assert.throws(() => new Client({ sharedEngine: true, useSudo: true }), /cannot be used with useSudo/);
  });

  test("the socket names the engine's environment: another home, backend or image store is another engine", () => {
    const same = socketOf({ ...base, TERM: "dumb", MATCHLOCK_SHARED_ENGINE_IDLE: "5" });
    assert.equal(same, socketOf(base), "what the engine does not read does not count");
    const others = [
      { ...base, MATCHLOCK_HOME: "/home/u/other" },
      { ...base, MATCHLOCK_BACKEND: "microvm" },
      { ...base, MATCHLOCK_IMAGES: "/srv/images" },
      { ...base, PATH: "/opt/bin:/usr/bin:/bin" },
      { ...base, DOCKER_CONFIG: "/home/u/.docker2" },
    ].map((env) => socketOf(env));
    assert.equal(new Set([same, ...others]).size, others.length + 1, JSON.stringify(others));
  });

  test("relative paths are made absolute for the engine, which runs in /", () => {
    const engine = sharedEngineFor({}, undefined, { ...base, MATCHLOCK_IMAGES: "images", PATH: "bin:/usr/bin", MATCHLOCK_QEMU: "qemu-system-x86_64" }, ENGINE)!;
    assert.equal(engine.env.MATCHLOCK_IMAGES, join(process.cwd(), "images"));
    assert.equal(engine.env.PATH, `${join(process.cwd(), "bin")}:/usr/bin`);
    assert.equal(engine.env.MATCHLOCK_QEMU, "qemu-system-x86_64", "a command name is left for PATH");
  });
});

describe("the resident server's socket and idle exit", () => {
  const dir = () => mkdtemp(join(tmpdir(), "matchlock-shared-unit-"));

  test("a server that stops leaves a newer server's socket at its path alone", async () => {
    const path = join(await dir(), "engine.sock");
    const older = await ResidentServer.start({ socketPath: path, log: quiet, ownsRecords: false });
    await unlink(path); // as a retiring server does: the path is free for the next one
    const newer = await ResidentServer.start({ socketPath: path, log: quiet, ownsRecords: false });
    await older.stop("test");
    assert.equal(await probeSocket(path), "live", "the newer server's socket is still there");
    await newer.stop("test");
    assert.equal(existsSync(path), false);
  });

  test("an idle server retires: not while a client is connected; its socket goes first", async () => {
    const path = join(await dir(), "engine.sock");
    let retired!: () => void;
    const gone = new Promise<void>((resolve) => (retired = resolve));
    await ResidentServer.start({ socketPath: path, log: quiet, ownsRecords: false, idleExitMs: 100, onRetired: () => retired() });
    const client = connect(path);
    await new Promise((resolve) => client.once("connect", resolve));
    let done = false;
    void gone.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(done, false, "a connected client keeps it");
    assert.equal(await probeSocket(path), "live");
    client.end();
    await gone;
    assert.equal(existsSync(path), false);
  });
});
