// `matchlock run -i` and `-t`: the command's stdin is ours, and it can run on a terminal.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { BACKEND, BUSYBOX, cli, setUpE2E } from "../helpers/e2e.js";

describe(`matchlock run -i / -t, ${BACKEND}`, () => {
  before(async () => {
    await setUpE2E();
  });

  test("-i: our stdin is the command's, and its end is EOF; without -i the command reads nothing", async () => {
    const r = await cli(["run", "-i", "--image", BUSYBOX, "--", "sh", "-c", "tr a-z A-Z; echo eof"], "hello\nworld\n");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "HELLO\nWORLD\neof\n");
    const without = await cli(["run", "--image", BUSYBOX, "--", "sh", "-c", "cat; echo eof"], "not passed\n");
    assert.equal(without.stdout, "eof\n");
  });

  test("-t: a terminal (24 x 80 when ours is not one), stdout and stderr as one stream", async () => {
    const r = await cli(["run", "-t", "--image", BUSYBOX, "--", "sh", "-c", "tty; stty size; echo err >&2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\n24 80\r\nerr\r\n$/);
    assert.equal(r.stderr, "");
  });

  test("-it: lines typed into a shell on the terminal, its exit code ours", async () => {
    const r = await cli(["run", "-it", "--image", BUSYBOX, "--", "sh"], "echo from-$((6*7))\nexit 3\n");
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /from-42\r\n/);
  });
});
