// What went wrong, as a stable word both halves share. Every engine error carries one `kind`;
// the engine sends it with each JSON-RPC error as `error.data.kind` (JSON-RPC 2.0's `data`
// member: clients that do not know it ignore it), and the SDK's errors expose it, so callers
// switch on a kind instead of parsing messages. The codes stay as the protocol spec says.
import { ErrorCode } from "./rpc.js";

export const ERROR_KINDS = [
  /** The request or an argument is malformed or out of range. */
  "invalid_argument",
  /** What was named does not exist (an image, a method, a file). */
  "not_found",
  /** The caller cancelled (a cancel request, an AbortSignal, the session ending). */
  "cancelled",
  /** A deadline passed: the call's timeoutMs, or the sandbox's own timeout. */
  "timeout",
  /** The sandbox ran out of memory and was killed with everything in it. */
  "out_of_memory",
  /** The sandbox died or stopped answering; it is gone. */
  "sandbox_lost",
  /** The engine refused by its rules (an unsafe image entry, a size limit, a blocked host). */
  "policy_refused",
  /** The chosen backend cannot do what was asked (e.g. a host mount on a backend without them). */
  "unsupported",
  /** Something the engine needs is not there (a backend on this host, a tool, a registry). */
  "unavailable",
  /** The engine process or its connection went away (SDK side). */
  "engine_lost",
  /** The operation failed (a command, a file operation, a pull); the message says why. */
  "failed",
  /** A bug in matchlock. */
  "internal",
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export function isErrorKind(value: unknown): value is ErrorKind {
  return typeof value === "string" && (ERROR_KINDS as readonly string[]).includes(value);
}

/** The kind a bare JSON-RPC code implies, for errors that carry none (an upstream engine's). */
export function kindOfCode(code: number): ErrorKind {
  switch (code) {
    case ErrorCode.PARSE_ERROR:
    case ErrorCode.INVALID_REQUEST:
    case ErrorCode.INVALID_PARAMS: return "invalid_argument";
    case ErrorCode.METHOD_NOT_FOUND: return "not_found";
    case ErrorCode.CANCELLED: return "cancelled";
    case ErrorCode.INTERNAL_ERROR: return "internal";
    default: return "failed";
  }
}

/**
 * The base of every error the engine throws: a `kind` that says what happened, and the class
 * name as `name`. Subclasses name the thing (RegistryError, PathError, ...) and fix the kind.
 */
export abstract class EngineError extends Error {
  abstract readonly kind: ErrorKind;
  /** The JSON-RPC code the protocol gives this error where its kind's code is not it. */
  readonly rpcCode?: number;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
