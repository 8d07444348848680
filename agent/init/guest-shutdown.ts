// A guest that powers itself off (ACPI S5, `xl shutdown -F`) makes Xen's QEMU shut the domain
// down (xendevicemodel_shutdown) and send its SHUTDOWN event on every monitor. libxl's QEMU has
// -no-shutdown and stops there (the toolstack then destroys the stub domain); without it QEMU
// exits 0. Either is the end of the guest, not a crash of its device model: the supervisor
// reports "stopping", and on that exit stops cleanly instead of applying the crash policy. QEMU's word is not trusted beyond that: the
// hypervisor is still told to power the guest off (Xen ignores a second shutdown of a domain
// already shutting down), so a QEMU that fakes the event cannot leave the guest hanging.
import type { QmpEvent } from "../qemu/qmp.ts";

/** QEMU's ShutdownCause values (qapi/run-state.json) a guest itself can cause. */
const GUEST_CAUSES = new Set(["guest-shutdown", "guest-reset", "guest-panic"]);

/** The guest-caused reason of a SHUTDOWN event ("guest-shutdown", ...), else undefined. */
export function guestShutdownCause(ev: QmpEvent): string | undefined {
  if (ev.event !== "SHUTDOWN" || typeof ev.data !== "object" || ev.data === null) return undefined;
  const { guest, reason } = ev.data as { guest?: unknown; reason?: unknown };
  if (guest !== true || typeof reason !== "string" || !GUEST_CAUSES.has(reason)) return undefined;
  return reason;
}

/**
 * How a QEMU exit ends the stub domain: "clean" only for exit code 0 after the guest itself
 * shut down (not a panic, which is a crash of the guest and reported as one).
 */
export function exitAfterGuestShutdown(cause: string | undefined, exit: { code?: number | null; signal?: string | null } | undefined): boolean {
  return cause !== undefined && cause !== "guest-panic" && exit !== undefined && !exit.signal && exit.code === 0;
}
