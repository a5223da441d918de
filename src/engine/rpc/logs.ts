// `log` and `log_stream` (protocol spec 5.4): the sandbox's log file, whole or followed. Both
// serve the session's sandbox, or the last one it had once that is closed.
import { z } from "zod";
import { Base64Data } from "../../protocol/base64.js";
import { Notification } from "../../protocol/methods.js";
import { ErrorCode, type RequestId } from "../../protocol/rpc.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { logFile } from "../sandbox/state.js";
import { followVmLog, readVmLog } from "../sandbox/vm-log.js";
import { RpcError } from "./errors.js";
import { decode } from "./params.js";
import type { MessageWriter } from "./writer.js";

const noParams = z.strictObject({});

/** Which sandbox's log a session serves: its current one, else the id of the last it had. */
export interface LogSubject {
  sandbox: Sandbox | undefined;
  lastId: string | undefined;
}

function subjectId(subject: LogSubject): string {
  const id = subject.sandbox?.id ?? subject.lastId;
  if (!id) throw new RpcError(ErrorCode.VM_FAILED, "VM not created");
  return id;
}

export async function logMethod(subject: LogSubject, params: unknown): Promise<Record<string, unknown>> {
  decode(noParams, params ?? {});
  return { content: new Base64Data(await readVmLog(logFile(subjectId(subject)))) };
}

/**
 * Sends the log as `log_stream.data` notifications, then what is appended, until the sandbox
 * stops (a matchlock extension: upstream's runs until cancelled) or the request is cancelled.
 * The client's reading speed paces it: a full connection holds the next read.
 */
export async function logStreamMethod(
  subject: LogSubject, params: unknown, id: RequestId | null | undefined, writer: MessageWriter, signal: AbortSignal,
): Promise<Record<string, unknown>> {
  if (id === undefined || id === null) throw new RpcError(ErrorCode.INVALID_REQUEST, "log_stream requires request id");
  decode(noParams, params ?? {});
  const logId = subjectId(subject);
  const sandbox = subject.sandbox;
  try {
    await followVmLog(logFile(logId), {
      onData: (data) => writer.notify(Notification.LOG_STREAM_DATA, { id, data: new Base64Data(data) }),
      // A closed session's sandbox is stopped: what its log holds is all there is.
      stopped: () => !sandbox || sandbox.stopped || sandbox.lost !== undefined,
      signal,
    });
  } catch (err) {
    if (signal.aborted) throw new RpcError(ErrorCode.CANCELLED, "context canceled");
    throw err;
  }
  return {};
}
