// Error classes thrown by the SDK. Every SDK failure is a MatchlockError, so callers can
// catch one type; engine-reported failures are RPCErrors carrying the JSON-RPC code. Each has
// a `kind` (protocol/errors.ts) to switch on: "timeout", "cancelled", "not_found",
// "out_of_memory", "sandbox_lost", "policy_refused", "invalid_argument", ...
import { kindOfCode, type ErrorKind } from "../protocol/errors.js";
import { ErrorCode } from "../protocol/rpc.js";

export type { ErrorKind };

export interface MatchlockErrorOptions extends ErrorOptions {
  /** What happened; default "failed". */
  kind?: ErrorKind;
}

/** Base class of every error the SDK throws (local validation, process death, RPC errors). */
export class MatchlockError extends Error {
  readonly kind: ErrorKind;

  constructor(message: string, options?: MatchlockErrorOptions) {
    super(message, options);
    this.name = "MatchlockError";
    this.kind = options?.kind ?? "failed";
  }
}

/**
 * An error response from the engine. `message` is `"[code] text"` (like the Python SDK's
 * str()); the engine's own text is kept in `rpcMessage`.
 */
export class RPCError extends MatchlockError {
  static readonly PARSE_ERROR = ErrorCode.PARSE_ERROR;
  static readonly INVALID_REQUEST = ErrorCode.INVALID_REQUEST;
  static readonly METHOD_NOT_FOUND = ErrorCode.METHOD_NOT_FOUND;
  static readonly INVALID_PARAMS = ErrorCode.INVALID_PARAMS;
  static readonly INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR;
  static readonly VM_FAILED = ErrorCode.VM_FAILED;
  static readonly EXEC_FAILED = ErrorCode.EXEC_FAILED;
  static readonly FILE_FAILED = ErrorCode.FILE_FAILED;
  static readonly CANCELLED = ErrorCode.CANCELLED;

  readonly code: number;
  /** The engine's error text without the code prefix. */
  readonly rpcMessage: string;

  /** `kind`: the engine's `error.data.kind` when it sent one, else what the code implies. */
  constructor(code: number, message: string, options?: MatchlockErrorOptions) {
    super(`[${code}] ${message}`, { ...options, kind: options?.kind ?? kindOfCode(code) });
    this.name = "RPCError";
    this.code = code;
    this.rpcMessage = message;
  }

  // Exact equality, as in the seed SDKs: codes are identifiers, not ranges.
  isVMError(): boolean {
    return this.code === ErrorCode.VM_FAILED;
  }

  isExecError(): boolean {
    return this.code === ErrorCode.EXEC_FAILED;
  }

  isFileError(): boolean {
    return this.code === ErrorCode.FILE_FAILED;
  }

  isCancelled(): boolean {
    return this.code === ErrorCode.CANCELLED;
  }

  override toString(): string {
    return this.message;
  }
}

/**
 * A call that exceeded its `timeoutMs`. It is an RPCError with code CANCELLED because the
 * SDK cancels the request on the engine, so code-based handling treats both alike.
 */
export class TimeoutError extends RPCError {
  readonly timeoutMs: number;

  constructor(method: string, timeoutMs: number) {
    super(ErrorCode.CANCELLED, `${method} timed out after ${timeoutMs} ms`, { kind: "timeout" });
    this.name = "TimeoutError";
    this.timeoutMs = timeoutMs;
  }
}
