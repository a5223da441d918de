// Which kernel modules the guest's initramfs loads, and in what order: each module after
// everything it depends on, resolved from the kernel's modules.dep (busybox insmod does not
// resolve dependencies itself).
import { posix } from "node:path";

/**
 * What every guest needs from the modular Debian kernel: the virtio-mmio transport, the root
 * image's disk and file system (ext4, which wants crc32c through the crypto API for
 * metadata_csum: not a modules.dep edge), the overlay that makes it writable, and the agent's
 * virtio-serial port. Under TCG every module costs boot time, so the rest load only for VMs
 * that use them.
 */
export const GUEST_MODULES = [
  "virtio_mmio", "virtio_blk", "virtio_console",
  "crc32c_generic", "ext4", "overlay",
] as const;

/** The sealed network's NIC; loaded only by VMs that have one. */
export const GUEST_NET_MODULES = ["virtio_net"] as const;

/**
 * Host directory shares; loaded only by VMs that have one (they cost ~0.2 s of TCG boot).
 * 9p over virtio needs the 9pnet_virtio transport, which nothing depends on.
 */
export const GUEST_9P_MODULES = ["9pnet_virtio", "9p"] as const;

/** FUSE, for the intercepting file system (guest/agent/fuse-server.c); loaded only by VMs that intercept. */
export const GUEST_FUSE_MODULES = ["fuse"] as const;

/** One modules.dep entry: path relative to the module tree, and its dependencies' paths. */
export type ModuleDeps = Map<string, string[]>;

/** Module name as insmod/lsmod know it: file name without .ko ("-" and "_" as written). */
export function moduleName(path: string): string {
  return posix.basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, "");
}

export function parseModulesDep(text: string): ModuleDeps {
  const deps: ModuleDeps = new Map();
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`modules.dep line ${i + 1} is malformed: ${JSON.stringify(line)}`);
    deps.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
  }
  return deps;
}

/** Module paths to insmod, dependencies first, each once. Unknown names are an error. */
export function loadOrder(deps: ModuleDeps, wanted: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const path of deps.keys()) byName.set(normalise(moduleName(path)), path);
  const order: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (path: string, via: string): void => {
    if (done.has(path)) return;
    if (visiting.has(path)) throw new Error(`modules.dep has a dependency cycle through ${path}`);
    const own = deps.get(path);
    if (!own) throw new Error(`${via} depends on ${path}, which modules.dep does not list`);
    visiting.add(path);
    for (const d of own) visit(d, path);
    visiting.delete(path);
    done.add(path);
    order.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(normalise(name));
    if (!path) throw new Error(`the guest kernel has no module "${name}"`);
    visit(path, name);
  }
  return order;
}

/** The kernel treats "-" and "_" in module names as the same character. */
function normalise(name: string): string {
  return name.replaceAll("-", "_");
}

/** The initramfs's load lists: always, then only for VMs with a network, with 9p shares, with intercepted mounts. */
export function guestModuleSets(deps: ModuleDeps): { core: string[]; net: string[]; ninep: string[]; fuse: string[] } {
  const core = loadOrder(deps, GUEST_MODULES);
  const beyondCore = (wanted: readonly string[]) => loadOrder(deps, [...GUEST_MODULES, ...wanted]).filter((m) => !core.includes(m));
  return { core, net: beyondCore(GUEST_NET_MODULES), ninep: beyondCore(GUEST_9P_MODULES), fuse: beyondCore(GUEST_FUSE_MODULES) };
}
