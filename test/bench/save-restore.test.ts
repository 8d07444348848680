// The save/restore benchmark's reading of a nested run: numbers only from PASS lines, and the
// check's own words when there is none.
import { expect, test } from "vitest";
import { parseConsole } from "../xen/harness.ts";
import { saveRestoreNumbers } from "./save-restore.ts";

test("save, restore and the migration downtime come from the PASS lines and the tick gap", () => {
  const r = parseConsole([
    "E2E PASS save 75939794 bytes in 11220 ms\r\r",
    "E2E PASS restore guest 3 with stub domain 4 (was 2) in 33480 ms",
    "E2E TIME restore-tick-gap-ms 1960",
    "E2E PASS migrate guest 3 -> 5, stub domain 4 -> 6 in 39290 ms",
    "E2E PASS migrate-continues tick 8 before, 19 now, no restart; longest gap between ticks 31070 ms; ticks seen twice: 0",
    "E2E TIME migrate-tick-gap-ms 31070",
    "E2E DONE 4",
  ].join("\n"));
  expect(saveRestoreNumbers(r)).toEqual({ save: 11220, restore: 33480, downtime: 31070, why: {} });
});

test("a failed or missing check gives no number but its reason", () => {
  const r = parseConsole([
    "E2E PASS save 75939794 bytes in 11220 ms",
    "E2E FAIL restore exit 1: libxl: error: startup timed out",
    "E2E TIME migrate-tick-gap-ms 0",
  ].join("\n"));
  const n = saveRestoreNumbers(r);
  expect(n.save).toBe(11220);
  expect(n.restore).toBeUndefined();
  expect(n.downtime).toBeUndefined();
  expect(n.why).toEqual({
    restore: "restore FAIL: exit 1: libxl: error: startup timed out",
    downtime: "no migrate-continues line (dom0 never printed E2E DONE)",
  });
});

test("a continues check that failed gives no downtime even with a gap printed", () => {
  const r = parseConsole([
    "E2E FAIL migrate-continues tick 7 before, none now; ticks that went back: 0",
    "E2E TIME migrate-tick-gap-ms 44460",
    "E2E DONE 1",
  ].join("\n"));
  expect(saveRestoreNumbers(r).downtime).toBeUndefined();
  expect(saveRestoreNumbers(r).why.downtime).toMatch(/^migrate-continues FAIL: tick 7/);
});

test("checks that never ran name the run's first failure", () => {
  const r = parseConsole(["E2E FAIL xl-create libxl: error: device model did not start", "E2E DONE 1"].join("\n"));
  expect(saveRestoreNumbers(r).why.save).toBe("no save line (first failure: xl-create: libxl: error: device model did not start)");
});
