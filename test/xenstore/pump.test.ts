// pumpUntilSignal: the main loop of `status --watch` and `console0` waits in pumpWatches until
// SIGTERM or SIGINT, runs `each` before every wait, and leaves no signal handler behind.
import { expect, test } from "vitest";
import { pumpUntilSignal } from "../../agent/xenstore/pump.ts";
import type { XenStore } from "../../agent/xenstore/types.ts";

function fakePump(stopAfter: number, signal: "SIGTERM" | "SIGINT") {
  const waits: number[] = [];
  const xs = {
    pumpWatches(timeoutMs: number) {
      waits.push(timeoutMs);
      if (waits.length === stopAfter) process.emit(signal);
      return waits.length % 2; // events on every other wait
    },
  } as unknown as XenStore;
  return { xs, waits };
}

test.each(["SIGTERM", "SIGINT"] as const)("%s ends the loop after the wait it arrived in; each ran before every wait", async (signal) => {
  const before = [process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")];
  const { xs, waits } = fakePump(3, signal);
  let each = 0;
  await pumpUntilSignal(xs, { each: () => void each++, afterEventsMs: 1 });
  expect(waits).toEqual([100, 100, 100]);
  expect(each).toBe(3);
  expect([process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]).toEqual(before);
});

test("a handle without pumpWatches (events on their own) only sleeps between slices", async () => {
  const xs = {} as XenStore;
  let each = 0;
  const t = performance.now();
  const done = pumpUntilSignal(xs, {
    each: () => {
      if (++each === 2) process.emit("SIGTERM");
    },
  });
  await done;
  expect(each).toBe(2);
  expect(performance.now() - t).toBeGreaterThanOrEqual(90);
});
