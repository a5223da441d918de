// Chunked file transfer: the engine side of the protocol extension in docs/protocol-extensions.md
// ("Streamed file transfer"). `write_file`/`read_file` carry a whole file in one message; these methods move it
// as a sequence of bounded chunks, one request each, so the reply to each chunk is the
// back-pressure: a client keeps a few chunks in flight and the engine never holds more.
//   write_file_open {path, mode?}          -> {handle}
//   write_file_chunk {handle, offset, data} -> {}          (data: base64, offset: bytes so far)
//   write_file_close {handle}               -> {size}      (renames the temporary file into place)
//   read_file_open {path}                   -> {handle}
//   read_file_chunk {handle, max_bytes?}    -> {data, eof} (eof: this was the last chunk)
//   file_abort {handle}                     -> {aborted}   (a write leaves nothing behind; a write
//                                              whose close already renamed it: {aborted: false, completed: true})
import { z } from "zod";
import { Base64Data, Base64Text } from "../../protocol/base64.js";
import { ErrorCode } from "../../protocol/rpc.js";
import type { AgentReadStream, AgentWriteStream } from "../agent/file-streams.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { RpcError } from "./errors.js";
import { decode, decodeBase64 } from "./params.js";
import { Method } from "../../protocol/methods.js";

/** Transfers one session may have open at once. */
export const MAX_OPEN_TRANSFERS = 64;
/** Chunk requests one transfer may have queued; more means the client ignores back-pressure. */
export const MAX_QUEUED_CHUNKS = 8;
/** Largest chunk, in raw bytes, either way (its base64 stays well under the line limit). */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
const DEFAULT_READ_CHUNK = 1024 * 1024;

const handleSchema = z.number().int().positive();
const writeOpenParams = z.strictObject({ path: z.string(), mode: z.number().int().min(0).max(0xffffffff).optional() });
// data: base64, as a string, or as the bytes of a line read without JSON.parse (file-chunk-lines.ts).
const writeChunkParams = z.strictObject({ handle: handleSchema, offset: z.number().int().nonnegative(), data: z.union([z.string(), z.instanceof(Base64Text)]) });
const readChunkParams = z.strictObject({ handle: handleSchema, max_bytes: z.number().int().positive().optional() });
const handleParams = z.strictObject({ handle: handleSchema });
const pathParams = z.strictObject({ path: z.string() });

interface Transfer {
  kind: "write" | "read";
  stream: AgentWriteStream | AgentReadStream;
  /** Chunk requests run one after the other, in the order they were read from stdin. */
  tail: Promise<unknown>;
  queued: number;
  /** Set once a step failed: every later request of this transfer gets the same error. */
  failed?: Error;
  /** A write's close once it has started: past that point an abort can no longer stop the rename. */
  closing?: Promise<unknown>;
}

type Result = Record<string, unknown>;

export class FileTransfers {
  private readonly open = new Map<number, Transfer>();
  private nextHandle = 1;

  constructor(private readonly current: () => Sandbox) {}

  async handle(method: string, params: unknown): Promise<Result> {
    switch (method) {
      case Method.WRITE_FILE_OPEN: return this.openWrite(params);
      case Method.WRITE_FILE_CHUNK: return this.writeChunk(params);
      case Method.WRITE_FILE_CLOSE: return this.closeWrite(params);
      case Method.READ_FILE_OPEN: return this.openRead(params);
      case Method.READ_FILE_CHUNK: return this.readChunk(params);
      case Method.FILE_ABORT: return this.abort(params);
      default: throw new RpcError(ErrorCode.METHOD_NOT_FOUND, "Method not found");
    }
  }

  /** Drops every open transfer (the sandbox is going away); temporary files are removed. */
  abortAll(): void {
    for (const t of this.open.values()) {
      t.failed ??= new RpcError(ErrorCode.FILE_FAILED, "the sandbox was closed during the transfer");
      t.stream.cancel();
    }
    this.open.clear();
  }

  private async openWrite(params: unknown): Promise<Result> {
    const sb = this.current();
    const p = decode(writeOpenParams, params);
    const stream = await this.reserving(() => sb.openWriteStream(p.path, p.mode || 0o644));
    return { handle: this.add({ kind: "write", stream, tail: Promise.resolve(), queued: 0 }) };
  }

  private async openRead(params: unknown): Promise<Result> {
    const sb = this.current();
    const p = decode(pathParams, params);
    const stream = await this.reserving(() => sb.openReadStream(p.path));
    return { handle: this.add({ kind: "read", stream, tail: Promise.resolve(), queued: 0 }) };
  }

  private writeChunk(params: unknown): Promise<Result> {
    const p = decode(writeChunkParams, params);
    const t = this.get(p.handle, "write");
    const data = p.data instanceof Base64Text ? decodeText(p.data) : decodeBase64(p.data);
    if (data.length > MAX_CHUNK_BYTES) throw new RpcError(ErrorCode.INVALID_PARAMS, `chunk of ${data.length} bytes exceeds ${MAX_CHUNK_BYTES}`);
    const stream = t.stream as AgentWriteStream;
    return this.step(p.handle, t, async () => {
      if (p.offset !== stream.size) {
        throw new RpcError(ErrorCode.INVALID_PARAMS, `chunk at offset ${p.offset}, but ${stream.size} bytes were written so far`);
      }
      await stream.write(data);
      return {};
    });
  }

  private closeWrite(params: unknown): Promise<Result> {
    const p = decode(handleParams, params);
    const t = this.get(p.handle, "write");
    const stream = t.stream as AgentWriteStream;
    return this.step(p.handle, t, async () => {
      t.closing = stream.commit();
      await t.closing;
      this.open.delete(p.handle);
      return { size: stream.size };
    });
  }

  private readChunk(params: unknown): Promise<Result> {
    const p = decode(readChunkParams, params);
    const t = this.get(p.handle, "read");
    const max = Math.min(p.max_bytes ?? DEFAULT_READ_CHUNK, MAX_CHUNK_BYTES);
    return this.step(p.handle, t, async () => {
      const { data, eof } = await (t.stream as AgentReadStream).next(max);
      if (eof) this.open.delete(p.handle);
      return { data: new Base64Data(data), eof };
    });
  }

  private async abort(params: unknown): Promise<Result> {
    const p = decode(handleParams, params);
    const t = this.open.get(p.handle);
    if (!t) return { aborted: false };
    if (t.closing) {
      // The close already asked for the rename: its outcome decides, the answer must not guess.
      const committed = await t.closing.then(() => true, () => false);
      this.open.delete(p.handle);
      return committed ? { aborted: false, completed: true } : { aborted: true };
    }
    this.open.delete(p.handle);
    t.failed ??= new RpcError(ErrorCode.FILE_FAILED, `transfer ${p.handle} was aborted`);
    t.stream.cancel();
    return { aborted: true };
  }

  /** Queues one step of a transfer behind the previous ones; a failure ends the transfer. */
  private step(handle: number, t: Transfer, run: () => Promise<Result>): Promise<Result> {
    if (t.queued >= MAX_QUEUED_CHUNKS) {
      throw new RpcError(ErrorCode.INVALID_REQUEST, `transfer ${handle} already has ${MAX_QUEUED_CHUNKS} requests queued: wait for their replies`);
    }
    t.queued++;
    const result = t.tail.then(async () => {
      if (t.failed) throw t.failed;
      try {
        return await run();
      } catch (err) {
        t.failed ??= err instanceof Error ? err : new Error(String(err));
        t.stream.cancel();
        throw t.failed;
      }
    }).finally(() => t.queued--);
    t.tail = result.catch(() => {});
    return result;
  }

  private get(handle: number, kind: Transfer["kind"]): Transfer {
    this.current(); // a closed or lost sandbox says so, rather than "unknown handle"
    const t = this.open.get(handle);
    if (!t) throw new RpcError(ErrorCode.FILE_FAILED, `no open transfer ${handle} (finished, aborted, or never opened)`);
    if (t.kind !== kind) throw new RpcError(ErrorCode.INVALID_PARAMS, `transfer ${handle} is a ${t.kind}, not a ${kind}`);
    return t;
  }

  /**
   * Runs an open with a slot held from before its first await: opens run concurrently, so a check
   * now and an insert after the open would let any number of them through at once.
   */
  private async reserving<T>(open: () => Promise<T>): Promise<T> {
    if (this.open.size + this.opening >= MAX_OPEN_TRANSFERS) {
      throw new RpcError(ErrorCode.FILE_FAILED, `too many open transfers (${MAX_OPEN_TRANSFERS}): finish or abort some first`);
    }
    this.opening++;
    try {
      return await open();
    } finally {
      this.opening--;
    }
  }

  /** Opens that hold a slot but have no handle yet. */
  private opening = 0;

  private add(t: Transfer): number {
    const handle = this.nextHandle++;
    this.open.set(handle, t);
    return handle;
  }
}

function decodeText(text: Base64Text): Buffer {
  const bytes = text.decode();
  if (!bytes) throw new RpcError(ErrorCode.INVALID_PARAMS, "invalid base64 content");
  return bytes;
}
