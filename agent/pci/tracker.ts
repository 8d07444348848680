// Each PCI device libxl assigns to this stub domain, from the backend's listing to the device in
// sysfs where QEMU opens it: libxl sends QEMU `device_add xen-pci-passthrough` once pcifront is
// connected, and retries 10 times a second apart while QEMU refuses, so a device that never
// appears must be named here, within a bound, with what pcifront said.
//
//   waiting ──(in sysfs)──> present          one line each way; `since_ms` in the writer's clock
//      │                                      
//      └─(deadline)──> missing ──(appears)──> present (late: said so)
//
// pciback outside passthrough mode shows the device at another address (`local`): QEMU 9.1 and
// later look that address up (xen-host-pci-device.c), QEMU 7.2 (Debian 12) opens the host's
// address in sysfs and fails; a warning says so once per device.
//   any ──(substate Closing/Closed)──> removing
import type { PciHealth, PciState } from "../health/schema.ts";
import type { Logger } from "../log.ts";
import type { XenStore } from "../xenstore/types.ts";
import { readString } from "../xenstore/util.ts";
import { MAX_PCI_DEVICES, readAssigned, type AssignedPci } from "./assigned.ts";
import type { PciSysfs } from "./sysfs.ts";

/** libxl retries device_add for 10 s; a device later than that is reported missing. */
export const DEFAULT_DEADLINE_MS = 10_000;
const CLOSING = 5;
const CLOSED = 6;
/** Distinct problem lines remembered so that each is logged once. */
const MAX_PROBLEMS = 64;

export interface PciTrackerDeps {
  xs: XenStore;
  stubDomid: number;
  sysfs: PciSysfs;
  nowMs(): number;
  log: Logger;
  /** Into the health report's `error`. */
  report(message: string): void;
  deadlineMs?: number;
}

export class PciTracker {
  private readonly devices = new Map<string, PciHealth>();
  /** When each BDF was first listed, for its deadline. */
  private readonly listedAt = new Map<string, number>();
  private readonly problemsSeen = new Set<string>();
  private readonly deadlineMs: number;

  constructor(private readonly deps: PciTrackerDeps) {
    this.deadlineMs = deps.deadlineMs ?? DEFAULT_DEADLINE_MS;
  }

  /** Read the backend and sysfs again; log and report every change of state. */
  refresh(): void {
    const { devices: listed, frontendState, problems } = readAssigned(this.deps.xs, this.deps.stubDomid);
    for (const p of problems) this.problem(`pci: ${p}`);
    // Whole milliseconds: the report's times are integers (the writer refuses anything else).
    const now = Math.round(this.deps.nowMs());
    const seen = new Set<string>();
    for (const a of listed) {
      if (seen.has(a.bdf)) continue;
      seen.add(a.bdf);
      if (!this.listedAt.has(a.bdf)) {
        this.listedAt.set(a.bdf, now);
        this.deps.log.info(`pci: ${a.bdf} assigned (backend dev-${a.index})`);
      }
      this.update(a, now, frontendState);
    }
    for (const bdf of [...this.devices.keys()]) {
      if (seen.has(bdf)) continue;
      this.devices.delete(bdf);
      this.listedAt.delete(bdf);
      this.deps.log.info(`pci: ${bdf} is no longer assigned`);
    }
  }

  private update(a: AssignedPci, now: number, frontendState: number | undefined): void {
    const prev = this.devices.get(a.bdf);
    const local = a.vdevDiffers;
    const hw = this.deps.sysfs.device(local ?? a.bdf);
    const where = local ? { local } : {};
    if (local && prev?.local !== local) {
      this.deps.log.warn(
        `pci: ${a.bdf}: pcifront shows it at ${local}; QEMU before 9.1 (Debian 12's 7.2) opens the host's address and fails: run dom0's pciback in passthrough mode (xen-pciback.passthrough=1)`,
      );
    }
    let next: Omit<PciHealth, "since_ms">;
    if (a.state === CLOSING || a.state === CLOSED) {
      next = { bdf: a.bdf, ...where, state: "removing" };
    } else if (hw) {
      next = { bdf: a.bdf, ...where, state: "present", vendor: hw.vendor, device: hw.device };
    } else if (now - (this.listedAt.get(a.bdf) ?? now) >= this.deadlineMs) {
      const said = this.pcifrontError();
      next = {
        bdf: a.bdf,
        ...where,
        state: "missing",
        error: `${local ?? a.bdf} not in /sys/bus/pci/devices ${this.deadlineMs} ms after libxl assigned it (pcifront state ${frontendState ?? "absent"}${said ? `; pcifront: ${said}` : ""})`,
      };
    } else {
      next = { bdf: a.bdf, ...where, state: "waiting" };
    }
    if (prev && prev.state === next.state) {
      // The same state: only its details may have changed, and it is not said again.
      this.devices.set(a.bdf, { ...next, since_ms: prev.since_ms });
      return;
    }
    this.devices.set(a.bdf, { ...next, since_ms: now });
    if (next.error) {
      const line = `pci: ${a.bdf}: ${next.error}`;
      this.deps.log.error(line);
      this.deps.report(line);
    } else if (next.state === "present") {
      const late = prev?.state === "missing" ? `, late: ${now - (this.listedAt.get(a.bdf) ?? now)} ms after it was assigned` : "";
      this.deps.log.info(`pci: ${a.bdf} present (${next.vendor}:${next.device})${late}`);
    } else if (next.state === "removing") {
      this.deps.log.info(`pci: ${a.bdf} being removed`);
    }
  }

  /** What pcifront reported through xenbus_dev_fatal, if anything (bounded, one line). */
  private pcifrontError(): string | undefined {
    try {
      const e = readString(this.deps.xs, `/local/domain/${this.deps.stubDomid}/error/device/pci/0/error`, 200);
      return e?.replace(/[\u0000-\u001f\u007f]/g, " ");
    } catch {
      return undefined;
    }
  }

  private problem(line: string): void {
    if (this.problemsSeen.has(line)) return;
    if (this.problemsSeen.size >= MAX_PROBLEMS) this.problemsSeen.clear();
    this.problemsSeen.add(line);
    this.deps.log.warn(line);
    this.deps.report(line);
  }

  /** The devices as the health report carries them, in BDF order. */
  health(): PciHealth[] {
    return [...this.devices.values()].sort((a, b) => (a.bdf < b.bdf ? -1 : 1)).slice(0, MAX_PCI_DEVICES);
  }

  /** When (nowMs clock) the earliest waiting device's deadline passes; undefined when none waits. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const d of this.devices.values()) {
      if (d.state !== "waiting") continue;
      const at = (this.listedAt.get(d.bdf) ?? 0) + this.deadlineMs;
      next = next === undefined ? at : Math.min(next, at);
    }
    return next;
  }
}
