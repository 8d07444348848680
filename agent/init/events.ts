// Events in, actions out: signals, child exits, QMP events, xenstore watch events, netlink
// link events and errors all become one stream of tagged events, consumed by one loop, so no
// two handlers ever interleave.
import type { LinkEvent } from "../net/types.ts";
import type { QmpEvent } from "../qemu/qmp.ts";
import type { QemuEvent } from "../qemu/lifecycle.ts";
import type { ExitStatus } from "./processes.ts";

export type AgentEvent =
  | { kind: "signal"; signal: "SIGTERM" | "SIGINT" | "SIGHUP" }
  /** Time to look for exited orphans: SIGCHLD arrived, or the periodic sweep (reaper.ts). */
  | { kind: "reap"; trigger: "SIGCHLD" | "sweep" }
  | { kind: "qemu"; event: QemuEvent; detail?: string; exit?: ExitStatus; generation?: number }
  | { kind: "qmp"; event: QmpEvent }
  /** A watch fired (token says whose); the path is only a hint: read the value again. */
  | { kind: "xenstore"; path: string; token: string }
  /** An RTNLGRP_LINK notification. */
  | { kind: "link"; event: LinkEvent }
  /** Link notifications were lost (ENOBUFS): whoever tracks links must read them again. */
  | { kind: "linksLost"; reason: string }
  | { kind: "fatal"; reason: string };

/** Every xenstore watch event of `xs` enters the one loop, whoever set the watch. */
export function queueWatchEvents(xs: { onWatch(fn: (e: { path: string; token: string }) => void): () => void }, queue: { push(e: AgentEvent): void }): () => void {
  return xs.onWatch((e) => queue.push({ kind: "xenstore", path: e.path, token: e.token }));
}

/** The event kinds the supervisor hands to listeners instead of its QEMU table. */
export type ListenedKind = "qmp" | "xenstore" | "link" | "linksLost";
type Of<K extends AgentEvent["kind"]> = Extract<AgentEvent, { kind: K }>;

/** Listeners per event kind: the consumers beside QEMU's table (NIC teardown, CD-ROM, links). */
export class Listeners {
  private readonly byKind: { [K in ListenedKind]: Set<(e: Of<K>) => void> } = {
    qmp: new Set(), xenstore: new Set(), link: new Set(), linksLost: new Set(),
  };

  /** Returns an unsubscribe function. */
  on<K extends ListenedKind>(kind: K, fn: (e: Of<K>) => void): () => void {
    const set = this.byKind[kind] as Set<(e: Of<K>) => void>;
    set.add(fn);
    return () => void set.delete(fn);
  }

  /** Calls each listener of the event's kind; one that throws does not stop the others. */
  dispatch(e: Of<ListenedKind>, onError: (error: unknown) => void): void {
    for (const fn of [...(this.byKind[e.kind] as Set<(e: Of<ListenedKind>) => void>)]) {
      try {
        fn(e);
      } catch (error) {
        onError(error);
      }
    }
  }
}

/**
 * Events waiting for the loop. Bounded: past `limit`, QMP, xenstore and link events are
 * dropped (and counted, and `onDrop` told); a dropped link event queues one `linksLost`, so
 * whoever tracks links reads them all again. Signals, reap requests (one per trigger), QEMU's
 * own events and fatal errors are never dropped: each of them is bounded by its source.
 */
/** A loop that keeps up never holds more than a handful; 1,024 means something floods us. */
export const EVENT_QUEUE_LIMIT = 1024;
const DROPPABLE = new Set<AgentEvent["kind"]>(["qmp", "xenstore", "link"]);

export class EventQueue {
  private readonly items: AgentEvent[] = [];
  private wake: (() => void) | undefined;
  dropped = 0;
  onDrop: ((e: AgentEvent, dropped: number) => void) | undefined;

  constructor(private readonly limit = EVENT_QUEUE_LIMIT) {}

  push(e: AgentEvent): void {
    if (this.items.length >= this.limit && DROPPABLE.has(e.kind)) {
      this.dropped++;
      this.onDrop?.(e, this.dropped);
      if (e.kind === "link" && !this.items.some((q) => q.kind === "linksLost")) {
        this.items.push({ kind: "linksLost", reason: "event queue full" });
      }
      return;
    }
    this.items.push(e);
    this.wake?.();
    this.wake = undefined;
  }

  get size(): number {
    return this.items.length;
  }

  /**
   * Pushes a reap request unless one with the same trigger is still waiting: one reaper pass
   * handles every child that exited before it, so a burst of 1,000 SIGCHLDs costs one entry.
   */
  pushReap(trigger: "SIGCHLD" | "sweep"): void {
    if (this.items.some((q) => q.kind === "reap" && q.trigger === trigger)) return;
    this.push({ kind: "reap", trigger });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<AgentEvent> {
    for (;;) {
      const e = this.items.shift();
      if (e) {
        yield e;
        continue;
      }
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}
