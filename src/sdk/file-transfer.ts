// Client side of the chunked file-transfer extension (docs/protocol-extensions.md): files
// move as a sequence of chunk requests with a small, fixed number in flight, so a transfer of
// any size holds at most WINDOW × CHUNK_BYTES of file data in the SDK and in the engine.
import { Base64Data, Base64Text } from "../protocol/base64.js";
import { ErrorCode } from "../protocol/rpc.js";
import { MatchlockError, RPCError, TimeoutError } from "./errors.js";
import type { JsonObject, Transport } from "./transport.js";
import type { CallOptions } from "./types.js";
import { decodeBase64 } from "./wire.js";
import { Method } from "../protocol/methods.js";

/** Raw bytes per chunk request (its base64 line is ~1.4 MB, far under the 10 MiB line limit). */
export const CHUNK_BYTES = 1024 * 1024;
/** Chunk requests a write keeps in flight: enough to keep the pipe busy, few enough to stay small. */
export const WRITE_WINDOW = 4;
/** Chunk requests a read keeps in flight. */
export const READ_WINDOW = 2;

/**
 * Chunked transfers one client runs at once for readFile and Buffer writeFile; more wait their
 * turn (their timeoutMs counts from when they start). The engine refuses more than 64 open
 * transfers per session, and each open read may hold 1 MiB there. readFileStream and stream
 * writes take no slot: the caller's code decides when they end, so they could block the others.
 */
export const MAX_CONCURRENT_TRANSFERS = 16;

/** A counting semaphore: run() waits for a free slot, first come first served. */
export class TransferSlots {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit = MAX_CONCURRENT_TRANSFERS) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on directly
      else this.active--;
    }
  }
}

/** What writeFile accepts: whole content, or a stream of it (a Node Readable is an AsyncIterable). */
export type FileContent = string | Uint8Array | AsyncIterable<Uint8Array | string>;

/** The engine predates the extension: it answers the new methods with "Method not found". */
export function isMethodNotFound(err: unknown): boolean {
  return err instanceof RPCError && err.code === ErrorCode.METHOD_NOT_FOUND;
}

/** Cuts a stream of arbitrary pieces into chunks of exactly CHUNK_BYTES (the last one shorter). */
export async function* rechunk(source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>, size = CHUNK_BYTES): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const piece of source) {
    let buf = typeof piece === "string" ? Buffer.from(piece, "utf8") : toBuffer(piece);
    while (held + buf.length >= size) {
      const take = size - held;
      parts.push(buf.subarray(0, take));
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      held = 0;
      buf = buf.subarray(take);
    }
    if (buf.length > 0) {
      // Copy: the source may reuse its buffer once we ask for the next piece.
      parts.push(Buffer.from(buf));
      held += buf.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts, held);
}

function toBuffer(piece: unknown): Buffer {
  if (piece instanceof Uint8Array) return Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
  throw new MatchlockError(`writeFile content stream yielded ${typeof piece}; expected Uint8Array or string chunks`);
}

/**
 * One deadline and one cancellation for a whole transfer (the caller's timeoutMs and signal),
 * applied to each step with `guard`.
 */
class TransferControl {
  private readonly ac = new AbortController();
  private readonly timer?: NodeJS.Timeout;
  private readonly onAbort = () => this.ac.abort(new RPCError(ErrorCode.CANCELLED, `${this.what} cancelled`, { cause: this.opts.signal?.reason }));

  constructor(private readonly what: string, private readonly opts: CallOptions) {
    const { timeoutMs, signal } = opts;
    if (timeoutMs !== undefined && !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      throw new MatchlockError(`timeoutMs must be a positive number, got ${timeoutMs}`);
    }
    if (timeoutMs !== undefined) this.timer = setTimeout(() => this.ac.abort(new TimeoutError(what, timeoutMs)), timeoutMs);
    if (signal?.aborted) this.onAbort();
    else signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Throws the cancellation or timeout error once there is one. */
  check(): void {
    if (this.ac.signal.aborted) throw this.ac.signal.reason as Error;
  }

  /** Waits for `step`, or rejects as soon as the transfer is cancelled or times out. */
  guard<T>(step: Promise<T>): Promise<T> {
    step.catch(() => {}); // if we stop waiting for it, its failure is of no interest
    if (this.ac.signal.aborted) return Promise.reject(this.ac.signal.reason);
    return new Promise<T>((resolve, reject) => {
      const stop = () => reject(this.ac.signal.reason);
      this.ac.signal.addEventListener("abort", stop, { once: true });
      step.then(resolve, reject).finally(() => this.ac.signal.removeEventListener("abort", stop));
    });
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.opts.signal?.removeEventListener("abort", this.onAbort);
  }
}

/** A failure caused by the session ending (client closed, engine gone) says so first. */
function explain(transport: Transport, what: string, path: string, err: unknown): unknown {
  if (transport.running || err instanceof RPCError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new MatchlockError(`${what} ${path} failed: the engine session ended during the transfer (${reason})`, { cause: err });
}

function handleOf(result: JsonObject, method: string): number {
  if (typeof result.handle !== "number") throw new MatchlockError(`${method} returned no transfer handle: ${JSON.stringify(result)}`);
  return result.handle;
}

/** Tells the engine to drop the transfer (a write leaves nothing behind); best effort. */
function abandon(transport: Transport, handle: number): void {
  if (transport.running) transport.request(Method.FILE_ABORT, { handle }).catch(() => undefined);
}

/**
 * Opens a transfer. If the caller gives up (abort, timeout) before the engine answers, the
 * transfer it opens anyway is dropped as soon as its handle arrives.
 */
async function openTransfer(transport: Transport, control: TransferControl, method: string, params: JsonObject): Promise<number> {
  const opening = transport.request(method, params);
  try {
    return handleOf(await control.guard(opening), method);
  } catch (err) {
    opening.then((r) => typeof r.handle === "number" && abandon(transport, r.handle), () => undefined);
    throw err;
  }
}

/**
 * Streams `source` into `path` in the guest. The engine writes a temporary file next to the
 * target and renames it into place on success, so the target never holds a partial file.
 * Throws RPCError(METHOD_NOT_FOUND) if the engine predates the extension.
 */
export async function writeChunked(
  transport: Transport, path: string, source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>, mode: number, opts: CallOptions,
): Promise<number> {
  const control = new TransferControl("writeFile", opts);
  try {
    const handle = await openTransfer(transport, control, Method.WRITE_FILE_OPEN, { path, mode });
    let offset = 0;
    const inflight = new Set<Promise<unknown>>();
    try {
      for await (const chunk of rechunk(source)) {
        control.check();
        const sent = transport.request(Method.WRITE_FILE_CHUNK, { handle, offset, data: new Base64Data(chunk) });
        sent.catch(() => {}); // observed through the window below
        inflight.add(sent);
        sent.then(() => inflight.delete(sent), () => {});
        offset += chunk.length;
        // Back-pressure: the next chunk is read from the source only when the window has room.
        while (inflight.size >= WRITE_WINDOW) await control.guard(Promise.race(inflight));
      }
      await control.guard(Promise.all(inflight));
      const closed = await control.guard(transport.request(Method.WRITE_FILE_CLOSE, { handle }));
      return typeof closed.size === "number" ? closed.size : offset;
    } catch (err) {
      abandon(transport, handle);
      throw err;
    }
  } catch (err) {
    throw explain(transport, "writeFile", path, err);
  } finally {
    control.dispose();
  }
}

/**
 * Yields the guest file at `path` chunk by chunk, asking for the next chunks only as the
 * consumer takes them. Stopping early (break, destroy, abort) tells the engine to stop reading.
 * Throws RPCError(METHOD_NOT_FOUND) from the first step if the engine predates the extension.
 */
export async function* readChunked(transport: Transport, path: string, opts: CallOptions): AsyncGenerator<Buffer> {
  const control = new TransferControl("readFile", opts);
  let handle: number | undefined;
  let eof = false;
  try {
    handle = await openTransfer(transport, control, Method.READ_FILE_OPEN, { path });
    const pending: Array<Promise<JsonObject>> = [];
    const ask = () => {
      const p = transport.request(Method.READ_FILE_CHUNK, { handle, max_bytes: CHUNK_BYTES }, { fileChunk: true });
      p.catch(() => {}); // observed in order below; late ones after eof or an error are moot
      pending.push(p);
    };
    while (!eof) {
      while (pending.length < READ_WINDOW) ask();
      const result = await control.guard(pending.shift()!);
      eof = result.eof === true;
      const data = result.data instanceof Base64Text ? decodedChunk(result.data) : decodeBase64(result.data);
      if (data.length > 0) yield data;
    }
  } catch (err) {
    throw explain(transport, "readFile", path, err);
  } finally {
    control.dispose();
    if (handle !== undefined && !eof) abandon(transport, handle);
  }
}

/** A chunk the transport read without JSON.parse (file-chunk-lines.ts); the engine sends strict base64. */
function decodedChunk(text: Base64Text): Buffer {
  const bytes = text.decode();
  if (!bytes) throw new MatchlockError("read_file_chunk returned data that is not valid base64");
  return bytes;
}
