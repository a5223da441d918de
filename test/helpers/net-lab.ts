// A private upstream world for network tests: a network namespace with test servers
// (net-lab-server.ts), reachable from the host over a veth, a test CA the engine trusts for
// upstream verification ($MATCHLOCK_UPSTREAM_CA), and a hosts file mapping the test names to
// the server ($MATCHLOCK_TEST_HOSTS): NAMES to its main address, RAW_NAME to a second one where
// a raw upstream logs every request line it receives. No traffic leaves this machine.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { webcrypto } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before } from "node:test";
import type { Client, Sandbox } from "../../src/sdk/index.js";
import { newClient, setUpE2E } from "./e2e.js";

const exec = promisify(execFile);
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const NAMES = ["allowed.test", "other.test", "secret.test", "sub.wild.test"];
/** The raw upstream's name (net-lab-server.ts): HTTP on :80 and HTTPS on :443 of rawIp. */
export const RAW_NAME = "raw.test";

export interface NetLab {
  serverIp: string;
  rawIp: string;
  dir: string;
  hostsFile: string;
  caFile: string;
  stop(): Promise<void>;
}

export interface NetLabOptions {
  /**
   * Put the lab in 198.18.0.0/15 (the benchmarking range, still only on this machine's veth)
   * instead of 10.254.0.0/16, so a sandbox reaches it without allowPrivateIPs(): for the docs'
   * examples, which show what users write.
   */
  publicRange?: boolean;
  /** More names for the main address (a docs example's host names). */
  names?: string[];
}

/** Starts the lab and points the engines this process starts at it ($MATCHLOCK_TEST_HOSTS, $MATCHLOCK_UPSTREAM_CA). */
export async function startNetLab(options: NetLabOptions = {}): Promise<NetLab> {
  await removeAbandonedLabs();
  const tag = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, "0");
  const ns = `mltest-${tag}`;
  const third = 1 + Math.floor(Math.random() * 250);
  const prefix = options.publicRange ? "198.18" : "10.254";
  const hostIp = `${prefix}.${third}.1`;
  const serverIp = `${prefix}.${third}.2`;
  const rawIp = `${prefix}.${third}.3`;
  const names = [...NAMES, ...(options.names ?? [])];
  const dir = await mkdtemp(join(tmpdir(), "matchlock-netlab-"));
  const { caPem, certPem, keyPem } = await testCertificates([...names, RAW_NAME], [serverIp, rawIp]);
  await writeFile(join(dir, "ca.pem"), caPem);
  await writeFile(join(dir, "cert.pem"), certPem);
  await writeFile(join(dir, "key.pem"), keyPem);
  await writeFile(join(dir, "hosts"), `${serverIp} ${names.join(" ")}\n${rawIp} ${RAW_NAME}\n`);
  await exec("ip", ["netns", "add", ns]);
  await exec("ip", ["link", "add", `mlt${tag}`, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await exec("ip", ["addr", "add", `${hostIp}/29`, "dev", `mlt${tag}`]);
  await exec("ip", ["link", "set", `mlt${tag}`, "up"]);
  await exec("ip", ["-n", ns, "addr", "add", `${serverIp}/29`, "dev", "eth0"]);
  await exec("ip", ["-n", ns, "addr", "add", `${rawIp}/29`, "dev", "eth0"]);
  await exec("ip", ["-n", ns, "link", "set", "eth0", "up"]);
  await exec("ip", ["-n", ns, "link", "set", "lo", "up"]);
  const script = join(dirname(fileURLToPath(import.meta.url)), "net-lab-server.js");
  const server: ChildProcess = spawn("ip", ["netns", "exec", ns, process.execPath, script, join(dir, "cert.pem"), join(dir, "key.pem"), serverIp, rawIp, ...names], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.once("data", () => resolve());
    server.once("exit", (code) => reject(new Error(`test server exited (${code})`)));
  });
  // Engines started from here on resolve names through the lab and trust its test CA.
  process.env.MATCHLOCK_TEST_HOSTS = join(dir, "hosts");
  process.env.MATCHLOCK_UPSTREAM_CA = join(dir, "ca.pem");
  return {
    serverIp, rawIp, dir, hostsFile: join(dir, "hosts"), caFile: join(dir, "ca.pem"),
    async stop() {
      server.kill("SIGKILL");
      await exec("ip", ["link", "del", `mlt${tag}`]).catch(() => {});
      await exec("ip", ["netns", "del", ns]).catch(() => {});
    },
  };
}

/** Labs of test runs that were killed: their namespace has no server process left. */
async function removeAbandonedLabs(): Promise<void> {
  const { stdout } = await exec("ip", ["netns", "list"]);
  for (const ns of stdout.split("\n").map((l) => l.split(" ")[0]!).filter((n) => /^mltest-[0-9a-f]{4}$/.test(n))) {
    const { stdout: pids } = await exec("ip", ["netns", "pids", ns]).catch(() => ({ stdout: "x" }));
    if (pids.trim()) continue;
    await exec("ip", ["link", "del", `mlt${ns.slice(7)}`]).catch(() => {});
    await exec("ip", ["netns", "del", ns]).catch(() => {});
  }
}

/** One server certificate for the lab's names and its addresses (a client may dial an address). */
async function testCertificates(names: string[], addresses: string[]): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const caKeys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01", name: "CN=matchlock test upstream CA", notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000),
    keys: caKeys, signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "02", subject: `CN=${names[0]}`, issuer: ca.subject, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000),
    signingKey: caKeys.privateKey, publicKey: keys.publicKey, signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([
      ...names.map((value) => ({ type: "dns" as const, value })),
      ...addresses.map((value) => ({ type: "ip" as const, value })),
    ])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  return {
    caPem: ca.toString("pem") + "\n",
    certPem: cert.toString("pem") + "\n",
    keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/.{64}/g, "$&\n")}\n-----END PRIVATE KEY-----\n`,
  };
}

/**
 * For a suite about one sandbox on the lab: registers node:test hooks that start the lab and
 * launch `sandbox(lab)` before the suite, and close, remove and stop everything after it.
 */
export function labSandbox(sandbox: (lab: NetLab) => Sandbox, options: NetLabOptions = {}): { readonly lab: NetLab; readonly client: Client } {
  let lab: NetLab | undefined;
  let client: Client | undefined;
  before(async () => {
    await setUpE2E();
    lab = await startNetLab(options);
    client = newClient();
    await client.launch(sandbox(lab));
  });
  after(async () => {
    await client?.close();
    await client?.remove();
    await lab?.stop();
  });
  return { get lab() { return lab!; }, get client() { return client!; } };
}
