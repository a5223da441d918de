// Builds small image tarballs for the image store tests, entry by entry with tar's Header (so
// tests can also write what no honest tool writes: "../" paths, links through symlinks), and
// describes unpacked trees as text so tests can assert them exactly.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, readFile, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header } from "tar";

export interface TarEntry {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link";
  body?: string | Buffer;
  linkpath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

const MTIME = new Date("2024-01-02T03:04:05Z");

export function tarBytes(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "File";
    const body = Buffer.from(e.body ?? "");
    const header = new Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === "Directory" ? 0o755 : type === "SymbolicLink" ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size: type === "File" ? body.length : 0,
      mtime: MTIME,
      linkpath: e.linkpath ?? "",
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === "File" && body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024)); // end-of-archive marker
  return Buffer.concat(blocks);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);
export const sha256 = (b: Buffer | string): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const hex = (b: Buffer | string) => sha256(b).slice("sha256:".length);

export interface ImageSpec {
  /** Uncompressed layer tars, lowest first. */
  layers: Buffer[];
  config: Record<string, unknown>;
}

function configJson(spec: ImageSpec, arch = "amd64"): Buffer {
  return Buffer.from(JSON.stringify({
    architecture: arch,
    os: "linux",
    created: "2024-05-06T07:08:09.123456789Z",
    config: spec.config,
    rootfs: { type: "layers", diff_ids: spec.layers.map((l) => sha256(l)) },
  }));
}

/** A classic `docker save` archive: <id>.json config, <n>/layer.tar layers, manifest.json. */
export function dockerSave(spec: ImageSpec, opts: { corruptLayer?: number } = {}): { tar: Buffer; configDigest: string } {
  const config = configJson(spec);
  const entries: TarEntry[] = [{ path: `${hex(config)}.json`, body: config }];
  spec.layers.forEach((layer, i) => {
    const body = i === opts.corruptLayer ? Buffer.concat([layer.subarray(0, 600), Buffer.from("X"), layer.subarray(601)]) : layer;
    entries.push({ path: `layer${i}/`, type: "Directory" }, { path: `layer${i}/layer.tar`, body });
  });
  const manifest = [{ Config: `${hex(config)}.json`, RepoTags: ["test/image:latest"], Layers: spec.layers.map((_, i) => `layer${i}/layer.tar`) }];
  entries.push({ path: "manifest.json", body: JSON.stringify(manifest) });
  return { tar: tarBytes(entries), configDigest: sha256(config) };
}

interface Blob { digest: string; size: number; mediaType: string }

/** An OCI image layout with one image per platform, behind one index.json; gzip'd layers (or zstd'd). */
export function ociLayout(
  images: Record<string, ImageSpec>,
  /** configOf: use another image's config (its diff_ids name other layers), as a poisoning attempt would. */
  opts: { corruptLayerOf?: string; configOf?: ImageSpec; zstd?: boolean } = {},
): { tar: Buffer; configDigests: Record<string, string> } {
  const blobs = new Map<string, Buffer>();
  const put = (bytes: Buffer, mediaType: string): Blob => {
    blobs.set(hex(bytes), bytes);
    return { digest: sha256(bytes), size: bytes.length, mediaType };
  };
  const manifests: Array<Blob & { platform: { os: string; architecture: string } }> = [];
  const configDigests: Record<string, string> = {};
  for (const [arch, spec] of Object.entries(images)) {
    const config = configJson(opts.configOf ?? spec, arch);
    configDigests[arch] = sha256(config);
    const layers = spec.layers.map((l) => opts.zstd
      ? put(execFileSync("zstd", ["-q", "-c"], { input: l }), "application/vnd.oci.image.layer.v1.tar+zstd")
      : put(gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"));
    if (opts.corruptLayerOf === arch) {
      const last = layers.at(-1)!;
      const h = last.digest.slice("sha256:".length);
      const bytes = Buffer.from(blobs.get(h)!);
      bytes[bytes.length - 5]! ^= 0xff;
      blobs.set(h, bytes);
    }
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: put(config, "application/vnd.oci.image.config.v1+json"),
      layers,
    }));
    manifests.push({ ...put(manifest, "application/vnd.oci.image.manifest.v1+json"), platform: { os: "linux", architecture: arch } });
  }
  const entries: TarEntry[] = [
    { path: "oci-layout", body: JSON.stringify({ imageLayoutVersion: "1.0.0" }) },
    { path: "index.json", body: JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }) },
    { path: "blobs/", type: "Directory" },
    { path: "blobs/sha256/", type: "Directory" },
    ...[...blobs].map(([h, body]) => ({ path: `blobs/sha256/${h}`, body })),
  ];
  return { tar: tarBytes(entries), configDigests };
}

/**
 * One line per path under root, sorted: "path type mode uid:gid detail", where detail is a
 * file's content (and link count when hard-linked) or a symlink's target.
 */
export async function snapshot(root: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = join(root, rel);
    const st = await lstat(abs);
    const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
    const owner = `${st.uid}:${st.gid}`;
    const name = rel === "" ? "." : rel;
    if (st.isDirectory()) {
      lines.push(`${name}/ d ${mode} ${owner}`);
      for (const child of (await readdir(abs)).sort()) await walk(rel === "" ? child : `${rel}/${child}`);
    } else if (st.isSymbolicLink()) {
      lines.push(`${name} l ${owner} -> ${await readlink(abs)}`);
    } else {
      const links = st.nlink > 1 ? ` (${st.nlink} links)` : "";
      lines.push(`${name} f ${mode} ${owner} ${JSON.stringify((await readFile(abs)).toString())}${links}`);
    }
  };
  await walk("");
  return lines;
}
