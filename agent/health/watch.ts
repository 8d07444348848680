// `status --watch`: redraw when something the reports depend on changes, told by xenstore
// watches (never by polling xenstore). The one timer besides them is a deadline: a stub domain
// that stops writing causes no event, so the frame is also redrawn when a heartbeat would
// turn stale.
import type { XenStore } from "../xenstore/types.ts";
import {
  collectReports,
  staleDeadline,
  systemClock,
  type HeartbeatSeen,
  type ReaderClock,
  type Selection,
  type StubReport,
} from "./reader.ts";
import { escapeText } from "./sanitize.ts";

export interface StatusFrame {
  reports: StubReport[];
  /** Printable remarks about the frame as a whole (truncated scan, a watch that failed). */
  notes: string[];
}

export interface StatusWatchOptions {
  xs: XenStore;
  selection: Selection;
  onFrame: (frame: StatusFrame) => void;
  clock?: ReaderClock;
  /** Events arriving within this many ms are drawn as one frame; default 5. */
  settleMs?: number;
  /**
   * At least this many ms between two frames; default 25. A stub domain rewriting its keys in
   * a loop then costs dom0 at most 1000/minGapMs reads of its report per second, and a change
   * is still drawn well within 100 ms.
   */
  minGapMs?: number;
  /** Where the heartbeat observations are kept; given by a caller that renders them too (the exporter). */
  seen?: Map<number, HeartbeatSeen>;
}

export interface StatusWatch {
  stop(): void;
}

export function watchStatus(opts: StatusWatchOptions): StatusWatch {
  const { xs, selection } = opts;
  const clock = opts.clock ?? systemClock;
  const settleMs = opts.settleMs ?? 5;
  const minGapMs = opts.minGapMs ?? 25;
  let lastRefresh = -Infinity;
  const token = `stubdom-status-${crypto.randomUUID()}`;
  const seen = opts.seen ?? new Map<number, HeartbeatSeen>();
  const watched = new Set<string>();
  let settle: ReturnType<typeof setTimeout> | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const sync = (want: string[], notes: string[]) => {
    const wanted = new Set(want);
    for (const p of watched) {
      if (wanted.has(p)) continue;
      watched.delete(p);
      try {
        xs.unwatch(p, token);
      } catch {
        // The path's watch is gone either way; nothing is left to clean up.
      }
    }
    for (const p of wanted) {
      if (watched.has(p)) continue;
      try {
        xs.watch(p, token);
        watched.add(p);
      } catch (e) {
        notes.push(`cannot watch ${escapeText(p)}: ${escapeText(e instanceof Error ? e.message : String(e))}`);
      }
    }
  };

  const refresh = () => {
    if (stopped) return;
    lastRefresh = performance.now();
    let frame: StatusFrame;
    try {
      const r = collectReports(xs, selection, clock, seen);
      frame = { reports: r.reports, notes: r.notes };
      sync(r.paths, frame.notes);
    } catch (e) {
      frame = { reports: [], notes: [`xenstore: ${escapeText(e instanceof Error ? e.message : String(e))}`] };
    }
    opts.onFrame(frame);
    if (deadline) clearTimeout(deadline);
    deadline = undefined;
    const next = frame.reports.map((r) => staleDeadline(r, clock, seen)).filter((d): d is number => d !== undefined);
    if (next.length > 0) deadline = setTimeout(refresh, Math.max(0, Math.min(...next) - clock.monoMs()) + 1);
  };

  const unsubscribe = xs.onWatch((ev) => {
    if (ev.token !== token || settle !== undefined || stopped) return;
    const wait = Math.max(settleMs, lastRefresh + minGapMs - performance.now());
    settle = setTimeout(() => {
      settle = undefined;
      refresh();
    }, wait);
  });
  refresh();

  return {
    stop() {
      stopped = true;
      unsubscribe();
      if (settle) clearTimeout(settle);
      if (deadline) clearTimeout(deadline);
      for (const p of watched) {
        try {
          xs.unwatch(p, token);
        } catch {
          // Closing the handle drops the watch anyway.
        }
      }
      watched.clear();
    },
  };
}
