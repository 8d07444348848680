// sysfsPci on a directory laid out as /sys/bus/pci/devices is (vendor/device "0x8086\n", driver a
// symlink to the driver's directory).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { sysfsPci } from "../../agent/pci/sysfs.ts";

const root = mkdtempSync(join(tmpdir(), "pci-sysfs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function device(bdf: string, vendor: string, device: string, driver?: string): void {
  const dir = join(root, "devices", bdf);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "vendor"), vendor);
  writeFileSync(join(dir, "device"), device);
  if (driver) {
    mkdirSync(join(root, "drivers", driver), { recursive: true });
    symlinkSync(join(root, "drivers", driver), join(dir, "driver"));
  }
}

test("a device's IDs and bound driver; an absent or malformed one is no device", () => {
  device("0000:03:00.0", "0x8086\n", "0x10d3\n");
  device("0000:04:00.0", "0x1af4\n", "0x1000\n", "pciback");
  device("0000:05:00.0", "0x8086\n", "garbage");
  const pci = sysfsPci(join(root, "devices"));
  expect(pci.device("0000:03:00.0")).toEqual({ vendor: "8086", device: "10d3" });
  expect(pci.device("0000:04:00.0")).toEqual({ vendor: "1af4", device: "1000", driver: "pciback" });
  expect(pci.device("0000:05:00.0")).toBeUndefined();
  expect(pci.device("0000:06:00.0")).toBeUndefined();
});
