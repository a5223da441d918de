// Which creates a resident engine may serve from a warm spare: only those whose whole state is
// made at boot from the request and the image, matched field for field.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseCreateParams } from "../../src/engine/sandbox/create.js";
import { spareKey } from "../../src/engine/resident/warm-pool.js";

const key = (params: Record<string, unknown>) => spareKey(parseCreateParams({ image: "local/busybox:latest", ...params }));

describe("warm spare eligibility", () => {
  test("a plain create, one with the entrypoint, one with an allow-list and memory mounts qualify", () => {
    assert.ok(key({}));
    assert.ok(key({ launch_entrypoint: true }));
    assert.ok(key({ network: { allowed_hosts: ["pypi.org"], block_private_ips: true } }));
    assert.ok(key({ vfs: { mounts: { "/scratch": { type: "memory" } } } }));
  });

  test("anything that depends on the host, the moment or the session never does", () => {
    const refused: Record<string, Record<string, unknown>> = {
      "a host directory": { vfs: { mounts: { "/data": { type: "host_fs", host_path: "/tmp" } } } },
      "a copy-on-write snapshot": { vfs: { mounts: { "/data": { type: "overlay", host_path: "/tmp" } } } },
      "an extra disk": { extra_disks: [{ host_path: "/tmp/disk.ext4", guest_mount: "/disk" }] },
      "a port forward": { port_forwards: [{ local_port: 8080, remote_port: 80 }] },
      "a secret": { network: { allowed_hosts: ["api.test"], secrets: { KEY: { value: "v", hosts: ["api.test"] } } } },
      "interception rules": { network: { interception: { rules: [{ phase: "before", action: "block", hosts: ["x.test"] }] } } },
      "file events": { vfs: { interception: { emit_events: true } } },
    };
    for (const [what, params] of Object.entries(refused)) assert.equal(key(params), undefined, what);
  });

  test("the key is the whole request: any field that differs is another kind", () => {
    assert.equal(key({ env: { A: "1" } }), key({ env: { A: "1" } }));
    assert.notEqual(key({ env: { A: "1" } }), key({ env: { A: "2" } }));
    assert.notEqual(key({}), key({ resources: { cpus: 2 } }));
    assert.notEqual(key({}), key({ image: "local/python:3.11" }));
    assert.notEqual(key({}), key({ resources: { timeout_seconds: 60, enforce_timeout: true } }));
  });
});
