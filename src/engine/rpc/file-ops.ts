// The file operations beside write_file, read_file and list_files (a protocol extension, see
// docs/protocol-extensions.md):
//   remove_file {path, recursive?}        -> {}
//   make_dir    {path, parents?, mode?}   -> {}          (mode default 0755)
//   rename_file {old_path, new_path}      -> {}
//   stat_file   {path}                    -> {file}      (a list_files entry, mod_time filled)
// Paths are checked as every file method's are; a guest failure is -32002 with the guest's reason.
import { z } from "zod";
import { ErrorCode } from "../../protocol/rpc.js";
import { Method } from "../../protocol/methods.js";
import type { Sandbox } from "../sandbox/sandbox.js";
import { RpcError } from "./errors.js";
import { decode } from "./params.js";

const removeParams = z.strictObject({ path: z.string(), recursive: z.boolean().optional() });
const makeDirParams = z.strictObject({
  path: z.string(),
  parents: z.boolean().optional(),
  mode: z.number().int().min(0).max(0o7777, "mode must be permission bits, at most 0o7777 (4095)").optional(),
});
const renameParams = z.strictObject({ old_path: z.string(), new_path: z.string() });
const statParams = z.strictObject({ path: z.string() });

type Result = Record<string, unknown>;

export async function handleFileOp(sandbox: Sandbox, method: string, params: unknown): Promise<Result> {
  switch (method) {
    case Method.REMOVE_FILE: {
      const p = decode(removeParams, params);
      await sandbox.removeFile(p.path, p.recursive === true);
      return {};
    }
    case Method.MAKE_DIR: {
      const p = decode(makeDirParams, params);
      await sandbox.makeDir(p.path, p.mode ?? 0o755, p.parents === true);
      return {};
    }
    case Method.RENAME_FILE: {
      const p = decode(renameParams, params);
      await sandbox.renameFile(p.old_path, p.new_path);
      return {};
    }
    case Method.STAT_FILE: {
      const p = decode(statParams, params);
      return { file: await sandbox.statFile(p.path) };
    }
    default: throw new RpcError(ErrorCode.METHOD_NOT_FOUND, "Method not found");
  }
}
