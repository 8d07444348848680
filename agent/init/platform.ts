// What the supervisor needs from the machine, as interfaces: the same supervisor runs under
// Xen, in the development VM, as PID 1 of a PID namespace in tests, and as a subreaper.
import type { HealthRecord } from "../health/schema.ts";

/** Ends the guest's life from inside its device model (xen-stubdom-protocol.md §7). */
export interface Hypervisor {
  shutdownGuest(guestDomid: number, reason: "crash" | "poweroff"): void;
}

export type PowerOffReason = "shutdown" | "crash" | "fatal" | "config";

export interface Machine {
  /**
   * Really PID 1: sync and reboot(RB_POWER_OFF), never returns. In tests and subreaper mode
   * an injected action (exit the process) — never reboot() on a host.
   */
  powerOff(reason: PowerOffReason): void;
  sync(): void;
}

export type HealthPatch = Partial<Omit<HealthRecord, "nics">>;

/** The health writer as the supervisor sees it (agent/health writes the keys). */
export interface HealthReport {
  /** Merge `patch`; `urgent` writes at once (phase changes), else at the next interval. */
  update(patch: HealthPatch, urgent?: boolean): void;
}
