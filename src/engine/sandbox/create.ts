// The one way a sandbox is made, for `matchlock rpc` (Session) and `matchlock run`: parse the
// create params, merge the defaults, pick the driver, check that it can do what was asked, find
// the image, then make the sandbox. Its dependencies (image store, pull policy, driver choice,
// log) are passed in, and nothing is made (no record, no pull, no link) before the checks pass.
import { lstat, stat } from "node:fs/promises";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";
import { UnsupportedByBackendError, type BackendDriver } from "../backends/backend.js";
import { chooseDriver, type DriverChoice } from "../backends/registry.js";
import { ImageStore } from "../image/store.js";
import { checkMountRequest } from "../vfs/mounts.js";
import { checkExtraDisks } from "../disks/extra-disks.js";
import type { LocalImage } from "../image/types.js";
import type { NetworkEventSink } from "../net/events.js";
import type { FileEvent } from "../vfs/interception/guest-mounts.js";
import type { SecretRule } from "../net/policy.js";
import { settings } from "../../settings/settings.js";
import { createParamsSchema, describeZodError, mergeDefaults, type SandboxConfig } from "./create-config.js";
import { ImageNotFoundError, Sandbox, interceptionOn, secretRules } from "./sandbox.js";

/** Create params that are not what the protocol allows. */
export class CreateParamsError extends EngineError {
  readonly kind: ErrorKind = "invalid_argument";
}

/** A parsed create: the config (what the record keeps) and the secrets with their values (kept in memory only). */
export interface CreateRequest {
  config: SandboxConfig;
  secrets: SecretRule[];
}

export interface CreateDeps {
  images: ImageStore;
  /** Pull images the store lacks (off: $MATCHLOCK_PULL=never). */
  pull: boolean;
  chooseDriver: (asked: string | undefined) => Promise<DriverChoice>;
  log: (line: string) => void;
  onEvent?: NetworkEventSink;
  /** May return a promise while the event waits to go out: the sandbox's events then wait for it. */
  onFileEvent?: (e: FileEvent) => void | Promise<void>;
  /** Told the id just before its record is written, so `matchlock kill` can find a create in progress. */
  onRecord?: (id: string) => void;
  /** Made ahead as a resident engine's warm spare (warm-pool.ts). */
  spare?: boolean;
}

/** The engine's own dependencies, from its settings. */
export function engineCreateDeps(log: (line: string) => void): CreateDeps {
  return { images: new ImageStore(), pull: settings.pull.read() !== "never", chooseDriver, log };
}

/** Checks and merges `create` params (protocol spec 2.1); a CreateParamsError names what is wrong. */
export function parseCreateParams(params: unknown): CreateRequest {
  const parsed = createParamsSchema.safeParse(params ?? {});
  if (!parsed.success) throw new CreateParamsError(describeZodError(parsed.error));
  return { config: mergeDefaults(parsed.data), secrets: secretRules(parsed.data.network?.secrets ?? {}) };
}

export async function createSandbox(request: CreateRequest, deps: CreateDeps, signal?: AbortSignal): Promise<Sandbox> {
  const { config, secrets } = request;
  checkMountRequest(config.workspace, config.mounts);
  await checkExtraDisks(config);
  await checkCallbackSocket(config.network.interception?.callback_socket);
  const { driver, reason } = await deps.chooseDriver(config.backend);
  deps.log(`backend for the new sandbox: ${driver.name} (${reason})`);
  await checkCapabilities(driver, request);
  const image = await findImage(config.image, deps);
  return Sandbox.create(config, driver, image, { secrets, onEvent: deps.onEvent, onFileEvent: deps.onFileEvent, log: deps.log, onRecord: deps.onRecord, spare: deps.spare }, signal);
}

/** The interception callbacks' socket must be there when the sandbox starts: a typo fails the create, not every callback. */
async function checkCallbackSocket(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) throw new CreateParamsError(`network.interception.callback_socket: ${path} is not a unix socket${st ? "" : " (it does not exist)"}`);
}

/** What the request needs of the driver, checked against what it declares. */
export async function checkCapabilities(driver: BackendDriver, { config, secrets }: CreateRequest): Promise<void> {
  const caps = driver.capabilities;
  const refuse = (what: string) => new UnsupportedByBackendError(`${what}: the ${driver.name} backend cannot do this (${driver.description})`);
  for (const [guestPath, m] of Object.entries(config.mounts)) {
    const hostPath = m.host_path ?? m.lower?.host_path;
    if (m.type === "overlay" && !caps.overlay) throw refuse(`mount ${guestPath}: overlay mounts`);
    if (hostPath === undefined || (m.type !== "host_fs" && m.type !== "real_fs" && m.type !== "overlay")) continue;
    if (caps.hostMounts === "none") throw refuse(`mount ${guestPath}: host paths`);
    if (caps.hostMounts === "directories" && (await stat(hostPath).then((s) => s.isFile(), () => false))) {
      throw new UnsupportedByBackendError(`mount ${guestPath}: the ${driver.name} backend shares directories only, and ${hostPath} is a file: mount its directory instead`);
    }
  }
  if (interceptionOn(config, secrets) && !caps.network.includes("host-link")) throw refuse("a sealed network");
  if (caps.image !== "unpacked") throw refuse(`image ${config.image}: images given by reference are not supported yet`);
}

/** The image from the store, pulled from its registry when missing and pulling is on. */
async function findImage(ref: string, deps: CreateDeps): Promise<LocalImage> {
  const local = await deps.images.resolve(ref);
  if (local) return local;
  if (!deps.pull) {
    throw new ImageNotFoundError(`image ${ref} is not in the local store and pulling is off (MATCHLOCK_PULL=never): import it with "matchlock image import ${ref} <tarball>"`);
  }
  try {
    return await deps.images.pull(ref);
  } catch (e) {
    throw new ImageNotFoundError(`failed to pull image ${ref}: ${(e as Error).message}`, { cause: e });
  }
}
