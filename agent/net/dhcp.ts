// A DHCPv4 server for one client and one fixed lease, speaking raw Ethernet frames on the
// tap so the stub domain needs no IP address. Pure: frames in, frames out; the socket is a
// FramePort (ffi/packet.ts, or an in-memory one in tests). Every request comes from the guest
// and is untrusted: lengths are checked before every read, options are bounded.
import IPCIDR from "ip-cidr";
import { formatIpv4, parseIpv4 } from "./bpf.ts";
import { macBytes, macString } from "./codec.ts";

export interface Lease {
  clientIp: string;
  netmask: string;
  gateway: string;
  dns: string[];
  /** Seconds; default one day. */
  leaseSeconds?: number;
}

export interface ValidLease {
  clientIp: number;
  netmask: number;
  gateway: number;
  dns: number[];
  leaseSeconds: number;
}

/** Checks the lease with ip-cidr: the client and gateway must share the subnet the mask describes. */
export function validateLease(l: Lease): ValidLease | string[] {
  const problems: string[] = [];
  const ip = (what: string, s: string) => {
    const n = parseIpv4(s);
    if (n === undefined) problems.push(`${what} '${s}' is not an IPv4 address`);
    return n ?? 0;
  };
  const clientIp = ip("client address", l.clientIp);
  const netmask = ip("netmask", l.netmask);
  const gateway = ip("gateway", l.gateway);
  if (l.dns.length > 4) problems.push(`${l.dns.length} DNS servers (at most 4)`);
  const dns = l.dns.map((d, i) => ip(`dns ${i}`, d));
  const hostBits = ~netmask >>> 0;
  const len = hostBits === 0 ? 32 : Math.clz32(hostBits);
  if ((hostBits & (hostBits + 1)) !== 0) problems.push(`netmask '${l.netmask}' is not contiguous`);
  if (len > 30) problems.push(`netmask '${l.netmask}' leaves no room for a client and a gateway`);
  if (problems.length === 0) {
    const cidr = new IPCIDR(`${formatIpv4((clientIp & netmask) >>> 0)}/${len}`);
    if (!cidr.contains(l.gateway)) problems.push(`gateway ${l.gateway} is outside ${cidr.toString()}, the client's subnet`);
    if (clientIp === gateway) problems.push(`client address and gateway are both ${l.clientIp}`);
  }
  const leaseSeconds = l.leaseSeconds ?? 86400;
  if (!(Number.isInteger(leaseSeconds) && leaseSeconds >= 60 && leaseSeconds <= 0xffffffff)) problems.push(`lease time ${leaseSeconds} is not an integer number of seconds >= 60`);
  return problems.length > 0 ? problems : { clientIp, netmask, gateway, dns, leaseSeconds };
}

const BOOTP_FIXED = 236;
const MAGIC = 0x63825363;
const DISCOVER = 1, OFFER = 2, REQUEST = 3, ACK = 5, NAK = 6, RELEASE = 7, INFORM = 8;
const FLAG_BROADCAST = 0x8000;

export interface DhcpRequest {
  type: number;
  xid: number;
  flags: number;
  ciaddr: number;
  chaddr: string;
  requestedIp?: number;
  serverId?: number;
}

/** Parses a guest frame; returns a reason string for anything that is not a DHCP request we serve. */
export function parseRequest(frame: Uint8Array): DhcpRequest | string {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 14 + 20 + 8 + BOOTP_FIXED + 4) return `frame of ${frame.length} bytes is too short for DHCP`;
  if (dv.getUint16(12) !== 0x0800) return "not IPv4";
  const ihl = (frame[14]! & 0xf) * 4;
  if (frame[14]! >> 4 !== 4 || ihl < 20) return "bad IPv4 header";
  const total = dv.getUint16(16);
  if (total > frame.length - 14 || total < ihl + 8) return `IPv4 total length ${total} does not fit the frame`;
  if (frame[23] !== 17) return "not UDP";
  const udp = 14 + ihl;
  if (dv.getUint16(udp + 2) !== 67) return "not to port 67";
  const udpLen = dv.getUint16(udp + 4);
  if (udpLen < 8 + BOOTP_FIXED + 4 || udp + udpLen > 14 + total) return `UDP length ${udpLen} is wrong`;
  const b = udp + 8;
  const end = udp + udpLen;
  if (frame[b] !== 1) return "not a BOOTREQUEST";
  if (frame[b + 1] !== 1 || frame[b + 2] !== 6) return "not Ethernet hardware addresses";
  if (dv.getUint32(b + BOOTP_FIXED) !== MAGIC) return "no DHCP magic cookie";
  const req: DhcpRequest = {
    type: 0, xid: dv.getUint32(b + 4), flags: dv.getUint16(b + 10), ciaddr: dv.getUint32(b + 12),
    chaddr: macString(frame.subarray(b + 28, b + 34)),
  };
  let o = b + BOOTP_FIXED + 4;
  while (o < end) {
    const code = frame[o]!;
    if (code === 255) break;
    if (code === 0) { o++; continue; }
    if (o + 2 > end) return "option runs past the packet";
    const len = frame[o + 1]!;
    if (o + 2 + len > end) return `option ${code} runs past the packet`;
    const val = frame.subarray(o + 2, o + 2 + len);
    const v4 = () => (len === 4 ? new DataView(val.buffer, val.byteOffset, 4).getUint32(0) : undefined);
    if (code === 53 && len === 1) req.type = val[0]!;
    else if (code === 50) req.requestedIp = v4();
    else if (code === 54) req.serverId = v4();
    o += 2 + len;
  }
  if (req.type === 0) return "no DHCP message type";
  return req;
}

export interface ReplyContext {
  lease: ValidLease;
  serverMac: string;
  /** Only answer this client (the NIC's configured MAC), when given. */
  clientMac?: string;
}

/** The reply to a request, or a reason for not answering. */
export function reply(req: DhcpRequest, ctx: ReplyContext): { type: number; frame: Uint8Array } | string {
  if (ctx.clientMac && req.chaddr !== ctx.clientMac.toLowerCase()) return `client ${req.chaddr} is not this NIC's ${ctx.clientMac}`;
  const l = ctx.lease;
  let type: number;
  if (req.type === DISCOVER) type = OFFER;
  else if (req.type === REQUEST) {
    if (req.serverId !== undefined && req.serverId !== l.gateway) return "request for another server";
    const asked = req.requestedIp ?? req.ciaddr;
    type = asked === l.clientIp ? ACK : NAK;
  } else if (req.type === INFORM) type = ACK;
  else if (req.type === RELEASE) return "release (nothing to do for a fixed lease)";
  else return `message type ${req.type} not served`;

  const opts: number[] = [53, 1, type, 54, 4, ...be32(l.gateway)];
  if (type !== NAK) {
    if (req.type !== INFORM) opts.push(51, 4, ...be32(l.leaseSeconds));
    opts.push(1, 4, ...be32(l.netmask), 3, 4, ...be32(l.gateway));
    if (l.dns.length > 0) opts.push(6, 4 * l.dns.length, ...l.dns.flatMap(be32));
  }
  opts.push(255);
  const bootpLen = Math.max(BOOTP_FIXED + 4 + opts.length, 300);
  const udpLen = 8 + bootpLen;
  const ipLen = 20 + udpLen;
  const f = new Uint8Array(14 + ipLen);
  const dv = new DataView(f.buffer);
  // RFC 2131 4.1: NAKs are broadcast, and so is anything the client asked to get broadcast.
  const broadcast = type === NAK || (req.flags & FLAG_BROADCAST) !== 0;
  const dstMac = broadcast ? new Uint8Array(6).fill(0xff) : macBytes(req.chaddr);
  f.set(dstMac, 0);
  f.set(macBytes(ctx.serverMac), 6);
  dv.setUint16(12, 0x0800);
  const yiaddr = type === ACK || type === OFFER ? (req.type === INFORM ? 0 : l.clientIp) : 0;
  const dstIp = broadcast ? 0xffffffff : req.type === INFORM && req.ciaddr !== 0 ? req.ciaddr : yiaddr;
  // IPv4 header
  f[14] = 0x45;
  dv.setUint16(16, ipLen);
  f[22] = 64;
  f[23] = 17;
  dv.setUint32(26, l.gateway);
  dv.setUint32(30, dstIp);
  dv.setUint16(24, checksum(f.subarray(14, 34)));
  // UDP, checksum 0 (optional for IPv4)
  dv.setUint16(34, 67);
  dv.setUint16(36, 68);
  dv.setUint16(38, udpLen);
  const b = 42;
  f[b] = 2;
  f[b + 1] = 1;
  f[b + 2] = 6;
  dv.setUint32(b + 4, req.xid);
  dv.setUint16(b + 10, req.flags & FLAG_BROADCAST);
  dv.setUint32(b + 12, req.ciaddr);
  dv.setUint32(b + 16, yiaddr);
  f.set(macBytes(req.chaddr), b + 28);
  dv.setUint32(b + BOOTP_FIXED, MAGIC);
  f.set(opts, b + BOOTP_FIXED + 4);
  return { type, frame: f };
}

const be32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

function checksum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export const typeName = (t: number) => ({ 1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM" })[t] ?? `type ${t}`;

/** A link-layer socket on one interface: raw frames out, frames matching its filter in. */
export interface FramePort {
  send(frame: Uint8Array): void;
  /** Called once per received frame; never blocks the loop. */
  onFrame(fn: (frame: Uint8Array) => void): void;
  close(): void;
}

export interface DhcpCounters {
  offers: number;
  acks: number;
  naks: number;
  ignored: number;
  lastIgnored?: string;
}

export interface DhcpServer {
  counters: DhcpCounters;
  stop(): void;
}

export function serveDhcp(port: FramePort, ctx: ReplyContext, log?: (msg: string) => void): DhcpServer {
  const counters: DhcpCounters = { offers: 0, acks: 0, naks: 0, ignored: 0 };
  port.onFrame((frame) => {
    const req = parseRequest(frame);
    const out = typeof req === "string" ? req : reply(req, ctx);
    if (typeof out === "string") {
      counters.ignored++;
      counters.lastIgnored = out;
      return;
    }
    if (out.type === OFFER) counters.offers++;
    else if (out.type === ACK) counters.acks++;
    else counters.naks++;
    if (typeof req !== "string") log?.(`${typeName(req.type)} from ${req.chaddr} -> ${typeName(out.type)} ${formatIpv4(ctx.lease.clientIp)}`);
    try {
      port.send(out.frame);
    } catch (e) {
      log?.(`send ${typeName(out.type)}: ${(e as Error).message}`);
    }
  });
  return { counters, stop: () => port.close() };
}
