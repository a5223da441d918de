// End to end: a mount's host path is never resolved through a symlink. A sandbox with a
// read-write mount of D may plant D/sub -> /etc; a later sandbox that asks to mount D/sub (or a
// path below it) must be refused, with the link named, and must never get the host's /etc, also
// while that sandbox keeps swapping the link in and out (the engine holds what it checked, and
// each engine's bind must reach that very object).
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RPCError, Sandbox } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, cli, newClient, setUpE2E } from "../helpers/e2e.js";
import { RawSession } from "../helpers/raw-rpc.js";

describe(`host paths through symlinks are refused on ${BACKEND}`, () => {
  let base: string;
  let shared: string;

  before(async () => {
    await setUpE2E();
    base = await mkdtemp(join(tmpdir(), "matchlock-host-links-"));
    shared = join(base, "shared");
    await mkdir(join(base, "real"), { recursive: true });
    await mkdir(shared);
    await writeFile(join(base, "real", "inside.txt"), "inside");
    await symlink(join(base, "real"), join(base, "link"));
    await symlink("/etc", join(base, "etc-link"));
  });

  test("a link planted by a sandbox in its read-write mount never hands a later sandbox the host's /etc", async (t) => {
    {
      await using a = newClient();
      await a.launch(new Sandbox(BUSYBOX).mountHostDir("/workspace/d", shared));
      const planted = await a.exec("ln -s /etc /workspace/d/sub && ls -ld /workspace/d/sub");
      assert.equal(planted.exitCode, 0, planted.stderr);
    }
    // gVisor makes the guest's link a real host symlink; the micro-VM's mapped-xattr share
    // stores it as a regular file holding the target (the host sees no link at all).
    const onHost = await lstat(join(shared, "sub"));
    t.diagnostic(`the planted D/sub on the host: ${onHost.isSymbolicLink() ? "a symlink" : onHost.isFile() ? "a regular file" : "other"}`);
    assert.equal(onHost.isSymbolicLink(), BACKEND !== "microvm");

    if (!onHost.isSymbolicLink()) {
      // The micro-VM's "link" is a plain host file holding the text "/etc": mounted, it is that
      // file (a host file mount), never the host's /etc.
      await using b = newClient();
      await b.launch(new Sandbox(BUSYBOX).mountHostDirReadonly("/workspace/x", join(shared, "sub")));
      const seen = await b.exec("test -f /workspace/x && ! test -e /workspace/x/passwd && echo plain-file");
      assert.equal(seen.stdout, "plain-file\n", seen.stderr);
    }
    const refused = onHost.isSymbolicLink() ? [join(shared, "sub"), join(shared, "sub", "ssl")] : [join(shared, "sub", "ssl")];
    for (const hostPath of refused) {
      await using b = newClient();
      const err = await b.launch(new Sandbox(BUSYBOX).mountHostDirReadonly("/workspace/x", hostPath)).then(
        () => assert.fail(`a sandbox got ${hostPath} mounted`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof RPCError, String(err));
      assert.equal(err.code, -32602, err.message);
      const why = onHost.isSymbolicLink()
        ? new RegExp(`goes through the symbolic link ${join(shared, "sub")} \\(-> /etc\\)`)
        : /is not a directory/;
      assert.match(err.message, why, hostPath);
    }
  });

  test("a sandbox swapping a link onto the path while later sandboxes mount it never hands them the host's /etc", async (t) => {
    const racing = join(base, "racing");
    await mkdir(join(racing, "sub"), { recursive: true });
    await writeFile(join(racing, "sub", "mine.txt"), "mine");
    await using a = newClient();
    await a.launch(new Sandbox(BUSYBOX).mountHostDir("/workspace/d", racing));
    // As fast as the guest can: sub is the directory, then gone, then a link to /etc, then gone.
    const swapping = a.exec(
      "cd /workspace/d && ln -s /etc link && end=$(($(date +%s) + 600)); " +
        "while [ ! -e stop ] && [ $(date +%s) -lt $end ]; do mv sub dir; mv link sub; mv sub link; mv dir sub; done",
    );
    const outcomes: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        await using b = newClient();
        const launched = await b.launch(new Sandbox(BUSYBOX).mountHostDirReadonly("/workspace/x", join(racing, "sub"))).then(() => true, (e: unknown) => e);
        if (launched !== true) {
          assert.ok(launched instanceof RPCError, String(launched));
          const why = /symbolic link|changed while it was \w+|does not exist|is not a directory/.exec(launched.message);
          assert.ok(why, launched.message);
          outcomes.push(`refused (${why[0]})`);
          continue;
        }
        // On a micro-VM the guest's "link" is a plain host file holding "/etc"; mounted at its
        // moment, it is that file, which is safe too. Never the host's /etc.
        const seen = await b.exec("if [ -d /workspace/x ]; then ls /workspace/x; else echo \"file: $(cat /workspace/x)\"; fi");
        const safe = BACKEND === "microvm" ? ["mine.txt\n", "file: /etc\n"] : ["mine.txt\n"];
        assert.ok(safe.includes(seen.stdout), `a later sandbox saw ${JSON.stringify(seen.stdout)}`);
        outcomes.push(seen.stdout === "mine.txt\n" ? "its own directory" : "the plain file the guest's link is on the host");
      }
    } finally {
      // The loop ends at this file, or with sandbox a (closed at the end of this scope).
      await writeFile(join(racing, "stop"), "");
      void swapping.catch(() => {});
    }
    t.diagnostic(`later sandboxes: ${outcomes.join(", ")}`);
  });

  test("a host-made link anywhere on the path is refused, naming it; the link-free path mounts", async () => {
    const s = new RawSession();
    try {
      let id = 1;
      for (const [type, hostPath, link] of [
        ["host_fs", join(base, "link"), join(base, "link")],
        ["host_fs", join(base, "etc-link", "ssl"), join(base, "etc-link")],
        ["overlay", join(base, "link"), join(base, "link")],
      ] as const) {
        const r = await s.call("create", { image: BUSYBOX, vfs: { mounts: { "/workspace/x": { type, host_path: hostPath } } } }, id++);
        assert.equal(r.error?.code, -32602, JSON.stringify(r));
        assert.match(r.error.message, new RegExp(`symbolic link ${link} \\(->`), hostPath);
      }
    } finally {
      s.proc.stdin.end();
      await s.exited;
    }
    await using c = newClient();
    await c.launch(new Sandbox(BUSYBOX).mountHostDirReadonly("/workspace/x", join(base, "real")));
    assert.equal((await c.exec("cat /workspace/x/inside.txt")).stdout, "inside");
  });

  test("matchlock run -v through a link is refused the same way", async () => {
    const r = await cli(["run", "--image", BUSYBOX, "-v", `${join(base, "etc-link")}:/data:ro`, "--", "cat", "/data/hostname"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`symbolic link ${join(base, "etc-link")} \\(-> /etc\\)`));
    assert.doesNotMatch(r.stdout, /\S/, "nothing of the host's /etc was printed");
  });

  // base holds only the test's own files, and links, which rm removes without following.
  after(() => rm(base, { recursive: true, force: true }));
});
