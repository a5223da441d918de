// `matchlock image import|ls|rm`: the local image store.
import type { Command } from "commander";
import { ImageStore } from "../engine/image/store.js";
import { printTable } from "./table.js";

function humanSize(bytes: number): string {
  const units = ["B", "KB", "MB", "GB"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function registerImageCommands(program: Command): void {
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
      else console.log(`Imported ${img.ref} (${img.digest}, ${humanSize(img.sizeBytes)})`);
    });

  image
    .command("ls")
    .alias("list")
    .description("list local images")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const images = await new ImageStore().list();
      if (opts.json) {
        console.log(JSON.stringify(images.map((i) => ({ ref: i.ref, digest: i.digest, size: i.sizeBytes, created: i.created, source: i.source })), null, 2));
        return;
      }
      printTable(["TAG", "SOURCE", "SIZE", "CREATED"], images.map((i) => [i.ref, i.source, humanSize(i.sizeBytes), i.created]));
    });

  image
    .command("rm")
    .alias("remove")
    .description("remove a local image")
    .argument("<ref>", "image name")
    .action(async (ref: string) => {
      if (!(await new ImageStore().remove(ref))) throw new Error(`image ${ref} not found`);
      console.log(`Removed ${ref}`);
    });
}
