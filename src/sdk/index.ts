// Public surface of the matchlock TypeScript SDK.
export { Client } from "./client.js";
export { defaultConfig } from "./engine-command.js";
export type { ProcessHandle } from "./process-handle.js";
export { Sandbox, createSandbox } from "./sandbox.js";
export {
  NETWORK_HOOK_ACTION_ALLOW, NETWORK_HOOK_ACTION_BLOCK, NETWORK_HOOK_ACTION_MUTATE, NETWORK_HOOK_PHASE_AFTER, NETWORK_HOOK_PHASE_BEFORE,
} from "./network-hook-constants.js";
export * from "./vfs-hook-constants.js";
export { defaultEngineSocket } from "../protocol/engine-home.js";
export { MatchlockError, RPCError, TimeoutError, type ErrorKind, type MatchlockErrorOptions } from "./errors.js";
export { ERROR_KINDS } from "../protocol/errors.js";
export type { FileContent } from "./file-transfer.js";
export { ErrorCode, GoFileMode } from "../protocol/rpc.js";
export type {
  BackendName,
  BinaryLike,
  CallOptions,
  CallOptions as RequestOptions,
  Config,
  CreateOptions,
  ExtraDisk,
  VolumeInfo,
  ExecOptions,
  ExecResult,
  ExecStreamOptions,
  ExecStreamResult,
  ExecPipeOptions,
  ExecPipeResult,
  ExecInteractiveOptions,
  ExecInteractiveResult,
  SpawnOptions,
  StreamReader,
  TTYSize,
  FileInfo,
  ImageConfig,
  LogStreamOptions,
  MakeDirOptions,
  MountConfig,
  MountType,
  NetworkBodyTransform,
  NetworkHookAction,
  NetworkHookFunc,
  NetworkHookPhase,
  NetworkHookRequest,
  NetworkHookRequestMutation,
  NetworkHookResponseMutation,
  NetworkHookResult,
  NetworkHookRule,
  NetworkInterceptionConfig,
  VFSHookAction,
  VFSHookEvent,
  VFSHookOp,
  VFSHookPhase,
  VFSHookRule,
  VFSInterceptionConfig,
  VFSActionRequest,
  VFSMutateRequest,
  VFSHookFunc,
  VFSDangerousHookFunc,
  VFSMutateHookFunc,
  VFSActionHookFunc,
  OutputTarget,
  StreamWriter,
  PortForward,
  PortForwardBinding,
  AllowListAddResult,
  AllowListDeleteResult,
  HostIPMapping,
  RemoveFileOptions,
  SandboxEvent,
  Secret,
  SecretOptions,
  WriteFileOptions,
} from "./types.js";
