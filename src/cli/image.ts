// `matchlock image import|ls|rm`: the local image store.
import type { Command } from "commander";
import { ImageStore } from "../engine/image/store.js";
import { printTable } from "./table.js";
import { formatBytes } from "../engine/byte-size.js";
import { PullProgress } from "./pull-progress.js";

export function registerImageCommands(program: Command): void {
  program
    .command("pull")
    .description("pull an image from its registry (Docker Hub unless the name says otherwise) into the local store")
    .argument("<image>", "e.g. alpine, python:3.12-alpine, ghcr.io/owner/name:tag, name@sha256:...")
    .option("--platform <os/arch>", "which image of a multi-platform index (default: this host's)")
    .option("--json", "print the result as JSON (no progress)")
    .action(async (ref: string, opts: { platform?: string; json?: boolean }) => {
      const progress = opts.json ? undefined : new PullProgress(process.stdout, process.stdout.isTTY === true);
      const img = await new ImageStore().pull(ref, { platform: opts.platform, onEvent: progress?.handle });
      if (opts.json) {
        console.log(JSON.stringify({ ref: img.ref, digest: img.repoDigest, id: img.digest, size: img.sizeBytes }, null, 2));
        return;
      }
      console.log(`Digest: ${img.repoDigest}`);
      console.log(`Pulled ${img.ref} (${formatBytes(img.sizeBytes)})`);
    });

  const image = program.command("image").description("manage local images");

  image
    .command("import")
    .description("import a rootfs tarball, a `docker save` tarball or an OCI layout tarball under a name")
    .argument("<ref>", "name to give the image, e.g. alpine:latest")
    .argument("<tarball>", "path of the tarball (.tar or .tar.gz)")
    .option("--json", "print JSON")
    .action(async (ref: string, tarball: string, opts: { json?: boolean }) => {
      const img = await new ImageStore().import(ref, tarball);
      if (opts.json) console.log(JSON.stringify({ ref: img.ref, digest: img.digest, size: img.sizeBytes }, null, 2));
      else console.log(`Imported ${img.ref} (${img.digest}, ${formatBytes(img.sizeBytes)})`);
    });

  image
    .command("ls")
    .alias("list")
    .description("list local images")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const images = await new ImageStore().list();
      if (opts.json) {
        console.log(JSON.stringify(images.map((i) => ({ ref: i.ref, digest: i.digest, repo_digest: i.repoDigest ?? null, size: i.sizeBytes, created: i.created, source: i.source })), null, 2));
        return;
      }
      printTable(["TAG", "SOURCE", "SIZE", "CREATED"], images.map((i) => [i.ref, i.source, formatBytes(i.sizeBytes), i.created]));
    });

  image
    .command("rm")
    .alias("remove")
    .description("remove a local image")
    .argument("<ref>", "image name")
    .option("--json", "print JSON")
    .action(async (ref: string, opts: { json?: boolean }) => {
      if (!(await new ImageStore().remove(ref))) throw new Error(`image ${ref} not found`);
      if (opts.json) console.log(JSON.stringify({ removed: ref }));
      else console.log(`Removed ${ref}`);
    });

  image
    .command("prune")
    .description("delete unpacked images no name points at, cached layers no image uses, and leftovers of interrupted pulls")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const r = await new ImageStore().prune();
      if (opts.json) console.log(JSON.stringify({ images_removed: r.images, blobs_removed: r.blobs, blob_bytes_freed: r.blobBytes, partial_downloads_removed: r.partials }));
      else console.log(`Removed ${r.images} unused images, ${r.blobs} cached blobs (${formatBytes(r.blobBytes)}) and ${r.partials} partial downloads`);
    });
}
