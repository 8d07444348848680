// Each assigned PCI device from the backend's listing to sysfs (agent/pci/tracker.ts), on a
// hand-driven clock and a sysfs the test fills in.
import { describe, expect, it } from "vitest";
import { PciSchema } from "../../agent/health/schema.ts";
import type { PciSysfsDevice } from "../../agent/pci/sysfs.ts";
import { PciTracker } from "../../agent/pci/tracker.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { memLogger } from "../health/helpers.ts";
import { addDevice, BE, createBackend, exportDevice, FE, STUB } from "./layout.ts";

function world(deadlineMs = 10_000) {
  const dom0 = new MemoryXenStore();
  const stub = new MemoryXenStore({ store: dom0.store, domid: STUB });
  const hw = new Map<string, PciSysfsDevice>();
  let now = 5_000.4; // the agent's clock has fractions of a millisecond
  const { log, lines } = memLogger();
  const reports: string[] = [];
  const t = new PciTracker({
    xs: stub, stubDomid: STUB, sysfs: { device: (bdf) => hw.get(bdf) }, nowMs: () => now, log, report: (m) => reports.push(m), deadlineMs,
  });
  return { dom0, stub, hw, t, lines, reports, advance: (ms: number) => void (now += ms) };
}

describe("PciTracker", () => {
  it("no device assigned: nothing reported, nothing logged", () => {
    const w = world();
    w.t.refresh();
    expect(w.t.health()).toEqual([]);
    expect(w.t.nextDeadline()).toBeUndefined();
    expect(w.lines).toEqual([]);
  });

  it("waiting, then present once pcifront has put it in sysfs; each entry is what the health schema accepts", () => {
    const w = world();
    createBackend(w.dom0);
    addDevice(w.dom0, 0, "0000:03:00.0");
    w.t.refresh();
    expect(w.t.health()).toEqual([{ bdf: "0000:03:00.0", state: "waiting", since_ms: 5_000 }]);
    expect(w.t.nextDeadline()).toBe(15_000);
    exportDevice(w.dom0, 0, "0000:03:00.00");
    w.hw.set("0000:03:00.0", { vendor: "8086", device: "10d3" });
    w.dom0.write(`${FE}/state`, "4");
    w.advance(700);
    w.t.refresh();
    const [dev] = w.t.health();
    expect(dev).toEqual({ bdf: "0000:03:00.0", state: "present", vendor: "8086", device: "10d3", since_ms: 5_700 });
    expect(PciSchema.safeParse(dev).success).toBe(true);
    expect(w.t.nextDeadline()).toBeUndefined();
    expect(w.lines.join("\n")).toMatch(/0000:03:00.0 assigned \(backend dev-0\)[^]*0000:03:00.0 present \(8086:10d3\)\s*$/);
    expect(w.reports).toEqual([]);
  });

  it("a device that never appears is missing at its deadline, with pcifront's state and error; late, it is present and said so", () => {
    const w = world(10_000);
    createBackend(w.dom0);
    addDevice(w.dom0, 0, "0000:03:00.0");
    w.t.refresh();
    w.advance(9_999);
    w.t.refresh();
    expect(w.t.health()[0]?.state).toBe("waiting");
    // pcifront's xenbus_dev_fatal, as the kernel writes it (error/<nodename>/error).
    const err = `/local/domain/${STUB}/error/device/pci/0/error`;
    w.dom0.write(err, "-19 Error scanning PCI root 0000:03\u001b[2J");
    w.dom0.setPermissions(err, [{ domid: STUB, perm: "n" }]);
    w.advance(1);
    w.t.refresh();
    const [dev] = w.t.health();
    expect(dev?.state).toBe("missing");
    expect(dev?.error).toBe("0000:03:00.0 not in /sys/bus/pci/devices 10000 ms after libxl assigned it (pcifront state 1; pcifront: -19 Error scanning PCI root 0000:03 [2J)");
    expect(PciSchema.safeParse(dev).success).toBe(true);
    expect(w.reports).toEqual([`pci: 0000:03:00.0: ${dev?.error}`]);
    // Said once, not at every refresh.
    w.t.refresh();
    expect(w.reports).toHaveLength(1);
    w.hw.set("0000:03:00.0", { vendor: "8086", device: "10d3" });
    w.advance(2_000);
    w.t.refresh();
    expect(w.t.health()[0]?.state).toBe("present");
    expect(w.lines.at(-1)).toMatch(/0000:03:00.0 present \(8086:10d3\), late: 12000 ms after it was assigned\s*$/);
  });

  it("pciback outside passthrough mode: found where pcifront shows it, and the QEMU 7.2 caveat said once", () => {
    const w = world();
    createBackend(w.dom0);
    addDevice(w.dom0, 0, "0000:03:00.0");
    exportDevice(w.dom0, 0, "0000:00:00.00");
    w.hw.set("0000:00:00.0", { vendor: "8086", device: "10d3" });
    w.t.refresh();
    w.t.refresh();
    const [dev] = w.t.health();
    expect(dev).toEqual({ bdf: "0000:03:00.0", local: "0000:00:00.0", state: "present", vendor: "8086", device: "10d3", since_ms: 5_000 });
    expect(PciSchema.safeParse(dev).success).toBe(true);
    const warnings = w.lines.filter((l) => l.includes("warn"));
    expect(warnings).toEqual([expect.stringMatching(/0000:03:00.0: pcifront shows it at 0000:00:00.0; QEMU before 9.1 .* \(xen-pciback.passthrough=1\)\n$/)]);
    expect(w.reports).toEqual([]);
  });

  it("xl pci-detach: removing, then gone from the list; a bad entry is reported once and the others go on", () => {
    const w = world();
    createBackend(w.dom0);
    addDevice(w.dom0, 0, "0000:03:00.0");
    addDevice(w.dom0, 1, "0000:04:00.0");
    w.hw.set("0000:03:00.0", { vendor: "8086", device: "10d3" });
    w.hw.set("0000:04:00.0", { vendor: "1af4", device: "1000" });
    w.t.refresh();
    expect(w.t.health().map((d) => d.state)).toEqual(["present", "present"]);
    w.dom0.write(`${BE}/state-0`, "5");
    w.t.refresh();
    expect(w.t.health().map((d) => d.state)).toEqual(["removing", "present"]);
    w.dom0.rm(`${BE}/dev-0`);
    w.dom0.write(`${BE}/dev-1`, "not a bdf");
    w.t.refresh();
    w.t.refresh();
    expect(w.t.health()).toEqual([]);
    expect(w.reports).toEqual([`pci: ${BE}/dev-1: "not a bdf" is not a PCI address`]);
    expect(w.lines.filter((l) => l.includes("no longer assigned"))).toHaveLength(2);
  });
});
