// Every MATCHLOCK_* environment variable, read here and nowhere else, each with its meaning and
// default in one place: the code asks `settings.x.read()`, the docs print `settingsTable`.
// Values are read at each call, not at load: tests and the resident engine change them at run
// time. An empty value counts as unset, so `VAR= cmd` gives the default.

export interface SettingInfo {
  readonly name: string;
  readonly meaning: string;
  /** The default, as people read it. */
  readonly default: string;
  /** Who reads it: the engine (`matchlock rpc`, `run`, ...), the SDK, or the CLI itself. */
  readonly readBy: "engine" | "sdk" | "cli";
}

export interface Setting<T> extends SettingInfo {
  read(env?: NodeJS.ProcessEnv): T;
}

/** A setting without a fixed default: undefined when unset (the caller derives the default). */
function optional(name: string, readBy: SettingInfo["readBy"], meaning: string, defaultText: string): Setting<string | undefined> {
  return { name, readBy, meaning, default: defaultText, read: (env = process.env) => env[name] || undefined };
}

/** A setting with a fixed default value. */
function withDefault(name: string, readBy: SettingInfo["readBy"], meaning: string, value: string): Setting<string> {
  return { name, readBy, meaning, default: value, read: (env = process.env) => env[name] || value };
}

export const settings = {
  home: optional("MATCHLOCK_HOME", "engine", "root of all engine state (sandboxes, runsc state, the resident engine's socket)", "~/.matchlock"),
  images: optional("MATCHLOCK_IMAGES", "engine", "the image store (several homes may share one, as the e2e tests do)", "$MATCHLOCK_HOME/images"),
  cache: optional("MATCHLOCK_CACHE", "engine", "built artifacts keyed by content (guest kernel, initramfs)", "~/.cache/matchlock"),
  agent: optional("MATCHLOCK_AGENT", "engine", "the static agent binary put into every sandbox", "guest/agent/build/matchlock-agent in the package"),
  backend: withDefault("MATCHLOCK_BACKEND", "engine", "isolation engine for sandboxes that do not ask for one: microvm, gvisor or auto", "auto"),
  runsc: optional("MATCHLOCK_RUNSC", "engine", "the runsc binary", "the current runsc `matchlock setup` fetched into $MATCHLOCK_CACHE/gvisor, else runsc on PATH"),
  runscPlatform: withDefault("MATCHLOCK_RUNSC_PLATFORM", "engine", "gVisor platform: systrap, ptrace, kvm, or auto (the fastest the runsc offers that runs here; kvm only with real vmx/svm)", "auto"),
  qemu: withDefault("MATCHLOCK_QEMU", "engine", "the QEMU binary", "qemu-system-x86_64"),
  qemuUser: optional("MATCHLOCK_QEMU_USER", "engine", "uid:gid QEMU runs as inside its jail (not 0)", "65534:65534"),
  microvmAccel: withDefault("MATCHLOCK_MICROVM_ACCEL", "engine", "micro-VM accelerator: kvm, tcg or auto (KVM only with real vmx/svm)", "auto"),
  traceStartup: optional("MATCHLOCK_TRACE_STARTUP", "engine", "1: write start-up timestamps to stderr", "off"),
  entrypointGraceMs: withDefault("MATCHLOCK_ENTRYPOINT_GRACE_MS", "engine", "how long launch_entrypoint watches the image's command: one that fails within it fails the create", "500"),
  warmPool: withDefault("MATCHLOCK_WARM_POOL", "engine", "1: a resident or shared engine boots a spare like each sandbox that closes, for the next create asking for exactly the same (docs/resident-engine.md); 0: never", "1"),
  pull: optional("MATCHLOCK_PULL", "engine", "never: refuse to pull images missing from the store", "pull when missing"),
  maxLayerBytes: optional("MATCHLOCK_MAX_LAYER_BYTES", "engine", "largest accepted image layer: bytes, or with a K, M, G or T suffix", "64G"),
  insecureRegistries: optional("MATCHLOCK_INSECURE_REGISTRIES", "engine", "comma-separated registries (host or host:port) reached over plain HTTP; loopback always is", "none"),
  registryCa: optional("MATCHLOCK_REGISTRY_CA", "engine", "a PEM file of extra roots for registries", "none"),
  netMaxConnections: optional("MATCHLOCK_NET_MAX_CONNECTIONS", "engine", "TCP connections one sandbox may have open through the seal at once", "512"),
  netConnectionRate: optional("MATCHLOCK_NET_CONNECTION_RATE", "engine", "new TCP connections, and new UDP flows, per second per sandbox", "100"),
  netState: withDefault("MATCHLOCK_NET_STATE", "engine", "where network allocations (links, nft tables) are recorded", "/run/matchlock/net"),
  testHosts: optional("MATCHLOCK_TEST_HOSTS", "engine", "a hosts-format file that replaces the seal's name resolution (tests)", "none"),
  upstreamCa: optional("MATCHLOCK_UPSTREAM_CA", "engine", "a PEM file of extra roots for the seal's upstream TLS (tests)", "none"),
  bin: withDefault("MATCHLOCK_BIN", "sdk", "the matchlock binary the SDK runs (Config.binaryPath wins)", "matchlock"),
  engineSocket: optional("MATCHLOCK_ENGINE_SOCKET", "sdk", "a resident engine (`matchlock serve`) the SDK connects to (Config.engineSocket wins)", "none"),
  sharedEngine: withDefault("MATCHLOCK_SHARED_ENGINE", "sdk", "0: every Client starts its own engine process (`matchlock rpc`) instead of sharing this user's resident engine (Config.sharedEngine wins)", "1"),
  sharedEngineIdle: withDefault("MATCHLOCK_SHARED_ENGINE_IDLE", "sdk", "seconds the shared engine stays after its last client left (read by the client that starts it)", "300"),
  commit: withDefault("MATCHLOCK_COMMIT", "cli", "the commit `matchlock version` reports", "unknown"),
} as const;

/** name, meaning, default and reader of every setting, for docs and `--help` texts. */
export const settingsTable: readonly SettingInfo[] = Object.values(settings).map(({ name, meaning, default: d, readBy }) => ({ name, meaning, default: d, readBy }));
