// Machine setup as data (u-root's libinit records): each entry describes itself like a shell
// line, so the boot log reads as a transcript and tests compare tables. An entry is required
// or optional; a failed required entry stops the boot (fatal path), an optional one logs.
import type { Logger } from "../log.ts";

export type SetupAction =
  | { kind: "mkdir"; path: string; mode: number }
  | { kind: "mount"; source: string; target: string; fstype: string; flags: readonly MountFlag[]; data?: string }
  | { kind: "remount"; target: string; flags: readonly MountFlag[] }
  | { kind: "write"; path: string; value: string }
  | { kind: "symlink"; target: string; path: string }
  | { kind: "hostname"; name: string }
  | { kind: "cad-off" }
  | { kind: "link-up"; ifname: string }
  | { kind: "klog-clear" };

export type MountFlag = "ro" | "nosuid" | "nodev" | "noexec";

export type SetupEntry = SetupAction & { required: boolean; why?: string };

/** The syscalls behind the table; a fake records them in tests. */
export interface SetupSys {
  isMounted(target: string): boolean;
  mkdir(path: string, mode: number): void;
  mount(source: string, target: string, fstype: string, flags: readonly MountFlag[], data?: string): void;
  remount(target: string, flags: readonly MountFlag[]): void;
  write(path: string, value: string): void;
  symlink(target: string, path: string): void;
  hostname(name: string): void;
  cadOff(): void;
  linkUp(ifname: string): void;
  klogClear(): void;
}

export function describe(e: SetupAction): string {
  switch (e.kind) {
    case "mkdir":
      return `mkdir -p -m ${e.mode.toString(8)} ${e.path}`;
    case "mount": {
      const o = [...e.flags, ...(e.data ? [e.data] : [])].join(",");
      return `mount -t ${e.fstype}${o ? ` -o ${o}` : ""} ${e.source} ${e.target}`;
    }
    case "remount":
      return `mount -o remount,${e.flags.join(",")} ${e.target}`;
    case "write":
      return e.path.startsWith("/proc/sys/")
        ? `sysctl -w ${e.path.slice("/proc/sys/".length).replaceAll("/", ".")}=${e.value}`
        : `echo ${e.value} > ${e.path}`;
    case "symlink":
      return `ln -s ${e.target} ${e.path}`;
    case "hostname":
      return `hostname ${e.name}`;
    case "cad-off":
      return "ctrlaltdel soft";
    case "link-up":
      return `ip link set ${e.ifname} up`;
    case "klog-clear":
      return "dmesg -C";
  }
}

export class SetupError extends Error {
  constructor(readonly line: string, cause: unknown) {
    super(`${line}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "SetupError";
  }
}

function apply(e: SetupAction, sys: SetupSys): "done" | "skipped" {
  switch (e.kind) {
    case "mkdir":
      sys.mkdir(e.path, e.mode);
      return "done";
    case "mount":
      if (sys.isMounted(e.target)) return "skipped";
      sys.mount(e.source, e.target, e.fstype, e.flags, e.data);
      return "done";
    case "remount":
      sys.remount(e.target, e.flags);
      return "done";
    case "write":
      sys.write(e.path, e.value);
      return "done";
    case "symlink":
      sys.symlink(e.target, e.path);
      return "done";
    case "hostname":
      sys.hostname(e.name);
      return "done";
    case "cad-off":
      sys.cadOff();
      return "done";
    case "link-up":
      sys.linkUp(e.ifname);
      return "done";
    case "klog-clear":
      sys.klogClear();
      return "done";
  }
}

/** Runs the table in order, one log line per entry; throws SetupError on a required failure. */
export function runSetup(entries: readonly SetupEntry[], sys: SetupSys, log: Logger): void {
  for (const e of entries) {
    const line = describe(e);
    let outcome: "done" | "skipped";
    try {
      outcome = apply(e, sys);
    } catch (err) {
      if (e.required) {
        log.error(`${line}: FAILED: ${(err as Error).message}`);
        throw new SetupError(line, err);
      }
      log.warn(`${line}: failed (optional): ${(err as Error).message}`);
      continue;
    }
    log.info(outcome === "skipped" ? `${line}  # already mounted` : line);
  }
}

/** The stub domain's base system (xen-stubdom-protocol.md §8, the Qubes init's list and more). */
export function baseSetup(hostname: string): SetupEntry[] {
  return [
    // Stage 0 mounted these before exec'ing us (a Bun binary cannot start without /proc).
    { kind: "mount", source: "proc", target: "/proc", fstype: "proc", flags: ["nosuid", "nodev", "noexec"], required: true },
    { kind: "mount", source: "sysfs", target: "/sys", fstype: "sysfs", flags: ["nosuid", "nodev", "noexec"], required: true },
    { kind: "mount", source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: ["nosuid"], data: "mode=0755", required: true },
    { kind: "mkdir", path: "/dev/pts", mode: 0o755, required: true },
    { kind: "mount", source: "devpts", target: "/dev/pts", fstype: "devpts", flags: ["nosuid", "noexec"], data: "mode=0620,ptmxmode=000", required: false },
    { kind: "mkdir", path: "/dev/shm", mode: 0o1777, required: true },
    { kind: "mount", source: "shm", target: "/dev/shm", fstype: "tmpfs", flags: ["nosuid", "nodev", "noexec"], data: "size=1m,mode=1777", required: true },
    { kind: "mkdir", path: "/tmp", mode: 0o1777, required: true },
    // Small and noexec as in Qubes: QEMU's monitors' sockets live here, nothing else.
    { kind: "mount", source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: ["nosuid", "nodev", "noexec"], data: "size=1m,mode=1777", required: true },
    { kind: "symlink", target: "/proc/self/fd", path: "/dev/fd", required: false },
    { kind: "remount", target: "/", flags: ["ro"], required: true, why: "nothing in the image should change after boot" },
    // QEMU maps guest RAM it never touches; strict accounting would refuse it in 128 MiB.
    { kind: "write", path: "/proc/sys/vm/overcommit_memory", value: "1", required: true },
    { kind: "hostname", name: hostname, required: false },
    { kind: "cad-off", required: true, why: "Ctrl-Alt-Del then arrives as SIGINT (SIGPWR is JSC's)" },
    { kind: "link-up", ifname: "lo", required: false },
  ];
}

/** Entries that need the Xen modules loaded first. */
export function xenSetup(): SetupEntry[] {
  return [
    { kind: "mount", source: "xenfs", target: "/proc/xen", fstype: "xenfs", flags: [], required: true },
    // Qubes raises it the same way: the default limit is too low for QEMU's grant mappings.
    { kind: "write", path: "/sys/module/xen_gntalloc/parameters/limit", value: "1073741823", required: false },
  ];
}

/** Last before QEMU: early kernel messages leak the KASLR layout to whoever reads dmesg later. */
export const scrubSetup: SetupEntry[] = [{ kind: "klog-clear", required: false }];
