// End to end: a guest root cannot leave set-id files in a read-write host mount. From inside,
// as root, it copies an executable in and makes it setuid root, makes one setgid to another
// group, a setgid directory, and a file chowned to another user; on the host, nothing under
// the mount has a set-user-ID or set-group-ID bit. gVisor: the host syscalls that would set
// one fail (runsc runs under host/setid-guard); the micro-VM: QEMU's mapped-xattr 9p keeps
// the guest's modes and owners in extended attributes, and the host files stay private to
// QEMU's user (owner-only modes, QEMU's owner), so there the guest's chown does not reach the
// host either.
import assert from "node:assert/strict";
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

const SETID = 0o6000;

describe(`no set-id files reach the host through a read-write mount, on ${BACKEND}`, () => {
  let client: Client;
  let dir: string;

  before(async () => {
    await setUpE2E();
    dir = await mkdtemp(join(tmpdir(), "matchlock-setid-"));
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX).mountHostDir("/w", dir));
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test("setuid-root, setgid and chowned files made by the guest's root are not set-id on the host", async () => {
    const r = await client.exec(
      "cd /w && id -u && cp /bin/busybox suid && chown 0:0 suid; chmod 4755 suid; chmod u+s suid; " +
      "cp /bin/busybox sgid && chown 0:1000 sgid; chmod 2755 sgid; " +
      "mkdir gdir && chmod 2777 gdir; touch other && chown 4242:4343 other; chmod 6755 other; ls /w",
    );
    assert.equal(r.stdout, "0\ngdir\nother\nsgid\nsuid\n", r.stderr);
    for (const name of await readdir(dir)) {
      const st = await lstat(join(dir, name));
      assert.equal(st.mode & SETID, 0, `${name} on the host: mode ${st.mode.toString(8)}, owner ${st.uid}:${st.gid}`);
    }
    if (BACKEND === "microvm") {
      const other = await lstat(join(dir, "other"));
      assert.notEqual(other.uid, 4242, "the guest's chown stays in the 9p share's attributes");
      assert.equal(other.mode & 0o077, 0, `owner-only on the host: ${other.mode.toString(8)}`);
    }
  });
});
