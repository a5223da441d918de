// Pull + unpack throughput from a local registry (Debian's docker-registry on 127.0.0.1):
// `matchlock pull` against `skopeo copy` + `umoci unpack` of the same image, each into a fresh
// store/directory per round (cold: nothing cached). Prints medians, MB/s and the ratio.
//   npm run bench:registry    (needs docker-registry, skopeo, umoci and the python test image)
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { CLI } from "../test/helpers/e2e.js";
import { blob, image, TestRegistry } from "../test/helpers/registry.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TARBALLS = process.env.MATCHLOCK_TEST_IMAGES || join(homedir(), ".cache", "matchlock", "test-images");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    let err = "";
    const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env });
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err}`))));
  });
}

async function main(): Promise<void> {
  const rootfs = await readFile(join(TARBALLS, "python.tar"));
  const layer = blob(gzipSync(rootfs));
  const img = image([layer], { Cmd: ["python3"] });
  const registry = await TestRegistry.start();
  const work = await mkdtemp(join(tmpdir(), "matchlock-bench-pull-"));
  try {
    await registry.pushImage("bench/python", img, "1");
    const name = `${registry.host}/bench/python:1`;
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const store = join(work, `store-${i}`);
      ours.push(await run(process.execPath, [CLI, "pull", "--json", name], { ...process.env, MATCHLOCK_IMAGES: store }));
      await rm(store, { recursive: true, force: true });
      const oci = join(work, `oci-${i}`);
      const copy = await run("skopeo", ["copy", "--quiet", "--src-tls-verify=false", `docker://${name}`, `oci:${oci}:1`]);
      const unpack = await run("umoci", ["unpack", "--image", `${oci}:1`, join(work, `bundle-${i}`)]);
      theirs.push(copy + unpack);
      await rm(oci, { recursive: true, force: true });
      await rm(join(work, `bundle-${i}`), { recursive: true, force: true });
    }
    const mb = layer.bytes.length / 1e6;
    const a = median(ours);
    const b = median(theirs);
    console.log(`image: one gzip layer of ${mb.toFixed(1)} MB (${(rootfs.length / 1e6).toFixed(1)} MB unpacked), ${ROUNDS} cold rounds each`);
    console.log(`matchlock pull             median ${a.toFixed(0)} ms  (${(mb / (a / 1000)).toFixed(1)} MB/s compressed)`);
    console.log(`skopeo copy + umoci unpack median ${b.toFixed(0)} ms  (${(mb / (b / 1000)).toFixed(1)} MB/s compressed)`);
    console.log(`ratio (matchlock / skopeo+umoci): ${(a / b).toFixed(2)}`);
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
