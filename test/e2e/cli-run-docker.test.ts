// `matchlock run` with Docker's conventions: its own failures exit 125 (matchlock), 126 (the
// command cannot be invoked) and 127 (not found), never mistaken for a status the command chose;
// no command runs the image's; --entrypoint, -u, -e KEY, --env-file; --rm=false prints the id
// and keeps the log; -d with -i/-t is refused by name; every command has --help.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { BUSYBOX, cli, setUpE2E } from "../helpers/e2e.js";

describe("matchlock run: Docker's conventions", () => {
  before(async () => {
    await setUpE2E();
  });

  test("125, 126, 127 say the command did not run; a status the command chose is passed through without an error", async () => {
    const notFound = await cli(["run", "--image", BUSYBOX, "nosuchcommand"]);
    assert.equal(notFound.code, 127, notFound.stderr);
    assert.equal(notFound.stderr, 'Error: "nosuchcommand": executable file not found in $PATH\n');
    const notExecutable = await cli(["run", "--image", BUSYBOX, "/etc/passwd"]);
    assert.equal(notExecutable.code, 126, notExecutable.stderr);
    assert.match(notExecutable.stderr, /"\/etc\/passwd": permission denied/);
    const directory = await cli(["run", "--image", BUSYBOX, "/tmp"]);
    assert.equal(directory.code, 126, directory.stderr);
    assert.match(directory.stderr, /"\/tmp": permission denied \(not an executable file\)/);
    for (const status of [125, 127]) {
      const own = await cli(["run", "--image", BUSYBOX, "--", "sh", "-c", `echo out; exit ${status}`]);
      assert.equal(own.code, status, own.stderr);
      assert.equal(own.stdout, "out\n");
      assert.equal(own.stderr, "", `the command's own ${status} comes with no error of matchlock's`);
    }
    const unknownImage = await cli(["run", "--image", "local/nope:1", "true"]);
    assert.equal(unknownImage.code, 125);
    assert.match(unknownImage.stderr, /^Error: image local\/nope:1 is not in the local store/);
    const badFlag = await cli(["run", "--image", BUSYBOX, "--no-such-flag", "true"]);
    assert.equal(badFlag.code, 125);
    assert.match(badFlag.stderr, /unknown option '--no-such-flag'/);
    for (const flags of [["-d", "-i"], ["-d", "-t"], ["-dit"]]) {
      const r = await cli(["run", ...flags, "--image", BUSYBOX, "sh"]);
      assert.equal(r.code, 125, flags.join(" "));
      assert.match(r.stderr, /^Error: run -d cannot be combined with -i\/--interactive or -t\/--tty/, flags.join(" "));
    }
  });

  test("no command runs the image's ENTRYPOINT + CMD; --entrypoint replaces it; none at all is 125", async () => {
    const none = await cli(["run", "--image", BUSYBOX]);
    assert.equal(none.code, 125);
    assert.match(none.stderr, /no command: the image local\/busybox:latest has no ENTRYPOINT or CMD/);
    const entry = await cli(["run", "--image", BUSYBOX, "--entrypoint", "echo"]);
    assert.equal(entry.code, 0, entry.stderr);
    assert.equal(entry.stdout, "\n");
    const withArgs = await cli(["run", "--image", BUSYBOX, "--entrypoint", "echo", "--", "hello", "two words"]);
    assert.equal(withArgs.stdout, "hello two words\n");
    const cleared = await cli(["run", "--image", BUSYBOX, "--entrypoint", ""]);
    assert.equal(cleared.code, 125);
    assert.match(cleared.stderr, /no command/);
  });

  test("-u, -w (made if missing), -e KEY=VALUE, -e KEY from the host, --env-file (comments, blank lines, later wins)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "matchlock-env-file-"));
    const file = join(dir, "app.env");
    await writeFile(file, "# a comment\n\nA=from the file\nB=file b\n  C\nQUOTED=\"kept as written\"\n");
    const r = await cli(["run", "--image", BUSYBOX, "-u", "nobody", "-w", "/made/by/run", "--env-file", file, "-e", "B=from -e", "-e", "HOSTVAR", "--",
      "sh", "-c", 'echo "$(id -u) $(pwd) [$A] [$B] [$C] [$HOSTVAR] [$QUOTED]"'], undefined, { C: "c from host", HOSTVAR: "host value" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '65534 /made/by/run [from the file] [from -e] [c from host] [host value] ["kept as written"]\n', "-w is made if missing, as Docker does");
    const badFile = await cli(["run", "--image", BUSYBOX, "--env-file", join(dir, "missing.env"), "true"]);
    assert.equal(badFile.code, 125);
    assert.match(badFile.stderr, /cannot read env file .*missing\.env/);
    await writeFile(file, "GOOD=1\nBAD NAME=2\n");
    const badLine = await cli(["run", "--image", BUSYBOX, "--env-file", file, "true"]);
    assert.equal(badLine.code, 125);
    assert.match(badLine.stderr, /invalid environment variable "BAD NAME=2" \(.*app\.env line 2\)/);
    const badUser = await cli(["run", "--image", BUSYBOX, "-u", "nosuchuser", "true"]);
    assert.equal(badUser.code, 125);
    assert.match(badUser.stderr, /nosuchuser/);
  });

  test("--rm=false prints the id on stderr and keeps the record; log shows the command's output, log -f ends at once", async () => {
    const r = await cli(["run", "--rm=false", "--image", BUSYBOX, "--", "sh", "-c", "echo to stdout; echo to stderr >&2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "to stdout\n");
    const [idLine, ...rest] = r.stderr.split("\n");
    assert.match(idLine!, /^vm-[0-9a-f]{8}$/);
    assert.deepEqual(rest, ["to stderr", ""]);
    const id = idLine!;
    assert.equal((JSON.parse((await cli(["get", id])).stdout) as { status: string }).status, "stopped");
    for (const args of [["log", id], ["log", "-f", id], ["logs", id]]) {
      const log = await cli(args);
      assert.equal(log.code, 0, log.stderr);
      assert.match(log.stdout, /to stdout\n/, args.join(" "));
      assert.match(log.stdout, /to stderr\n/, args.join(" "));
    }
    assert.equal((await cli(["rm", id])).code, 0);
    const gone = await cli(["log", id]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, new RegExp(`VM ${id} not found`));
  });

  test("--help for every command", async () => {
    const commands = ["run", "exec", "log", "list", "get", "kill", "rm", "gc", "prune", "serve", "rpc", "version", "pull", "image", "doctor", "setup"];
    for (const c of commands) {
      const r = await cli([c, "--help"]);
      assert.equal(r.code, 0, `${c} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: matchlock ${c}[ |]`), c);
    }
  });
});
