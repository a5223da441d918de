// Public data types of the SDK: camelCase versions of the seed Python SDK's dataclasses.
import type { WireFileEvent, WireNetworkEvent } from "../protocol/rpc.js";
import type { Client } from "./client.js";

/** How to launch the engine. */
export interface Config {
  /**
   * Path of the `matchlock` engine to run. Default: the engine of this SDK's own package; only
   * when that is missing, env MATCHLOCK_BIN if non-empty, else `matchlock` on $PATH.
   */
  binaryPath?: string;
  /** Run the engine through sudo (gVisor needs root); `remove()` then uses sudo too. */
  useSudo?: boolean;
  /**
   * `await using` closes the client and removes the sandbox's stopped record; true keeps the
   * record (e.g. to read its logs with `matchlock get`). close() alone never removes it.
   */
  keepOnDispose?: boolean;
  /**
   * Unix socket of a resident engine (`matchlock serve`) to connect to instead of starting an
   * engine process per client. Default: env MATCHLOCK_ENGINE_SOCKET if non-empty, else none.
   */
  engineSocket?: string;
  /**
   * Talk to this user's shared engine (a `matchlock serve` the SDK starts on first use and that
   * exits when idle) instead of starting an engine process for this client. Default: true
   * unless env MATCHLOCK_SHARED_ENGINE is 0; without an engineSocket, binaryPath or useSudo,
   * which run an engine per client (true with one of them is an error).
   */
  sharedEngine?: boolean;
}

/**
 * Mount types. `real_fs` is the seed name of a host-directory mount and `host_fs` the later
 * one; our engine accepts both, the seed engine only `real_fs` (the builder sends `real_fs`).
 */
export type MountType = "memory" | "real_fs" | "host_fs" | "overlay";

export interface MountConfig {
  type: MountType;
  /** Host directory; required for real_fs, host_fs and overlay. */
  hostPath?: string;
  readonly?: boolean;
}

/** A secret the network proxy substitutes for its placeholder, only towards `hosts`. */
export interface Secret {
  /** Environment variable name the guest sees the placeholder under. */
  name: string;
  value: string;
  /** Host patterns the secret may be sent to; empty means any host. */
  hosts: string[];
  /**
   * Also substitute the value into plain-HTTP requests (port 80, or HTTP on any other port),
   * where anyone on the path can read it. Default false: such a request is refused (403).
   */
  allowCleartext?: boolean;
}

/** `addSecret`'s options form. */
export interface SecretOptions {
  /** Host patterns the secret may be sent to; none means any host. */
  hosts?: string[];
  /** See Secret.allowCleartext. */
  allowCleartext?: boolean;
}

/** Everything `create` can set. Unset (or 0) fields take the engine's defaults. */
export interface CreateOptions {
  image: string;
  cpus?: number;
  memoryMb?: number;
  diskSizeMb?: number;
  /** Lifetime in seconds: the engine stops the sandbox when it passes (0: no limit). */
  timeoutSeconds?: number;
  allowedHosts?: string[];
  blockPrivateIPs?: boolean;
  /** Guest path → mount. */
  mounts?: Record<string, MountConfig>;
  secrets?: Secret[];
  workspace?: string;
  dnsServers?: string[];
  /** Isolation engine for this sandbox (a matchlock extension); default: the engine's choice. */
  backend?: BackendName;
  /** Commands run with every capability, no no_new_privs and no seccomp filter (default false). */
  privileged?: boolean;
  /** Start the image's ENTRYPOINT + CMD, detached, once the sandbox is up (what `launch` asks for). */
  launchEntrypoint?: boolean;
  /** Environment of every command: over the image's, under the network's CA variables and secret placeholders. */
  env?: Record<string, string>;
  /** Replaces parts of the image's OCI config (user, working dir, entrypoint, cmd, env). */
  imageConfig?: ImageConfig;
  /** Seal the network even without allowed hosts or secrets (`network.intercept`): everything is denied until hosts are allowed. */
  forceInterception?: boolean;
  /** Rules (and SDK-side hooks) the proxy applies to HTTP(S) requests and answers; implies forceInterception. */
  networkInterception?: NetworkInterceptionConfig;
  /** Block rules and file events for every mount of the sandbox (spec 5.8); see docs/files.md. */
  vfsInterception?: VFSInterceptionConfig;
  /** Host ports forwarded to the guest's 127.0.0.1, bound right after the create (a failure undoes it). */
  portForwards?: PortForward[];
  /** Host addresses the forwards listen on (default ["127.0.0.1"]). */
  portForwardAddresses?: string[];
  /** Lines of the guest's /etc/hosts: `host` resolves to `ip` inside the sandbox. */
  addHosts?: HostIPMapping[];
  /** The guest's hostname (default: the VM id). */
  hostname?: string;
  /** The MTU of the guest's network link (default 1500; needs a network). */
  networkMtu?: number;
  /** No network device at all, only loopback (what a sandbox without allowed hosts or secrets gets anyway). */
  noNetwork?: boolean;
  /** ext4 disk images (e.g. a volume's path from volumeCreate) mounted in the guest (`extra_disks`). */
  extraDisks?: ExtraDisk[];
}

/** An ext4 image file attached to the sandbox and mounted at `guestMount`. */
export interface ExtraDisk {
  hostPath: string;
  guestMount: string;
  readonly?: boolean;
}

/** A named volume (`matchlock volume ls`): `size` is human-readable, e.g. "16.0 MB". */
export interface VolumeInfo {
  name: string;
  size: string;
  path: string;
}

/** One line of the guest's /etc/hosts. */
export interface HostIPMapping {
  host: string;
  ip: string;
}

/** What allowListAdd did: the hosts it added and the allow-list after it. */
export interface AllowListAddResult {
  added: string[];
  allowedHosts: string[];
}

/** What allowListDelete did: the hosts it removed and the allow-list after it. */
export interface AllowListDeleteResult {
  removed: string[];
  allowedHosts: string[];
}

/** A host port forwarded to a guest port (`localPort` 0: any free host port). */
export interface PortForward {
  localPort: number;
  remotePort: number;
}

/** One listener a forward made: host `address`:`localPort` reaches the guest's 127.0.0.1:`remotePort`. */
export interface PortForwardBinding {
  address: string;
  localPort: number;
  remotePort: number;
}


/** Bytes as hooks and stdin take them: strings are encoded as UTF-8. */
export type BinaryLike = string | Uint8Array | ArrayBuffer;

/** `before` rules see and change requests (before secrets are substituted), `after` rules answers. "" = before. */
export type NetworkHookPhase = "" | "before" | "after";
/** `allow` with changes counts as `mutate`; `block` answers 403 `Blocked by policy`. */
export type NetworkHookAction = "allow" | "block" | "mutate";

/** A literal find/replace on an answer's body (for server-sent events, on each `data:` line's value). */
export interface NetworkBodyTransform {
  find: string;
  replace?: string;
}

/** What a hook is told about a request (and, in the `after` phase, its answer). Header maps are canonical names → values. */
export interface NetworkHookRequest {
  phase: NetworkHookPhase;
  host: string;
  method: string;
  path: string;
  query?: Record<string, string>;
  /** With secret placeholders, never their values. */
  requestHeaders?: Record<string, string[]>;
  /** 0 in the `before` phase. */
  statusCode: number;
  responseHeaders?: Record<string, string[]>;
  isSSE: boolean;
}

/** Replacements for a request: each map given replaces the whole map. */
export interface NetworkHookRequestMutation {
  headers?: Record<string, string[]>;
  query?: Record<string, string>;
  path?: string;
}

/** Changes to an answer: `headers` replaces all headers; `setBody` the whole body. */
export interface NetworkHookResponseMutation {
  headers?: Record<string, string[]>;
  bodyReplacements?: NetworkBodyTransform[];
  setBody?: BinaryLike | null;
}

export interface NetworkHookResult {
  action?: NetworkHookAction;
  request?: NetworkHookRequestMutation;
  response?: NetworkHookResponseMutation;
}

/** Runs in the SDK's process for each matching request; nothing (or null) changes nothing. */
export type NetworkHookFunc = (request: NetworkHookRequest) => NetworkHookResult | null | undefined | void | Promise<NetworkHookResult | null | undefined | void>;

/** One interception rule: which requests (hosts globs, methods, a path glob) and what happens to them. */
export interface NetworkHookRule {
  name?: string;
  phase?: NetworkHookPhase;
  /** Host patterns as for allowHost; none = every host. */
  hosts?: string[];
  /** HTTP methods, any case; none = every method. */
  methods?: string[];
  /** A POSIX path glob on the URL path (`*` does not cross `/`); none = every path. */
  path?: string;
  action?: NetworkHookAction;
  setHeaders?: Record<string, string>;
  deleteHeaders?: string[];
  setQuery?: Record<string, string>;
  deleteQuery?: string[];
  rewritePath?: string;
  setResponseHeaders?: Record<string, string>;
  deleteResponseHeaders?: string[];
  bodyReplacements?: NetworkBodyTransform[];
  /** How long the proxy waits for `hook` (default 5000, at most 60000); after that the hook is skipped. */
  timeoutMs?: number;
  /** Called for each matching request; a failure or timeout skips it (the request goes on). */
  hook?: NetworkHookFunc;
}

export interface NetworkInterceptionConfig {
  rules?: NetworkHookRule[];
}

/** The 16 file operations a VFS rule can name (upstream's VFS_HOOK_OP_* values). */
export type VFSHookOp =
  | "stat" | "readdir" | "open" | "create" | "mkdir" | "chmod" | "remove" | "remove_all"
  | "rename" | "symlink" | "readlink" | "read" | "write" | "close" | "sync" | "truncate";
export type VFSHookPhase = "" | "before" | "after";
export type VFSHookAction = "allow" | "block" | (string & {});

/**
 * A rule the engine applies to file operations on the sandbox's mounts: `block` fails the
 * matching ones with EPERM (-32002 through the file calls). `ops` empty: every op; `path` empty:
 * every path (a glob on absolute guest paths, Go filepath.Match syntax).
 */
export interface VFSHookRule {
  name?: string;
  phase?: VFSHookPhase;
  ops?: VFSHookOp[];
  path?: string;
  action?: VFSHookAction;
  /** How long the SDK waits for this rule's hook (0: no limit); the hook itself is not cancelled. */
  timeoutMs?: number;
  /** Runs in the SDK on each matching `file` event (phase "after"), one event at a time. */
  hook?: VFSHookFunc;
  /** As `hook`, but gets the client, may call it, and runs at once for every event (phase "after"). */
  dangerousHook?: VFSDangerousHookFunc;
  /** Runs in the SDK before writeFile sends (phase "before"): returns the content to write instead. */
  mutateHook?: VFSMutateHookFunc;
  /** Runs in the SDK before writeFile, readFile and listFiles (phase "before"): "block" refuses the call. */
  actionHook?: VFSActionHookFunc;
}

/** What an action hook is asked about: the SDK call's op and path, and the process's effective ids. */
export type VFSActionRequest = VFSHookEvent;

/** What a mutate hook is asked about: the write's path, its current length and mode, the process's effective ids. */
export type VFSMutateRequest = Omit<VFSHookEvent, "op">;

export type VFSHookFunc = (event: VFSHookEvent) => void | Promise<void>;
export type VFSDangerousHookFunc = (client: Client, event: VFSHookEvent) => void | Promise<void>;
export type VFSMutateHookFunc = (req: VFSMutateRequest) => BinaryLike | null | undefined | Promise<BinaryLike | null | undefined>;
export type VFSActionHookFunc = (req: VFSActionRequest) => VFSHookAction | null | undefined | Promise<VFSHookAction | null | undefined>;

export interface VFSInterceptionConfig {
  /** The engine sends a file event for every operation on intercepted mounts either way; hooks and dangerousHooks turn it on. */
  emitEvents?: boolean;
  rules?: VFSHookRule[];
}

/** What a `file` event says (SandboxEvent.file); `mode` has Go's os.FileMode bits. */
export type VFSHookEvent = WireFileEvent;

/** Parts of an image's OCI config to replace: an empty user or working dir keeps the image's; a given list or env replaces it. */
export interface ImageConfig {
  /** "uid", "uid:gid" or a name from the guest's /etc/passwd: the default user of every command. */
  user?: string;
  /** The default working directory of every command (made if missing). */
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
}

/**
 * A backend the engine knows (`matchlock doctor` lists them), or "auto". The engine checks the
 * name: the SDK does not need to know every engine's drivers.
 */
export type BackendName = "microvm" | "gvisor" | "auto" | (string & {});

export interface ExecResult {
  /** The exit status; 128 + N when the command was killed by signal N. */
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** The signal that killed the command, when one did (sent by our engine only). */
  signal?: number;
  /** True when the kernel's OOM killer killed the command (micro-VMs; our engine only). */
  outOfMemory?: true;
}

export interface ExecStreamResult {
  exitCode: number;
  durationMs: number;
  signal?: number;
  outOfMemory?: true;
}

export interface FileInfo {
  name: string;
  size: number;
  /** Go os.FileMode bits as on the wire: permissions in the low 9 bits, dir = 1<<31, ... */
  mode: number;
  isDir: boolean;
  /**
   * When the file was last modified (millisecond precision; the wire's `mod_time` has the
   * nanoseconds). Absent when the engine does not know it (upstream engines send Go's zero time).
   */
  modTime?: Date;
}

/** Unsolicited engine notification (`event`), passed through with its wire (snake_case) keys. */
export interface SandboxEvent {
  type: string;
  timestamp: number;
  network?: WireNetworkEvent;
  /** type "file": an operation on an intercepted mount; timestamp is then in milliseconds. */
  file?: VFSHookEvent;
  [key: string]: unknown;
}

/** Per-call options. On timeout or abort the SDK sends a `cancel` for the request. */
export interface CallOptions {
  /** Reject with TimeoutError after this many milliseconds. */
  timeoutMs?: number;
  /** Reject with RPCError(CANCELLED) when aborted. */
  signal?: AbortSignal;
}

export interface ExecOptions extends CallOptions {
  /** Guest working directory; default is the engine's (the workspace at the seed). */
  workingDir?: string;
  /** Run as this user: "uid", "uid:gid" or a name from the guest's /etc/passwd; default the image's user. HOME follows it. */
  user?: string;
}

/**
 * Where streamed output goes: a writable stream or a callback, each getting the raw bytes as
 * Buffers (chunks may split a UTF-8 character: decode with a StringDecoder, or collect and
 * decode at the end). A callback is not awaited.
 */
export type OutputTarget = NodeJS.WritableStream | ((chunk: Buffer) => void);
/** Upstream SDK's name for an output target. */
export type StreamWriter = OutputTarget;

export interface ExecStreamOptions extends ExecOptions {
  stdout?: OutputTarget;
  stderr?: OutputTarget;
}

export interface LogStreamOptions extends CallOptions {
  /** Where the log goes as it grows (Buffers, to a stream or a callback); nowhere when unset. */
  stdout?: OutputTarget;
}

export interface RemoveFileOptions extends CallOptions {
  /** Also remove a directory that is not empty, with everything in it (default false). */
  recursive?: boolean;
}

export interface MakeDirOptions extends CallOptions {
  /** Also make the missing directories above it (0755), and take an existing directory as done (default false). */
  parents?: boolean;
  /** Permission bits of the new directory, exactly (no umask); default 0o755. */
  mode?: number;
}

export interface WriteFileOptions extends CallOptions {
  /** Permission bits, default 0o644. */
  mode?: number;
}


/** Where a command's stdin comes from: a Node Readable, or any (async) iterable of chunks. */
export type StreamReader = NodeJS.ReadableStream | AsyncIterable<BinaryLike> | Iterable<BinaryLike>;

/** A terminal size: [rows, cols]. */
export type TTYSize = [rows: number, cols: number];

export interface ExecPipeOptions extends ExecOptions {
  /** The command's stdin; it reads EOF when this ends (at once when there is none). */
  stdin?: StreamReader;
  stdout?: OutputTarget;
  stderr?: OutputTarget;
}

export type ExecPipeResult = ExecStreamResult;

export interface ExecInteractiveOptions extends ExecOptions {
  /** Typed into the terminal; process.stdin (a TTY) is put in raw mode while the command runs. */
  stdin?: StreamReader;
  /** The terminal's output (stdout and stderr are one stream on a terminal). */
  stdout?: OutputTarget;
  /** Terminal size; default 24 x 80, or process.stdout's when it is the stdout and a TTY. */
  rows?: number;
  cols?: number;
  /** Later sizes; default: process.stdout's resizes when it is the stdout and a TTY. */
  resize?: AsyncIterable<TTYSize> | Iterable<TTYSize>;
}

export type ExecInteractiveResult = ExecStreamResult;

export interface SpawnOptions extends ExecOptions {
  /** Run on a terminal (true: 24 x 80): its output is all on `stdout`, and `resize()` works. */
  tty?: boolean | { rows: number; cols: number };
}
