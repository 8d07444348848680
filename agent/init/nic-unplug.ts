// When the guest's PV drivers take over, they unplug the emulated NIC (QMP DEVICE_DELETED);
// its redirect then only carries stale traffic, so it is removed, as Qubes tears it down.
import type { Netlink } from "../net/index.ts";
import type { Logger } from "../log.ts";
import type { AgentEvent } from "./events.ts";

export interface NicPairNames {
  netfront: string;
  tap: string;
}

export interface LinkedNics {
  nl: Netlink;
  /** By QEMU device id (`nic<n>`, as libxl names the emulated NICs). */
  pairs: Map<string, NicPairNames>;
}

/** A QMP listener that unlinks each pair once, on its device's DEVICE_DELETED. */
export function onNicUnplug(
  pairs: Map<string, NicPairNames>,
  unlink: (pair: NicPairNames) => Promise<void>,
  log: Logger,
): (e: AgentEvent & { kind: "qmp" }) => void {
  return ({ event }) => {
    if (event.event !== "DEVICE_DELETED") return;
    const device = (event.data as { device?: unknown } | undefined)?.device;
    if (typeof device !== "string") return;
    const pair = pairs.get(device);
    if (!pair) return;
    pairs.delete(device);
    unlink(pair).then(
      () => log.info(`net: ${device} unplugged: ${pair.netfront} <-> ${pair.tap} removed`),
      (e: unknown) => log.warn(`net: ${device} unplugged, teardown failed: ${(e as Error).message}`),
    );
  };
}
