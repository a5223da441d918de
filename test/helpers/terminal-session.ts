// A command on a real pseudo-terminal, as a user at a terminal runs it: a python3 relay opens the
// pty (of a given size), starts the command with the pty as its controlling terminal, and then
// types what we send and resizes the pty when told; everything the command prints comes back.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

const RELAY = `
import base64, fcntl, json, os, pty, select, struct, sys, termios
rows, cols = int(sys.argv[1]), int(sys.argv[2])
pid, master = pty.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])
def size(r, c):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))
size(rows, cols)
pending = b""
fds = [0, master]
while master in fds:
    for fd in select.select(fds, [], [])[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if fd == master:
            if not data:
                fds.remove(master)
            else:
                os.write(1, data)
            continue
        if not data:
            fds.remove(0)
            continue
        pending += data
        while b"\\n" in pending:
            line, pending = pending.split(b"\\n", 1)
            msg = json.loads(line)
            if "send" in msg:
                os.write(master, base64.b64decode(msg["send"]))
            if "resize" in msg:
                size(*msg["resize"])
status = os.waitpid(pid, 0)[1]
sys.stderr.write("exit %d\\n" % os.waitstatus_to_exitcode(status))
`;

export class TerminalSession {
  private readonly proc: ChildProcessWithoutNullStreams;
  private output = "";
  private relayErr = "";
  private readonly waiters = new Set<() => void>();
  /** The command's exit code once it ended (negative: killed by that signal). */
  readonly exited: Promise<number>;

  /** Starts `argv` on a `rows` x `cols` terminal. */
  constructor(argv: string[], size: { rows: number; cols: number } = { rows: 24, cols: 80 }) {
    this.proc = spawn("python3", ["-c", RELAY, String(size.rows), String(size.cols), ...argv], { stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stdout.on("data", (d: Buffer) => {
      this.output += d.toString("latin1");
      for (const w of this.waiters) w();
    });
    this.proc.stderr.on("data", (d: Buffer) => (this.relayErr += d.toString()));
    this.exited = new Promise((resolve, reject) => this.proc.on("close", () => {
      const m = /exit (-?\d+)\n$/.exec(this.relayErr);
      if (m) resolve(Number(m[1]));
      else reject(new Error(`the terminal relay failed: ${this.relayErr}\noutput: ${this.output}`));
    }));
    // kill() ends it without an exit code: that is for whoever awaits it to see, not a crash.
    this.exited.catch(() => undefined);
  }

  /** Everything the command printed so far (terminal output: lines end in \r\n). */
  get printed(): string {
    return this.output;
  }

  /** Types these bytes. */
  type(text: string): void {
    this.proc.stdin.write(`${JSON.stringify({ send: Buffer.from(text, "latin1").toString("base64") })}\n`);
  }

  resize(rows: number, cols: number): void {
    this.proc.stdin.write(`${JSON.stringify({ resize: [rows, cols] })}\n`);
  }

  /** Waits until the output after `from` matches `pattern`; returns the offset just past the match. */
  waitFor(pattern: RegExp, from = 0, ms = 120_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(this.output.slice(from));
        if (!m) return;
        done();
        resolve(from + m.index + m[0].length);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(pattern)} in the terminal's output: ${JSON.stringify(this.output.slice(from))}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}
