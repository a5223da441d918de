// The image's ENTRYPOINT + CMD started at create (`launch_entrypoint`), as `docker run -d` would:
// detached, with empty stdin, its output appended to the sandbox's log. A command that fails at
// once fails the create; one that runs on is the sandbox's service until it ends or the sandbox stops.
import type { ExecSink } from "../agent/connection.js";
import type { ImageConfig } from "../image/types.js";
import type { ExecOptions, ExecOutcome } from "./sandbox.js";
import { shellQuote } from "./shell-quote.js";
import { CappedLogAppender } from "./vm-log.js";
import { settings } from "../../settings/settings.js";
import { EngineError, type ErrorKind } from "../../protocol/errors.js";

/**
 * An entrypoint still running after this long has started; one that failed before it fails the
 * create (the protocol's 500 ms; a loaded host's tests need longer to see a failure for certain).
 */
function earlyExitMs(): number {
  const ms = Number(settings.entrypointGraceMs.read());
  return Number.isFinite(ms) && ms > 0 ? ms : 500;
}
/** How much of a failed entrypoint's last output its error quotes. */
const QUOTED_OUTPUT_BYTES = 2048;

export class EntrypointFailedError extends EngineError {
  readonly kind: ErrorKind = "failed";
}

type Exec = (command: string, opts: ExecOptions, sink: ExecSink) => Promise<ExecOutcome>;

/** Starts ENTRYPOINT + CMD (nothing when the image names no command); throws if it fails at once. */
export async function startEntrypoint(exec: Exec, image: ImageConfig, logPath: string): Promise<void> {
  const argv = [...image.entrypoint, ...image.cmd];
  if (argv.length === 0) return;
  const log = await CappedLogAppender.open(logPath, "entrypoint");
  let last = Buffer.alloc(0);
  const append = (d: Buffer) => {
    last = Buffer.concat([last, d]).subarray(-QUOTED_OUTPUT_BYTES);
    return log.write(d);
  };
  const ended = exec(argv.map(shellQuote).join(" "), {}, { stdout: append, stderr: append })
    .then(async (out) => {
      await log.note(`entrypoint exited with code ${out.exitCode}`);
      return out;
    })
    .catch(async (err: Error) => {
      await log.note(`entrypoint failed: ${err.message}`);
      return err;
    })
    .finally(() => log.close());
  let timer: NodeJS.Timeout | undefined;
  const early = await Promise.race([ended, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), earlyExitMs())))]);
  clearTimeout(timer);
  const why = early instanceof Error ? early.message : early && early.exitCode !== 0 ? `exit code ${early.exitCode}` : undefined;
  if (why === undefined) return;
  const output = last.toString("utf8").trim();
  throw new EntrypointFailedError(`start image entrypoint: ${why}${output ? `; its output ended with: ${output}` : ""}`);
}
