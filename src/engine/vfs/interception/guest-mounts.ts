// Puts the engine's rules in the path of a sandbox's mounts: the backend mounts each directory at
// a hidden place (under /.matchlock/vfs), then the agent serves it at its guest path through the
// intercepting file system (VFS_SETUP) and detaches the hidden mount, so the sandbox's commands
// and the file RPCs alike reach it only through the rules. Its FILE_EVENT frames become
// `event` notifications of type "file".
import { stat } from "node:fs/promises";
import { AgentProtocolError, decodeStrings, encodeStrings, FrameType } from "../../../protocol/agent-frames.js";
import type { WireFileEvent } from "../../../protocol/rpc.js";
import type { AgentConnection } from "../../agent/connection.js";
import type { BackendMount } from "../../backends/backend.js";
import { toGoFileMode } from "../../sandbox/file-mode.js";
import { MountConfigError } from "../mounts.js";
import { opMask, type VfsInterception } from "./config.js";

const HIDDEN_ROOT = "/.matchlock/vfs";

/** A file event as the `event` notification carries it (spec 5.8). */
export type FileEvent = WireFileEvent;

export interface HiddenMount {
  hidden: string;
  guestPath: string;
}

/**
 * The mounts as the backend makes them (each at a hidden path), and where the agent serves each.
 * An extra disk inside an intercepted mount would be covered by it (and not intercepted): refused.
 */
export async function hideMounts(mounts: BackendMount[], diskMounts: string[]): Promise<{ mounts: BackendMount[]; served: HiddenMount[] }> {
  for (const d of diskMounts) {
    const around = mounts.find((m) => d === m.guestPath || d.startsWith(`${m.guestPath}/`));
    if (around) throw new MountConfigError(`extra disk at ${d}: it is inside ${around.guestPath}, whose operations vfs.interception intercepts; mount the disk elsewhere`);
  }
  for (const m of mounts) {
    if (m.kind === "bind" && !(await stat(m.hostPath)).isDirectory()) {
      throw new MountConfigError(`mount ${m.guestPath}: vfs.interception serves directories only, and this mount is a single file (mount its directory instead)`);
    }
  }
  const hidden = mounts.map((m, i) => ({ ...m, guestPath: `${HIDDEN_ROOT}/${i + 1}` }));
  // Parents before children: a mount inside another is made through the outer one.
  const served = mounts
    .map((m, i) => ({ hidden: hidden[i]!.guestPath, guestPath: m.guestPath }))
    .sort((a, b) => a.guestPath.split("/").length - b.guestPath.split("/").length);
  return { mounts: hidden, served };
}

/** Starts the intercepting file system over `served`; events go to `onEvent` from then on. */
export async function startInterception(
  agent: AgentConnection, served: HiddenMount[], config: VfsInterception, onEvent: (e: FileEvent) => void | Promise<void>,
): Promise<void> {
  agent.onFileEvent = (payload) => onEvent(decodeFileEvent(payload));
  const fields = [
    String(served.length), ...served.flatMap((m) => [m.hidden, m.guestPath]),
    String(config.blockRules.length), ...config.blockRules.flatMap((r) => [String(opMask(r.ops)), r.glob]),
  ];
  const { result } = await agent.startOp<void>(FrameType.VFS_SETUP, encodeStrings(fields), (frame, done) => {
    if (frame.type === FrameType.OK) done.resolve();
    else done.unexpected();
  });
  await result;
}

function decodeFileEvent(payload: Buffer): FileEvent {
  const f = decodeStrings(payload);
  const n = (s: string | undefined) => {
    const v = Number(s);
    if (s === undefined || !/^\d+$/.test(s) || !Number.isSafeInteger(v)) throw new AgentProtocolError(`FILE_EVENT has a bad number ${JSON.stringify(s)}`);
    return v;
  };
  if (f.length !== 6) throw new AgentProtocolError("FILE_EVENT payload is not op, path, size, mode, uid, gid");
  return { op: f[0]!, path: f[1]!, size: n(f[2]), mode: toGoFileMode(n(f[3])), uid: n(f[4]), gid: n(f[5]) };
}
