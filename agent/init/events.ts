// Events in, actions out: signals, child exits, QMP events and errors all become one stream
// of tagged events, consumed by one loop, so no two handlers ever interleave. (xenstore
// watches and netlink link events have no consumer in the supervisor yet.)
import type { QmpEvent } from "../qemu/qmp.ts";
import type { QemuEvent } from "../qemu/lifecycle.ts";
import type { ExitStatus } from "./processes.ts";

export type AgentEvent =
  | { kind: "signal"; signal: "SIGTERM" | "SIGINT" | "SIGHUP" | "SIGCHLD" }
  | { kind: "qemu"; event: QemuEvent; detail?: string; exit?: ExitStatus; generation?: number }
  | { kind: "qmp"; event: QmpEvent }
  | { kind: "fatal"; reason: string };

export class EventQueue {
  private readonly items: AgentEvent[] = [];
  private wake: (() => void) | undefined;

  push(e: AgentEvent): void {
    this.items.push(e);
    this.wake?.();
    this.wake = undefined;
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
