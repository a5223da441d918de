// Public surface of the matchlock TypeScript SDK.
export { Client } from "./client.js";
export type { ProcessHandle } from "./process-handle.js";
export { Sandbox, createSandbox } from "./sandbox.js";
export { defaultEngineSocket } from "../protocol/engine-home.js";
export { MatchlockError, RPCError, TimeoutError, type ErrorKind, type MatchlockErrorOptions } from "./errors.js";
export { ERROR_KINDS } from "../protocol/errors.js";
export type { FileContent } from "./file-transfer.js";
export { ErrorCode, GoFileMode } from "../protocol/rpc.js";
export type {
  BackendName,
  CallOptions,
  CallOptions as RequestOptions,
  Config,
  CreateOptions,
  ExecOptions,
  ExecResult,
  ExecStreamOptions,
  ExecStreamResult,
  ExecPipeOptions,
  ExecPipeResult,
  ExecInteractiveOptions,
  ExecInteractiveResult,
  SpawnOptions,
  BinaryLike,
  StreamReader,
  TTYSize,
  FileInfo,
  ImageConfig,
  MakeDirOptions,
  MountConfig,
  MountType,
  OutputTarget,
  PortForward,
  PortForwardBinding,
  RemoveFileOptions,
  SandboxEvent,
  Secret,
  SecretOptions,
  WriteFileOptions,
} from "./types.js";
