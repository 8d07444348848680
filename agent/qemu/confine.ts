// QEMU's confinement policy, computed here and applied by stubdom-confine (stage 0 under that
// name, agent/stage0/confine.c) between fork and exec: Landlock rules for what QEMU may open,
// and the seccomp filter of seccomp.ts. Pure: the caller knows the Landlock ABI and hands the
// text to the helper through a memfd.
import type { BpfInsn } from "../bpf/asm.ts";
import { seccompProgram } from "./seccomp.ts";

/** Landlock filesystem rights (include/uapi/linux/landlock.h), with the ABI that added each. */
export const FS = {
  EXECUTE: 1 << 0,
  WRITE_FILE: 1 << 1,
  READ_FILE: 1 << 2,
  READ_DIR: 1 << 3,
  REMOVE_DIR: 1 << 4,
  REMOVE_FILE: 1 << 5,
  MAKE_CHAR: 1 << 6,
  MAKE_DIR: 1 << 7,
  MAKE_REG: 1 << 8,
  MAKE_SOCK: 1 << 9,
  MAKE_FIFO: 1 << 10,
  MAKE_BLOCK: 1 << 11,
  MAKE_SYM: 1 << 12,
  /** ABI 2 */
  REFER: 1 << 13,
  /** ABI 3 */
  TRUNCATE: 1 << 14,
  /** ABI 5: ioctl on character and block devices */
  IOCTL_DEV: 1 << 15,
} as const;
/** ABI 6: no signals to, and no connections to abstract UNIX sockets of, processes outside the domain. */
export const SCOPE = { ABSTRACT_UNIX_SOCKET: 1 << 0, SIGNAL: 1 << 1 } as const;

/** Every right the kernel of this ABI knows: all are handled, so what no rule grants is denied. */
export function handledFs(abi: number): number {
  let m = (1 << 13) - 1;
  if (abi >= 2) m |= FS.REFER;
  if (abi >= 3) m |= FS.TRUNCATE;
  if (abi >= 5) m |= FS.IOCTL_DEV;
  return m;
}
export const scoped = (abi: number) => (abi >= 6 ? SCOPE.ABSTRACT_UNIX_SOCKET | SCOPE.SIGNAL : 0);

const READ = FS.READ_FILE | FS.READ_DIR;
const DEVICE_RW = FS.READ_FILE | FS.WRITE_FILE | FS.IOCTL_DEV;
const DEVICE_RO = FS.READ_FILE | FS.IOCTL_DEV;
const RUN_DIR = FS.READ_FILE | FS.WRITE_FILE | FS.READ_DIR | FS.REMOVE_FILE | FS.MAKE_REG | FS.MAKE_SOCK | FS.TRUNCATE;

/** The fd number of the one exec the filter allows (seccomp.ts); close-on-exec, so QEMU never has it. */
export const EXEC_FD = 1023;
/** Bounds on what dm-argv can add: paths longer than PATH_MAX or past the count are not granted. */
export const MAX_ARGV_RULES = 64;
const MAX_PATH = 4095;

export interface Rule {
  readonly path: string;
  readonly access: number;
  /** Why QEMU may open it: for the log and the README. */
  readonly why: string;
}

export interface ConfineInput {
  /** QEMU's final argv (after buildQemuArgv), without the binary. */
  readonly argv: readonly string[];
  readonly binary: string;
  /** QEMU's ELF interpreter (PT_INTERP), which the kernel opens for exec too. */
  readonly interpreter: string | undefined;
  readonly runDir: string;
  /** The kernel's Landlock ABI; 0: none (not built in, or disabled). */
  readonly landlockAbi: number;
}

export interface Policy {
  readonly rules: readonly Rule[];
  readonly landlockAbi: number;
  readonly seccomp: readonly BpfInsn[];
  /** dm-argv paths left without a rule because of MAX_ARGV_RULES or their length. */
  readonly skipped: readonly string[];
}

/**
 * Absolute paths QEMU opens because its arguments name them: `-serial /dev/hvc3`,
 * `file=/dev/xvda`, `path=…`, `-kernel /…`. A `readonly=on` in the same argument keeps a
 * device read-only.
 */
export function argvPaths(argv: readonly string[]): Array<{ path: string; readonly: boolean }> {
  const out: Array<{ path: string; readonly: boolean }> = [];
  for (const a of argv) {
    const parts = a.split(",");
    const readonly = parts.some((p) => /^(readonly|read-only)=(on|true|yes)$/.test(p));
    for (const p of parts) {
      const value = p.startsWith("/") ? p : /^[a-z-]+=\//.test(p) ? p.slice(p.indexOf("=") + 1) : undefined;
      if (value !== undefined) out.push({ path: value, readonly });
    }
  }
  return out;
}

const normal = (p: string) => p.length <= MAX_PATH && !p.includes("\n") && !p.split("/").includes("..");

export function confinePolicy(input: ConfineInput): Policy {
  const rules: Rule[] = [];
  const skipped: string[] = [];
  const add = (path: string, access: number, why: string) => rules.push({ path, access, why });
  add("/usr", READ, "libraries, firmware, keymaps");
  add(input.binary, FS.READ_FILE | FS.EXECUTE, "QEMU itself");
  if (input.interpreter) add(input.interpreter, FS.READ_FILE | FS.EXECUTE, "QEMU's dynamic loader");
  add("/etc", READ, "the loader's and libc's configuration");
  add("/proc", READ, "QEMU reads its own /proc/self");
  add("/sys", READ, "device and CPU topology");
  add("/dev/xen", DEVICE_RW | FS.READ_DIR, "privcmd, evtchn, gntdev, xenbus: the device model's hypercalls");
  add("/dev/net/tun", DEVICE_RW, "the guest NICs' taps");
  // PCI passthrough (agent/pci): xen-pci-passthrough writes a device's config space through
  // sysfs and, in QEMU 7.2, maps its MSI-X table through /dev/mem. pcifront adds the devices
  // under /sys/devices after QEMU has started, so the rule covers that tree; the kernel's
  // STRICT_DEVMEM and IO_STRICT_DEVMEM keep /dev/mem off RAM and off devices a driver holds.
  add("/sys/devices", READ | FS.WRITE_FILE, "PCI passthrough: pcifront devices' config space");
  add("/dev/mem", DEVICE_RW, "PCI passthrough: the MSI-X table (QEMU 7.2)");
  for (const d of ["/dev/null", "/dev/zero", "/dev/full"]) add(d, FS.READ_FILE | FS.WRITE_FILE, "standard device");
  for (const d of ["/dev/urandom", "/dev/random"]) add(d, FS.READ_FILE, "entropy");
  add(input.runDir, RUN_DIR, "QEMU's run directory");
  const seen = new Set(rules.map((r) => r.path));
  let fromArgv = 0;
  for (const { path, readonly } of argvPaths(input.argv)) {
    if (seen.has(path)) continue;
    seen.add(path);
    if (!normal(path) || fromArgv >= MAX_ARGV_RULES) {
      skipped.push(path);
      continue;
    }
    fromArgv++;
    const dev = path.startsWith("/dev/");
    add(path, dev ? (readonly ? DEVICE_RO : DEVICE_RW) : READ, dev ? (readonly ? "a read-only device in dm-argv" : "a device in dm-argv") : "a file in dm-argv");
  }
  const mask = handledFs(input.landlockAbi);
  return {
    rules: input.landlockAbi > 0 ? rules.map((r) => ({ ...r, access: r.access & mask })) : [],
    landlockAbi: input.landlockAbi,
    seccomp: seccompProgram(EXEC_FD),
    skipped,
  };
}

/** The text stubdom-confine reads (format in confine.c). */
export function policyText(p: Policy): string {
  const lines = ["stubdom-confine 1", `landlock ${p.landlockAbi} ${p.landlockAbi > 0 ? handledFs(p.landlockAbi) : 0} ${scoped(p.landlockAbi)}`];
  for (const r of p.rules) lines.push(`allow ${r.access} ${r.path}`);
  lines.push(`exec ${EXEC_FD}`, `seccomp ${p.seccomp.length}`);
  for (const i of p.seccomp) lines.push(`${i.code} ${i.jt} ${i.jf} ${i.k >>> 0}`);
  lines.push("end", "");
  return lines.join("\n");
}
