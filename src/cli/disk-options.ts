// `run --disk`: an extra disk as upstream's CLI takes it, @VOLUME:GUEST[:ro] for a named volume
// or HOST_IMAGE:GUEST[:ro] for an ext4 image file, turned into an `extra_disks` entry.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { volumePath } from "../engine/disks/volume-store.js";

export interface WireExtraDisk {
  host_path: string;
  guest_mount: string;
  readonly?: boolean;
}

export function parseDisk(spec: string): WireExtraDisk {
  const parts = spec.split(":");
  const mode = parts.length === 3 ? parts[2] : undefined;
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1] || (mode !== undefined && mode !== "ro" && mode !== "rw")) {
    throw new Error(`invalid disk ${JSON.stringify(spec)}: use @VOLUME:GUEST_PATH[:ro] (a named volume) or IMAGE:GUEST_PATH[:ro] (an ext4 image file)`);
  }
  let hostPath: string;
  if (parts[0].startsWith("@")) {
    const name = parts[0].slice(1);
    hostPath = volumePath(name);
    if (!existsSync(hostPath)) throw new Error(`named volume not found: ${name} (create it with "matchlock volume create ${name}")`);
  } else {
    hostPath = resolve(parts[0]);
  }
  return { host_path: hostPath, guest_mount: parts[1], ...(mode === "ro" ? { readonly: true } : {}) };
}
