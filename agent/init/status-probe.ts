// What the supervisor asks a running QEMU on its own: query-status every probe interval (a hung
// QEMU shows as "unresponsive" in the health report) and, after a restore, whether the incoming
// state has arrived (restore-watch.ts). Both end when QEMU stops.
import type { QmpClient } from "../qemu/qmp.ts";
import type { HealthReport } from "./platform.ts";

export class StatusProbe {
  private timer: ReturnType<typeof setInterval> | undefined;
  private restore: { stop(): void } | undefined;

  constructor(private readonly health: Pick<HealthReport, "qmpStatus">) {}

  /** Every `ms` (0: never), each answer bounded by min(ms, 2 s). */
  start(qmp: QmpClient, ms: number): void {
    if (!ms) return;
    this.timer = setInterval(() => {
      qmp.execute("query-status", undefined, Math.min(ms, 2000)).then(
        (r) => this.health.qmpStatus(String((r as { status?: unknown }).status ?? "unknown")),
        () => this.health.qmpStatus("unresponsive"),
      );
    }, ms);
  }

  /** Stopped with the probe. */
  watchRestore(w: { stop(): void }): void {
    this.restore = w;
  }

  stop(): void {
    this.restore?.stop();
    this.restore = undefined;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
