// JSON-RPC 2.0 wire shapes shared by the SDK and the engine. The facts (codes, method names,
// key names) come from ../shared/matchlock-protocol.md; both halves import them from here.

export const ErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  VM_FAILED: -32000,
  EXEC_FAILED: -32001,
  FILE_FAILED: -32002,
  CANCELLED: -32003,
} as const;

export type RequestId = number;

export interface RpcRequest {
  jsonrpc: "2.0";
  method: string;
  params?: Record<string, unknown>;
  id?: RequestId | null;
}

export interface RpcErrorBody {
  code: number;
  message: string;
}

export interface RpcResponse {
  jsonrpc: "2.0";
  result?: Record<string, unknown>;
  error?: RpcErrorBody;
  id?: RequestId | null;
}

export interface RpcNotification {
  jsonrpc: "2.0";
  method: string;
  params: Record<string, unknown>;
}

/** Upstream's request line limit; ours answers longer lines with an error instead of exiting. */
export const MAX_REQUEST_LINE = 10 * 1024 * 1024;

/** Wire form of a mount (create params `vfs.mounts[guestPath]`). */
export interface WireMount {
  type: string;
  host_path?: string | undefined;
  readonly?: boolean | undefined;
  upper?: WireMount | undefined;
  lower?: WireMount | undefined;
}

/** Wire form of `list_files` entries: mode uses Go's os.FileMode bit layout (see spec 2.6). */
export interface WireFileInfo {
  name: string;
  size: number;
  mode: number;
  mod_time: string;
  is_dir: boolean;
}

/** Go's zero time: what upstream engines send as every `mod_time`, and ours when a time is unknown. */
export const ZERO_MOD_TIME = "0001-01-01T00:00:00Z";

/** Go os.FileMode type bits, as they appear in `list_files` results. */
export const GoFileMode = {
  DIR: 2 ** 31,
  SYMLINK: 2 ** 27,
  DEVICE: 2 ** 26,
  NAMED_PIPE: 2 ** 25,
  SOCKET: 2 ** 24,
  SETUID: 2 ** 23,
  SETGID: 2 ** 22,
  CHAR_DEVICE: 2 ** 21,
  STICKY: 2 ** 20,
} as const;

/** Longest sandbox timeout: 7 days (a timer cannot hold much more than 24 days anyway). */
export const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;

/** The `file` payload of an `event` notification (spec 5.8). */
export interface WireFileEvent {
  op: string;
  path: string;
  size: number;
  /** Go os.FileMode bits, as list_files. */
  mode: number;
  uid: number;
  gid: number;
}

/** The `network` payload of an `event` notification (spec 2.8). */
export interface WireNetworkEvent {
  method: string;
  url: string;
  host: string;
  status_code: number;
  request_bytes: number;
  response_bytes: number;
  duration_ms: number;
  blocked: boolean;
  block_reason?: string;
}
