// One table maps an engine error's kind to its JSON-RPC code and message form; the SDK reads the
// kind back from error.data.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentOpError, OutOfMemoryError, SandboxLostError, SandboxTimedOutError } from "../../src/engine/agent/connection.js";
import { BackendUnavailableError } from "../../src/engine/backends/backend.js";
import { RpcError, toWireError } from "../../src/engine/rpc/errors.js";
import { CreateCancelledError, ImageNotFoundError, PathError } from "../../src/engine/sandbox/sandbox.js";
import { MountConfigError } from "../../src/engine/vfs/mounts.js";
import { UnsafeEntryError } from "../../src/engine/image/rootfs-writer.js";
import { ErrorCode } from "../../src/protocol/rpc.js";

describe("engine errors on the wire", () => {
  test("each error has a name and a kind", () => {
    const e = new OutOfMemoryError("out of memory: ...");
    assert.equal(e.name, "OutOfMemoryError");
    assert.equal(e.kind, "out_of_memory");
    assert.ok(e instanceof SandboxLostError);
    assert.equal(new SandboxTimedOutError("x").kind, "timeout");
    assert.equal(new ImageNotFoundError("x").kind, "not_found");
  });

  test("codes and messages as the protocol and the seed engines give them", () => {
    const cases: Array<[unknown, string, number, string, string]> = [
      [new AgentOpError("chdir /nope: No such file or directory"), "exec", ErrorCode.EXEC_FAILED, "exec error: chdir /nope: No such file or directory", "failed"],
      [new AgentOpError("open /x: Permission denied"), "read_file", ErrorCode.FILE_FAILED, "open /x: Permission denied", "failed"],
      [new SandboxLostError("the sandbox closed its agent channel"), "exec", ErrorCode.EXEC_FAILED, "sandbox lost: the sandbox closed its agent channel", "sandbox_lost"],
      [new SandboxLostError("the sandbox exited"), "create", ErrorCode.VM_FAILED, "failed to create sandbox: the sandbox exited", "sandbox_lost"],
      [new OutOfMemoryError("out of memory: more than 64 MiB"), "exec", ErrorCode.EXEC_FAILED, "out of memory: more than 64 MiB", "out_of_memory"],
      [new SandboxTimedOutError("the sandbox reached its timeout of 2 s"), "write_file", ErrorCode.FILE_FAILED, "sandbox lost: the sandbox reached its timeout of 2 s", "timeout"],
      [new CreateCancelledError("create cancelled"), "create", ErrorCode.CANCELLED, "create cancelled", "cancelled"],
      [new MountConfigError("mount /x: bad"), "create", ErrorCode.INVALID_PARAMS, "mount /x: bad", "invalid_argument"],
      [new BackendUnavailableError("runsc is not installed"), "create", ErrorCode.VM_FAILED, "runsc is not installed", "unavailable"],
      [new ImageNotFoundError("image x is not in the local store"), "create", ErrorCode.VM_FAILED, "image x is not in the local store", "not_found"],
      [new UnsafeEntryError("layer entry ../x escapes"), "create", ErrorCode.VM_FAILED, "failed to create sandbox: layer entry ../x escapes", "policy_refused"],
      [new PathError("path must be absolute"), "read_file", ErrorCode.FILE_FAILED, "path must be absolute", "invalid_argument"],
      [new Error("EIO"), "create", ErrorCode.VM_FAILED, "failed to create sandbox: EIO", "failed"],
      [new TypeError("x is undefined"), "exec", ErrorCode.INTERNAL_ERROR, "internal error: x is undefined", "internal"],
      [new RpcError(ErrorCode.VM_FAILED, "VM not created"), "exec", ErrorCode.VM_FAILED, "VM not created", "failed"],
      [new RpcError(ErrorCode.VM_FAILED, "sandbox vm-1 is lost: out of memory", "out_of_memory"), "exec", ErrorCode.VM_FAILED, "sandbox vm-1 is lost: out of memory", "out_of_memory"],
    ];
    for (const [err, method, code, message, kind] of cases) {
      assert.deepEqual(toWireError(err, method), { code, message, kind }, `${(err as Error).name} in ${method}`);
    }
  });
});
