// PCI passthrough devices through the supervisor's loop: the backend's listing and pcifront's
// state are watched (pcifront switches to Connected once it has scanned the devices into sysfs,
// at create and after each `xl pci-attach`), and one timer stands for the earliest deadline.
// A watch that cannot be set is reported and leaves the agent running.
import type { Logger } from "../log.ts";
import type { Listeners } from "../init/events.ts";
import type { XenStore } from "../xenstore/types.ts";
import { backendDir, frontendDir } from "./assigned.ts";
import type { PciSysfs } from "./sysfs.ts";
import { PciTracker } from "./tracker.ts";

export const PCI_WATCH_TOKEN = "stubdom-pci";

export interface PciWatchOptions {
  xs: XenStore;
  stubDomid: number;
  sysfs: PciSysfs;
  /** xenstore watch events come back out of the supervisor's loop here. */
  listeners: Listeners;
  nowMs(): number;
  log: Logger;
  report(message: string): void;
  deadlineMs?: number;
  /** Default setTimeout; returns a cancel function. */
  after?: (ms: number, fn: () => void) => () => void;
}

const defaultAfter = (ms: number, fn: () => void) => {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
};

export function watchPci(o: PciWatchOptions): PciTracker {
  const tracker = new PciTracker(o);
  const after = o.after ?? defaultAfter;
  let cancel: (() => void) | undefined;
  const refresh = () => {
    try {
      tracker.refresh();
    } catch (e) {
      o.log.error(`pci: ${(e as Error).message}`);
    }
    cancel?.();
    cancel = undefined;
    const at = tracker.nextDeadline();
    if (at !== undefined) cancel = after(Math.max(0, at - o.nowMs()), refresh);
  };
  o.listeners.on("xenstore", (e) => {
    if (e.token === PCI_WATCH_TOKEN) refresh();
  });
  for (const path of [backendDir(o.stubDomid), `${frontendDir(o.stubDomid)}/state`]) {
    try {
      // A watch fires once when set: the first refresh needs no call of its own.
      o.xs.watch(path, PCI_WATCH_TOKEN);
    } catch (e) {
      const msg = `pci: cannot watch ${path}: ${(e as Error).message}; passthrough devices are not reported`;
      o.log.error(msg);
      o.report(msg);
    }
  }
  return tracker;
}
