// Taking the unix socket a resident engine (`matchlock serve`) listens on. Whoever can connect
// to it can run code in sandboxes as the engine's user, so: the socket is owner-only (0600), its
// directory may not be replaceable by other users, a live server there is never displaced, and
// a stale socket (its server was killed) is replaced.
import { randomBytes } from "node:crypto";
import { lstat, mkdir, rename, stat, unlink } from "node:fs/promises";
import { connect, type Server } from "node:net";
import { dirname } from "node:path";
import { withLock } from "../image/lock.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

export class SocketClaimError extends EngineError {
  readonly kind: ErrorKind = "unavailable";
}

/** What is at the socket path now. */
export type SocketState = "absent" | "stale" | "live";

/** Creates the directory owner-only if missing; refuses one other users could change. */
export async function checkSocketDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory()) throw new SocketClaimError(`${dir} is not a directory`);
  if (st.uid !== uid && st.uid !== 0) {
    throw new SocketClaimError(`${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}) or root: its owner could replace the socket`);
  }
  // Not even a sticky one (like /tmp): another user could bind the path first, and clients
  // would hand an impostor their secrets.
  if ((st.mode & 0o022) !== 0) {
    throw new SocketClaimError(`${dir} is writable by other users, who could replace the socket: use an owner-only directory`);
  }
}

/** Whether a server answers at `path`: a socket that refuses connections is stale. */
export async function probeSocket(path: string): Promise<SocketState> {
  try {
    if (!(await lstat(path)).isSocket()) throw new SocketClaimError(`${path} exists and is not a socket: refusing to replace it`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "absent";
    throw err;
  }
  return new Promise((resolve, reject) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve("live");
    });
    probe.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED") resolve("stale");
      else if (err.code === "ENOENT") resolve("absent");
      else reject(new SocketClaimError(`cannot tell whether a server runs at ${path}: ${err.message}`));
    });
  });
}

/**
 * Makes `server` listen on `path`, owner-only. The check-and-replace runs under a lock file, so
 * two servers starting at once cannot both think the path is theirs. The server binds a name of
 * its own and renames it into place: Node unlinks the path it bound when the server closes,
 * whatever is there by then, which could be a newer server's socket at `path`. Returns the
 * function that removes the socket at `path` if it is still ours (idempotent; call it while
 * still listening, so that our socket's inode cannot have been reused).
 */
export async function listenOwnerOnly(server: Server, path: string): Promise<() => Promise<void>> {
  await checkSocketDirectory(dirname(path));
  const lockFile = `${path}.lock`;
  const bound = `${path}~${randomBytes(3).toString("hex")}`;
  const ours = await withLock(lockFile, async () => {
    const state = await probeSocket(path);
    if (state === "live") throw new SocketClaimError(`another matchlock serve is already running on ${path}`);
    // The umask makes the socket 0600 from its first moment (connecting needs write permission).
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(bound, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    try {
      await rename(bound, path); // replaces a stale socket in one step
    } catch (err) {
      server.close(); // and Node removes the name it bound
      throw err;
    }
    return (await lstat(path)).ino;
  }, "another matchlock serve is starting");
  let released: Promise<void> | undefined;
  return () => (released ??= withLock(lockFile, async () => {
    const now = await lstat(path).catch(() => undefined);
    if (now?.ino === ours) await unlink(path).catch(() => undefined);
  }, "another matchlock serve is starting").catch(() => undefined));
}
