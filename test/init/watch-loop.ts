// The supervisor's loop, reduced to what xenstore watch tests need: every watch event of `xs`
// enters an EventQueue (queueWatchEvents) and comes back out through the Listeners returned.
import { EventQueue, Listeners, queueWatchEvents } from "../../agent/init/events.ts";
import type { XenStore } from "../../agent/xenstore/types.ts";

export function watchLoop(xs: Pick<XenStore, "onWatch">, onError: (e: unknown) => void): Listeners {
  const queue = new EventQueue();
  const listeners = new Listeners();
  queueWatchEvents(xs, queue);
  void (async () => {
    for await (const e of queue) if (e.kind === "xenstore") listeners.dispatch(e, onError);
  })();
  return listeners;
}
