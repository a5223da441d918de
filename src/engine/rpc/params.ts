// Request params: checked against a schema, base64 decoded; a bad one is an INVALID_PARAMS error.
import type { z } from "zod";
import { decodeStrictBase64 } from "../../protocol/base64.js";
import { ErrorCode } from "../../protocol/rpc.js";
import { describeZodError } from "../sandbox/create-config.js";
import { RpcError } from "./errors.js";

export function decode<T extends z.ZodType>(schema: T, params: unknown): z.infer<T> {
  if (params === undefined || params === null) throw new RpcError(ErrorCode.INVALID_PARAMS, "params are required");
  const r = schema.safeParse(params);
  if (!r.success) throw new RpcError(ErrorCode.INVALID_PARAMS, describeZodError(r.error));
  return r.data;
}

export function decodeBase64(s: string): Buffer {
  // Go's decoder tolerates line breaks; skip the copy that drops them when there are none.
  const compact = s.includes("\n") || s.includes("\r") ? s.replace(/[\r\n]/g, "") : s;
  const bytes = decodeStrictBase64(compact);
  if (!bytes) throw new RpcError(ErrorCode.INVALID_PARAMS, "invalid base64 content");
  return bytes;
}
