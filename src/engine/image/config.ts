// The image config (Env, WorkingDir, User, Entrypoint, Cmd) from an OCI or Docker config JSON.
import { z } from "zod";
import type { ImageConfig } from "./types.js";

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const stringList = z.array(z.string()).nullish().transform((v) => v ?? []);
const str = z.string().nullish().transform((v) => v ?? "");

const configJsonSchema = z.looseObject({
  created: z.string().nullish(),
  architecture: z.string().nullish(),
  os: z.string().nullish(),
  config: z.looseObject({
    Env: stringList,
    WorkingDir: str,
    User: str,
    Entrypoint: stringList,
    Cmd: stringList,
  }).nullish(),
  rootfs: z.looseObject({ diff_ids: z.array(z.string()).nullish() }).nullish(),
});

export interface ParsedConfigJson {
  config: ImageConfig;
  created: string | undefined;
  /** sha256 of each uncompressed layer tar, in order, when the config lists them. */
  diffIds: string[];
}

/** A plain rootfs tarball has no config: give it what Docker gives an empty one. */
export function defaultConfig(): ImageConfig {
  return { env: [DEFAULT_PATH], workingDir: "", user: "", entrypoint: [], cmd: [] };
}

export function parseConfigJson(bytes: Buffer, where: string): ParsedConfigJson {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new Error(`${where}: the image config is not valid JSON (${(e as Error).message})`);
  }
  const parsed = configJsonSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${where}: unexpected image config: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data.config;
  const env = c?.Env ?? [];
  // Docker supplies the default PATH at run time when the image sets none; do it once here.
  if (!env.some((e) => e.startsWith("PATH="))) env.unshift(DEFAULT_PATH);
  return {
    config: { env, workingDir: c?.WorkingDir ?? "", user: c?.User ?? "", entrypoint: c?.Entrypoint ?? [], cmd: c?.Cmd ?? [] },
    created: parsed.data.created ?? undefined,
    diffIds: parsed.data.rootfs?.diff_ids ?? [],
  };
}
