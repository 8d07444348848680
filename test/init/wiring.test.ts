import { readFileSync } from "node:fs";
import { expect, test } from "vitest";
import { kernelRunInitMs, parseInitRecord, processStartMs } from "../../agent/init/wiring.ts";

test("the kernel's Run /init record gives PID 1's entry in ms since boot", () => {
  expect(parseInitRecord("6,812,1802564,-;Run /init as init process\n")).toBe(1802.564);
  expect(parseInitRecord("6,813,1879270,-;loop0: detected capacity change\n")).toBeNull();
});

test("reading this host's /dev/kmsg ends at the end of the buffer instead of waiting", () => {
  // A blocking read would hang here until the test's timeout.
  const ms = kernelRunInitMs();
  expect(ms === null || ms > 0).toBe(true);
});

test("process start is in the boot clock, before now", () => {
  const now = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000;
  const start = processStartMs(now);
  expect(start).toBeGreaterThan(0);
  expect(start).toBeLessThanOrEqual(now + 10);
});
