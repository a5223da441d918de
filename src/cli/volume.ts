// `matchlock volume create|ls|rm|cp`: named ext4 volumes that outlive sandboxes (attach one with
// `run --disk @name:/mnt`). Outputs as upstream's: the SDK's volumeCreate/List/Remove parse them.
import type { Command } from "commander";
import { copyVolume, createVolume, DEFAULT_VOLUME_MB, listVolumes, removeVolume, volumePath } from "../engine/disks/volume-store.js";
import { printTable } from "./table.js";

function parseSizeMb(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n) || n <= 0) throw new Error(`invalid --size ${JSON.stringify(v)}: a whole number of MB greater than 0`);
  return n;
}

export function registerVolumeCommands(program: Command): void {
  const volume = program.command("volume").description("manage named volumes (ext4 disks that outlive sandboxes; attach with run --disk @NAME:/PATH)");

  volume
    .command("create")
    .description("create a named volume")
    .argument("<name>", "volume name")
    .option("--size <mb>", `size in MB (default ${DEFAULT_VOLUME_MB})`, parseSizeMb, DEFAULT_VOLUME_MB)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { size: number; json?: boolean }) => {
      const v = await createVolume(name, opts.size);
      if (opts.json) console.log(JSON.stringify(v, null, 2));
      else console.log(`Created volume ${v.name} (${opts.size} MB)`);
    });

  volume
    .command("ls")
    .alias("list")
    .description("list named volumes")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const volumes = await listVolumes();
      if (opts.json) console.log(JSON.stringify(volumes, null, 2));
      else printTable(["NAME", "SIZE"], volumes.map((v) => [v.name, v.size]));
    });

  volume
    .command("rm")
    .alias("remove")
    .description("remove a named volume and its data (refused while a sandbox has it attached)")
    .argument("<name>", "volume name")
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      await removeVolume(name);
      if (opts.json) console.log(JSON.stringify({ removed: name }));
      else console.log(`Removed volume ${name}`);
    });

  volume
    .command("cp")
    .description("copy a named volume to a new one (its files, owners and modes as they are)")
    .argument("<source>", "existing volume")
    .argument("<dest>", "new volume's name (must not exist)")
    .option("--json", "print JSON")
    .action(async (source: string, dest: string, opts: { json?: boolean }) => {
      await copyVolume(source, dest);
      if (opts.json) console.log(JSON.stringify({ source, dest, path: volumePath(dest) }));
      else console.log(`Copied volume ${source} to ${dest}`);
    });
}
