// Applies one layer tarball (gzip'd or not) on top of a rootfs directory.
import { RootfsWriter } from "./rootfs-writer.js";
import { readTar } from "./tar-reader.js";
import { applyWhiteouts, isWhiteoutPath, scanWhiteouts } from "./whiteouts.js";

export async function applyLayer(rootfs: string, layerFile: string, opts: { lowerLayers: boolean }): Promise<void> {
  const writer = new RootfsWriter(rootfs);
  // Over an empty rootfs whiteouts hide nothing: spare the extra pass.
  if (opts.lowerLayers) await applyWhiteouts(writer, await scanWhiteouts(layerFile));
  await readTar(layerFile, async (entry) => {
    if (isWhiteoutPath(entry.path)) return void entry.resume();
    await writer.write(entry);
  });
  writer.finish();
}
