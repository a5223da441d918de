// End to end: symlinks inside mounted host directories never take the guest (exec) or the file
// RPCs outside the mounted directory on the host. Every link is resolved inside the sandbox,
// against the guest's own tree; these tests plant every kind of escaping link (absolute,
// relative "..", guest-made, swapped in by the host while the guest works, directory links)
// and check that the host's files outside the mount are neither read nor changed.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, writeFile, lstat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

const SECRET = `HOST-SECRET-${randomBytes(8).toString("hex")}`;
const MARK = `matchlock-escape-${randomBytes(6).toString("hex")}`;
/** Links that point out of the mounted directory, by name. */
const ESCAPING_LINKS = ["abs-etc", "abs-outside", "rel-outside", "deep-up"];

/**
 * The micro-VM serves writable shares with QEMU's mapped-xattr model, which reads a link's
 * target from a file it opens with O_NOFOLLOW: a link made on the host is ELOOP in the guest
 * (a known limit, in docs/limits.md). Links the guest makes, and links in read-only shares, work.
 */
const hostLinksWork = (mount: string) => BACKEND !== "microvm" || mount === "ro";

/** Every file under `dir` with its content (symlinks as their target), for before/after comparison. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(entry.parentPath, entry.name);
    out[p] = entry.isFile() ? await readFile(p, "utf8") : entry.isDirectory() ? "<dir>" : `<${(await lstat(p)).mode.toString(8)}>`;
  }
  return out;
}

describe(`symlinks in host mounts cannot reach outside them on ${BACKEND}`, () => {
  let client: Client;
  let base: string;
  let outside: string;
  let shared: string;
  let before_: Record<string, string>;

  /** What the host must still look like: the directory beside the mounts, and /etc. */
  async function assertHostUntouched(): Promise<void> {
    assert.deepEqual(await snapshot(outside), before_, "files outside the mount changed on the host");
    assert.equal(existsSync(join("/etc", MARK)), false, "a guest write reached the host's /etc");
    assert.equal(existsSync(join(base, MARK)), false, "a guest write reached the mount's parent on the host");
  }

  before(async () => {
    await setUpE2E();
    base = await mkdtemp(join(tmpdir(), "matchlock-symlinks-"));
    outside = join(base, "outside");
    await mkdir(join(outside, "sub"), { recursive: true });
    await writeFile(join(outside, "secret.txt"), SECRET);
    await writeFile(join(outside, "sub", "secret.txt"), SECRET);
    // The same links in a read-write, a read-only and an overlay mount.
    for (const name of ["shared", "ro", "ov"]) {
      const dir = join(base, name);
      await mkdir(join(dir, "sub"), { recursive: true });
      await writeFile(join(dir, "sub", "inside.txt"), "inside");
      await symlink("/etc", join(dir, "abs-etc"));
      await symlink(outside, join(dir, "abs-outside"));
      await symlink("../outside", join(dir, "rel-outside"));
      await symlink(`../../../../../../../../..${outside}`, join(dir, "deep-up")); // ".." past "/" stays at "/"
      await symlink("../outside/secret.txt", join(dir, "rel-secret"));
      await symlink(join(outside, "secret.txt"), join(dir, "abs-secret"));
      await symlink("sub", join(dir, "inner")); // a link that stays inside: must keep working
    }
    shared = join(base, "shared");
    before_ = await snapshot(outside);
    client = newClient();
    await client.launch(
      new Sandbox(BUSYBOX)
        .mountHostDir("/workspace/shared", shared)
        .mountHostDirReadonly("/workspace/ro", join(base, "ro"))
        .mountOverlay("/workspace/ov", join(base, "ov")),
    );
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await rm(base, { recursive: true, force: true });
  });

  test("links that stay inside the mount work, in exec and the file RPCs", async () => {
    for (const m of ["shared", "ro", "ov"]) {
      const p = `/workspace/${m}/inner/inside.txt`;
      if (!hostLinksWork(m)) {
        assert.match((await client.exec(`cat ${p}`)).stderr, /Too many levels of symbolic links/);
        await assert.rejects(client.readFile(p), (err: unknown) => err instanceof RPCError && err.isFileError());
        continue;
      }
      assert.equal((await client.exec(`cat ${p}`)).stdout, "inside");
      assert.equal((await client.readFile(p)).toString(), "inside");
      assert.deepEqual((await client.listFiles(`/workspace/${m}/inner`)).map((f) => f.name), ["inside.txt"]);
    }
  });

  test("exec: planted absolute, relative and directory links resolve inside the guest", async () => {
    const lines: string[] = [];
    for (const m of ["shared", "ro", "ov"]) {
      const d = `/workspace/${m}`;
      lines.push(`cat ${d}/rel-secret ${d}/abs-secret`, `echo PWNED >> ${d}/rel-secret`, `echo PWNED > ${d}/abs-secret`);
      for (const l of ESCAPING_LINKS) {
        lines.push(
          `cat ${d}/${l}/secret.txt ${d}/${l}/sub/secret.txt`, `ls -la ${d}/${l}/ ${d}/${l}/sub/`,
          `echo PWNED > ${d}/${l}/${MARK}`, `echo PWNED >> ${d}/${l}/secret.txt`, `mkdir ${d}/${l}/${MARK}.d`,
          `chmod 777 ${d}/${l}/secret.txt`, `rm -f ${d}/${l}/sub/secret.txt`, `mv ${d}/${l}/secret.txt ${d}/stolen-${l}`,
        );
      }
    }
    const r = await client.exec(lines.map((l) => `${l} 2>&1`).join("; ") + "; echo finished");
    assert.match(r.stdout, /finished\n$/);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), "the guest read a host file outside the mount");
    // The absolute link to /etc is the guest's own /etc.
    const guestPasswd = (await client.exec("cat /etc/passwd")).stdout;
    for (const m of ["shared", "ro", "ov"].filter(hostLinksWork)) {
      assert.equal((await client.exec(`cat /workspace/${m}/abs-etc/passwd`)).stdout, guestPasswd, m);
    }
    await assertHostUntouched();
  });

  test("file RPCs: readFile, writeFile and listFiles through the same links stay inside the guest", async () => {
    const mounts = ["/workspace/shared", "/workspace/ro", "/workspace/ov"];
    // Reads and listings first: writes below create the links' targets inside the guest.
    for (const d of mounts) {
      for (const p of [`${d}/rel-secret`, `${d}/abs-secret`, ...ESCAPING_LINKS.flatMap((l) => [`${d}/${l}/secret.txt`, `${d}/${l}/sub/secret.txt`])]) {
        const content = await client.readFile(p).then((b) => b.toString(), (err: unknown) => {
          assert.ok(err instanceof RPCError && err.isFileError(), `${p}: ${String(err)}`);
          return "";
        });
        assert.ok(!content.includes(SECRET), `readFile ${p} read the host's file outside the mount`);
      }
      for (const l of ESCAPING_LINKS.filter((l) => l !== "abs-etc")) {
        const names = await client.listFiles(`${d}/${l}`).then((fs) => fs.map((f) => f.name), (err: unknown) => {
          assert.ok(err instanceof RPCError && err.isFileError(), `${d}/${l}: ${String(err)}`);
          return [] as string[];
        });
        assert.ok(!names.includes("secret.txt"), `listFiles ${d}/${l} listed the host directory outside the mount`);
      }
    }
    for (const d of mounts) {
      const targets = [`${d}/rel-secret`, `${d}/abs-secret`];
      for (const l of ESCAPING_LINKS) targets.push(`${d}/${l}/${MARK}`, `${d}/${l}/secret.txt`, `${d}/${l}/sub/secret.txt`, `${d}/${l}/new/dir/${MARK}`);
      for (const p of targets) {
        await client.writeFile(p, "PWNED").catch((err: unknown) => assert.ok(err instanceof RPCError && err.isFileError(), `${p}: ${String(err)}`));
      }
    }
    await assertHostUntouched();
  });

  test("links the guest makes itself lead nowhere outside either", async () => {
    const d = "/workspace/shared";
    const made = await client.exec(
      `ln -s ${outside} ${d}/g-abs && ln -s ../outside ${d}/g-rel && ln -s /etc ${d}/g-etc && ln -s ../../../../../../.. ${d}/g-root && ` +
      `ln -s ${outside}/secret.txt ${d}/g-secret && mkdir ${d}/g-dir && ln -s ../../outside ${d}/g-dir/up && echo made`,
    );
    assert.equal(made.stdout, "made\n", made.stderr);
    const attack = ["g-abs", "g-rel", "g-etc", "g-root", "g-dir/up"].flatMap((l) => [
      `cat ${d}/${l}/secret.txt`, `echo PWNED > ${d}/${l}/${MARK}`, `echo PWNED >> ${d}/${l}/secret.txt`, `rm -f ${d}/${l}/sub/secret.txt`,
    ]);
    const r = await client.exec([...attack, `cat ${d}/g-secret`, `echo PWNED > ${d}/g-secret`].map((l) => `${l} 2>&1`).join("; ") + "; echo finished");
    assert.match(r.stdout, /finished\n$/);
    assert.ok(!r.stdout.includes(SECRET));
    for (const p of [`${d}/g-secret`, `${d}/g-abs/secret.txt`, `${d}/g-rel/sub/secret.txt`, `${d}/g-dir/up/secret.txt`]) {
      const content = await client.readFile(p).then((b) => b.toString(), () => "");
      assert.ok(!content.includes(SECRET), p);
      await client.writeFile(p, "PWNED").catch(() => undefined);
    }
    await assertHostUntouched();
  });

  test("a directory the host swaps for an escaping link while the guest works in it", async () => {
    const swap = join(shared, "swap");
    await mkdir(swap);
    await writeFile(join(swap, "a.txt"), "real");
    // The guest hammers the directory by path, with exec and with the file RPCs, while the host
    // keeps replacing it with links to the directory outside (absolute and relative) and back.
    const guestLoop = client.exec(
      "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo PWNED-$i > /workspace/shared/swap/g$i; cat /workspace/shared/swap/secret.txt /workspace/shared/swap/sub/secret.txt; " +
      "rm -f /workspace/shared/swap/sub/secret.txt; done 2>&1; echo finished",
    );
    let done = false;
    const rpcLoop = (async () => {
      let leaked = false;
      for (let i = 0; !done; i++) {
        await client.writeFile(`/workspace/shared/swap/r${i}`, "PWNED").catch(() => undefined);
        const got = await client.readFile("/workspace/shared/swap/secret.txt").then((b) => b.toString(), () => "");
        if (got.includes(SECRET)) leaked = true;
      }
      return leaked;
    })();
    let swaps = 0;
    let aside = 0;
    // The guest's writeFile creates missing parents, so it may re-make "swap" at any moment:
    // whatever is in the way is parked too.
    const put = async (make: () => Promise<void>) => {
      for (;;) {
        try {
          return await make();
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== "EEXIST" && code !== "ENOTEMPTY") throw err;
          await rename(swap, join(shared, `in-the-way-${aside++}`)).catch(() => undefined);
        }
      }
    };
    const hostLoop = (async () => {
      while (!done) {
        const parked = join(shared, `parked-${swaps}`);
        await rename(swap, parked);
        await put(() => symlink(swaps % 2 ? outside : "../outside", swap));
        await new Promise((r) => setTimeout(r, 5));
        await rm(swap, { recursive: true, force: true });
        await put(() => rename(parked, swap));
        swaps++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let r;
    try {
      r = await guestLoop;
    } finally {
      done = true;
    }
    const [leaked] = await Promise.all([rpcLoop, hostLoop]);
    assert.ok(swaps > 0, "the host never swapped the directory");
    assert.match(r.stdout, /finished\n$/);
    assert.ok(!r.stdout.includes(SECRET), "the guest read through a link the host swapped in");
    assert.equal(leaked, false, "readFile read through a link the host swapped in");
    await assertHostUntouched();
  });

  test("the mount's own directory swapped for a link on the host: the guest stays in the directory it was given", async () => {
    const moved = join(base, "shared-moved");
    await rename(shared, moved);
    await symlink(outside, shared);
    try {
      const r = await client.exec(`echo PWNED > /workspace/shared/${MARK}; cat /workspace/shared/secret.txt 2>&1; ls /workspace/shared 2>&1`);
      assert.ok(!r.stdout.includes(SECRET));
      await client.writeFile(`/workspace/shared/${MARK}-rpc`, "PWNED").catch(() => undefined);
      const names = (await client.listFiles("/workspace/shared")).map((f) => f.name);
      assert.ok(!names.includes("secret.txt"), `the guest saw the host directory swapped in: ${names.join(" ")}`);
      assert.ok(existsSync(join(moved, MARK)), "the guest's write did not land in its own directory");
      await assertHostUntouched();
    } finally {
      await rm(shared);
      await rename(moved, shared);
    }
  });
});
