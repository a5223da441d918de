// How an error reads on the wire: one table from an error's kind to its JSON-RPC code and the
// form of its message. Codes are the protocol spec's; `error.data.kind` carries the kind itself.
import { EngineError, kindOfCode, type ErrorKind } from "../../protocol/errors.js";
import { Method } from "../../protocol/methods.js";
import { ErrorCode } from "../../protocol/rpc.js";

/** An error whose JSON-RPC code the protocol fixes directly (unknown method, no sandbox yet, ...). */
export class RpcError extends EngineError {
  readonly kind: ErrorKind;
  override readonly rpcCode: number;

  constructor(code: number, message: string, kind: ErrorKind = kindOfCode(code)) {
    super(message);
    this.kind = kind;
    this.rpcCode = code;
  }
}

export interface WireError {
  code: number;
  message: string;
  kind: ErrorKind;
}

/**
 * `code`: a fixed code, or "method": the failing method's own (create -32000, exec -32001, the
 * file methods -32002). `form`: the message "as is" (it names what happened on its own), after
 * the method's prefix ("exec error: ..."), or after "sandbox lost: " (outside create, where the
 * method's prefix says it better).
 */
const WIRE: Record<ErrorKind, { code: number | "method"; form: "as is" | "prefixed" | "lost" }> = {
  invalid_argument: { code: ErrorCode.INVALID_PARAMS, form: "as is" },
  unsupported: { code: ErrorCode.INVALID_PARAMS, form: "as is" },
  cancelled: { code: ErrorCode.CANCELLED, form: "as is" },
  not_found: { code: "method", form: "as is" },
  unavailable: { code: "method", form: "as is" },
  out_of_memory: { code: "method", form: "as is" },
  timeout: { code: "method", form: "lost" },
  sandbox_lost: { code: "method", form: "lost" },
  engine_lost: { code: "method", form: "lost" },
  policy_refused: { code: "method", form: "prefixed" },
  failed: { code: "method", form: "prefixed" },
  internal: { code: ErrorCode.INTERNAL_ERROR, form: "prefixed" },
};

function methodCode(method: string): number {
  if (method === Method.EXEC || method === Method.EXEC_STREAM) return ErrorCode.EXEC_FAILED;
  if (method === Method.CREATE || method === Method.CLOSE || method === Method.CANCEL || method === Method.PORT_FORWARD) return ErrorCode.VM_FAILED;
  return ErrorCode.FILE_FAILED;
}

function methodPrefix(method: string): string {
  if (method === Method.CREATE) return "failed to create sandbox: ";
  if (method === Method.EXEC || method === Method.EXEC_STREAM) return "exec error: ";
  return "";
}

/** A bug of ours, as opposed to a failure the operation met. */
function isBug(err: unknown): boolean {
  return err instanceof TypeError || err instanceof ReferenceError || err instanceof SyntaxError || !(err instanceof Error);
}

/** The JSON-RPC error for `err`, thrown while serving `method`. */
export function toWireError(err: unknown, method: string): WireError {
  if (err instanceof RpcError) return { code: err.rpcCode, message: err.message, kind: err.kind };
  const kind: ErrorKind = err instanceof EngineError ? err.kind : isBug(err) ? "internal" : "failed";
  const text = err instanceof Error ? err.message : String(err);
  const { code: kindCode, form } = WIRE[kind];
  const code = err instanceof EngineError && err.rpcCode !== undefined ? err.rpcCode : kindCode;
  const prefix = kind === "internal" ? "internal error: "
    : form === "prefixed" || (form === "lost" && method === Method.CREATE) ? methodPrefix(method)
    : form === "lost" ? "sandbox lost: "
    : "";
  return { code: code === "method" ? methodCode(method) : code, message: prefix + text, kind };
}
