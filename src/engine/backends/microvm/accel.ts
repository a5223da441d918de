// KVM or TCG. An openable /dev/kvm is not enough: these cloud machines expose a PVM /dev/kvm
// (kvm_pvm) that only runs guests built for PVM; Debian's kernel dies under it. So KVM is used
// only when the CPU itself advertises VT-x/AMD-V and PVM is not what provides /dev/kvm.
import { access, constants, readFile } from "node:fs/promises";
import { settings } from "../../../settings/settings.js";

export interface HostFacts {
  cpuinfo: string;
  devKvmUsable: boolean;
  kvmPvmLoaded: boolean;
}

export interface AccelChoice {
  accel: "kvm" | "tcg";
  /** One sentence for logs and `matchlock doctor`. */
  reason: string;
  /** The host TSC in kHz (guest needs it under TCG: without it ~30% of microvm boots hang). */
  tscKhz: number | undefined;
}

export async function hostFacts(): Promise<HostFacts> {
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const devKvmUsable = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(() => true, () => false);
  const kvmPvmLoaded = await access("/sys/module/kvm_pvm").then(() => true, () => false);
  return { cpuinfo, devKvmUsable, kvmPvmLoaded };
}

export function chooseAccel(facts: HostFacts, override = settings.microvmAccel.read()): AccelChoice {
  const tscKhz = tscKhzFrom(facts.cpuinfo);
  const flags = new Set((/^flags\s*:(.*)$/m.exec(facts.cpuinfo)?.[1] ?? "").trim().split(/\s+/));
  const hw = flags.has("vmx") ? "VT-x (vmx)" : flags.has("svm") ? "AMD-V (svm)" : undefined;
  if (override === "tcg") return { accel: "tcg", reason: "TCG forced by MATCHLOCK_MICROVM_ACCEL=tcg", tscKhz };
  if (override === "kvm") return { accel: "kvm", reason: "KVM forced by MATCHLOCK_MICROVM_ACCEL=kvm", tscKhz };
  if (override && override !== "kvm" && override !== "auto") {
    throw new Error(`MATCHLOCK_MICROVM_ACCEL must be kvm, tcg or auto, not ${JSON.stringify(override)}`);
  }
  if (!hw) {
    const pvm = facts.kvmPvmLoaded ? "; /dev/kvm here is PVM (kvm_pvm), which cannot run Debian's guest kernel" : "";
    return { accel: "tcg", reason: `TCG: the CPU has no vmx/svm flag (no hardware virtualization)${pvm}`, tscKhz };
  }
  if (facts.kvmPvmLoaded) {
    return { accel: "tcg", reason: "TCG: /dev/kvm is provided by kvm_pvm, which cannot run Debian's guest kernel", tscKhz };
  }
  if (!facts.devKvmUsable) return { accel: "tcg", reason: `TCG: the CPU has ${hw} but /dev/kvm is missing or not accessible`, tscKhz };
  return { accel: "kvm", reason: `KVM: the CPU has ${hw} and /dev/kvm is usable`, tscKhz };
}

/** "cpu MHz : 2445.410" -> 2445410. Undefined when cpuinfo does not say. */
export function tscKhzFrom(cpuinfo: string): number | undefined {
  const mhz = Number(/^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}
