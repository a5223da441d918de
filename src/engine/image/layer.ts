// Applies one layer tarball (gzip'd, zstd'd or plain) on top of a rootfs directory, within the
// store's byte cap for a layer (layer-size-limit.ts): a small gzip blob can expand a thousandfold
// (1 GiB of zeros gzips to 1 MiB), so what a layer may write is bounded while it is written,
// whatever its compression, and an entry past the cap is refused before any of it is written.
import { ENTRY_OVERHEAD, layerSizeLimit, overLimit, type LayerSizeLimit } from "./layer-size-limit.js";
import { RootfsWriter } from "./rootfs-writer.js";
import { readTar } from "./tar-reader.js";
import { applyWhiteouts, isWhiteoutPath, scanWhiteouts } from "./whiteouts.js";

export interface ApplyOptions {
  lowerLayers: boolean;
  /** Default: layerSizeLimit(rootfs), read when this layer starts (so after any decoded copy of it). */
  limit?: LayerSizeLimit;
}

export async function applyLayer(rootfs: string, layerFile: string, opts: ApplyOptions): Promise<void> {
  const limit = opts.limit ?? (await layerSizeLimit(rootfs));
  const writer = new RootfsWriter(rootfs);
  // Over an empty rootfs whiteouts hide nothing: spare the extra pass.
  if (opts.lowerLayers) await applyWhiteouts(writer, await scanWhiteouts(layerFile));
  let charged = 0;
  await readTar(layerFile, async (entry) => {
    if (isWhiteoutPath(entry.path)) return void entry.resume();
    charged += ENTRY_OVERHEAD + (entry.size ?? 0);
    if (charged > limit.bytes) throw overLimit(limit, "unpacks");
    await writer.write(entry);
  });
  writer.finish();
}
