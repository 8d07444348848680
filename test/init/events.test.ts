import { expect, test } from "vitest";
import { EVENT_QUEUE_LIMIT, EventQueue } from "../../agent/init/events.ts";

test("the event queue is bounded: past the limit QMP, xenstore and link events are dropped and counted", () => {
  const q = new EventQueue(4);
  const drops: string[] = [];
  q.onDrop = (e, n) => drops.push(`${e.kind} ${n}`);
  for (let i = 0; i < 4; i++) q.push({ kind: "qmp", event: { event: "RTC_CHANGE" } });
  q.push({ kind: "qmp", event: { event: "RTC_CHANGE" } });
  q.push({ kind: "xenstore", path: "/x", token: "t" });
  expect(q.size).toBe(4);
  // A lost link event makes whoever tracks links read them all again, once.
  q.push({ kind: "link", event: { type: "del", index: 3, name: "vif1.0-emu", up: false, lowerUp: false, attrs: [] } });
  q.push({ kind: "link", event: { type: "del", index: 4, name: "eth0", up: false, lowerUp: false, attrs: [] } });
  expect(q.size).toBe(5);
  // Signals, QEMU's own events and fatal errors are never dropped.
  q.push({ kind: "signal", signal: "SIGTERM" });
  q.push({ kind: "qemu", event: "exit" });
  q.push({ kind: "fatal", reason: "x" });
  expect(q.size).toBe(8);
  expect(drops).toEqual(["qmp 1", "xenstore 2", "link 3", "link 4"]);
  expect(q.dropped).toBe(4);
  expect(EVENT_QUEUE_LIMIT).toBe(1024);
});
