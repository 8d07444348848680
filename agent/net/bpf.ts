// Classic BPF programs, built as data. Classic BPF needs neither the bpf() syscall nor a
// compiler in the image: cls_bpf takes it in TCA_BPF_OPS and packet sockets in SO_ATTACH_FILTER.
//
// Why a cls_bpf guard and not u32 + gact drop: this host's kernel (6.18, the CI machine's)
// has no act_gact, and u32 cannot say "not in this list". A direct-action cls_bpf program
// returns TC_ACT_SHOT itself, the ingress qdisc counts those drops (its queue stats), and
// TC_ACT_UNSPEC hands every other frame to the next filter, the u32 redirect.
import {
  ALU_ADD_K, ALU_AND_K, assemble, JEQ_K, JSET_K, LD_B_ABS, LD_H_ABS, LD_H_IND, LD_W_ABS, LDX_B_MSH, RET_A, RET_K,
  runBpf as run, type BpfInsn, type Line,
} from "../bpf/asm.ts";
import { TC_ACT_OK, TC_ACT_SHOT } from "./codec.ts";

/** Ancillary loads: SKF_AD_OFF + SKF_AD_PKTTYPE / SKF_AD_VLAN_TAG_PRESENT. */
const AD_PKTTYPE = 0xfffff004;
const AD_VLAN_PRESENT = 0xfffff030;
const PACKET_OUTGOING = 4;
/** cls_bpf direct action: -1 is "no verdict", go on to the next filter. */
const TC_ACT_UNSPEC = 0xffffffff;

const ETH_IPV4 = 0x0800;
const ETH_ARP = 0x0806;
const IPPROTO_UDP = 17;
const DHCP_SERVER_PORT = 67;

export interface Prefix {
  /** Network address, host-order 32-bit integer. */
  net: number;
  /** Prefix length 0..32. */
  len: number;
}

export const maskOf = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return parts.reduce((a, p) => ((a << 8) | p) >>> 0, 0);
}

export const formatIpv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");

/** "10.1.2.3" or "10.1.0.0/16"; host bits must be zero so the rule means what it says. */
export function parsePrefix(s: string): Prefix | string {
  const [addr, lenText, ...extra] = s.split("/");
  if (extra.length > 0 || addr === undefined) return `'${s}' is not an IPv4 address or prefix`;
  const net = parseIpv4(addr);
  if (net === undefined) return `'${s}' is not an IPv4 address or prefix`;
  const len = lenText === undefined ? 32 : /^\d{1,2}$/.test(lenText) ? Number(lenText) : NaN;
  if (!(len >= 0 && len <= 32)) return `'${s}' has a bad prefix length`;
  if ((net & ~maskOf(len)) !== 0) return `'${s}' has host bits set (network is ${formatIpv4(net & maskOf(len))}/${len})`;
  return { net, len };
}

export interface GuardOptions {
  /** When present, IPv4 sources and ARP sender addresses outside these prefixes are dropped. */
  allowed?: Prefix[];
  /** Keep the guest's DHCP requests (UDP to port 67) out of the redirect: the agent answers them. */
  localDhcp?: boolean;
}

/**
 * The tap-ingress guard. Verdicts: TC_ACT_SHOT (spoofed: dropped and counted by the ingress
 * qdisc), TC_ACT_OK (DHCP request: stays on the stub domain's side, where a packet socket has
 * already seen it and the stub domain's stack, having no address, discards it), or no verdict
 * (the redirect filter forwards it).
 */
export function guardProgram(opts: GuardOptions): BpfInsn[] {
  const enforce = opts.allowed !== undefined;
  const L: Line[] = [];
  const matchAllowed = (offset: number) => {
    for (const p of opts.allowed ?? []) {
      L.push({ op: LD_W_ABS, k: offset });
      L.push({ op: ALU_AND_K, k: maskOf(p.len) });
      L.push({ op: JEQ_K, k: p.net, jt: "pass", jf: `n${L.length}` }, { label: `n${L.length}` });
    }
    L.push({ op: RET_K, k: TC_ACT_SHOT });
  };
  if (enforce) {
    // A VLAN tag taken off by the driver would hide nothing (the inner header is checked), but a
    // tagged frame is not something an emulated NIC needs to send: refuse it.
    L.push({ op: LD_W_ABS, k: AD_VLAN_PRESENT }, { op: JEQ_K, k: 0, jt: "untagged", jf: "drop" }, { label: "untagged" });
  }
  L.push({ op: LD_H_ABS, k: 12 });
  L.push({ op: JEQ_K, k: ETH_IPV4, jt: "ipv4", jf: "notIpv4" }, { label: "notIpv4" });
  L.push({ op: JEQ_K, k: ETH_ARP, jt: enforce ? "arp" : "pass", jf: "pass" });
  L.push({ label: "ipv4" });
  if (opts.localDhcp) {
    L.push({ op: LD_B_ABS, k: 23 }, { op: JEQ_K, k: IPPROTO_UDP, jt: "udp", jf: "src" }, { label: "udp" });
    L.push({ op: LD_H_ABS, k: 20 }, { op: JSET_K, k: 0x1fff, jt: "src", jf: "first" }, { label: "first" });
    L.push({ op: LDX_B_MSH, k: 14 }, { op: LD_H_IND, k: 16 });
    L.push({ op: JEQ_K, k: DHCP_SERVER_PORT, jt: "local", jf: "src" });
  }
  L.push({ label: "src" });
  if (enforce) {
    // An unconfigured client asks for an address from 0.0.0.0. Xen's anti-spoofing rules
    // (tools/hotplug/Linux/vif-common.sh) always let a domain reach a DHCP server; here that
    // takes only DHCP requests from 0.0.0.0, and nothing else from 0.0.0.0.
    L.push({ op: LD_W_ABS, k: 26 }, { op: JEQ_K, k: 0, jt: "zero", jf: "nonzero" }, { label: "nonzero" });
    matchAllowed(26);
    L.push({ label: "zero" });
    L.push({ op: LD_B_ABS, k: 23 }, { op: JEQ_K, k: IPPROTO_UDP, jt: "zudp", jf: "drop" }, { label: "zudp" });
    L.push({ op: LD_H_ABS, k: 20 }, { op: JSET_K, k: 0x1fff, jt: "drop", jf: "zfirst" }, { label: "zfirst" });
    L.push({ op: LDX_B_MSH, k: 14 }, { op: LD_H_IND, k: 16 });
    L.push({ op: JEQ_K, k: DHCP_SERVER_PORT, jt: "pass", jf: "drop" });
  } else {
    L.push({ op: RET_K, k: TC_ACT_UNSPEC });
  }
  if (enforce) {
    L.push({ label: "arp" });
    // Only Ethernet/IPv4 ARP has its sender address at offset 28.
    L.push({ op: LD_W_ABS, k: 16 }, { op: JEQ_K, k: 0x08000604, jt: "arpIpv4", jf: "drop" }, { label: "arpIpv4" });
    // Sender 0.0.0.0 is an RFC 5227 address probe: receivers answer it but cache nothing.
    L.push({ op: LD_W_ABS, k: 28 }, { op: JEQ_K, k: 0, jt: "pass", jf: "arpSender" }, { label: "arpSender" });
    matchAllowed(28);
  }
  L.push({ label: "drop" }, { op: RET_K, k: TC_ACT_SHOT });
  L.push({ label: "local" }, { op: RET_K, k: TC_ACT_OK });
  L.push({ label: "pass" }, { op: RET_K, k: TC_ACT_UNSPEC });
  return assemble(L);
}

/**
 * Socket filter for the DHCP responder's packet socket: IPv4 UDP to port 67, first fragment,
 * arriving from the guest (not our own replies going out). It returns 14 + the IPv4 total
 * length, so the kernel trims Ethernet padding and every frame read ends where its IP packet
 * ends: a reader that gets several frames in one chunk can split them.
 */
export function dhcpSocketFilter(): BpfInsn[] {
  return assemble([
    { op: LD_W_ABS, k: AD_PKTTYPE },
    { op: JEQ_K, k: PACKET_OUTGOING, jt: "drop", jf: "in" }, { label: "in" },
    { op: LD_H_ABS, k: 12 },
    { op: JEQ_K, k: ETH_IPV4, jt: "ip", jf: "drop" }, { label: "ip" },
    { op: LD_B_ABS, k: 23 },
    { op: JEQ_K, k: IPPROTO_UDP, jt: "udp", jf: "drop" }, { label: "udp" },
    { op: LD_H_ABS, k: 20 },
    { op: JSET_K, k: 0x1fff, jt: "drop", jf: "first" }, { label: "first" },
    { op: LDX_B_MSH, k: 14 },
    { op: LD_H_IND, k: 16 },
    { op: JEQ_K, k: DHCP_SERVER_PORT, jt: "keep", jf: "drop" }, { label: "keep" },
    { op: LD_H_ABS, k: 16 },
    { op: ALU_ADD_K, k: 14 },
    { op: RET_A, k: 0 },
    { label: "drop" },
    { op: RET_K, k: 0 },
  ]);
}

/** Runs a packet program over a frame the way the kernel would; for unit tests of the verdicts. */
export function runBpf(prog: BpfInsn[], frame: Uint8Array, anc: { pktType?: number; vlan?: boolean } = {}): number {
  return run(prog, frame, {
    ancillary: (off) => (off === AD_PKTTYPE ? anc.pktType ?? 0 : off === AD_VLAN_PRESENT ? (anc.vlan ? 1 : 0) : undefined),
  });
}
