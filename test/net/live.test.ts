// Live tests against the kernel, as root, in throwaway namespaces (see live-driver.ts for the
// topology). CI runs them as root; elsewhere they skip with a visible message.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isRoot, must, Namespaces, scenario } from "./netns.ts";

if (!isRoot) console.warn("SKIPPED test/net/live.test.ts: live network tests need root (CI runs them as root)");

describe.skipIf(!isRoot)("live rtnetlink and tc", () => {
  const ns = new Namespaces();
  afterAll(() => ns.cleanup());

  async function stubNs(tag: string): Promise<string> {
    const n = await ns.add(tag);
    await must("ip", "-n", n, "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
    return n;
  }

  test("frames cross the redirect both ways, byte for byte; linking twice leaves one filter per direction; unlink removes everything", async () => {
    const n = await stubNs("r");
    interface R {
      first: { netfront: { index: number }; tap: { index: number } };
      filtersAfterTwice: { nf: string[]; tp: string[] };
      sentToGuest: string[]; gotAtGuest: string[]; sentToNet: string[]; gotAtNet: string[];
      stats: { name: string; up: boolean; mtu: number; redirectTo?: number; redirectedPackets: number }[];
      sawCarrierLoss: boolean;
      afterUnlink: { ingress: number[]; nf: string[] | string; tp: string[] | string };
      tapGone: boolean;
    }
    const r = await scenario<R & { operUp: boolean }>(n, "redirect");
    expect(r.operUp).toBe(true);
    expect(r.filtersAfterTwice).toEqual({ nf: ["prio 2 u32 handle 80000800"], tp: ["prio 2 u32 handle 80000800"] });
    expect(r.gotAtGuest).toEqual(r.sentToGuest);
    expect(r.gotAtNet).toEqual(r.sentToNet);
    const nf = r.stats.find((s) => s.name === "nf")!;
    const tp = r.stats.find((s) => s.name === "tp")!;
    expect(nf).toMatchObject({ up: true, mtu: 1400, redirectTo: r.first.tap.index, redirectedPackets: 3 });
    expect(tp).toMatchObject({ up: true, mtu: 1400, redirectTo: r.first.netfront.index, redirectedPackets: 3 });
    expect(r.sawCarrierLoss).toBe(true);
    expect(r.afterUnlink.ingress).toEqual([]);
    expect(r.afterUnlink.nf).not.toEqual(expect.arrayContaining([expect.stringContaining("prio")]));
    expect(r.afterUnlink.tp).not.toEqual(expect.arrayContaining([expect.stringContaining("prio")]));
    expect(r.tapGone).toBe(true);
  });

  test("anti-spoofing: IPv4 sources and ARP senders outside the allowed prefixes are dropped and counted", async () => {
    const n = await stubNs("s");
    const r = await scenario<{ operUp: boolean; arrived: Record<string, boolean>; spoofDrops: number; guard: boolean }>(n, "spoof");
    expect(r.operUp).toBe(true);
    expect(r.arrived).toEqual({
      allowedIp: true, spoofedIp: false, allowedPrefix: true, allowedArp: true, spoofedArp: false, otherProtocol: true,
      dhcpFromZero: true, udpFromZero: false, arpProbe: true, marker: true,
    });
    expect(r.guard).toBe(true);
    expect(r.spoofDrops).toBe(3);
  });

  test("QEMU attaches to the persistent tap the agent created; its arrival and exit arrive as link events", async () => {
    const n = await stubNs("q");
    const r = await scenario<{ attached: boolean; detached: boolean; sameDevice: boolean; qemuStderr: string }>(n, "qemu");
    expect(r, r.qemuStderr).toMatchObject({ attached: true, detached: true, sameDevice: true });
    expect(r.qemuStderr).not.toMatch(/could not configure|error/i);
  });

  test("the linked pair carries no IPv6 of the stub domain's own (no link-local address)", async () => {
    const n = await ns.add("6", { ipv6: true });
    await must("ip", "-n", n, "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
    const r = await scenario<{ operUp: boolean; ipv6On: string[] }>(n, "ipv6");
    expect(r.operUp).toBe(true);
    // nfp, the unlinked control, shows IPv6 is on in this namespace.
    expect(r.ipv6On).toContain("nfp");
    expect(r.ipv6On).not.toContain("nf");
    expect(r.ipv6On).not.toContain("tp");
  });

  test("link events keep a pair linked: a deleted tap or netfront shows in the NIC entry, a re-created one is linked again", async () => {
    const n = await stubNs("l");
    interface Health { name: string; tap?: string; link: string; redirect?: string }
    const r = await scenario<{
      firstTap: number; newTap: number; reports: string[]; logs: string[];
      tapGone: Health; tapBack: { health: Health; nf: string[]; tp: string[]; redirectTo?: number };
      netfrontGone: Health; netfrontBack: { health: Health; nf: string[]; redirectTo?: number; newNf: number };
    }>(n, "relink");
    expect(r.reports, r.logs.join("\n")).toEqual([
      "net: nic0: tap tp disappeared: nf <-> tp is not linked",
      "net: nic0: netfront nf disappeared: nf <-> tp is not linked",
    ]);
    expect(r.tapGone).toMatchObject({ name: "nf", link: "down", redirect: "tap_gone" });
    expect(r.tapGone).not.toHaveProperty("tap");
    expect(r.newTap).not.toBe(r.firstTap);
    // Linked again with its first options: the guard (local DHCP) is back on the new tap.
    expect(r.tapBack.tp).toEqual(["prio 1 bpf handle 1", "prio 2 u32 handle 80000800"]);
    expect(r.tapBack.nf).toEqual(["prio 2 u32 handle 80000800"]);
    expect(r.tapBack.redirectTo).toBe(r.newTap);
    expect(r.tapBack.health).not.toHaveProperty("redirect");
    expect(r.netfrontGone).toMatchObject({ name: "nf", tap: "tp", link: "down", redirect: "netfront_gone" });
    expect(r.netfrontBack.nf).toEqual(["prio 2 u32 handle 80000800"]);
    expect(r.netfrontBack.redirectTo).toBe(r.netfrontBack.newNf);
    expect(r.netfrontBack.health).toMatchObject({ name: "nf", tap: "tp" });
    expect(r.netfrontBack.health).not.toHaveProperty("redirect");
  });

  test("lost link notifications (ENOBUFS after a burst) are followed by one read of the links, which re-links a tap re-created unannounced", async () => {
    const n = await stubNs("o");
    const r = await scenario<{ batch: number; lost: string[]; firstTap: number; newTap: number; tp: string[]; logs: string[] }>(n, "overflow");
    expect(r.batch).toBe(0);
    expect(r.lost, r.logs.join("\n")).toContain("ENOBUFS");
    // Found by that read (a changed index), not by the dropped delete notification.
    expect(r.logs.join("\n")).toMatch(/link notifications lost \(ENOBUFS\): reading the links again[\s\S]*tap tp is back/);
    expect(r.logs.join("\n")).not.toContain("disappeared");
    expect(r.newTap).not.toBe(r.firstTap);
    expect(r.tp).toEqual(["prio 2 u32 handle 80000800"]);
  });

  test("a packet socket survives its link flapping (one ENETDOWN per down, never giving up)", async () => {
    const n = await stubNs("f");
    const r = await scenario<{ operUp: boolean; errors: string[]; received: boolean; same: boolean }>(n, "flaps");
    expect(r.operUp).toBe(true);
    expect(r.errors.length).toBeGreaterThanOrEqual(6);
    expect(r.errors.every((e) => e.startsWith("ENETDOWN"))).toBe(true);
    expect(r).toMatchObject({ received: true, same: true });
  });

  test("a link dump spanning several datagrams decodes completely (300 veths)", async () => {
    const n = await ns.add("b");
    const batch = Array.from({ length: 150 }, (_, i) => `link add name a${i + 1} type veth peer name b${i + 1}`).join("\n");
    const file = `${process.env.TMPDIR ?? "/tmp"}/net-batch-${process.pid}.txt`;
    await Bun.write(file, `${batch}\n`);
    await must("ip", "-n", n, "-batch", file);
    await must("rm", "-f", file);
    const r = await scenario<{ count: number; sample: string[]; withIngress: number }>(n, "bigdump");
    expect(r).toEqual({ count: 301, sample: ["a1", "a150", "a75"], withIngress: 0 });
  });

  test("kernel errors carry the link names and the kernel's own text", async () => {
    const n = await stubNs("e");
    const r = await scenario<{ missingDevice: string; missingClassifier: string }>(n, "errors");
    expect(r.missingDevice).toMatch(/^NetlinkError: find netfront 'nosuch0': ENODEV/);
    expect(r.missingClassifier).toMatch(/^NetlinkError: .*: ENOENT \(No such file or directory\): .*classifier/i);
  });
});

describe.skipIf(!isRoot)("live DHCP", () => {
  const ns = new Namespaces();
  afterAll(() => ns.cleanup());
  let stub = "";
  let guest = "";

  beforeAll(async () => {
    stub = await ns.add("d");
    guest = await ns.add("g");
    await must("ip", "-n", stub, "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
    await must("ip", "-n", stub, "link", "add", "name", "tpv", "type", "veth", "peer", "name", "gv", "netns", guest);
    await must("ip", "-n", guest, "link", "set", "gv", "up");
  });

  test("busybox udhcpc in the guest namespace gets the configured lease; nothing leaks to netfront", async () => {
    const r = await scenario<{ udhcpc: { code: number; out: string; err: string }; counters: { offers: number; acks: number }; leakedToNetfront: number; logs: string[] }>(stub, "dhcp", { GUEST_NS: guest });
    // Started before linkNic brought the tap up: one ENETDOWN from the socket, then it serves.
    expect(r.logs[0]).toMatch(/^dhcp on tpv: ENETDOWN/);
    expect(r.logs.slice(1)).toEqual([expect.stringMatching(/^DISCOVER from .* -> OFFER 10.137.0.42$/), expect.stringMatching(/^REQUEST from .* -> ACK 10.137.0.42$/)]);
    expect(r.udhcpc.out, r.udhcpc.err).toContain("lease ip=10.137.0.42 subnet=255.255.255.0 router=10.137.0.1 dns=10.139.1.1 10.139.1.2");
    expect(r.udhcpc.code).toBe(0);
    expect(r.counters).toMatchObject({ offers: 1, acks: 1 });
    expect(r.leakedToNetfront).toBe(0);
  });
});
