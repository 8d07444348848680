// What this domain's kernel shows of a PCI device: /sys/bus/pci/devices/<bdf>, where pcifront
// adds the devices it finds and where QEMU's xen-pci-passthrough opens them.
import { readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";

export interface PciSysfsDevice {
  /** Four lowercase hex digits each, as `lspci -n` prints them. */
  vendor: string;
  device: string;
  /** The driver bound to it in this domain, if any (QEMU needs none). */
  driver?: string;
}

export interface PciSysfs {
  /** The device at `bdf`, or undefined when the kernel has no such device (yet). */
  device(bdf: string): PciSysfsDevice | undefined;
}

const ID = /^0x([0-9a-f]{4})\n?$/;

/** Reads at most a few bytes per attribute; anything unexpected reads as "no such device". */
export function sysfsPci(root = "/sys/bus/pci/devices"): PciSysfs {
  const id = (path: string): string | undefined => {
    try {
      return ID.exec(readFileSync(path, "latin1").slice(0, 16))?.[1];
    } catch {
      return undefined;
    }
  };
  return {
    device(bdf) {
      const dir = `${root}/${bdf}`;
      const vendor = id(`${dir}/vendor`);
      const device = id(`${dir}/device`);
      if (vendor === undefined || device === undefined) return undefined;
      let driver: string | undefined;
      try {
        driver = basename(readlinkSync(`${dir}/driver`));
      } catch {
        driver = undefined;
      }
      return { vendor, device, ...(driver ? { driver } : {}) };
    },
  };
}
