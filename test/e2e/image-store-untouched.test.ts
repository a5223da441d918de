// End to end: an image in the local store is never written by a sandbox. The image's unpacked
// tree (names, modes, owners, sizes, content hashes, link targets) is hashed before and after
// sandboxes with every kind of mount (host dir, read-only host dir, memory, overlay) and the
// network seal's files; and a later sandbox of the image sees none of an earlier one's mount
// points. The test imports the image into a store of its own, so the tree starts pristine.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, TARBALLS, cli, newClient, setUpE2E } from "../helpers/e2e.js";

/** One line per entry: path, type and mode, owner, size, and the content's or link's hash. */
async function treeListing(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const path = join(root, rel);
    const st = await lstat(path);
    let what = "";
    if (st.isFile()) what = createHash("sha256").update(await readFile(path)).digest("hex");
    else if (st.isSymbolicLink()) what = `-> ${await readlink(path)}`;
    out.set(rel || "/", `mode ${st.mode.toString(8)} owner ${st.uid}:${st.gid} size ${st.size} ${what}`);
    if (st.isDirectory()) for (const name of (await readdir(path)).sort()) await walk(join(rel, name));
  };
  await walk("");
  return out;
}

function differences(before: Map<string, string>, after: Map<string, string>): string[] {
  const diff: string[] = [];
  for (const [p, v] of after) if (before.get(p) !== v) diff.push(`${p}: ${before.get(p) ?? "(new)"} -> ${v}`);
  for (const p of before.keys()) if (!after.has(p)) diff.push(`${p}: removed`);
  return diff;
}

describe(`the image store is never written by a sandbox, on ${BACKEND}`, () => {
  let base: string;
  let rootfs: string;
  let pristine: Map<string, string>;

  before(async () => {
    await setUpE2E();
    base = await mkdtemp(join(tmpdir(), "matchlock-store-untouched-"));
    process.env.MATCHLOCK_IMAGES = join(base, "images");
    const r = await cli(["image", "import", BUSYBOX, join(TARBALLS, "busybox.tar")]);
    assert.equal(r.code, 0, r.stderr);
    const digests = await readdir(join(base, "images", "sha256"));
    assert.equal(digests.length, 1, `one image in the private store: ${digests.join(", ")}`);
    rootfs = join(base, "images", "sha256", digests[0]!, "rootfs");
    pristine = await treeListing(rootfs);
    for (const d of ["rw", "ro", "lower"]) await mkdir(join(base, d));
    await writeFile(join(base, "lower", "seed.txt"), "seed");
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  const launch = async (sandbox: Sandbox): Promise<Client> => {
    const client = newClient();
    await client.launch(sandbox);
    return client;
  };

  test("sandboxes with every kind of mount and the network seal leave the image's tree as it was", async () => {
    const client = await launch(
      new Sandbox(BUSYBOX)
        .allowHost("allowed.test") // the network seal: resolver, CA and trust-bundle files
        .mountHostDir("/probe/rw", join(base, "rw"))
        .mountHostDirReadonly("/probe/ro", join(base, "ro"))
        .mountMemory("/probe/mem")
        .mountOverlay("/probe/overlay", join(base, "lower"))
        .mountHostDir("/etc/probe-dir", join(base, "rw")),
    );
    try {
      // The guest changes its root too: that must stay in the sandbox.
      const r = await client.exec(
        "cat /probe/overlay/seed.txt && echo x > /probe/overlay/new && echo y > /etc/probe-written && " +
        "rm -f /bin/true && mkdir -p /workspace/deep/er && ls /probe",
      );
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, "seedmem\noverlay\nro\nrw\n");
    } finally {
      await client.close();
      await client.remove();
    }
    assert.deepEqual(differences(pristine, await treeListing(rootfs)), []);
  });

  test("a later sandbox of the image sees none of an earlier sandbox's mount points", async () => {
    const first = await launch(new Sandbox(BUSYBOX).mountHostDir("/probe-later/rw", join(base, "rw")).mountMemory("/etc/probe-later"));
    await first.close();
    await first.remove();
    const second = await launch(new Sandbox(BUSYBOX));
    try {
      const r = await second.exec("ls -d /probe-later /etc/probe-later /probe /etc/probe-dir /etc/probe-written /.matchlock/* 2>&1; test -x /bin/true && echo true-intact");
      // The agent's own mount point is the only thing under /.matchlock, in every sandbox.
      assert.equal(
        r.stdout,
        "ls: /probe-later: No such file or directory\nls: /etc/probe-later: No such file or directory\n" +
        "ls: /probe: No such file or directory\nls: /etc/probe-dir: No such file or directory\n" +
        "ls: /etc/probe-written: No such file or directory\n/.matchlock/agent\ntrue-intact\n",
      );
    } finally {
      await second.close();
      await second.remove();
    }
    assert.deepEqual(differences(pristine, await treeListing(rootfs)), []);
  });
});
