// Every request the agent builds, as iproute2 6.1 sent it to this kernel (6.18), captured with
//   strace -e trace=sendmsg,sendto -e write=all -xx -s 65536 <command>
// in a namespace holding veth nf0 (ifindex 3) and tap tp0 (ifindex 4). Each `hex` is one field
// per line; text after `//` is a comment. test/net/codec.test.ts checks both directions:
// decode(hex) equals the builder's message, and encode(builder's message) equals hex.
// Errors the kernel sent back are in the same table (decode direction and re-encode).
import { encode, type BpfInsn, type Message } from "../../agent/net/codec.ts";
import * as m from "../../agent/net/messages.ts";

/** The program in the cls_bpf capture: drop IPv4, no verdict for the rest. */
const captureOps: BpfInsn[] = [
  { code: 0x28, jt: 0, jf: 0, k: 12 },
  { code: 0x15, jt: 0, jf: 1, k: 0x0800 },
  { code: 0x06, jt: 0, jf: 0, k: 2 },
  { code: 0x06, jt: 0, jf: 0, k: 0xffffffff },
];

export interface Fixture {
  name: string;
  command: string;
  expected: Message;
  hex: string;
}

export function bytes(hex: string): Uint8Array {
  const clean = hex.split("\n").map((l) => l.split("//")[0]!.replace(/\s+/g, "")).join("");
  if (!/^([0-9a-f]{2})*$/.test(clean)) throw new Error(`fixture hex is malformed: ${clean.slice(0, 40)}...`);
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
}

export const fixtures: Fixture[] = [
  {
    name: "get one link by name",
    command: "ip link show dev nf0",
    expected: m.getLinkByName("nf0", 0x6b06b482),
    hex: `
      30000000  // nlmsg_len 48
      1200      // nlmsg_type RTM_GETLINK
      0100      // nlmsg_flags NLM_F_REQUEST
      82b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00        // ifi_family AF_UNSPEC
      00        // pad
      0000      // ifi_type
      00000000  // ifi_index 0: look up by name
      00000000  // ifi_flags
      00000000  // ifi_change
      0800 1d00 // IFLA_EXT_MASK
      09000000  //   RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS
      0800 0300 // IFLA_IFNAME
      6e663000  //   "nf0\\0"
    `,
  },
  {
    name: "set a link up with an MTU",
    command: "ip link set dev nf0 up mtu 1400",
    expected: m.setLinkUp(3, 1400, 0x6b06b482),
    hex: `
      28000000  // nlmsg_len 40
      1000      // nlmsg_type RTM_NEWLINK
      0500      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
      82b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00        // ifi_family AF_UNSPEC
      00        // pad
      0000      // ifi_type
      03000000  // ifi_index 3 (nf0)
      01000000  // ifi_flags IFF_UP
      01000000  // ifi_change IFF_UP
      0800 0400 // IFLA_MTU
      78050000  //   1400
    `,
  },
  {
    name: "no IPv6 link-local address on a link",
    command: "ip link set dev nf0 addrgenmode none",
    expected: m.noIpv6LinkLocal(3, 0x6b06bb7d),
    hex: `
      30000000  // nlmsg_len 48
      1000      // nlmsg_type RTM_NEWLINK
      0500      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
      7dbb066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // ifi_family AF_UNSPEC, pad, ifi_type
      03000000  // ifi_index 3 (nf0)
      00000000  // ifi_flags
      00000000  // ifi_change: no flag changes
      1000 1a00 // IFLA_AF_SPEC (16)
      0c00 0a00 //   AF_INET6 (12)
      0500 0800 //     IFLA_INET6_ADDR_GEN_MODE
      01 000000 //       IN6_ADDR_GEN_MODE_NONE + pad
    `,
  },
  {
    name: "dump all links",
    command: "ip link show",
    expected: m.dumpLinks(0x6b06b4a3),
    hex: `
      28000000  // nlmsg_len 40
      1200      // nlmsg_type RTM_GETLINK
      0103      // nlmsg_flags NLM_F_REQUEST | NLM_F_DUMP
      a3b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      11        // ifi_family AF_PACKET
      00        // pad
      0000      // ifi_type
      00000000  // ifi_index
      00000000  // ifi_flags
      00000000  // ifi_change
      0800 1d00 // IFLA_EXT_MASK
      01000000  //   RTEXT_FILTER_VF
    `,
  },
  {
    name: "delete a link",
    command: "ip link del dev tp0",
    expected: m.deleteLink(4, 0x6b06b4d5),
    hex: `
      20000000  // nlmsg_len 32
      1100      // nlmsg_type RTM_DELLINK
      0500      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
      d5b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // ifi_family AF_UNSPEC, pad, ifi_type
      04000000  // ifi_index 4 (tp0)
      00000000  // ifi_flags
      00000000  // ifi_change
    `,
  },
  {
    name: "add the ingress qdisc",
    command: "tc qdisc replace dev nf0 ingress",
    expected: m.addIngress(3, 0x6b06b483),
    hex: `
      30000000  // nlmsg_len 48
      2400      // nlmsg_type RTM_NEWQDISC
      0505      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family AF_UNSPEC, pad1, pad2
      03000000  // tcm_ifindex 3 (nf0)
      0000ffff  // tcm_handle ffff:0000
      f1ffffff  // tcm_parent TC_H_INGRESS (ffff:fff1)
      00000000  // tcm_info
      0c00 0100 // TCA_KIND
      696e6772 65737300 // "ingress\\0"
    `,
  },
  {
    name: "delete the ingress qdisc",
    command: "tc qdisc del dev nf0 ingress",
    expected: m.deleteIngress(3, 0x6b06b483),
    hex: `
      30000000  // nlmsg_len 48
      2500      // nlmsg_type RTM_DELQDISC
      0500      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      03000000  // tcm_ifindex 3
      0000ffff  // tcm_handle ffff:0000
      f1ffffff  // tcm_parent TC_H_INGRESS
      00000000  // tcm_info
      0c00 0100 // TCA_KIND
      696e6772 65737300 // "ingress\\0"
    `,
  },
  {
    name: "dump qdiscs",
    command: "tc -s qdisc show dev nf0",
    expected: m.dumpQdiscs(3, 0x6b06b483),
    hex: `
      24000000  // nlmsg_len 36
      2600      // nlmsg_type RTM_GETQDISC
      0103      // nlmsg_flags NLM_F_REQUEST | NLM_F_DUMP
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      03000000  // tcm_ifindex 3 (ignored by the kernel for dumps)
      00000000  // tcm_handle
      00000000  // tcm_parent
      00000000  // tcm_info
    `,
  },
  {
    name: "u32 match-all filter redirecting to the peer",
    command: "tc filter replace dev nf0 ingress prio 2 handle 800::800 protocol all u32 match u32 0 0 action mirred egress redirect dev tp0",
    expected: m.redirectFilter(3, 4, 0x6b06b483),
    hex: `
      8c000000  // nlmsg_len 140
      2c00      // nlmsg_type RTM_NEWTFILTER
      0504      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE (no EXCL: replace in place)
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      03000000  // tcm_ifindex 3 (nf0)
      00080080  // tcm_handle 800::800
      f2ffffff  // tcm_parent ffff:fff2 (ingress filters)
      00030200  // tcm_info: prio 2 << 16 | htons(ETH_P_ALL)
      0800 0100 // TCA_KIND
      75333200  //   "u32\\0"
      6000 0200 // TCA_OPTIONS (96)
      3800 0700 //   TCA_U32_ACT (56)
      3400 0100 //     action 1 (52)
      0b00 0100 //       TCA_ACT_KIND (11)
      6d697272 65640000 //   "mirred\\0" + pad
      2400 0280 //       TCA_ACT_OPTIONS | NLA_F_NESTED (36)
      2000 0200 //         TCA_MIRRED_PARMS (32)
      00000000  //           index 0 (a new action)
      00000000  //           capab
      04000000  //           action TC_ACT_STOLEN
      00000000  //           refcnt
      00000000  //           bindcnt
      01000000  //           eaction TCA_EGRESS_REDIR
      04000000  //           ifindex 4 (tp0)
      2400 0500 //   TCA_U32_SEL (36)
      01        //     flags TC_U32_TERMINAL
      00        //     offshift
      01        //     nkeys 1
      00        //     pad
      0000      //     offmask
      0000      //     off
      0000      //     offoff
      0000      //     hoff
      00000000  //     hmask
      00000000  //     key mask 0: matches everything
      00000000  //     key val
      00000000  //     key off
      00000000  //     key offmask
    `,
  },
  {
    name: "cls_bpf direct-action guard",
    command: "tc filter replace dev tp0 ingress prio 1 handle 1 protocol all bpf da bytecode '4,40 0 0 12,21 0 1 2048,6 0 0 2,6 0 0 4294967295'",
    expected: m.guardFilter(4, captureOps, 0x6b06b483),
    hex: `
      64000000  // nlmsg_len 100
      2c00      // nlmsg_type RTM_NEWTFILTER
      0504      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      04000000  // tcm_ifindex 4 (tp0)
      01000000  // tcm_handle 1
      f2ffffff  // tcm_parent ffff:fff2
      00030100  // tcm_info: prio 1 << 16 | htons(ETH_P_ALL)
      0800 0100 // TCA_KIND
      62706600  //   "bpf\\0"
      3800 0200 // TCA_OPTIONS (56)
      0600 0400 //   TCA_BPF_OPS_LEN
      0400 0000 //     4 instructions + pad
      2400 0500 //   TCA_BPF_OPS (32)
      2800 00 00 0c000000 // ldh [12]
      1500 00 01 00080000 // jeq #0x800, 0, 1
      0600 00 00 02000000 // ret #TC_ACT_SHOT
      0600 00 00 ffffffff // ret #TC_ACT_UNSPEC
      0800 0800 //   TCA_BPF_FLAGS
      01000000  //     TCA_BPF_FLAG_ACT_DIRECT
    `,
  },
  {
    name: "delete the filters of one priority",
    command: "tc filter del dev nf0 ingress prio 2",
    expected: m.deleteFilters(3, 2, 0x6b06b483),
    hex: `
      24000000  // nlmsg_len 36
      2d00      // nlmsg_type RTM_DELTFILTER
      0500      // nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      03000000  // tcm_ifindex 3
      00000000  // tcm_handle 0: all handles
      f2ffffff  // tcm_parent ffff:fff2
      00000200  // tcm_info: prio 2, protocol 0 (any)
    `,
  },
  {
    name: "dump the ingress filters",
    command: "tc -s filter show dev nf0 ingress",
    expected: m.dumpFilters(3, 0x6b06b483),
    hex: `
      24000000  // nlmsg_len 36
      2e00      // nlmsg_type RTM_GETTFILTER
      0103      // nlmsg_flags NLM_F_REQUEST | NLM_F_DUMP
      83b4066b  // nlmsg_seq
      00000000  // nlmsg_pid
      00 00 0000 // tcm_family, pads
      03000000  // tcm_ifindex 3
      00000000  // tcm_handle
      f2ffffff  // tcm_parent ffff:fff2
      00000000  // tcm_info
    `,
  },
  {
    name: "ack (capped: only the request's header is echoed)",
    command: "tc filter replace ... (the u32 filter above): the kernel's answer",
    expected: {
      kind: "error",
      header: { type: 2, flags: 0x100, seq: 0x6b06b483, pid: 0x3ebd },
      error: 0,
      request: bytes("8c0000002c00050483b4066b00000000"),
      extAck: [],
    },
    hex: `
      24000000  // nlmsg_len 36
      0200      // nlmsg_type NLMSG_ERROR
      0001      // nlmsg_flags NLM_F_CAPPED
      83b4066b  // nlmsg_seq
      bd3e0000  // nlmsg_pid (tc's port)
      00000000  // error 0: success
      8c000000 2c00 0504 83b4066b 00000000 // the request's header
    `,
  },
  {
    name: "error with extended ack: no ingress qdisc to delete",
    command: "tc qdisc del dev nf0 ingress (run twice): the kernel's answer",
    expected: {
      kind: "error",
      header: { type: 2, flags: 0x200, seq: 0x6b06b483, pid: 0x3ed5 },
      error: -22,
      request: bytes("300000002500050083b4066b0000000000000000030000000000fffff1ffffff000000000c000100696e677265737300"),
      extAck: [{ kind: "msg", value: "Invalid handle" }],
    },
    hex: `
      58000000  // nlmsg_len 88
      0200      // nlmsg_type NLMSG_ERROR
      0002      // nlmsg_flags NLM_F_ACK_TLVS
      83b4066b  // nlmsg_seq
      d53e0000  // nlmsg_pid
      eaffffff  // error -EINVAL
      30000000 2500 0500 83b4066b 00000000 // the whole request (tc does not set NETLINK_CAP_ACK)
      00 00 0000 03000000 0000ffff f1ffffff 00000000
      0c000100 696e6772 65737300
      1300 0100 // NLMSGERR_ATTR_MSG (19)
      496e7661 6c696420 68616e64 6c650000 // "Invalid handle\\0" + pad
    `,
  },
  {
    name: "error with extended ack: filter without a qdisc",
    command: "tc filter replace dev nf0 ingress prio 2 ... u32 ... (no ingress qdisc): the kernel's answer",
    expected: {
      kind: "error",
      header: { type: 2, flags: 0x200, seq: 0x6b06b4a0, pid: 0x46a7 },
      error: -22,
      request: encode(m.redirectFilter(3, 4, 0x6b06b4a0)),
      extAck: [{ kind: "msg", value: "Parent Qdisc doesn't exists" }],
    },
    hex: `
      c0000000  // nlmsg_len 192
      0200      // nlmsg_type NLMSG_ERROR
      0002      // nlmsg_flags NLM_F_ACK_TLVS
      a0b4066b  // nlmsg_seq
      a7460000  // nlmsg_pid
      eaffffff  // error -EINVAL
      8c0000002c000504a0b4066b00000000000000000300000000080080f2ffffff00030200 // the request: header, tcmsg
      08000100753332006000020038000700340001000b0001006d69727265640000240002802000020000000000000000000400000000000000000000000100000004000000 // TCA_KIND, TCA_OPTIONS
      240005000100010000000000000000000000000000000000000000000000000000000000 // TCA_U32_SEL
      2000 0100 // NLMSGERR_ATTR_MSG (32)
      506172656e7420516469736320646f65736e27742065786973747300 // "Parent Qdisc doesn't exists\\0"
    `,
  },
];
