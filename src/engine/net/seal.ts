// Everything the host does for one sandbox with a network policy, independent of the isolation
// engine: the link allocation, the CA, the files the guest must see (resolver, trust bundle), the
// env that points TLS clients at the CA, and, once the driver has brought up the host end of
// the link, the DNS server, the proxy and the firewall. close() undoes all of it.
import { lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConnectionBudget, connectionLimits, type ConnectionLimits } from "./connection-limits.js";
import { SandboxDnsServer, SyntheticAddresses } from "./dns-server.js";
import type { NetworkEvent, NetworkEventSink } from "./events.js";
import { installFirewall } from "./firewall.js";
import type { InterceptionConfig } from "./interception/config.js";
import { Interceptor } from "./interception/interceptor.js";
import { allocateLink, LINK_PREFIX_LENGTH, releaseLink, type LinkAllocation } from "./link-allocation.js";
import { MitmCa } from "./mitm-ca.js";
import type { NetworkPolicy } from "./policy.js";
import { PortSniffer } from "./port-sniffer.js";
import { InterceptingProxy } from "./proxy.js";
import { UpstreamResolver } from "./upstream.js";

/** Where the guest finds the trust bundle (system bundle path of Debian, Ubuntu, Alpine). */
export const GUEST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
export const GUEST_CA_CERT = "/etc/ssl/certs/matchlock-ca.crt";
/** Other distributions' bundle paths, covered too when the image has them. */
const OTHER_BUNDLES = ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

export interface GuestFile {
  guestPath: string;
  hostPath: string;
}

export interface SealOptions {
  vmId: string;
  stateDir: string;
  /** The image's root file system, read for its existing CA bundle. */
  rootfs: string;
  policy: NetworkPolicy;
  /** The create config's dns_servers: where the engine resolves allowed names (empty: the host's resolver). */
  dnsServers?: string[];
  /** The create config's network.interception: rules the proxy applies to HTTP(S) requests and answers. */
  interception?: InterceptionConfig | undefined;
  onEvent: NetworkEventSink;
  log: (line: string) => void;
}

export class NetworkSeal {
  private dns: SandboxDnsServer | undefined;
  private proxy: InterceptingProxy | undefined;
  private sniffer: PortSniffer | undefined;
  private closed = false;

  private constructor(
    private readonly opts: SealOptions,
    readonly link: LinkAllocation,
    private readonly ca: MitmCa,
    readonly guestFiles: GuestFile[],
    private readonly limits: ConnectionLimits,
  ) {}

  static async open(opts: SealOptions): Promise<NetworkSeal> {
    const limits = connectionLimits(); // a bad setting fails the create before anything is allocated
    const link = await allocateLink(opts.vmId);
    try {
      const ca = await MitmCa.create(opts.vmId);
      const dir = join(opts.stateDir, "net");
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const files: GuestFile[] = [];
      const put = async (name: string, content: string, guestPaths: string[]) => {
        const hostPath = join(dir, name);
        await writeFile(hostPath, content, { mode: 0o644 });
        for (const guestPath of guestPaths) files.push({ guestPath, hostPath });
      };
      await put("resolv.conf", `nameserver ${link.hostIp}\n`, ["/etc/resolv.conf"]);
      await put("matchlock-ca.crt", ca.certificatePem, [GUEST_CA_CERT]);
      const existing = await imageBundle(opts.rootfs);
      const others = [];
      for (const p of OTHER_BUNDLES) if (await exists(join(opts.rootfs, p))) others.push(p);
      await put("ca-bundle.crt", existing + (existing && !existing.endsWith("\n") ? "\n" : "") + ca.certificatePem, [GUEST_CA_BUNDLE, ...others]);
      return new NetworkSeal(opts, link, ca, files, limits);
    } catch (err) {
      await releaseLink(link);
      throw err;
    }
  }

  /** Env for every exec: where Python, requests, curl and Node look for trust roots. */
  get guestEnv(): Record<string, string> {
    return {
      SSL_CERT_FILE: GUEST_CA_BUNDLE,
      REQUESTS_CA_BUNDLE: GUEST_CA_BUNDLE,
      CURL_CA_BUNDLE: GUEST_CA_BUNDLE,
      NODE_EXTRA_CA_CERTS: GUEST_CA_CERT,
    };
  }

  /** Who the sandbox may reach; its allow-list changes at runtime (allow_list_add/delete). */
  get policy(): NetworkPolicy {
    return this.opts.policy;
  }

  get prefixLength(): number {
    return LINK_PREFIX_LENGTH;
  }

  /** Called once the driver has made the link (makeLink) and its host end carries link.hostIp. */
  async attach(): Promise<void> {
    const { policy } = this.opts;
    // Events and log lines show placeholders only, whatever a URL or an upstream's error
    // message carried: the last word on what leaves the seal toward the client.
    const onEvent: NetworkEventSink = (e) => this.opts.onEvent(redactEvent(policy, e));
    const log = (line: string) => this.opts.log(policy.redactValues(line));
    const addresses = new SyntheticAddresses();
    const resolver = new UpstreamResolver(this.opts.dnsServers ?? []);
    this.dns = new SandboxDnsServer(policy, addresses, log);
    const dns = await this.dns.listen(this.link.hostIp, 0);
    // One count of open guest connections for all of this sandbox's listeners.
    const { admit } = new ConnectionBudget(this.limits.open, onEvent, log);
    const interceptor = new Interceptor(this.opts.interception, { secretIn: (text) => policy.secretIn(text), log });
    this.proxy = new InterceptingProxy(policy, this.ca, onEvent, log, resolver, interceptor);
    const { http, https } = await this.proxy.listen(this.link.hostIp, admit);
    this.sniffer = new PortSniffer(policy, addresses, this.proxy, onEvent, log, resolver);
    const other = await this.sniffer.listen(this.link.hostIp, admit);
    await installFirewall({
      table: this.link.nftTable, hostInterface: this.link.hostInterface, hostIp: this.link.hostIp, ports: { http, https, other, dns }, limits: this.limits,
    });
  }

  /** Stops the services and removes the link, netns, firewall and allocation. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dns?.close();
    this.proxy?.close();
    this.sniffer?.close();
    await releaseLink(this.link);
  }
}

function redactEvent(policy: NetworkPolicy, e: NetworkEvent): NetworkEvent {
  const out: Record<string, unknown> = { ...e };
  for (const [k, v] of Object.entries(out)) if (typeof v === "string") out[k] = policy.redactValues(v);
  return out as unknown as NetworkEvent;
}

/** The image's own bundle. Only a regular file is read: a symlink in an image could point anywhere on the host. */
async function imageBundle(rootfs: string): Promise<string> {
  return (await isRegularFile(join(rootfs, GUEST_CA_BUNDLE))) ? readFile(join(rootfs, GUEST_CA_BUNDLE), "utf8") : "";
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

async function isRegularFile(p: string): Promise<boolean> {
  return lstat(p).then((s) => s.isFile() && s.size < 16 * 1024 * 1024, () => false);
}
