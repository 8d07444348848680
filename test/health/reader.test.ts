import { describe, expect, test } from "vitest";
import { collectReports, findStubdom, readReport, type HeartbeatSeen, type ReaderClock } from "../../agent/health/reader.ts";
import { renderJson, renderTable } from "../../agent/health/render.ts";
import { healthDir, type PciHealth } from "../../agent/health/schema.ts";
import { renderPrometheus } from "../../agent/health/prometheus.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { GUEST, libxlLayout, manualTimer, STUB, testClock, testWriter } from "./helpers.ts";

const BASE = healthDir(STUB);
const INTERVAL = 5000;

function world() {
  const { dom0, stub } = libxlLayout();
  const clock = testClock();
  const timer = manualTimer();
  const pci: PciHealth[] = [];
  const w = testWriter(stub, clock, timer.every, {
    pci: () => pci,
    memory: () => ({ totalKib: 118_204, availableKib: 61_032 }),
    agentRss: () => ({ rssKib: 31_744, anonKib: 12_288 }),
    qemuRss: () => ({ rssKib: 27_648, anonKib: 11_264 }),
    nics: () => [
      {
        name: "eth0",
        tap: "vif4.0-emu",
        link: "up",
        rx_packets: 1021,
        rx_bytes: 1_250_000,
        rx_dropped: 0,
        tx_packets: 998,
        tx_bytes: 81_000,
        tx_dropped: 2,
        spoofed_dropped: 3,
      },
    ],
  }, INTERVAL);
  let mono = 0;
  const reader: ReaderClock & { advance(ms: number): void; skew: number } = {
    skew: 0,
    wallMs: () => clock.wall() + reader.skew,
    monoMs: () => mono,
    advance(ms) {
      mono += ms;
      clock.advance(ms);
    },
  };
  const report = (seen?: Map<number, HeartbeatSeen>) => readReport(dom0, { stubdom: STUB, guest: GUEST }, reader, seen);
  return { dom0, stub, w, timer, clock, reader, report, pci };
}

async function running() {
  const t = world();
  t.w.bootPhase("mounts", 812);
  t.w.agentOverhead(640);
  t.w.start();
  t.clock.advance(700);
  t.w.setPhase("starting");
  t.w.qemuStarted(312);
  await Promise.resolve();
  t.clock.advance(300);
  t.w.setPhase("running");
  t.w.qmpStatus("running");
  await Promise.resolve();
  t.clock.advance(60_000);
  t.timer.fire();
  return t;
}

// Nothing a stub domain writes may reach the terminal as a control or format character.
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/;

describe("reader", () => {
  test("round trip: what the writer wrote is read back valid, as a table and as JSON", async () => {
    const t = await running();
    const r = t.report();
    expect(r.health).toBe("ok");
    expect(r.reasons).toEqual([]);
    const table = renderTable([r]);
    expect(table.split("\n")[0]).toMatch(/^STUBDOM +GUEST +HEALTH +PHASE +UPTIME +QEMU +MEMORY/);
    expect(table).toMatch(/^5 +4 +ok +running 1m00s +1m02s +312 running +59\.6M\/115\.4M rss 31\.0M\+27\.0M anon 12\.0M\+11\.0M +eth0 up +-$/m);
    expect(table).toContain("nic0 eth0<->vif4.0-emu up: rx 1021 pkts 1.2 MiB 0 dropped, tx 998 pkts 79.1 KiB 2 dropped, 3 spoofed dropped");
    const json = JSON.parse(renderJson([r]));
    expect(json[0]).toMatchObject({
      stubdom: STUB,
      guest: GUEST,
      health: "ok",
      values: { schema: 1, phase: "running", qemu_pid: 312, qmp_status: "running", boot_ms: { mounts: 812 }, agent_overhead_ms: 640, heartbeat: 4 },
      invalid: {},
      extra_keys: { count: 0, sample: [] },
    });
    expect(json[0].nics[0]).toMatchObject({ index: 0, name: "eth0", spoofed_dropped: 3 });
  });

  test("passthrough devices: a line each, with its IDs, time in state and error; a hostile entry is named, not shown", async () => {
    const t = await running();
    t.pci.push(
      { bdf: "0000:03:00.0", state: "present", vendor: "8086", device: "10d3", since_ms: 2_000 },
      { bdf: "0000:04:00.0", state: "missing", since_ms: 12_000, error: "0000:04:00.0 not in /sys/bus/pci/devices 10000 ms after libxl assigned it (pcifront state 4)" },
    );
    t.clock.advance(5_000);
    t.timer.fire();
    let r = t.report();
    expect(r.health).toBe("ok");
    const table = renderTable([r]);
    expect(table).toContain("    pci 0000:03:00.0 8086:10d3 present for 1m05s\n");
    expect(table).toContain("    pci 0000:04:00.0 missing for 55s: 0000:04:00.0 not in /sys/bus/pci/devices 10000 ms after libxl assigned it (pcifront state 4)\n");
    expect(JSON.parse(renderJson([r]))[0].pci).toEqual([
      { index: 0, bdf: "0000:03:00.0", state: "present", vendor: "8086", device: "10d3", since_ms: 2_000 },
      expect.objectContaining({ index: 1, state: "missing" }),
    ]);
    const metrics = renderPrometheus([r], { clock: t.reader });
    expect(metrics).toMatch(/^xen_stubdom_pci_device_state\{.*bdf="0000:04:00.0",state="missing"\} 1$/m);
    expect(metrics).toMatch(/^xen_stubdom_pci_device_state\{.*bdf="0000:04:00.0",state="present"\} 0$/m);
    // What a compromised stub domain could write instead.
    t.stub.write(`${BASE}/pci/1`, JSON.stringify({ bdf: "0000:04:00.0\u001b[2J", state: "present", since_ms: 1 }));
    r = t.report();
    expect(r.health).toBe("invalid");
    expect(r.reasons).toContain("values that failed validation: pci/1");
    expect(renderTable([r])).toMatch(/^ +invalid pci\/1: bdf: not a PCI address: "\{/m);
    expect(renderTable([r])).not.toMatch(RAW_UNSAFE);
  });

  test("a crash is shown with its signal and the last stderr lines", async () => {
    const t = await running();
    t.w.qemuExited({ signal: "SIGSEGV", stderr: ["", "qemu: fatal: bad ram pointer", "  at 0x1234"] });
    t.w.setPhase("crashed");
    await Promise.resolve();
    const table = renderTable([t.report()]);
    expect(table).toMatch(/crashed 0\.0s .* 312 exited SIGSEGV/);
    expect(table).toContain("last exit: SIGSEGV at uptime 1m02s, stderr:\n      | qemu: fatal: bad ram pointer\n      |   at 0x1234\n");
  });

  test("guests are mapped to their stub domain, cross-checked with its target; --all finds every one", async () => {
    const t = await running();
    expect(findStubdom(t.dom0, GUEST)).toEqual({ stubdom: STUB });
    expect(findStubdom(t.dom0, 9)).toEqual({ reason: "no stub domain: /local/domain/9/image/device-model-domid does not exist" });
    t.dom0.write(`/local/domain/7/image/device-model-domid`, String(STUB));
    expect(findStubdom(t.dom0, 7)).toEqual({ reason: `domain ${STUB} serves guest ${GUEST}, not 7` });
    const all = collectReports(t.dom0, { all: true }, t.reader);
    expect(all.reports.map((r) => [r.stubdom, r.guest, r.health])).toEqual([[STUB, GUEST, "ok"]]);
    expect(all.paths).toContain(BASE);
    expect(all.paths).toContain("@introduceDomain");
    const some = collectReports(t.dom0, { all: false, guests: [GUEST, 9] }, t.reader);
    expect(some.reports.map((r) => r.health)).toEqual(["ok", "unreachable"]);
    expect(renderTable(some.reports)).toMatch(/^\? +9 +unreachable .*\n +unreachable: no stub domain/m);
  });

  test("--all says why it found nothing when /local/domain cannot be listed", () => {
    const dom0 = new MemoryXenStore();
    const guestView = new MemoryXenStore({ store: dom0.store, domid: 3 });
    dom0.mkdir("/local/domain");
    dom0.setPermissions("/local/domain", [{ domid: 0, perm: "n" }]);
    const r = collectReports(guestView, { all: true }, { wallMs: () => 0, monoMs: () => 0 });
    expect(r.reports).toEqual([]);
    expect(r.notes).toEqual(["cannot list /local/domain: xenstore directory /local/domain: EACCES"]);
    expect(collectReports(new MemoryXenStore(), { all: true }, { wallMs: () => 0, monoMs: () => 0 }).notes).toEqual([]);
  });

  test("unreachable when the keys are gone", async () => {
    const t = await running();
    t.dom0.rm(BASE);
    const r = t.report();
    expect(r.health).toBe("unreachable");
    expect(r.reasons).toEqual([`no health keys at ${BASE}`]);
  });
});

describe("stale detection with controlled clocks", () => {
  test("one-shot: the writer's wall-clock heartbeat against ours, three intervals", async () => {
    const t = await running();
    t.reader.skew = 3 * INTERVAL;
    expect(t.report().health).toBe("ok");
    t.reader.skew = 3 * INTERVAL + 1;
    const r = t.report();
    expect(r.health).toBe("stale");
    expect(r.reasons).toEqual(["last heartbeat 15s ago by the wall clock (interval 5.0s)"]);
  });

  test("one-shot: a heartbeat from the future beyond three intervals is invalid, not fresh", async () => {
    const t = await running();
    t.reader.skew = -(3 * INTERVAL + 1000);
    const r = t.report();
    expect(r.health).toBe("invalid");
    expect(r.reasons).toContain("heartbeat_wall_ms is 16s in the future");
  });

  test("watching: a counter that stops is stale after three intervals of OUR clock, whatever the writer's wall clock says", async () => {
    const t = await running();
    const seen = new Map<number, HeartbeatSeen>();
    expect(t.report(seen).health).toBe("ok");
    // The writer stops, but its last wall-clock time looks fresh forever (skewed writer).
    t.reader.skew = -10 * INTERVAL;
    const first = t.report(seen);
    expect(first.health).toBe("invalid"); // before any observed advance the wall clock is all we have
    t.reader.skew = 0;
    t.timer.fire(); // the counter moves once while watched
    t.reader.advance(1);
    t.reader.skew = -2 * INTERVAL; // the writer's clock is now 2 intervals ahead of ours
    expect(t.report(seen).health).toBe("ok");
    t.reader.advance(3 * INTERVAL);
    expect(t.report(seen).health).toBe("ok");
    t.reader.advance(1);
    const r = t.report(seen);
    expect(r.health).toBe("stale");
    expect(r.reasons).toEqual(["heartbeat 5 unchanged for 15s (watched here)"]);
    t.timer.fire();
    expect(t.report(seen).health).toBe("ok");
  });

  test("watching: a counter that keeps moving is alive even when the writer's wall clock lags", async () => {
    const t = await running();
    const seen = new Map<number, HeartbeatSeen>();
    t.reader.skew = 10 * INTERVAL; // the writer's clock is 50 s behind ours
    expect(t.report(seen).health).toBe("stale");
    t.reader.advance(INTERVAL);
    t.timer.fire();
    expect(t.report(seen).health).toBe("ok");
  });
});
