// The SDK's port-forward calls against a fake engine: the wire params and results, the builder's
// forwards (in `create` for our engine, a `port_forward` right after it for an upstream one), and
// local validation.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Sandbox } from "../../src/sdk/index.js";
import { PROTOCOL_VERSION } from "../../src/protocol/handshake.js";
import { requestsOf, withClient } from "../helpers/sdk-fixture.js";

const T = { timeout: 30_000 };
const OUR_ENGINE = { FAKE_HANDSHAKE: JSON.stringify({ engine: "matchlock", version: "9.9.9", protocol: PROTOCOL_VERSION }) };

describe("SDK port forwarding", () => {
  it("portForward sends [LOCAL:]REMOTE specs as forwards and maps the bindings", T, () =>
    withClient(async ({ fake, client }) => {
      const bindings = await client.portForward("8080", " 9000:90 ");
      assert.deepEqual(bindings, [
        { address: "127.0.0.1", localPort: 8080, remotePort: 8080 },
        { address: "127.0.0.1", localPort: 9000, remotePort: 90 },
      ]);
      const both = await client.portForwardWithAddresses(["127.0.0.1", "0.0.0.0"], "80");
      assert.deepEqual(both.map((b) => b.address), ["127.0.0.1", "0.0.0.0"]);
      assert.deepEqual(await client.portForward(), []);
      assert.deepEqual(requestsOf(fake, "port_forward").map((r) => r.params), [
        { forwards: [{ local_port: 8080, remote_port: 8080 }, { local_port: 9000, remote_port: 90 }] },
        { forwards: [{ local_port: 80, remote_port: 80 }], addresses: ["127.0.0.1", "0.0.0.0"] },
      ]);
      await assert.rejects(client.portForward("1:2:3"), (e: Error & { kind?: string }) => e.kind === "invalid_argument" && /\[LOCAL:\]REMOTE/.test(e.message));
      await assert.rejects(client.portForward("0"), /ports must be 1-65535/);
      await assert.rejects(client.portForwardWithAddresses(["localhost"], "80"), /not an IP address/);
    }));

  it("builder forwards: inside create for our engine", T, () =>
    withClient(async ({ fake, client }) => {
      await client.launch(new Sandbox("img").withPortForward(8080, 80).withPortForwardAddresses("0.0.0.0"));
      const [create] = requestsOf(fake, "create");
      assert.deepEqual(create!.params, {
        image: "img", launch_entrypoint: true,
        port_forwards: [{ local_port: 8080, remote_port: 80 }], port_forward_addresses: ["0.0.0.0"],
      });
      assert.deepEqual(requestsOf(fake, "port_forward"), []);
    }, OUR_ENGINE));

  it("builder forwards: a port_forward right after create for an upstream engine", T, () =>
    withClient(async ({ fake, client }) => {
      await client.create(new Sandbox("img").withPortForward(8080, 80).options());
      assert.deepEqual(requestsOf(fake, "create")[0]!.params, { image: "img" });
      assert.deepEqual(requestsOf(fake, "port_forward").map((r) => r.params), [{ forwards: [{ local_port: 8080, remote_port: 80 }] }]);
    }));

  it("the builder and create options check ports and addresses locally", () => {
    assert.throws(() => new Sandbox("img").withPortForward(8080, 0), /remote port must be an integer 1-65535/);
    assert.throws(() => new Sandbox("img").withPortForward(70000, 80), /local port must be an integer 0-65535/);
    assert.throws(() => new Sandbox("img").withPortForwardAddresses("example.com"), /not an IP address/);
    return withClient(async ({ client }) => {
      await assert.rejects(client.create({ image: "img", portForwardAddresses: ["127.0.0.1"] }), /portForwardAddresses has no effect without portForwards/);
    });
  });
});
