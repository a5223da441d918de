// Test fixture: a started Client wired to a fresh fake engine, torn down after the test.
import { Client } from "../../src/sdk/index.js";
import { makeFakeBinary, type FakeBinary } from "./fake-binary.js";

export interface Fixture {
  fake: FakeBinary;
  client: Client;
}

export async function withClient(
  fn: (f: Fixture) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const fake = makeFakeBinary(env);
  const client = new Client({ binaryPath: fake.bin });
  try {
    await client.start();
    await fn({ fake, client });
  } finally {
    await client.close().catch(() => undefined);
    fake.cleanup();
  }
}

/** Requests of one method, in the order the engine received them. */
export function requestsOf(fake: FakeBinary, method: string): Array<Record<string, unknown>> {
  return fake.requests().filter((r) => r.method === method);
}

/**
 * Polls until `check` stops throwing (the fake engine logs asynchronously, a helper process acts
 * in its own time), or rethrows after `ms`. The default is long because a loaded CI machine can
 * take seconds to schedule a process; a right answer ends the wait at once.
 */
export async function eventually(check: () => void | Promise<void>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
