// The requests the agent sends, as pure builders. Each one has the shape `ip`/`tc` (iproute2
// 6.1) send for the same operation, so test/net/fixtures.ts can compare them byte for byte.
import {
  AF_PACKET, AF_UNSPEC, IN6_ADDR_GEN_MODE_NONE, NLA_F_NESTED, ETH_P_ALL, IFF_UP, INGRESS_QDISC_HANDLE, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
  NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELLINK, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETLINK, RTM_GETQDISC,
  RTM_GETTFILTER, RTM_NEWLINK, RTM_NEWQDISC, RTM_NEWTFILTER, TC_ACT_STOLEN, TC_H_INGRESS,
  TC_H_INGRESS_FILTERS, TC_U32_TERMINAL, TCA_BPF_FLAG_ACT_DIRECT, TCA_EGRESS_REDIR,
  type BpfInsn, type Message,
} from "./codec.ts";

/** RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS, as `ip link show dev X` asks. */
const EXT_MASK_ONE = 9;
/** RTEXT_FILTER_VF, as `ip link show` asks for a dump. */
const EXT_MASK_DUMP = 1;

/** Filter priorities on an ingress qdisc: the guard runs before the redirect. */
export const PRIO_GUARD = 1;
export const PRIO_REDIRECT = 2;
/** u32 handle 800::800: hash table 800 (the one the kernel creates per priority), node 800. */
export const U32_HANDLE = 0x80000800;
export const BPF_HANDLE = 1;

const hdr = (type: number, flags: number, seq: number) => ({ type, flags, seq, pid: 0 });
const noIfi = { family: AF_UNSPEC, type: 0, index: 0, flags: 0, change: 0 };
const filterInfo = (prio: number, protocol: number) => ((prio << 16) | (((protocol & 0xff) << 8) | (protocol >> 8))) >>> 0;

/** `ip link show dev NAME` */
export function getLinkByName(name: string, seq = 0): Message {
  return { kind: "link", header: hdr(RTM_GETLINK, NLM_F_REQUEST, seq), ifi: noIfi, attrs: [{ kind: "extMask", value: EXT_MASK_ONE }, { kind: "ifname", value: name }] };
}

/** `ip link show` */
export function dumpLinks(seq = 0): Message {
  return { kind: "link", header: hdr(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq), ifi: { ...noIfi, family: AF_PACKET }, attrs: [{ kind: "extMask", value: EXT_MASK_DUMP }] };
}

/** `ip link set dev X up [mtu N]` */
export function setLinkUp(index: number, mtu?: number, seq = 0): Message {
  return {
    kind: "link",
    header: hdr(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq),
    ifi: { family: AF_UNSPEC, type: 0, index, flags: IFF_UP, change: IFF_UP },
    attrs: mtu === undefined ? [] : [{ kind: "mtu", value: mtu }],
  };
}

/** `ip link set dev X addrgenmode none` */
export function noIpv6LinkLocal(index: number, seq = 0): Message {
  return {
    kind: "link",
    header: hdr(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq),
    ifi: { ...noIfi, index },
    attrs: [{ kind: "afSpec", value: [{ kind: "inet6", value: [{ kind: "addrGenMode", value: IN6_ADDR_GEN_MODE_NONE }] }] }],
  };
}

/** `ip link del dev X` */
export function deleteLink(index: number, seq = 0): Message {
  return { kind: "link", header: hdr(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq), ifi: { ...noIfi, index }, attrs: [] };
}

const ingressTcm = (ifindex: number) => ({ family: AF_UNSPEC, ifindex, handle: INGRESS_QDISC_HANDLE, parent: TC_H_INGRESS, info: 0 });

/** `tc qdisc replace dev X ingress`: creates it, or leaves the existing one (and its filters) alone. */
export function addIngress(ifindex: number, seq = 0): Message {
  return { kind: "tc", header: hdr(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE, seq), tcm: ingressTcm(ifindex), attrs: [{ kind: "kind", value: "ingress" }] };
}

/** `tc qdisc del dev X ingress`: also deletes every filter attached to it. */
export function deleteIngress(ifindex: number, seq = 0): Message {
  return { kind: "tc", header: hdr(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, seq), tcm: ingressTcm(ifindex), attrs: [{ kind: "kind", value: "ingress" }] };
}

/** `tc qdisc show` (the kernel ignores the ifindex of a dump request; callers filter). */
export function dumpQdiscs(ifindex: number, seq = 0): Message {
  return { kind: "tc", header: hdr(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, seq), tcm: { family: AF_UNSPEC, ifindex, handle: 0, parent: 0, info: 0 }, attrs: [] };
}

/**
 * `tc filter replace dev X ingress prio 2 handle 800::800 protocol all u32 match u32 0 0
 *  action mirred egress redirect dev Y`. NEWTFILTER with a fixed handle and without NLM_F_EXCL
 * changes the filter in place when it exists, which is what makes linking idempotent.
 */
export function redirectFilter(ifindex: number, target: number, seq = 0): Message {
  return {
    kind: "tc",
    header: hdr(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, seq),
    tcm: { family: AF_UNSPEC, ifindex, handle: U32_HANDLE, parent: TC_H_INGRESS_FILTERS, info: filterInfo(PRIO_REDIRECT, ETH_P_ALL) },
    attrs: [
      { kind: "kind", value: "u32" },
      {
        kind: "u32",
        value: [
          {
            kind: "actions",
            value: [{
              order: 1,
              attrs: [
                { kind: "kind", value: "mirred" },
                // tc marks action options nested; matching it keeps the fixtures byte-exact.
                { kind: "mirred", type: 2 | NLA_F_NESTED, value: [{ kind: "parms", value: { index: 0, capab: 0, action: TC_ACT_STOLEN, refcnt: 0, bindcnt: 0, eaction: TCA_EGRESS_REDIR, ifindex: target } }] },
              ],
            }],
          },
          { kind: "sel", value: { flags: TC_U32_TERMINAL, offshift: 0, offmask: 0, off: 0, offoff: 0, hoff: 0, hmask: 0, keys: [{ mask: 0, val: 0, off: 0, offmask: 0 }] } },
        ],
      },
    ],
  };
}

/** `tc filter replace dev X ingress prio 1 handle 1 protocol all bpf da bytecode '...'` */
export function guardFilter(ifindex: number, prog: BpfInsn[], seq = 0): Message {
  return {
    kind: "tc",
    header: hdr(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, seq),
    tcm: { family: AF_UNSPEC, ifindex, handle: BPF_HANDLE, parent: TC_H_INGRESS_FILTERS, info: filterInfo(PRIO_GUARD, ETH_P_ALL) },
    attrs: [
      { kind: "kind", value: "bpf" },
      { kind: "bpf", value: [{ kind: "opsLen", value: prog.length }, { kind: "ops", value: prog }, { kind: "flags", value: TCA_BPF_FLAG_ACT_DIRECT }] },
    ],
  };
}

/** `tc filter del dev X ingress prio N`: every filter at that priority. */
export function deleteFilters(ifindex: number, prio: number, seq = 0): Message {
  return {
    kind: "tc",
    header: hdr(RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK, seq),
    tcm: { family: AF_UNSPEC, ifindex, handle: 0, parent: TC_H_INGRESS_FILTERS, info: (prio << 16) >>> 0 },
    attrs: [],
  };
}

/** `tc filter show dev X ingress` */
export function dumpFilters(ifindex: number, seq = 0): Message {
  return { kind: "tc", header: hdr(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, seq), tcm: { family: AF_UNSPEC, ifindex, handle: 0, parent: TC_H_INGRESS_FILTERS, info: 0 }, attrs: [] };
}
