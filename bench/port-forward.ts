// Port-forward throughput: a TCP client on the host moves N MB through a forward to a server in
// the guest (busybox nc), against the same transfer over a direct loopback connection to a
// server on the host. Download (the guest sends), upload (the guest reads and drops), and echo
// (both at once). Prints medians and ratios, and, for download and upload, the same transfer
// inside the guest (nc to nc over the guest's own loopback): what the guest's TCP alone costs.
//   npm run bench:ports   (MATCHLOCK_BACKEND=gvisor|microvm; BENCH_PF_MB, BENCH_PF_ROUNDS;
//                          needs root and the local images)
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { cpus, loadavg } from "node:os";
import { Sandbox } from "../src/sdk/index.js";
import { BACKEND, BUSYBOX, newClient, setUpE2E } from "../test/helpers/e2e.js";
import { timed } from "./measure.js";
import { freePort } from "../test/helpers/free-port.js";

const MB = Number(process.env.BENCH_PF_MB ?? 64);
const ROUNDS = Number(process.env.BENCH_PF_ROUNDS ?? 5);
const PORTS = { download: 7001, upload: 7002, echo: 7003 } as const;
type Kind = keyof typeof PORTS;
/** The same transfer by a client inside the guest (busybox nc does not half-close: no echo). */
const GUEST_CLIENT: Partial<Record<Kind, string>> = {
  download: `nc 127.0.0.1 ${PORTS.download} </dev/null >/dev/null`,
  upload: `nc 127.0.0.1 ${PORTS.upload} </tmp/blob >/dev/null`,
};

/** One transfer of `kind` to the server at `port`; resolves when the server's end arrived. */
function transfer(kind: Kind, port: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let got = 0;
    socket.on("data", (d: Buffer) => (got += d.length));
    socket.on("error", reject);
    socket.on("end", () => {
      const want = kind === "upload" ? 0 : data.length;
      if (got === want) resolve();
      else reject(new Error(`${kind}: got ${got} bytes, expected ${want}`));
    });
    if (kind === "download") socket.end();
    else socket.end(data);
  });
}

/** The host's own servers of the three kinds, for the direct loopback baseline. */
async function hostServers(data: Buffer): Promise<{ ports: Record<Kind, number>; close(): void }> {
  const behave: Record<Kind, (s: Socket) => void> = {
    download: (s) => s.end(data),
    upload: (s) => s.resume().on("end", () => s.end()),
    echo: (s) => s.pipe(s),
  };
  const servers: Server[] = [];
  const ports = {} as Record<Kind, number>;
  for (const kind of Object.keys(PORTS) as Kind[]) {
    const server = createServer({ allowHalfOpen: true }, (s) => behave[kind](s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    ports[kind] = (server.address() as { port: number }).port;
    servers.push(server);
  }
  return { ports, close: () => servers.forEach((s) => s.close()) };
}

async function run(): Promise<void> {
  await setUpE2E();
  const data = randomBytes(MB << 20);
  const client = newClient();
  const host = await hostServers(data);
  const rows: string[] = [];
  try {
    await client.launch(new Sandbox(BUSYBOX).withMemory(1024));
    await client.writeFile("/tmp/blob", data);
    await client.writeFile("/tmp/send.sh", "#!/bin/sh\ncat /tmp/blob\n", { mode: 0o755 });
    await client.writeFile("/tmp/sink.sh", "#!/bin/sh\ncat >/dev/null\n", { mode: 0o755 });
    const programs: Record<Kind, string> = { download: "/tmp/send.sh", upload: "/tmp/sink.sh", echo: "/bin/cat" };
    for (const kind of Object.keys(PORTS) as Kind[]) {
      await client.exec(`nc -ll -p ${PORTS[kind]} -e ${programs[kind]} </dev/null >/dev/null 2>&1 &`);
    }
    // Host ports: free ones the host picks (the same port number is not needed on both sides).
    const local = await Promise.all(Object.keys(PORTS).map(() => freePort()));
    const kinds = Object.keys(PORTS) as Kind[];
    await client.portForward(...kinds.map((k, i) => `${local[i]}:${PORTS[k]}`));
    const forwarded = Object.fromEntries(kinds.map((k, i) => [k, local[i]!])) as Record<Kind, number>;
    for (const kind of kinds) {
      await retry(() => transfer(kind, forwarded[kind], data)); // also a warm-up round
      const through = await timed(ROUNDS, () => transfer(kind, forwarded[kind], data));
      const direct = await timed(ROUNDS, () => transfer(kind, host.ports[kind], data));
      const inGuest = GUEST_CLIENT[kind] && (await timed(ROUNDS, () => client.exec(GUEST_CLIENT[kind]!)));
      const rate = (ms: number) => ((MB * (kind === "echo" ? 2 : 1)) / (ms / 1000)).toFixed(1);
      const guestCell = inGuest ? `${inGuest.toFixed(0)} ms (${rate(inGuest)} MB/s)` : "-";
      rows.push(`| ${kind} ${MB} MB | ${through.toFixed(0)} ms (${rate(through)} MB/s) | ${direct.toFixed(0)} ms (${rate(direct)} MB/s) | ${(through / direct).toFixed(1)}x | ${guestCell} |`);
    }
  } finally {
    host.close();
    await client.close();
    await client.remove();
  }
  console.log(`port forward, ${BACKEND}, ${ROUNDS} rounds, medians; load ${loadavg().map((l) => l.toFixed(1)).join(" ")} on ${cpus().length} CPUs`);
  console.log("| transfer | through the forward | direct loopback | ratio | inside the guest |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) console.log(r);
}


/** The guest's servers start in the background: the first transfers may be refused (reset). */
async function retry(op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await op();
      return;
    } catch (err) {
      if (i >= 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

await run();
