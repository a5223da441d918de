import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode, MatchlockError, RPCError, TimeoutError } from "../../src/sdk/index.js";

describe("SDK errors", () => {
  it("RPCError constants carry the protocol's codes", () => {
    assert.equal(RPCError.PARSE_ERROR, -32700);
    assert.equal(RPCError.INVALID_REQUEST, -32600);
    assert.equal(RPCError.METHOD_NOT_FOUND, -32601);
    assert.equal(RPCError.INVALID_PARAMS, -32602);
    assert.equal(RPCError.INTERNAL_ERROR, -32603);
    assert.equal(RPCError.VM_FAILED, -32000);
    assert.equal(RPCError.EXEC_FAILED, -32001);
    assert.equal(RPCError.FILE_FAILED, -32002);
    assert.equal(RPCError.CANCELLED, -32003);
    assert.equal(RPCError.CANCELLED, ErrorCode.CANCELLED);
  });

  it("RPCError is a MatchlockError with code, raw text and a '[code] message' rendering", () => {
    const err = new RPCError(-32000, "VM not created");
    assert.ok(err instanceof RPCError);
    assert.ok(err instanceof MatchlockError);
    assert.ok(err instanceof Error);
    assert.equal(err.name, "RPCError");
    assert.equal(err.code, -32000);
    assert.equal(err.rpcMessage, "VM not created");
    assert.equal(err.message, "[-32000] VM not created");
    assert.equal(err.toString(), "[-32000] VM not created");
    assert.equal(String(err), "[-32000] VM not created");
  });

  it("is*Error helpers compare codes exactly", () => {
    const vm = new RPCError(RPCError.VM_FAILED, "x");
    const exec = new RPCError(RPCError.EXEC_FAILED, "x");
    const file = new RPCError(RPCError.FILE_FAILED, "x");
    const other = new RPCError(-32005, "x");
    assert.deepEqual([vm.isVMError(), vm.isExecError(), vm.isFileError()], [true, false, false]);
    assert.deepEqual([exec.isVMError(), exec.isExecError(), exec.isFileError()], [false, true, false]);
    assert.deepEqual([file.isVMError(), file.isExecError(), file.isFileError()], [false, false, true]);
    assert.deepEqual([other.isVMError(), other.isExecError(), other.isFileError()], [false, false, false]);
    assert.equal(new RPCError(RPCError.CANCELLED, "x").isCancelled(), true);
    assert.equal(vm.isCancelled(), false);
  });

  it("MatchlockError keeps its message and cause", () => {
    const cause = new Error("root");
    const err = new MatchlockError("Matchlock process not running", { cause });
    assert.equal(err.name, "MatchlockError");
    assert.equal(err.message, "Matchlock process not running");
    assert.equal(err.cause, cause);
    assert.equal(err instanceof RPCError, false);
  });

  it("TimeoutError is a CANCELLED RPCError that names the method and limit", () => {
    const err = new TimeoutError("exec", 250);
    assert.ok(err instanceof RPCError);
    assert.ok(err instanceof MatchlockError);
    assert.equal(err.name, "TimeoutError");
    assert.equal(err.code, RPCError.CANCELLED);
    assert.equal(err.timeoutMs, 250);
    assert.equal(err.message, "[-32003] exec timed out after 250 ms");
  });

  it("every error has a kind: given, from the engine's error.data, or implied by the code", () => {
    assert.equal(new MatchlockError("x").kind, "failed");
    assert.equal(new MatchlockError("x", { kind: "invalid_argument" }).kind, "invalid_argument");
    assert.equal(new RPCError(RPCError.CANCELLED, "x").kind, "cancelled");
    assert.equal(new RPCError(RPCError.INVALID_PARAMS, "x").kind, "invalid_argument");
    assert.equal(new RPCError(RPCError.METHOD_NOT_FOUND, "x").kind, "not_found");
    assert.equal(new RPCError(RPCError.EXEC_FAILED, "x").kind, "failed");
    assert.equal(new RPCError(RPCError.EXEC_FAILED, "out of memory", { kind: "out_of_memory" }).kind, "out_of_memory");
    const timeout = new TimeoutError("exec", 5);
    assert.equal(timeout.kind, "timeout");
    assert.equal(timeout.code, RPCError.CANCELLED, "a timeout is still a cancel on the wire");
  });
});
