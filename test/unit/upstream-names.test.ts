// Code written for upstream's TypeScript SDK (matchlock-sdk) must compile and run against ours
// with only the import changed: every name it exports is here, with upstream's values. The type
// names are checked by the compiler: this file does not build if one is missing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as sdk from "../../src/sdk/index.js";
import type * as T from "../../src/sdk/index.js";
import type { ExecStreamOptions, StreamWriter } from "../../src/sdk/index.js";
import { sharedEngineFor } from "../../src/sdk/shared-engine.js";

/** Every upstream type name, used once so the compiler resolves each. */
export type UpstreamTypes = [
  T.BinaryLike, T.Config, T.CreateOptions, T.ExecOptions, T.ExecResult, T.ExecStreamOptions, T.ExecStreamResult,
  T.ExecPipeOptions, T.ExecPipeResult, T.ExecInteractiveOptions, T.ExecInteractiveResult, T.FileInfo, T.VolumeInfo,
  T.HostIPMapping, T.ImageConfig, T.LogStreamOptions, T.MountConfig, T.PortForward, T.PortForwardBinding, T.RequestOptions,
  T.Secret, T.TTYSize, T.StreamWriter, T.StreamReader, T.NetworkBodyTransform, T.NetworkHookFunc, T.NetworkHookRequest,
  T.NetworkHookRequestMutation, T.NetworkHookResponseMutation, T.NetworkHookResult, T.NetworkHookAction, T.NetworkHookPhase,
  T.NetworkHookRule, T.NetworkInterceptionConfig, T.VFSActionHookFunc, T.VFSActionRequest, T.VFSDangerousHookFunc,
  T.VFSHookAction, T.VFSHookEvent, T.VFSHookFunc, T.VFSHookOp, T.VFSHookPhase, T.VFSHookRule, T.VFSInterceptionConfig,
  T.VFSMutateHookFunc, T.VFSMutateRequest,
];

describe("upstream SDK's names", () => {
  test("its six runtime values and 25 hook constants, with its values", () => {
    for (const name of ["Client", "defaultConfig", "Sandbox", "createSandbox", "MatchlockError", "RPCError"]) {
      assert.equal(typeof (sdk as Record<string, unknown>)[name], "function", name);
    }
    const ops = ["STAT", "READDIR", "OPEN", "CREATE", "MKDIR", "CHMOD", "REMOVE", "REMOVE_ALL", "RENAME", "SYMLINK", "READLINK", "READ", "WRITE", "CLOSE", "SYNC", "TRUNCATE"];
    const constants: Record<string, string> = {
      VFS_HOOK_PHASE_BEFORE: "before", VFS_HOOK_PHASE_AFTER: "after", VFS_HOOK_ACTION_ALLOW: "allow", VFS_HOOK_ACTION_BLOCK: "block",
      NETWORK_HOOK_PHASE_BEFORE: "before", NETWORK_HOOK_PHASE_AFTER: "after",
      NETWORK_HOOK_ACTION_ALLOW: "allow", NETWORK_HOOK_ACTION_BLOCK: "block", NETWORK_HOOK_ACTION_MUTATE: "mutate",
      ...Object.fromEntries(ops.map((o) => [`VFS_HOOK_OP_${o}`, o.toLowerCase()])),
    };
    assert.equal(Object.keys(constants).length, 25);
    for (const [name, value] of Object.entries(constants)) assert.equal((sdk as Record<string, unknown>)[name], value, name);
  });

  test("an output callback gets Buffers, as upstream's StreamWriter", () => {
    const chunks: Buffer[] = [];
    const writer: StreamWriter = (chunk: Buffer) => { chunks.push(chunk); };
    const options: ExecStreamOptions = { stdout: writer, stderr: process.stderr };
    assert.equal(typeof options.stdout, "function");
  });

  test("defaultConfig fills every field; a given one (even empty) stays; it names the engine, run per client", () => {
    const filled = sdk.defaultConfig({}, {});
    assert.deepEqual(Object.keys(filled).sort(), ["binaryPath", "engineSocket", "keepOnDispose", "sharedEngine", "useSudo"]);
    assert.equal(filled.useSudo, false);
    assert.equal(filled.engineSocket, "");
    assert.ok(filled.binaryPath.endsWith("main.js"), filled.binaryPath);
    assert.equal(sdk.defaultConfig({ binaryPath: "" }, {}).binaryPath, "");
    assert.equal(sdk.defaultConfig({}, { MATCHLOCK_ENGINE_SOCKET: "/run/e.sock" }).engineSocket, "/run/e.sock");
    assert.equal(filled.sharedEngine, false);
    assert.equal(sharedEngineFor(filled, undefined, {}), undefined);
    assert.doesNotThrow(() => new sdk.Client(filled));
  });
});
