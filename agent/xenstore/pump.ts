// The main loop of a dom0 command whose whole job is waiting for xenstore watch events
// (`status --watch`, `console0`): it waits in poll() through pumpWatches, in 100 ms slices
// between which the event loop runs timers and signal handlers, until SIGINT or SIGTERM.
import type { XenStore } from "./types.ts";

const SLICE_MS = 100;

export interface PumpOptions {
  /** Runs before every slice (work the last events asked for). */
  each?: () => void;
  /** After a slice that delivered events, the time timers get before the next wait. */
  afterEventsMs?: number;
}

export async function pumpUntilSignal(xs: XenStore, opts: PumpOptions = {}): Promise<void> {
  let stop = false;
  const halt = () => void (stop = true);
  process.once("SIGINT", halt);
  process.once("SIGTERM", halt);
  try {
    while (!stop) {
      opts.each?.();
      // A handle whose events arrive on their own has no pumpWatches: then only sleep.
      const events = xs.pumpWatches?.(SLICE_MS) ?? 0;
      const pause = !xs.pumpWatches ? SLICE_MS : events > 0 ? (opts.afterEventsMs ?? 0) : 0;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  } finally {
    process.off("SIGINT", halt);
    process.off("SIGTERM", halt);
  }
}
