// Networking for the stub domain: what PID 1 calls. Per emulated NIC n:
//   createTap(`vif${G}.${n}-emu`)                      before QEMU starts
//   await linkNic(nl, {netfront: `eth${n}`, tap, mtu, allowedSources, localDhcp})
//   startDhcp({tap, lease, clientMac})                  when the config carries addresses
//   nl.onLink(ev => ..., lost => ...)                  netfront/tap changes, no polling (lost: read again)
//   await unlinkNic(nl, {netfront, tap, deleteTap})     on DEVICE_DELETED or QEMU exit
//   await nicStats(nl, [netfront, tap])                 counters for health reports
import { dhcpSocketFilter } from "./bpf.ts";
import { serveDhcp, validateLease, type DhcpServer, type FramePort, type Lease } from "./dhcp.ts";
import { createPersistentTap, openPacketPort } from "../../ffi/packet.ts";
import { Rtnetlink, type RtnetlinkOptions } from "../../ffi/netlink.ts";
import type { Netlink } from "./types.ts";

export { linkNic, unlinkNic, nicStats, allLinks, waitOperUp, validateLink, NicConfigError, MAX_ALLOWED_SOURCES } from "./nic.ts";
export type { LinkOptions, LinkResult, UnlinkOptions, NicStats, LinkInfo, NicPair } from "./nic.ts";
export { NetlinkError } from "./types.ts";
export type { Netlink, LinkEvent } from "./types.ts";
export { FakeNetlink } from "./fake.ts";
export { validateLease } from "./dhcp.ts";
export type { Lease, DhcpServer, DhcpCounters, FramePort } from "./dhcp.ts";

/** The real rtnetlink socket pair (requests, and link events once someone subscribes). */
export function openNetlink(opts?: RtnetlinkOptions): Netlink {
  return new Rtnetlink(opts);
}

/** Creates QEMU's tap as a persistent device (see the design note in ffi/packet.ts). */
export function createTap(name: string): void {
  createPersistentTap(name);
}

export interface DhcpOptions {
  /** The interface the guest's frames arrive on (QEMU's tap). */
  tap: string;
  lease: Lease;
  /** Source MAC of the replies; the stub domain's side of the link (Qubes uses fe:ff:ff:ff:ff:ff). */
  serverMac?: string;
  /** Answer only this MAC (the NIC's `mac=`). */
  clientMac?: string;
  log?: (msg: string) => void;
  /** For tests: a port other than a packet socket on `tap`. */
  port?: FramePort;
}

/**
 * Serves one fixed lease on the tap. Throws (before opening anything) when the lease is
 * invalid. Pair it with linkNic({localDhcp: true}) so the guest's requests are not also
 * forwarded to the real network.
 */
export function startDhcp(o: DhcpOptions): DhcpServer {
  const lease = validateLease(o.lease);
  if (Array.isArray(lease)) throw new Error(`DHCP lease for ${o.tap}: ${lease.join("; ")}`);
  const port = o.port ?? openPacketPort(o.tap, dhcpSocketFilter(), { onError: (e) => o.log?.(`dhcp on ${o.tap}: ${(e as Error).message}`) });
  return serveDhcp(port, { lease, serverMac: o.serverMac ?? "fe:ff:ff:ff:ff:ff", clientMac: o.clientMac }, o.log);
}
