// The network seal's cost: a 100 MB HTTPS download and small-request latency, (a) from the host
// straight to the test server (no interception: the upstream's own speed) and (b) from a guest
// (gVisor, or a micro-VM with MATCHLOCK_BACKEND=microvm) through the engine's DNS, DNAT and
// TLS-intercepting proxy, and (c) the same download from a secret's host, whose responses the
// proxy scans for the secret's value. All traffic stays inside a network namespace this script creates.
//   npm run build && node dist/bench/net-proxy.js      (needs root, runsc and the test images)
import { readFileSync } from "node:fs";
import https from "node:https";
import { Sandbox } from "../src/sdk/index.js";
import { newClient, PYTHON, setUpE2E } from "../test/helpers/e2e.js";
import { startNetLab } from "../test/helpers/net-lab.js";

const MB = Number(process.env.BENCH_MB ?? 100);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 50);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function hostGet(ip: string, path: string, ca: string, agent: https.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    https.get({ host: ip, servername: "allowed.test", headers: { Host: "allowed.test" }, path, ca, agent }, (res) => {
      let n = 0;
      res.on("data", (d: Buffer) => (n += d.length));
      res.on("end", () => resolve(performance.now() - t + 0 * n));
    }).on("error", reject);
  });
}

const GUEST_PY = `
import http.client, ssl, sys, time, json
mb, n, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
def download(host, headers):
    t = time.time(); c = http.client.HTTPSConnection(host, context=ctx); c.request("GET", "/big?mb=%d" % mb, headers=headers)
    r = c.getresponse(); assert r.status == 200, r.status
    while r.read(1 << 20): pass
    return time.time() - t, c
scanned, _ = download("secret.test", {"Authorization": "Bearer " + key})
big, c = download("allowed.test", {})
lat_keep = []
for i in range(n):
    t = time.time(); c.request("GET", "/hello"); c.getresponse().read(); lat_keep.append(time.time() - t)
lat_new = []
for i in range(n):
    t = time.time(); c2 = http.client.HTTPSConnection("allowed.test", context=ctx); c2.request("GET", "/hello"); c2.getresponse().read(); c2.close(); lat_new.append(time.time() - t)
print(json.dumps({"big": big, "scanned": scanned, "keep": sorted(lat_keep)[n // 2], "new": sorted(lat_new)[n // 2]}))
`;

async function main(): Promise<void> {
  await setUpE2E();
  const lab = await startNetLab();
  const client = newClient();
  try {
    const ca = readFileSync(lab.caFile, "utf8");
    const keep = new https.Agent({ keepAlive: true });
    const bigHost = await hostGet(lab.serverIp, `/big?mb=${MB}`, ca, keep);
    const keepHost: number[] = [];
    for (let i = 0; i < REQUESTS; i++) keepHost.push(await hostGet(lab.serverIp, "/hello", ca, keep));
    const newHost: number[] = [];
    for (let i = 0; i < REQUESTS; i++) newHost.push(await hostGet(lab.serverIp, "/hello", ca, new https.Agent({ keepAlive: false })));
    keep.destroy();

    const sandbox = new Sandbox(PYTHON).allowHost("allowed.test").addSecret("BENCH_KEY", "bench-secret-value-7c1d", "secret.test");
    await client.launch(sandbox.allowPrivateIPs()); // the lab is on 10.254.x.x
    await client.writeFile("/tmp/bench.py", GUEST_PY);
    const r = await client.exec(`python3 /tmp/bench.py ${MB} ${REQUESTS} "$BENCH_KEY"`);
    if (r.exitCode !== 0) throw new Error(r.stderr);
    const guest = JSON.parse(r.stdout) as { big: number; scanned: number; keep: number; new: number };

    const rate = (s: number) => ((MB * 1.048576) / s).toFixed(1);
    console.log(`engine: ${process.env.MATCHLOCK_BACKEND || "auto"}`);
    console.log(`HTTPS ${MB} MB download        host direct: ${rate(bigHost / 1000)} MB/s   guest via proxy: ${rate(guest.big)} MB/s`);
    console.log(`HTTPS ${MB} MB from a secret's host (body scanned)  guest via proxy: ${rate(guest.scanned)} MB/s`);
    console.log(`GET /hello, keep-alive (median) host direct: ${median(keepHost).toFixed(2)} ms   guest via proxy: ${(guest.keep * 1000).toFixed(2)} ms`);
    console.log(`GET /hello, new TLS conn       host direct: ${median(newHost).toFixed(2)} ms   guest via proxy: ${(guest.new * 1000).toFixed(2)} ms`);
  } finally {
    await client.close();
    await client.remove();
    await lab.stop();
  }
}

await main();
