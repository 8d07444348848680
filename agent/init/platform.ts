// What the supervisor needs from the machine, as interfaces: the same supervisor runs under
// Xen, in the development VM, as PID 1 of a PID namespace in tests, and as a subreaper.
import type { HealthWriter } from "../health/writer.ts";

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

/** The part of agent/health's writer that the supervisor drives. */
export type HealthReport = Pick<
  HealthWriter,
  "setPhase" | "bootPhase" | "agentOverhead" | "confinement" | "qemuStarted" | "qemuExited" | "qmpStatus" | "error" | "flush"
>;
