// The two JSON-RPC lines that carry file data in bulk, read without JSON.parse (see
// line-shape.ts for why): a write_file_chunk request exactly as our SDK writes it, and a
// read_file_chunk result exactly as our engine writes it. Any other form of the same message
// (another client's key order, spaces) returns undefined and is parsed as usual.
import { Base64Text } from "./base64.js";
import { matchShape, shape } from "./line-shape.js";
import { Method } from "./methods.js";

const WRITE_CHUNK_REQUEST = shape(`{"jsonrpc":"2.0","method":"${Method.WRITE_FILE_CHUNK}","id":{int},"params":{"handle":{int},"offset":{int},"data":"{base64}"}}`);
const READ_CHUNK_RESULT = shape('{"jsonrpc":"2.0","result":{"data":"{base64}","eof":{bool}},"id":{int}}');

export interface WriteChunkRequest {
  method: typeof Method.WRITE_FILE_CHUNK;
  id: number;
  /** As JSON.parse would give them, except that data is the base64 text's bytes. */
  params: { handle: number; offset: number; data: Base64Text };
}

export function parseWriteChunkRequest(line: Buffer): WriteChunkRequest | undefined {
  const v = matchShape(line, WRITE_CHUNK_REQUEST);
  if (!v) return undefined;
  return { method: Method.WRITE_FILE_CHUNK, id: v[0] as number, params: { handle: v[1] as number, offset: v[2] as number, data: new Base64Text(v[3] as Buffer) } };
}

export interface ReadChunkResult {
  id: number;
  /** As JSON.parse would give it, except that data is the base64 text's bytes. */
  result: { data: Base64Text; eof: boolean };
}

export function parseReadChunkResult(line: Buffer): ReadChunkResult | undefined {
  const v = matchShape(line, READ_CHUNK_RESULT);
  if (!v) return undefined;
  return { id: v[2] as number, result: { data: new Base64Text(v[0] as Buffer), eof: v[1] as boolean } };
}
