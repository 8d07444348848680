// Verdicts of the classic BPF programs, run by the interpreter in bpf.ts. The kernel runs the
// same programs in test/net/live.test.ts (spoofed frames dropped, DHCP kept local, udhcpc served).
import { describe, expect, test } from "vitest";
import { dhcpSocketFilter, guardProgram, parsePrefix, runBpf, type Prefix } from "../../agent/net/bpf.ts";

const SHOT = 2, OK = 0, UNSPEC = 0xffffffff;

function frame(type: number, body: number[], len = 100): Uint8Array {
  const f = new Uint8Array(len);
  f.fill(0xff, 0, 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(body, 14);
  return f;
}
const ip = (s: string) => s.split(".").map(Number);
const udp = (src: string, dport: number, frag = 0) => frame(0x0800, [0x45, 0, 0, 86, 0, 0, frag >> 8, frag & 0xff, 64, 17, 0, 0, ...ip(src), 10, 0, 0, 1, 0, 68, dport >> 8, dport & 0xff]);
const tcp = (src: string) => frame(0x0800, [0x45, 0, 0, 86, 0, 0, 0, 0, 64, 6, 0, 0, ...ip(src), 10, 0, 0, 1]);
const arp = (sender: string, ptype = 0x0800) => frame(0x0806, [0, 1, ptype >> 8, ptype & 0xff, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, ...ip(sender)]);
const prefixes = (...s: string[]) => s.map((x) => parsePrefix(x) as Prefix);

describe("tap guard", () => {
  const guard = guardProgram({ allowed: prefixes("10.1.0.5", "10.2.0.0/24"), localDhcp: true });
  test.each([
    ["allowed address", tcp("10.1.0.5"), UNSPEC],
    ["inside an allowed prefix", tcp("10.2.0.200"), UNSPEC],
    ["spoofed IPv4 source", tcp("10.1.0.6"), SHOT],
    ["allowed ARP sender", arp("10.1.0.5"), UNSPEC],
    ["spoofed ARP sender", arp("10.3.0.1"), SHOT],
    ["ARP for another protocol", arp("10.1.0.5", 0x86dd), SHOT],
    ["DHCP request from 0.0.0.0 stays local", udp("0.0.0.0", 67), OK],
    ["a later fragment is not DHCP: source checked", udp("0.0.0.0", 67, 0x0010), SHOT],
    ["UDP to another port from a spoofed source", udp("10.9.9.9", 53), SHOT],
    ["IPv6 is not checked", frame(0x86dd, []), UNSPEC],
    ["ARP probe (sender 0.0.0.0)", arp("0.0.0.0"), UNSPEC],
  ])("%s", (_name, f, verdict) => {
    expect(runBpf(guard, f)).toBe(verdict);
  });
  test("without local DHCP, a DHCP request from 0.0.0.0 goes on to the network; nothing else from 0.0.0.0 does", () => {
    const p = guardProgram({ allowed: prefixes("10.1.0.5") });
    expect(runBpf(p, udp("0.0.0.0", 67))).toBe(UNSPEC);
    expect(runBpf(p, udp("0.0.0.0", 53))).toBe(SHOT);
    expect(runBpf(p, udp("0.0.0.0", 67, 0x0010))).toBe(SHOT);
    expect(runBpf(p, tcp("0.0.0.0"))).toBe(SHOT);
  });
  test("a VLAN-tagged frame is dropped when enforcing", () => {
    expect(runBpf(guard, tcp("10.1.0.5"), { vlan: true })).toBe(SHOT);
  });
  test("without allowed sources only DHCP is diverted, spoofing is not checked", () => {
    const p = guardProgram({ localDhcp: true });
    expect(runBpf(p, udp("0.0.0.0", 67))).toBe(OK);
    expect(runBpf(p, tcp("1.2.3.4"))).toBe(UNSPEC);
    expect(runBpf(p, arp("1.2.3.4"))).toBe(UNSPEC);
  });
  test("an empty allowed list drops all IPv4 and ARP", () => {
    const p = guardProgram({ allowed: [] });
    expect(runBpf(p, tcp("10.1.0.5"))).toBe(SHOT);
    expect(runBpf(p, arp("10.1.0.5"))).toBe(SHOT);
  });
  test("32 prefixes still assemble (jumps in range)", () => {
    const many = Array.from({ length: 32 }, (_, i) => ({ net: (10 << 24) | (i << 8), len: 24 }));
    expect(runBpf(guardProgram({ allowed: many, localDhcp: true }), tcp("10.0.31.9"))).toBe(UNSPEC);
  });
});

describe("DHCP socket filter", () => {
  const f = dhcpSocketFilter();
  test("keeps requests trimmed to the IPv4 length", () => expect(runBpf(f, udp("0.0.0.0", 67))).toBe(14 + 86));
  test("drops our own outgoing frames", () => expect(runBpf(f, udp("0.0.0.0", 67), { pktType: 4 })).toBe(0));
  test("drops other ports and protocols", () => {
    expect(runBpf(f, udp("0.0.0.0", 68))).toBe(0);
    expect(runBpf(f, tcp("0.0.0.0"))).toBe(0);
    expect(runBpf(f, arp("1.2.3.4"))).toBe(0);
  });
});

describe("prefixes", () => {
  test.each([
    ["10.0.0.1", { net: 0x0a000001, len: 32 }],
    ["10.0.0.0/8", { net: 0x0a000000, len: 8 }],
    ["0.0.0.0/0", { net: 0, len: 0 }],
  ])("%s", (s, p) => expect(parsePrefix(s)).toEqual(p));
  test.each(["10.0.0.1/8", "10.0.0.256", "10.0.0.0/33", "a.b.c.d", "10.0.0.0/", "10.0.0.0/8/8", "fe80::1"])("%s is refused with a reason", (s) => {
    expect(typeof parsePrefix(s)).toBe("string");
  });
});
