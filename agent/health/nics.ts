// One NIC pair (netfront ethN joined to QEMU's tap) as the health report shows it. The guest's
// traffic crosses both links, so each direction's drops are summed across them: frames toward
// the guest arrive on the netfront (rx) and leave through the tap (tx), and the other way round.
import type { NicStats } from "../net/index.ts";
import type { NicHealth } from "./schema.ts";

export function nicHealth(netfront: NicStats, tap: NicStats | undefined): NicHealth {
  const up = (l: NicStats | undefined) => l !== undefined && l.up && l.lowerUp;
  return {
    name: netfront.name,
    ...(tap ? { tap: tap.name } : {}),
    link: up(netfront) && up(tap) ? "up" : "down",
    rx_packets: netfront.rxPackets,
    rx_bytes: netfront.rxBytes,
    rx_dropped: netfront.rxDropped + (tap?.txDropped ?? 0),
    tx_packets: netfront.txPackets,
    tx_bytes: netfront.txBytes,
    tx_dropped: netfront.txDropped + (tap?.rxDropped ?? 0),
    spoofed_dropped: netfront.spoofDrops + (tap?.spoofDrops ?? 0),
  };
}
