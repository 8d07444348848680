// On restore, QEMU starts with `-incoming fd:N` on /dev/hvc2 and waits there until libxl has
// streamed the guest's device state into console 2 (protocol §3, §6). Its monitor answers
// meanwhile (query-status: "inmigrate"), so "QEMU ready" says nothing about the restore. This
// watch says when the state has arrived, and says so early when it has not: libxl gives a stub
// domain LIBXL_STUBDOM_START_TIMEOUT (30 s) from its unpause to report QEMU running and then
// destroys it, with nothing in its own error about why.
import type { Logger } from "../log.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import type { HealthReport } from "./platform.ts";

/** libxl_internal.h LIBXL_STUBDOM_START_TIMEOUT, counted from about this kernel's start. */
export const LIBXL_STUBDOM_START_MS = 30_000;
/** When a restore that has not arrived is reported: before libxl destroys us. */
export const RESTORE_STALL_AT_MS = 25_000;
export const RESTORE_POLL_MS = 500;

export interface RestoreWatchDeps {
  /** The supervisor's monitor. */
  qmp: Pick<QmpClient, "execute">;
  /** ms since kernel start (the clock of RESTORE_STALL_AT_MS). */
  nowMs(): number;
  log: Logger;
  health: Pick<HealthReport, "error" | "bootPhase" | "flush">;
}

/** Polls until QEMU leaves "inmigrate"; stop() ends it (QEMU gone, agent stopping). */
export function watchRestore(d: RestoreWatchDeps, stallAtMs = RESTORE_STALL_AT_MS, pollMs = RESTORE_POLL_MS): { stop(): void } {
  let stopped = false;
  let reported = false;
  const started = d.nowMs();
  void (async () => {
    while (!stopped) {
      const status = await d.qmp.execute("query-status", undefined, 2000).then(
        (r) => String((r as { status?: unknown }).status),
        () => undefined,
      );
      if (stopped) return;
      const now = d.nowMs();
      if (status !== undefined && status !== "inmigrate") {
        d.log.info(`restore: QEMU has the guest's state (${status}) ${Math.round(now - started)} ms after it was ready`);
        d.health.bootPhase("qemu_restored", Math.round(now));
        // Written now, not at the next heartbeat: dom0 tools wait for the restore's end.
        d.health.flush();
        return;
      }
      if (!reported && now >= stallAtMs) {
        reported = true;
        const msg =
          `restore: no guest state on /dev/hvc2 yet: QEMU still waits for it ${(now / 1000).toFixed(1)} s after this ` +
          `domain started (query-status ${status ?? "unanswered"}); libxl gives up at ${LIBXL_STUBDOM_START_MS / 1000} s`;
        d.log.error(msg);
        d.health.error(msg);
        // Now, not at the next heartbeat: libxl destroys this domain within 5 s of it.
        d.health.flush();
      }
      await Bun.sleep(pollMs);
    }
  })();
  return {
    stop: () => {
      stopped = true;
    },
  };
}
