// The backend registry: the names a create may ask for, the driver a record names for gc, and an
// unknown name refused with the list.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BACKEND_CHOICES, chooseDriver, driverNamed, drivers, driversFor } from "../../src/engine/backends/registry.js";
import { parseCreateParams } from "../../src/engine/sandbox/create.js";

describe("backend registry", () => {
  test("the create schema takes exactly the registered names and auto", () => {
    assert.deepEqual(BACKEND_CHOICES, [...drivers().map((d) => d.name), "auto"]);
    for (const name of BACKEND_CHOICES) assert.equal(parseCreateParams({ image: "i", backend: name }).config.backend, name);
    assert.throws(() => parseCreateParams({ image: "i", backend: "firecracker" }), /backend must be microvm, gvisor or auto/);
  });

  test("gc reclaims through the driver the record names, or every driver when it names none it knows", () => {
    assert.deepEqual(driversFor("gvisor"), [driverNamed("gvisor")]);
    assert.deepEqual(driversFor("microvm"), [driverNamed("microvm")]);
    assert.deepEqual(driversFor(undefined), drivers());
    assert.deepEqual(driversFor("retired-engine"), drivers());
  });

  test("an unknown name is refused with the names there are", async () => {
    await assert.rejects(chooseDriver("bogus"), (e: unknown) => {
      assert.equal((e as { kind?: string }).kind, "unavailable");
      assert.match((e as Error).message, /unknown backend "bogus" asked for by the sandbox \(use microvm, gvisor, auto\)/);
      return true;
    });
  });

  test("every driver declares its capabilities", () => {
    for (const d of drivers()) {
      assert.ok(d.description.length > 0, d.name);
      assert.ok(["none", "directories", "files and directories"].includes(d.capabilities.hostMounts), d.name);
      assert.ok(d.capabilities.network.length > 0 ? typeof d.makeLink === "function" || !d.capabilities.network.includes("host-link") : true, d.name);
    }
  });
});
