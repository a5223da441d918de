// End to end: a small write (one write_file, in place) and a streamed one (temporary file renamed
// over the target) give the same result on what is already at the target: a symlink is followed,
// an existing file keeps its owner and group, and a name of NAME_MAX bytes works. On a real
// sandbox (gVisor or micro-VM, from $MATCHLOCK_BACKEND).
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { Sandbox, type Client } from "../../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../helpers/e2e.js";

type Write = (client: Client, path: string, content: string, mode?: number) => Promise<unknown>;

const WAYS: Array<[string, Write]> = [
  ["in place", (client, path, content, mode) => client.writeFile(path, content, { mode })],
  ["streamed", (client, path, content, mode) => client.writeFile(path, Readable.from([Buffer.from(content)]), { mode })],
];

describe(`writes over existing targets on a ${BACKEND} sandbox`, () => {
  let client: Client;

  before(async () => {
    await setUpE2E();
    client = newClient();
    await client.launch(new Sandbox(BUSYBOX));
  });
  after(async () => {
    await client.close();
    await client.remove();
  });

  const sh = async (script: string) => {
    const r = await client.exec(script);
    assert.equal(r.exitCode, 0, `${script}: ${r.stderr}`);
    return r.stdout;
  };

  for (const [way, write] of WAYS) {
    const dir = `/work/${way.replace(" ", "-")}`;

    test(`${way}: a symlink at the target is followed; the link stays a link`, async () => {
      await sh(`mkdir -p ${dir}/real && echo old > ${dir}/real/file && ln -s real/file ${dir}/link && ln -s ${dir}/link ${dir}/chain && ln -s real/new ${dir}/dangling`);
      await write(client, `${dir}/chain`, "through two links\n");
      await write(client, `${dir}/dangling`, "made at the link's target\n");
      assert.equal(await sh(`for l in chain link dangling; do readlink ${dir}/$l; done`), `${dir}/link\nreal/file\nreal/new\n`);
      assert.equal(await sh(`cat ${dir}/real/file ${dir}/real/new`), "through two links\nmade at the link's target\n");
      assert.equal(await sh(`ls -A ${dir} ${dir}/real`), `${dir}:\nchain\ndangling\nlink\nreal\n\n${dir}/real:\nfile\nnew\n`);
    });

    test(`${way}: an existing file keeps its owner and group, takes the requested mode; a new one is root's`, async () => {
      await sh(`mkdir -p ${dir} && echo old > ${dir}/owned && chown 1234:2345 ${dir}/owned && chmod 600 ${dir}/owned`);
      await write(client, `${dir}/owned`, "new\n", 0o640);
      await write(client, `${dir}/fresh`, "new\n", 0o604);
      assert.equal(await sh(`stat -c '%u:%g %a %s' ${dir}/owned ${dir}/fresh`), "1234:2345 640 4\n0:0 604 4\n");
    });

    test(`${way}: a file name of 255 bytes (NAME_MAX), multibyte characters included`, async () => {
      const ascii = "a".repeat(255);
      const utf8 = "é".repeat(127) + "z"; // 2 × 127 + 1 = 255 bytes
      assert.equal(Buffer.byteLength(utf8), 255);
      await write(client, `${dir}/long/${ascii}`, "ascii\n");
      await write(client, `${dir}/long/${utf8}`, "utf8\n");
      assert.equal((await client.readFile(`${dir}/long/${ascii}`)).toString(), "ascii\n");
      assert.equal((await client.readFile(`${dir}/long/${utf8}`)).toString(), "utf8\n");
      assert.equal(await sh(`ls -A ${dir}/long | wc -l`), "2\n", "no temporary file left");
    });
  }
});
