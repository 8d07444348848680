// What the agent reads of the PCI devices libxl assigns to its stub domain (agent/pci/assigned.ts).
import { describe, expect, it } from "vitest";
import { canonicalBdf, readAssigned } from "../../agent/pci/assigned.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { addDevice, BE, createBackend, exportDevice, FE, STUB } from "./layout.ts";

function stores() {
  const dom0 = new MemoryXenStore();
  return { dom0, stub: new MemoryXenStore({ store: dom0.store, domid: STUB }) };
}

describe("canonicalBdf", () => {
  it("takes libxl's and pciback's spellings to sysfs's", () => {
    expect(canonicalBdf("0000:03:00.0")).toBe("0000:03:00.0");
    expect(canonicalBdf("0000:00:1f.07")).toBe("0000:00:1f.7");
  });
  it("refuses what is not a PCI address", () => {
    for (const bad of ["0000:03:00", "0:3:0.0", "0000:03:20.0", "0000:03:00.8", "0000:03:00.0\n", "../../x", "0000:0G:00.0"]) {
      expect(canonicalBdf(bad), bad).toBeNull();
    }
  });
});

describe("readAssigned", () => {
  it("no backend: no devices, nothing wrong", () => {
    const { stub } = stores();
    expect(readAssigned(stub, STUB)).toEqual({ devices: [], problems: [] });
  });

  it("devices as libxl lists them, read by the stub domain itself; a removed index is skipped", () => {
    const { dom0, stub } = stores();
    createBackend(dom0);
    addDevice(dom0, 0, "0000:03:00.0");
    addDevice(dom0, 1, "0000:04:00.1");
    addDevice(dom0, 2, "0000:05:00.0");
    dom0.rm(`${BE}/dev-1`);
    exportDevice(dom0, 0, "0000:03:00.00");
    dom0.write(`${FE}/state`, "4");
    expect(readAssigned(stub, STUB)).toEqual({
      frontendState: 4,
      problems: [],
      devices: [
        { index: 0, bdf: "0000:03:00.0", state: 3 },
        { index: 2, bdf: "0000:05:00.0", state: 1 },
      ],
    });
  });

  it("pciback outside passthrough mode: where pcifront sees the device is said", () => {
    const { dom0, stub } = stores();
    createBackend(dom0);
    addDevice(dom0, 0, "0000:03:00.0");
    exportDevice(dom0, 0, "0000:00:00.00");
    expect(readAssigned(stub, STUB).devices).toEqual([{ index: 0, bdf: "0000:03:00.0", state: 3, vdevDiffers: "0000:00:00.0" }]);
  });

  it("each bad value is named by its key and costs only its device", () => {
    const { dom0, stub } = stores();
    createBackend(dom0);
    addDevice(dom0, 0, "0000:03:00.0");
    addDevice(dom0, 1, "../../../etc");
    addDevice(dom0, 2, "0000:05:00.0");
    dom0.write(`${BE}/state-2`, "x");
    addDevice(dom0, 3, "0000:06:00.0");
    dom0.write(`${BE}/vdev-3`, "a".repeat(100));
    const r = readAssigned(stub, STUB);
    expect(r.devices.map((d) => d.bdf)).toEqual(["0000:03:00.0", "0000:05:00.0", "0000:06:00.0"]);
    expect(r.problems).toEqual([
      `${BE}/dev-1: "../../../etc" is not a PCI address`,
      `${BE}/state-2: "x" is not a xenbus state`,
      expect.stringMatching(new RegExp(`^${BE}/vdev-3: .*E2BIG.*100 bytes, limit 32`)),
    ]);
  });

  it("a device count that is not one, or too large, is bounded and said", () => {
    const { dom0, stub } = stores();
    createBackend(dom0);
    dom0.write(`${BE}/num_devs`, "-1");
    expect(readAssigned(stub, STUB).problems).toEqual([`${BE}/num_devs: "-1" is not a device count`]);
    for (let i = 0; i < 12; i++) addDevice(dom0, i, `0000:${(i + 3).toString(16).padStart(2, "0")}:00.0`);
    const r = readAssigned(stub, STUB);
    expect(r.devices).toHaveLength(8);
    expect(r.problems).toEqual([`${BE}/num_devs: 12 devices, only the first 8 are looked at`]);
  });
});
