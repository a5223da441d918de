// The engine's side of the agent's REMOVE, MKDIR, RENAME and STAT (guest/agent/file-ops.c): one
// frame out, OK (or STAT_RESULT) or the guest's ERROR back.
import { FrameType, decodeStat, encodeStrings, type FileStat, type FrameTypeCode } from "../../protocol/agent-frames.js";
import type { AgentConnection } from "./connection.js";

const REMOVE_RECURSIVE = 1;

async function okOnly(agent: AgentConnection, type: FrameTypeCode, fields: string[]): Promise<void> {
  const { result } = await agent.startOp<void>(type, encodeStrings(fields), (frame, done) => {
    if (frame.type === FrameType.OK) done.resolve();
    else done.unexpected();
  });
  return result;
}

/** A file, a symlink or an empty directory; with `recursive`, a directory and everything in it. */
export function removePath(agent: AgentConnection, path: string, recursive: boolean): Promise<void> {
  return okOnly(agent, FrameType.REMOVE, [path, String(recursive ? REMOVE_RECURSIVE : 0)]);
}

/** A directory with exactly `mode`; with `parents`, the missing ones above it too, and no error if it exists. */
export function makeDir(agent: AgentConnection, path: string, mode: number, parents: boolean): Promise<void> {
  return okOnly(agent, FrameType.MKDIR, [path, String(mode), parents ? "1" : "0"]);
}

export function renamePath(agent: AgentConnection, from: string, to: string): Promise<void> {
  return okOnly(agent, FrameType.RENAME, [from, to]);
}

/** lstat of `path` in the guest. */
export async function statPath(agent: AgentConnection, path: string): Promise<FileStat> {
  const { result } = await agent.startOp<FileStat>(FrameType.STAT, encodeStrings([path]), (frame, done) => {
    if (frame.type === FrameType.STAT_RESULT) done.resolve(decodeStat(frame.payload));
    else done.unexpected();
  });
  return result;
}
