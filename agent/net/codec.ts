// Pure rtnetlink codec: bytes <-> typed messages for the few message kinds the agent sends and
// the replies it reads. Attributes the agent does not model survive as {kind: "other"} so a
// decoded message re-encodes to the same bytes. Host byte order (little-endian on every
// platform Xen stub domains run on) is decided here and nowhere else.

import type { BpfInsn } from "../bpf/asm.ts";

const LE = true;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTFILTER = 44;
export const RTM_DELTFILTER = 45;
export const RTM_GETTFILTER = 46;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_CREATE = 0x400;
/** In an NLMSG_ERROR: the echoed request is only its header. */
export const NLM_F_CAPPED = 0x100;
/** In an NLMSG_ERROR: extended-ack TLVs follow the echoed request. */
export const NLM_F_ACK_TLVS = 0x200;

export const IFF_UP = 0x1;
export const AF_UNSPEC = 0;
export const AF_PACKET = 17;
export const AF_INET6 = 10;
/** IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address, so the link sends no IPv6 of its own. */
export const IN6_ADDR_GEN_MODE_NONE = 1;
export const ETH_P_ALL = 0x0003;
/** tcm_parent of the ingress qdisc (TC_H_INGRESS) and of filters attached to it (FFFF:FFF2). */
export const TC_H_INGRESS = 0xfffffff1;
export const TC_H_INGRESS_FILTERS = 0xfffffff2;
export const INGRESS_QDISC_HANDLE = 0xffff0000;
export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_STOLEN = 4;
export const TCA_EGRESS_REDIR = 1;
export const TC_U32_TERMINAL = 1;
export const TCA_BPF_FLAG_ACT_DIRECT = 1;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export interface Header {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export interface IfInfo {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

export interface TcMsg {
  family: number;
  ifindex: number;
  handle: number;
  parent: number;
  /** Filters: priority << 16 | big-endian protocol. Qdiscs: refcount. */
  info: number;
}

export interface Other {
  kind: "other";
  /** The attribute type including its flag bits, so it re-encodes unchanged. */
  type: number;
  raw: Uint8Array;
}

export interface LinkCounters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  rxErrors: number;
  txErrors: number;
  rxDropped: number;
  txDropped: number;
}

/** IFLA_INET6_* inside IFLA_AF_SPEC / AF_INET6. */
export type Inet6Attr = { kind: "addrGenMode"; value: number } | Other;
/** IFLA_AF_SPEC entries, by address family. */
export type AfSpecAttr = { kind: "inet6"; value: Inet6Attr[] } | Other;

export type LinkAttr =
  | { kind: "address"; value: string }
  | { kind: "ifname"; value: string }
  | { kind: "mtu"; value: number }
  | { kind: "operstate"; value: number }
  | { kind: "extMask"; value: number }
  | { kind: "afSpec"; value: AfSpecAttr[] }
  /** Only the first counters are modelled; raw keeps the whole struct (its size grows with kernels). */
  | { kind: "stats64"; value: LinkCounters; raw: Uint8Array }
  | Other;

export type StatsAttr =
  | { kind: "basic"; bytes: number; packets: number }
  | { kind: "queue"; qlen: number; backlog: number; drops: number; requeues: number; overlimits: number }
  | Other;

export interface MirredParms {
  index: number;
  capab: number;
  action: number;
  refcnt: number;
  bindcnt: number;
  eaction: number;
  ifindex: number;
}

export type MirredAttr = { kind: "parms"; value: MirredParms } | Other;

export type ActionAttr =
  | { kind: "kind"; value: string }
  /** type is 2, with NLA_F_NESTED when tc built it (the kernel's dumps leave the flag off). */
  | { kind: "mirred"; type: number; value: MirredAttr[] }
  | { kind: "options"; raw: Uint8Array; type: number }
  | { kind: "stats"; value: StatsAttr[] }
  | Other;

export interface Action {
  /** Position in the action list, from 1. */
  order: number;
  attrs: ActionAttr[];
}

export interface U32Key {
  mask: number;
  val: number;
  off: number;
  offmask: number;
}

export interface U32Sel {
  flags: number;
  offshift: number;
  offmask: number;
  off: number;
  offoff: number;
  hoff: number;
  hmask: number;
  keys: U32Key[];
}

export type U32Attr =
  | { kind: "sel"; value: U32Sel }
  | { kind: "actions"; value: Action[] }
  | Other;

export type { BpfInsn };

export type BpfAttr =
  | { kind: "opsLen"; value: number }
  | { kind: "ops"; value: BpfInsn[] }
  | { kind: "flags"; value: number }
  | Other;

export type TcAttr =
  | { kind: "kind"; value: string }
  | { kind: "u32"; value: U32Attr[] }
  | { kind: "bpf"; value: BpfAttr[] }
  /** TCA_OPTIONS of a kind not modelled (e.g. the empty options of "ingress"). */
  | { kind: "options"; type: number; raw: Uint8Array }
  | { kind: "chain"; value: number }
  | { kind: "stats2"; value: StatsAttr[] }
  | Other;

export type ExtAckAttr = { kind: "msg"; value: string } | { kind: "offset"; value: number } | Other;

export type Message =
  | { kind: "link"; header: Header; ifi: IfInfo; attrs: LinkAttr[] }
  | { kind: "tc"; header: Header; tcm: TcMsg; attrs: TcAttr[] }
  | { kind: "error"; header: Header; error: number; request: Uint8Array; extAck: ExtAckAttr[] }
  | { kind: "done"; header: Header; raw: Uint8Array }
  | { kind: "other"; header: Header; raw: Uint8Array };

export class CodecError extends Error {
  constructor(msg: string) {
    super(`netlink decode: ${msg}`);
    this.name = "CodecError";
  }
}

// ---- writer ------------------------------------------------------------------------------

class Writer {
  private buf = new Uint8Array(256);
  private dv = new DataView(this.buf.buffer);
  len = 0;

  private grow(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf);
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(v: number): void { this.grow(1); this.dv.setUint8(this.len, v); this.len += 1; }
  u16(v: number): void { this.grow(2); this.dv.setUint16(this.len, v, LE); this.len += 2; }
  u16be(v: number): void { this.grow(2); this.dv.setUint16(this.len, v, false); this.len += 2; }
  u32(v: number): void { this.grow(4); this.dv.setUint32(this.len, v >>> 0, LE); this.len += 4; }
  i32(v: number): void { this.grow(4); this.dv.setInt32(this.len, v, LE); this.len += 4; }
  u32be(v: number): void { this.grow(4); this.dv.setUint32(this.len, v >>> 0, false); this.len += 4; }
  u64(v: number): void { this.grow(8); this.dv.setBigUint64(this.len, BigInt(v), LE); this.len += 8; }
  bytes(b: Uint8Array): void { this.grow(b.length); this.buf.set(b, this.len); this.len += b.length; }
  pad(): void { while (this.len % 4 !== 0) this.u8(0); }
  setU16(at: number, v: number): void { this.dv.setUint16(at, v, LE); }
  setU32(at: number, v: number): void { this.dv.setUint32(at, v, LE); }
  /** Writes one attribute whose payload the callback writes; the length excludes trailing padding. */
  attr(type: number, body: () => void): void {
    const start = this.len;
    this.u16(0);
    this.u16(type);
    body();
    this.setU16(start, this.len - start);
    this.pad();
  }
  result(): Uint8Array { return this.buf.slice(0, this.len); }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function cstring(w: Writer, s: string): void {
  w.bytes(enc.encode(s));
  w.u8(0);
}

function writeOther(w: Writer, a: Other): void {
  w.attr(a.type, () => w.bytes(a.raw));
}

function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{2}$/i.test(p))) throw new Error(`bad MAC address '${mac}'`);
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

function macString(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

function writeLinkAttr(w: Writer, a: LinkAttr): void {
  switch (a.kind) {
    case "address": return w.attr(1, () => w.bytes(macBytes(a.value)));
    case "ifname": return w.attr(3, () => cstring(w, a.value));
    case "mtu": return w.attr(4, () => w.u32(a.value));
    case "operstate": return w.attr(16, () => w.u8(a.value));
    case "stats64": return w.attr(23, () => w.bytes(a.raw));
    case "extMask": return w.attr(29, () => w.u32(a.value));
    case "afSpec": return w.attr(26, () => a.value.forEach((f) => {
      if (f.kind === "other") return writeOther(w, f);
      w.attr(10, () => f.value.forEach((x) => (x.kind === "other" ? writeOther(w, x) : w.attr(8, () => w.u8(x.value)))));
    }));
    case "other": return writeOther(w, a);
  }
}

function writeStats(w: Writer, a: StatsAttr): void {
  switch (a.kind) {
    case "basic": return w.attr(1, () => { w.u64(a.bytes); w.u32(a.packets); w.u32(0); });
    case "queue": return w.attr(3, () => { w.u32(a.qlen); w.u32(a.backlog); w.u32(a.drops); w.u32(a.requeues); w.u32(a.overlimits); });
    case "other": return writeOther(w, a);
  }
}

function writeMirred(w: Writer, a: MirredAttr): void {
  if (a.kind === "other") return writeOther(w, a);
  const p = a.value;
  w.attr(2, () => { w.u32(p.index); w.u32(p.capab); w.i32(p.action); w.i32(p.refcnt); w.i32(p.bindcnt); w.i32(p.eaction); w.u32(p.ifindex); });
}

function writeAction(w: Writer, act: Action): void {
  w.attr(act.order, () => {
    for (const a of act.attrs) {
      switch (a.kind) {
        case "kind": w.attr(1, () => cstring(w, a.value)); break;
        case "mirred": w.attr(a.type, () => a.value.forEach((m) => writeMirred(w, m))); break;
        case "options": w.attr(a.type, () => w.bytes(a.raw)); break;
        case "stats": w.attr(4, () => a.value.forEach((s) => writeStats(w, s))); break;
        case "other": writeOther(w, a); break;
      }
    }
  });
}

function writeU32(w: Writer, a: U32Attr): void {
  switch (a.kind) {
    case "sel": {
      const s = a.value;
      return w.attr(5, () => {
        w.u8(s.flags); w.u8(s.offshift); w.u8(s.keys.length); w.u8(0);
        w.u16be(s.offmask); w.u16(s.off); w.u16(s.offoff); w.u16(s.hoff); w.u32be(s.hmask);
        for (const k of s.keys) { w.u32be(k.mask); w.u32be(k.val); w.i32(k.off); w.i32(k.offmask); }
      });
    }
    case "actions": return w.attr(7, () => a.value.forEach((act) => writeAction(w, act)));
    case "other": return writeOther(w, a);
  }
}

function writeBpf(w: Writer, a: BpfAttr): void {
  switch (a.kind) {
    case "opsLen": return w.attr(4, () => w.u16(a.value));
    case "ops": return w.attr(5, () => a.value.forEach((i) => { w.u16(i.code); w.u8(i.jt); w.u8(i.jf); w.u32(i.k); }));
    case "flags": return w.attr(8, () => w.u32(a.value));
    case "other": return writeOther(w, a);
  }
}

function writeTcAttr(w: Writer, a: TcAttr): void {
  switch (a.kind) {
    case "kind": return w.attr(1, () => cstring(w, a.value));
    case "u32": return w.attr(2, () => a.value.forEach((x) => writeU32(w, x)));
    case "bpf": return w.attr(2, () => a.value.forEach((x) => writeBpf(w, x)));
    case "options": return w.attr(a.type, () => w.bytes(a.raw));
    case "stats2": return w.attr(7, () => a.value.forEach((s) => writeStats(w, s)));
    case "chain": return w.attr(11, () => w.u32(a.value));
    case "other": return writeOther(w, a);
  }
}

export function encode(msg: Message): Uint8Array {
  const w = new Writer();
  const h = msg.header;
  w.u32(0);
  w.u16(h.type);
  w.u16(h.flags);
  w.u32(h.seq);
  w.u32(h.pid);
  switch (msg.kind) {
    case "link": {
      const i = msg.ifi;
      w.u8(i.family); w.u8(0); w.u16(i.type); w.i32(i.index); w.u32(i.flags); w.u32(i.change);
      msg.attrs.forEach((a) => writeLinkAttr(w, a));
      break;
    }
    case "tc": {
      const t = msg.tcm;
      w.u8(t.family); w.u8(0); w.u16(0); w.i32(t.ifindex); w.u32(t.handle); w.u32(t.parent); w.u32(t.info);
      msg.attrs.forEach((a) => writeTcAttr(w, a));
      break;
    }
    case "error":
      w.i32(msg.error);
      w.bytes(msg.request);
      msg.extAck.forEach((a) => {
        if (a.kind === "msg") w.attr(1, () => cstring(w, a.value));
        else if (a.kind === "offset") w.attr(2, () => w.u32(a.value));
        else writeOther(w, a);
      });
      break;
    case "done":
    case "other":
      w.bytes(msg.raw);
      break;
  }
  w.setU32(0, w.len);
  return w.result();
}

// ---- reader ------------------------------------------------------------------------------

interface RawAttr {
  type: number;
  payload: Uint8Array;
}

function attrs(b: Uint8Array, where: string): RawAttr[] {
  const out: RawAttr[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  while (off + 4 <= b.length) {
    const len = dv.getUint16(off, LE);
    const type = dv.getUint16(off + 2, LE);
    if (len < 4 || off + len > b.length) throw new CodecError(`${where}: attribute ${type & NLA_TYPE_MASK} has length ${len} at offset ${off} of ${b.length}`);
    out.push({ type, payload: b.subarray(off + 4, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function need(p: Uint8Array, n: number, what: string): DataView {
  if (p.length < n) throw new CodecError(`${what}: ${p.length} bytes, need ${n}`);
  return view(p);
}

function str(p: Uint8Array): string {
  const z = p.indexOf(0);
  return dec.decode(z < 0 ? p : p.subarray(0, z));
}

function other(a: RawAttr): Other {
  return { kind: "other", type: a.type, raw: a.payload.slice() };
}

function decodeLinkAttr(a: RawAttr): LinkAttr {
  const p = a.payload;
  switch (a.type) {
    case 1: return p.length === 6 ? { kind: "address", value: macString(p) } : other(a);
    case 3: return { kind: "ifname", value: str(p) };
    case 4: return { kind: "mtu", value: need(p, 4, "IFLA_MTU").getUint32(0, LE) };
    case 16: return { kind: "operstate", value: need(p, 1, "IFLA_OPERSTATE").getUint8(0) };
    case 23: {
      const dv = need(p, 64, "IFLA_STATS64");
      const f = (i: number) => Number(dv.getBigUint64(i * 8, LE));
      return {
        kind: "stats64",
        value: { rxPackets: f(0), txPackets: f(1), rxBytes: f(2), txBytes: f(3), rxErrors: f(4), txErrors: f(5), rxDropped: f(6), txDropped: f(7) },
        raw: p.slice(),
      };
    }
    case 29: return { kind: "extMask", value: need(p, 4, "IFLA_EXT_MASK").getUint32(0, LE) };
    case 26:
      return {
        kind: "afSpec",
        value: attrs(p, "IFLA_AF_SPEC").map((f): AfSpecAttr => f.type !== AF_INET6 ? other(f) : {
          kind: "inet6",
          value: attrs(f.payload, "AF_INET6").map((x): Inet6Attr => (x.type === 8 && x.payload.length === 1 ? { kind: "addrGenMode", value: x.payload[0]! } : other(x))),
        }),
      };
    default: return other(a);
  }
}

function decodeStats(a: RawAttr): StatsAttr {
  const p = a.payload;
  if (a.type === 1 && p.length === 16) {
    const dv = view(p);
    if (dv.getUint32(12, LE) === 0) return { kind: "basic", bytes: Number(dv.getBigUint64(0, LE)), packets: dv.getUint32(8, LE) };
  }
  if (a.type === 3 && p.length === 20) {
    const dv = view(p);
    const u = (i: number) => dv.getUint32(i * 4, LE);
    return { kind: "queue", qlen: u(0), backlog: u(1), drops: u(2), requeues: u(3), overlimits: u(4) };
  }
  return other(a);
}

function decodeAction(a: RawAttr): Action {
  const list = attrs(a.payload, `action ${a.type}`);
  const kindAttr = list.find((x) => x.type === 1);
  const kind = kindAttr ? str(kindAttr.payload) : "";
  return {
    order: a.type,
    attrs: list.map((x): ActionAttr => {
      switch (x.type) {
        case 1: return { kind: "kind", value: str(x.payload) };
        case 2: case 2 | NLA_F_NESTED:
          if (kind === "mirred") {
            return {
              kind: "mirred",
              type: x.type,
              value: attrs(x.payload, "mirred options").map((m): MirredAttr => {
                if (m.type !== 2 || m.payload.length !== 28) return other(m);
                const dv = view(m.payload);
                return {
                  kind: "parms",
                  value: {
                    index: dv.getUint32(0, LE), capab: dv.getUint32(4, LE), action: dv.getInt32(8, LE),
                    refcnt: dv.getInt32(12, LE), bindcnt: dv.getInt32(16, LE), eaction: dv.getInt32(20, LE),
                    ifindex: dv.getUint32(24, LE),
                  },
                };
              }),
            };
          }
          return { kind: "options", type: x.type, raw: x.payload.slice() };
        case 4: return { kind: "stats", value: attrs(x.payload, "action stats").map(decodeStats) };
        default: return other(x);
      }
    }),
  };
}

function decodeU32(a: RawAttr): U32Attr {
  const p = a.payload;
  if (a.type === 5) {
    const dv = need(p, 16, "TCA_U32_SEL");
    const nkeys = dv.getUint8(2);
    if (p.length !== 16 + nkeys * 16) throw new CodecError(`TCA_U32_SEL: ${p.length} bytes for ${nkeys} keys`);
    const keys: U32Key[] = [];
    for (let i = 0; i < nkeys; i++) {
      const o = 16 + i * 16;
      keys.push({ mask: dv.getUint32(o, false), val: dv.getUint32(o + 4, false), off: dv.getInt32(o + 8, LE), offmask: dv.getInt32(o + 12, LE) });
    }
    return {
      kind: "sel",
      value: {
        flags: dv.getUint8(0), offshift: dv.getUint8(1), offmask: dv.getUint16(4, false), off: dv.getUint16(6, LE),
        offoff: dv.getUint16(8, LE), hoff: dv.getUint16(10, LE), hmask: dv.getUint32(12, false), keys,
      },
    };
  }
  if (a.type === 7) return { kind: "actions", value: attrs(p, "TCA_U32_ACT").map(decodeAction) };
  return other(a);
}

function decodeBpf(a: RawAttr): BpfAttr {
  const p = a.payload;
  switch (a.type) {
    case 4: return { kind: "opsLen", value: need(p, 2, "TCA_BPF_OPS_LEN").getUint16(0, LE) };
    case 5: {
      if (p.length % 8 !== 0) throw new CodecError(`TCA_BPF_OPS: ${p.length} bytes is not a whole number of instructions`);
      const dv = view(p);
      const ops: BpfInsn[] = [];
      for (let o = 0; o < p.length; o += 8) ops.push({ code: dv.getUint16(o, LE), jt: dv.getUint8(o + 2), jf: dv.getUint8(o + 3), k: dv.getUint32(o + 4, LE) });
      return { kind: "ops", value: ops };
    }
    case 8: return { kind: "flags", value: need(p, 4, "TCA_BPF_FLAGS").getUint32(0, LE) };
    default: return other(a);
  }
}

function decodeTcAttrs(b: Uint8Array): TcAttr[] {
  const list = attrs(b, "tcmsg");
  const kindAttr = list.find((x) => x.type === 1);
  const kind = kindAttr ? str(kindAttr.payload) : "";
  return list.map((a): TcAttr => {
    switch (a.type) {
      case 1: return { kind: "kind", value: str(a.payload) };
      case 2:
        if (kind === "u32") return { kind: "u32", value: attrs(a.payload, "u32 options").map(decodeU32) };
        if (kind === "bpf") return { kind: "bpf", value: attrs(a.payload, "bpf options").map(decodeBpf) };
        return { kind: "options", type: a.type, raw: a.payload.slice() };
      case 7: return { kind: "stats2", value: attrs(a.payload, "TCA_STATS2").map(decodeStats) };
      case 11: return { kind: "chain", value: need(a.payload, 4, "TCA_CHAIN").getUint32(0, LE) };
      default: return other(a);
    }
  });
}

/** Decodes one netlink message (exactly nlmsg_len bytes). */
export function decode(b: Uint8Array): Message {
  const dv = need(b, 16, "nlmsghdr");
  const len = dv.getUint32(0, LE);
  if (len !== b.length) throw new CodecError(`nlmsg_len ${len} but ${b.length} bytes`);
  const header: Header = { type: dv.getUint16(4, LE), flags: dv.getUint16(6, LE), seq: dv.getUint32(8, LE), pid: dv.getUint32(12, LE) };
  const body = b.subarray(16);
  switch (header.type) {
    case RTM_NEWLINK: case RTM_DELLINK: case RTM_GETLINK: {
      const v = need(body, 16, "ifinfomsg");
      const ifi: IfInfo = { family: v.getUint8(0), type: v.getUint16(2, LE), index: v.getInt32(4, LE), flags: v.getUint32(8, LE), change: v.getUint32(12, LE) };
      return { kind: "link", header, ifi, attrs: attrs(body.subarray(16), "ifinfomsg").map(decodeLinkAttr) };
    }
    case RTM_NEWQDISC: case RTM_DELQDISC: case RTM_GETQDISC:
    case RTM_NEWTFILTER: case RTM_DELTFILTER: case RTM_GETTFILTER: {
      const v = need(body, 20, "tcmsg");
      const tcm: TcMsg = { family: v.getUint8(0), ifindex: v.getInt32(4, LE), handle: v.getUint32(8, LE), parent: v.getUint32(12, LE), info: v.getUint32(16, LE) };
      return { kind: "tc", header, tcm, attrs: decodeTcAttrs(body.subarray(20)) };
    }
    case NLMSG_ERROR: {
      const v = need(body, 20, "nlmsgerr");
      const error = v.getInt32(0, LE);
      const echoedLen = v.getUint32(4, LE);
      const reqLen = header.flags & NLM_F_CAPPED ? 16 : echoedLen;
      if (reqLen < 16 || 4 + reqLen > body.length) throw new CodecError(`nlmsgerr echoes ${echoedLen} bytes, have ${body.length - 4}`);
      const request = body.slice(4, 4 + reqLen);
      const tlvs = header.flags & NLM_F_ACK_TLVS ? attrs(body.subarray(4 + ((reqLen + 3) & ~3)), "extended ack") : [];
      const extAck = tlvs.map((a): ExtAckAttr => {
        if (a.type === 1) return { kind: "msg", value: str(a.payload) };
        if (a.type === 2 && a.payload.length === 4) return { kind: "offset", value: view(a.payload).getUint32(0, LE) };
        return other(a);
      });
      return { kind: "error", header, error, request, extAck };
    }
    case NLMSG_DONE:
      return { kind: "done", header, raw: body.slice() };
    default:
      return { kind: "other", header, raw: body.slice() };
  }
}

/**
 * Splits a buffer holding one or more netlink messages (a datagram, or several that a stream
 * reader merged) at nlmsg_len boundaries. Returns the messages and the bytes of an incomplete
 * trailing message, which the caller prepends to the next chunk.
 */
export function split(b: Uint8Array): { messages: Uint8Array[]; rest: Uint8Array } {
  const messages: Uint8Array[] = [];
  let off = 0;
  while (b.length - off >= 16) {
    const len = view(b).getUint32(off, LE);
    if (len < 16) throw new CodecError(`nlmsg_len ${len} at offset ${off}`);
    if (off + len > b.length) break;
    messages.push(b.subarray(off, off + len));
    off += (len + 3) & ~3;
  }
  return { messages, rest: b.subarray(Math.min(off, b.length)) };
}

/** The extended-ack text the kernel attached to an error, if any. */
export function extAckMessage(m: Message): string | undefined {
  if (m.kind !== "error") return undefined;
  const a = m.extAck.find((x) => x.kind === "msg");
  return a?.kind === "msg" ? a.value : undefined;
}

export { macBytes, macString };
