// `matchlock rpc`: JSON-RPC 2.0 over NDJSON on stdio (protocol spec section 1).
// - one line per message; an oversized or malformed line gets an error reply and is skipped;
// - `create` runs alone: it waits for in-flight requests, and requests read while it runs wait
//   for it, in order (the reader goes on, so `cancel`, EOF and signals reach the create at once;
//   a cancelled create stops what it made and removes its record); `close`
//   stops the sandbox at once (in-flight calls then fail) and ends the session;
// - every other method runs concurrently; a request's notifications precede its response;
// - the input messages of exec_pipe/exec_tty (stdin, stdin_eof, resize) are handled as they are
//   read, in order, and never answered; a full stdin queue stops the reading until it drains;
// - after `close`, the next line (or EOF) ends the session; EOF, SIGTERM and SIGINT tear the
//   sandbox down (a create in progress is aborted and undone), so a client that dies never
//   leaves one behind.
import type { Readable, Writable } from "node:stream";
import { ErrorCode, MAX_REQUEST_LINE, type RequestId } from "../../protocol/rpc.js";
import { lineText } from "../../protocol/base64.js";
import { parseWriteChunkRequest } from "../../protocol/file-chunk-lines.js";
import { STOP_READING, consumeLines, idOfSkippedLine, type LineEvent, type LineVerdict } from "./line-reader.js";
import { MessageWriter } from "./writer.js";
import { Session, type SandboxFinder } from "./session.js";
import { toWireError } from "./errors.js";
import { traceStartup } from "../trace/startup.js";
import { INPUT_METHODS, Method } from "../../protocol/methods.js";
import type { SandboxHub } from "../resident/sandbox-hub.js";
import type { WarmPool } from "../resident/warm-pool.js";

export interface ServeOptions {
  input: Readable;
  output: Writable;
  log: (line: string) => void;
  maxLine?: number;
  /**
   * Whether SIGTERM/SIGINT tear this session's sandbox down and exit the process (default true).
   * `matchlock serve` runs many sessions in one process and handles the signals itself.
   */
  handleSignals?: boolean;
  /** Told the session this connection is served by (the resident engine tracks its sandboxes). */
  onSession?: (session: Session) => void;
  /** The resident engine's sandboxes, shared by its sessions (attach, detach). */
  hub?: SandboxHub;
  /** The engine's other sandboxes, for `port_forward` with `vm_id` (the resident engine's). */
  findSandbox?: SandboxFinder;
  /** The resident engine's warm spare (none: every create boots its sandbox). */
  warmPool?: WarmPool;
}

export async function serve(opts: ServeOptions): Promise<void> {
  const writer = new MessageWriter(opts.output);
  const session = new Session(writer, opts.log, undefined, opts.findSandbox, opts.hub, opts.warmPool);
  opts.onSession?.(session);
  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  };

  const stopOnSignal = (signal: NodeJS.Signals) => {
    opts.log(`received ${signal}: stopping the sandbox`);
    void session.teardown("engine received " + signal).finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  const handleSignals = opts.handleSignals ?? true;
  if (handleSignals) {
    process.once("SIGTERM", stopOnSignal);
    process.once("SIGINT", stopOnSignal);
  }
  writer.onBroken(() => {
    opts.log("stdout is gone: stopping the sandbox");
    void session.teardown("the client stopped reading");
  });

  let ending = false;
  // Requests that must wait (a create waits for those in flight; everything but `cancel` waits
  // for a create) are chained here in arrival order, so the reader never stops: EOF, a server
  // stop or a `cancel` is seen at once and aborts the create.
  let queue: Promise<void> | undefined;
  // Ids of queued requests that have not started, and those of them a `cancel` reached first:
  // they are answered "cancelled" when their turn comes instead of running (a create queued
  // behind others must not boot a sandbox nobody waits for).
  const notStarted = new Set<RequestId>();
  const cancelledBeforeStart = new Set<RequestId>();
  /** Queues request `id`'s job behind the others; it counts as not started until its turn. */
  const enqueue = (id: RequestId | null | undefined, job: () => unknown) => {
    if (id !== undefined && id !== null) notStarted.add(id);
    const next: Promise<void> = (queue ?? Promise.resolve()).then(job).then(() => {}, () => {}).finally(() => {
      if (queue === next) queue = undefined;
    });
    queue = next;
  };
  /**
   * Runs one request; returns a promise when the requests after it must wait for it (a create,
   * a close). Not async: an exec must not cost the reader a pause and a resume.
   */
  const dispatch = (method: string, params: unknown, id: RequestId | null | undefined): Promise<unknown> | undefined => {
    if (session.closed) return undefined; // queued behind a `close`: the session is over, as for the line after it
    if (id !== undefined && id !== null && notStarted.delete(id) && cancelledBeforeStart.delete(id)) {
      writer.error(id, ErrorCode.CANCELLED, "context canceled", "cancelled");
      return undefined;
    }
    if (ending) {
      writer.error(id, ErrorCode.CANCELLED, "cancelled: the session ended before this request ran", "cancelled");
      return undefined;
    }
    if (method === Method.CREATE) {
      const created = respond(session, writer, method, params, id);
      track(created);
      return created; // the queue behind it waits for the create
    }
    if (method === Method.CLOSE) {
      // Stop the sandbox first, so in-flight calls end now (with an error) instead of holding
      // the close up; then let them reply.
      return respond(session, writer, method, params, id).then(() => Promise.allSettled([...inflight]));
    }
    track(respond(session, writer, method, params, id));
    return undefined;
  };

  /** One request line; a promise it returns holds the reading of the next line until it settles. */
  const onLine = (event: LineEvent): LineVerdict => {
    if (session.closed) return STOP_READING; // the line after `close` ends the session unprocessed
    if ("oversized" in event) {
      writer.error(idOfSkippedLine(event.head, event.tail), ErrorCode.INVALID_REQUEST,
        `request line of ${event.oversized} bytes exceeds the ${opts.maxLine ?? MAX_REQUEST_LINE}-byte limit (a write_file carries at most about 7.5 MB)`);
      return undefined;
    }
    if (event.line.length === 0 || event.line.every((b) => b === 32 || b === 9 || b === 13)) return undefined;
    // File data arrives as megabyte lines: those of the one known shape skip JSON.parse.
    const fast = parseWriteChunkRequest(event.line);
    const parsed: Parsed = fast ? { ok: true, ...fast } : parseRequest(event.line);
    if (!parsed.ok) {
      writer.error(parsed.id, parsed.code, parsed.message);
      return undefined;
    }
    const { method, params, id } = parsed;
    traceStartup(`request ${method}`);
    if (INPUT_METHODS.has(method)) {
      // Stdin, EOF and resizes of a running exec_pipe/exec_tty: in order, never answered; a full
      // stdin queue holds the reading of the next line (back-pressure on the client, as upstream).
      if (queue) {
        enqueue(undefined, () => session.input(method, params));
        return undefined;
      }
      return session.input(method, params);
    }
    if (method === Method.CANCEL) {
      // Never queued behind others. A request still waiting in the queue is marked and answered
      // "cancelled" when its turn comes; one that runs is stopped by the session. A create read
      // in the same chunk starts from the queue's microtasks, so the answer waits one turn of the
      // event loop for the requests read before it to start. Reading waits for the answer.
      return new Promise((started) => setImmediate(started)).then(() => {
        const target = (params as { id?: unknown } | null)?.id; // looked up only; the session validates
        if (typeof target === "number" && notStarted.has(target) && !cancelledBeforeStart.has(target)) {
          cancelledBeforeStart.add(target);
          writer.result(id, { cancelled: true });
          return undefined;
        }
        return respond(session, writer, method, params, id);
      });
    }
    if (method === Method.CREATE) {
      // Runs alone, like upstream: it starts once the requests before it are done.
      const earlier = [...inflight];
      enqueue(id, async () => {
        await Promise.allSettled(earlier);
        await dispatch(method, params, id);
      });
      return undefined;
    }
    if (queue) {
      enqueue(id, () => dispatch(method, params, id));
      return undefined;
    }
    return dispatch(method, params, id);
  };

  try {
    await consumeLines(opts.input, opts.maxLine ?? MAX_REQUEST_LINE, onLine);
  } finally {
    ending = true;
    process.removeListener("SIGTERM", stopOnSignal);
    process.removeListener("SIGINT", stopOnSignal);
    // EOF or close: stop the sandbox first (a create in progress is aborted and undone), so
    // in-flight calls fail fast instead of hanging; queued requests are answered "cancelled".
    await session.teardown("the client closed the session");
    await queue; // a create runs inside the queue: this waits for it too
    await Promise.allSettled([...inflight]);
    await writer.flush();
  }
}

type Parsed =
  | { ok: true; method: string; params: unknown; id: RequestId | null | undefined }
  | { ok: false; id: RequestId | null | undefined; code: number; message: string };

function parseRequest(line: Buffer): Parsed {
  let raw: unknown;
  try {
    raw = JSON.parse(lineText(line));
  } catch {
    return { ok: false, id: undefined, code: ErrorCode.PARSE_ERROR, message: "Parse error" };
  }
  // Batches, scalars and a bad top-level id are parse errors, as upstream (spec 1.2, 1.3).
  // Checked by hand, not by a schema: this runs for every request and is on the exec round
  // trip, where a schema parse cost several times these few tests.
  // A request with no method key at all is a parse error too.
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !("method" in raw)) {
    return { ok: false, id: undefined, code: ErrorCode.PARSE_ERROR, message: "Parse error" };
  }
  const { method, params, id } = raw as { method?: unknown; params?: unknown; id?: unknown };
  if (!isRequestId(id)) return { ok: false, id: undefined, code: ErrorCode.PARSE_ERROR, message: "Parse error" };
  if (typeof method !== "string") {
    return { ok: false, id, code: ErrorCode.INVALID_REQUEST, message: "Invalid request: method must be a string" };
  }
  return { ok: true, method, params, id };
}

/** A request id this engine accepts: absent, null, or an integer 0..2^53-1 (JSON has no NaN). */
function isRequestId(id: unknown): id is RequestId | null | undefined {
  return id === undefined || id === null || (Number.isSafeInteger(id) && (id as number) >= 0);
}

async function respond(session: Session, writer: MessageWriter, method: string, params: unknown, id: RequestId | null | undefined) {
  try {
    const result = await session.handle(method, params, id);
    writer.result(id, result);
  } catch (err) {
    const { code, message, kind } = toWireError(err, method);
    writer.error(id, code, message, kind);
  }
}
