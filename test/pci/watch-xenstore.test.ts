// The PCI watch against the real xenstore stack: the project's xenstored (a separate process),
// the real libxenstore through ffi/xenstore.ts, the stub domain connected as domain 5 without
// privileges, dom0 writing the backend as libxl and pciback do, pcifront's state written as the
// stub domain's kernel writes it. Events go through the supervisor's EventQueue and Listeners
// (watch-loop.ts).
import { afterAll, beforeAll, expect, test } from "vitest";
import { watchLoop } from "../init/watch-loop.ts";
import type { PciSysfsDevice } from "../../agent/pci/sysfs.ts";
import type { PciTracker } from "../../agent/pci/tracker.ts";
import { PCI_WATCH_TOKEN, watchPci } from "../../agent/pci/watch.ts";
import { openXenStore, type FfiXenStore } from "../../ffi/xenstore.ts";
import { memLogger } from "../health/helpers.ts";
import { startServer, type ServerProc } from "../xenstore/harness.ts";
import { addDevice, BE, createBackend, exportDevice, FE, STUB } from "./layout.ts";

let server: ServerProc;
let dom0: FfiXenStore;
let stub: FfiXenStore;
let tracker: PciTracker;
const hw = new Map<string, PciSysfsDevice>();
const reports: string[] = [];
const timers: Array<{ ms: number; fn: () => void; cancelled: boolean }> = [];
const { log, lines } = memLogger();
let now = 1_000;
let refreshed = 0;

/** Resolves once the tracker shows `want` (each watch event refreshes it). */
async function until(want: (t: PciTracker) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!want(tracker)) {
    if (Date.now() > deadline) throw new Error(`${what}: ${JSON.stringify(tracker.health())}\n${lines.join("")}`);
    await Bun.sleep(10);
  }
}

beforeAll(async () => {
  server = await startServer({ domains: [STUB] });
  dom0 = openXenStore({ path: server.socket });
  stub = openXenStore({ path: server.domainSocket(STUB) });
  const listeners = watchLoop(stub, (err) => reports.push(String(err)));
  listeners.on("xenstore", (e) => void (e.token === PCI_WATCH_TOKEN && refreshed++));
  tracker = watchPci({
    xs: stub, stubDomid: STUB, sysfs: { device: (bdf) => hw.get(bdf) }, listeners, nowMs: () => now, log,
    report: (m) => reports.push(m), deadlineMs: 10_000,
    after: (ms, fn) => {
      const t = { ms, fn, cancelled: false };
      timers.push(t);
      return () => void (t.cancelled = true);
    },
  });
});

afterAll(async () => {
  stub?.close();
  dom0?.close();
  await server?.stop();
});

test("before any device: the watches are set on paths this domain cannot read yet, and nothing is reported", async () => {
  // Each watch fires once when set.
  await until(() => refreshed >= 2, "the initial watch events");
  expect(tracker.health()).toEqual([]);
  expect(reports).toEqual([]);
});

test("libxl assigns a device, pciback exports it, pcifront connects: waiting, then present, from watch events alone", async () => {
  createBackend(dom0);
  addDevice(dom0, 0, "0000:03:00.0");
  await until((t) => t.health()[0]?.state === "waiting", "waiting");
  // One timer stands for the deadline.
  const live = timers.filter((t) => !t.cancelled);
  expect(live.map((t) => t.ms)).toEqual([10_000]);
  // pciback's two writes: both events handled before the device is in sysfs, so only the
  // frontend state's watch can tell the tracker it is there.
  const before = refreshed;
  exportDevice(dom0, 0, "0000:03:00.00");
  await until(() => refreshed >= before + 2, "pciback's writes");
  expect(tracker.health()[0]?.state).toBe("waiting");
  hw.set("0000:03:00.0", { vendor: "8086", device: "10d3" });
  now += 300;
  stub.write(`${FE}/state`, "4"); // pcifront, after scanning the bus
  await until((t) => t.health()[0]?.state === "present", "present");
  expect(tracker.health()).toEqual([{ bdf: "0000:03:00.0", state: "present", vendor: "8086", device: "10d3", since_ms: 1_300 }]);
  expect(timers.filter((t) => !t.cancelled)).toEqual([]);
  expect(reports).toEqual([]);
});

test("xl pci-attach of a device that never shows up: missing when its deadline timer fires", async () => {
  dom0.write(`${BE}/state`, "7");
  addDevice(dom0, 1, "0000:04:00.0");
  await until((t) => t.health()[1]?.state === "waiting", "waiting");
  const timer = timers.filter((t) => !t.cancelled).at(-1);
  expect(timer?.ms).toBe(10_000);
  now += 10_000;
  timer?.fn();
  expect(tracker.health()[1]).toMatchObject({ bdf: "0000:04:00.0", state: "missing" });
  expect(reports).toEqual([expect.stringMatching(/^pci: 0000:04:00.0: 0000:04:00.0 not in \/sys\/bus\/pci\/devices 10000 ms after libxl assigned it \(pcifront state 4\)$/)]);
});
