// The PCI devices libxl assigns to this stub domain for passthrough, as dom0's PCI backend
// lists them (libxl_pci.c libxl__device_pci_add_xenstore, Linux's xen-pciback/xenbus.c):
//
//   /local/domain/0/backend/pci/<stub>/0/num_devs   N (devices 0..N-1, some may be gone)
//                                       dev-<i>    the host's BDF, "%04x:%02x:%02x.%01x" (libxl)
//                                       state-<i>  1 added, 3 exported by pciback, 5 being removed
//                                       vdev-<i>   the BDF pcifront sees, "%04x:%02x:%02x.%02x"
//                                                  (pciback, once exported)
//   /local/domain/<stub>/device/pci/0/state       pcifront: 4 once it has scanned the bus
//
// libxl gives QEMU the host's BDF (`hostaddr`), and QEMU opens that address in this domain's
// sysfs: only pciback's passthrough mode (xen-pciback.passthrough=1 in dom0) makes the two
// equal. A vdev that differs is named here, not left for QEMU to fail on.
//
// The backend is dom0's and readable by this domain; what it holds is still checked, bounded
// and reported per key: a bad entry costs that device, never the list.
import { MAX_PCI } from "../health/schema.ts";
import type { XenStore } from "../xenstore/types.ts";
import { isXsErrno, readString } from "../xenstore/util.ts";

/** Devices looked at, at most: the health report's bound. */
export const MAX_PCI_DEVICES = MAX_PCI;
const SHORT = 32;

export const backendDir = (stub: number) => `/local/domain/0/backend/pci/${stub}/0`;
export const frontendDir = (stub: number) => `/local/domain/${stub}/device/pci/0`;

/** A BDF as libxl and pciback write it: hex domain:bus:slot.function, the function 1 or 2 digits. */
const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f]{1,2})$/;

/** The canonical form ("0000:03:00.0", sysfs's), or null when `text` is not a BDF. */
export function canonicalBdf(text: string): string | null {
  const m = BDF.exec(text);
  if (!m) return null;
  const [slot, fn] = [parseInt(m[3]!, 16), parseInt(m[4]!, 16)];
  if (slot > 0x1f || fn > 7) return null;
  return `${m[1]}:${m[2]}:${m[3]}.${fn}`;
}

export interface AssignedPci {
  /** Its index in the backend (dev-<index>). */
  index: number;
  /** The host's BDF, canonical: the address libxl gives QEMU. */
  bdf: string;
  /** The backend's substate for it (state-<index>); undefined when absent. */
  state?: number;
  /** Where pcifront sees it, when pciback has exported it and it differs from `bdf`. */
  vdevDiffers?: string;
}

export interface AssignedList {
  devices: AssignedPci[];
  /** pcifront's state (device/pci/0/state); undefined when absent. */
  frontendState?: number;
  /** One line per value that could not be used, naming its key. */
  problems: string[];
}

const STATE = /^[0-9]$/;

export function readAssigned(xs: XenStore, stub: number): AssignedList {
  const be = backendDir(stub);
  const problems: string[] = [];
  const out: AssignedList = { devices: [], problems };
  const read = (path: string): string | undefined => {
    try {
      return readString(xs, path, SHORT);
    } catch (e) {
      // A node that does not exist under a directory this domain may not read (dom0's backend
      // directory, when no device was ever assigned) is EACCES, not ENOENT: absent all the same.
      if (isXsErrno(e, "EACCES")) return undefined;
      problems.push(`${path}: ${(e as Error).message}`);
      return undefined;
    }
  };
  const state = (path: string): number | undefined => {
    const v = read(path);
    if (v === undefined) return undefined;
    if (STATE.test(v)) return Number(v);
    problems.push(`${path}: ${JSON.stringify(v.slice(0, SHORT))} is not a xenbus state`);
    return undefined;
  };
  out.frontendState = state(`${frontendDir(stub)}/state`);
  const num = read(`${be}/num_devs`);
  if (num === undefined) return out;
  if (!/^(0|[1-9][0-9]{0,3})$/.test(num)) {
    problems.push(`${be}/num_devs: ${JSON.stringify(num.slice(0, SHORT))} is not a device count`);
    return out;
  }
  const n = Number(num);
  if (n > MAX_PCI_DEVICES) problems.push(`${be}/num_devs: ${n} devices, only the first ${MAX_PCI_DEVICES} are looked at`);
  for (let i = 0; i < Math.min(n, MAX_PCI_DEVICES); i++) {
    const dev = read(`${be}/dev-${i}`);
    if (dev === undefined) continue; // removed, or unreadable (said above)
    const bdf = canonicalBdf(dev);
    if (bdf === null) {
      problems.push(`${be}/dev-${i}: ${JSON.stringify(dev.slice(0, SHORT))} is not a PCI address`);
      continue;
    }
    const d: AssignedPci = { index: i, bdf, state: state(`${be}/state-${i}`) };
    const vdev = read(`${be}/vdev-${i}`);
    if (vdev !== undefined) {
      const seen = canonicalBdf(vdev);
      if (seen === null) problems.push(`${be}/vdev-${i}: ${JSON.stringify(vdev.slice(0, SHORT))} is not a PCI address`);
      else if (seen !== bdf) d.vdevDiffers = seen;
    }
    out.devices.push(d);
  }
  return out;
}
