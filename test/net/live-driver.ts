// Runs one live scenario inside the network namespace it was started in (`ip netns exec NS
// bun live-driver.ts SCENARIO`) with the real FFI code, and prints its observations as JSON
// on stdout. test/net/live.test.ts creates the namespaces and asserts on what comes back.
//
// Topology in the namespace: veth nf <-> nfp stands in for netfront <-> its backend (the test
// sends and reads "network" frames on nfp), tap tp stands in for QEMU's tap (the test attaches
// to it as QEMU would, writing and reading the guest's frames).
import { allLinks, createTap, linkNic, nicStats, openNetlink, startDhcp, unlinkNic, waitOperUp, NetlinkError } from "../../agent/net/index.ts";
import { dumpFilters, dumpQdiscs, redirectFilter } from "../../agent/net/messages.ts";
import { fixedLength, openPacketPort, openTapAsQemu } from "../../ffi/packet.ts";
import type { BpfInsn, Message } from "../../agent/net/codec.ts";
import type { LinkEvent, Netlink } from "../../agent/net/types.ts";
import { dhcpSocketFilter } from "../../agent/net/bpf.ts";
import { runContract } from "./contract.ts";
import { EventQueue, Listeners } from "../../agent/init/events.ts";
import { NicLinks, watchLinks } from "../../agent/init/link-events.ts";
import { createLogger } from "../../agent/log.ts";

export const FRAME_LEN = 100;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Socket filter: keep only frames of exactly FRAME_LEN bytes, so a merged chunk splits evenly. */
const onlyTestFrames: BpfInsn[] = [
  { code: 0x80, jt: 0, jf: 0, k: 0 }, // ld len
  { code: 0x15, jt: 0, jf: 1, k: FRAME_LEN }, // jeq #FRAME_LEN
  { code: 0x06, jt: 0, jf: 0, k: FRAME_LEN },
  { code: 0x06, jt: 0, jf: 0, k: 0 },
];

function eth(type: number, body: number[], src = 0x02): Uint8Array {
  const f = new Uint8Array(FRAME_LEN);
  f.fill(0xff, 0, 6);
  f.set([0x02, 0, 0, 0, 0, src], 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(body, 14);
  return f;
}

const ip4 = (s: string) => s.split(".").map(Number);

/** An IPv4/UDP frame from `src`, tagged with `tag` in the payload. */
function ipv4Frame(src: string, tag: number): Uint8Array {
  const total = FRAME_LEN - 14;
  return eth(0x0800, [0x45, 0, total >> 8, total & 0xff, 0, 0, 0, 0, 64, 17, 0, 0, ...ip4(src), 10, 0, 0, 1, 0x30, 0x39, 0x30, 0x39, 0, total - 20, 0, 0, tag]);
}

function arpFrame(sender: string, tag: number): Uint8Array {
  return eth(0x0806, [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, ...ip4(sender), 0, 0, 0, 0, 0, 0, 10, 0, 0, 1, tag]);
}

const plainFrame = (tag: number) => eth(0x88b5, [0xab, 0xcd, tag]);

/** Collects frames until `done(frames)` or the timeout. */
function collector(): { frames: Uint8Array[]; push(f: Uint8Array): void; until(pred: (f: Uint8Array[]) => boolean, ms: number): Promise<boolean> } {
  const frames: Uint8Array[] = [];
  let wake = () => {};
  return {
    frames,
    push(f) { frames.push(f); wake(); },
    async until(pred, ms) {
      const deadline = Date.now() + ms;
      while (!pred(frames)) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        await new Promise<void>((r) => { wake = r; setTimeout(r, left); });
      }
      return true;
    },
  };
}

async function filtersOf(nl: Netlink, ifindex: number): Promise<string[] | string> {
  try {
    const out: string[] = [];
    for (const m of await nl.request(dumpFilters(ifindex))) {
      if (m.kind !== "tc") continue;
      const kind = m.attrs.find((a) => a.kind === "kind");
      const hasAction = m.attrs.some((a) => (a.kind === "u32" && a.value.some((u) => u.kind === "actions")) || a.kind === "bpf");
      if (hasAction) out.push(`prio ${m.tcm.info >>> 16} ${kind?.kind === "kind" ? kind.value : "?"} handle ${m.tcm.handle.toString(16)}`);
    }
    return out;
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

async function ingressOn(nl: Netlink, ifindexes: number[]): Promise<number[]> {
  const qs = await nl.request(dumpQdiscs(0));
  return qs.flatMap((q: Message) => (q.kind === "tc" && q.tcm.parent === 0xfffffff1 && ifindexes.includes(q.tcm.ifindex) ? [q.tcm.ifindex] : []));
}

const sh = async (...cmd: string[]) => {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
};

const scenarios: Record<string, () => Promise<unknown>> = {
  async contract() {
    createTap("tp");
    const nl = openNetlink();
    const obs = await runContract(nl);
    nl.close();
    return obs;
  },

  async redirect() {
    const nl = openNetlink();
    const events: LinkEvent[] = [];
    nl.onLink((e) => events.push(e));
    createTap("tp");
    const qemu = openTapAsQemu("tp");
    const toGuest = collector();
    qemu.onFrame(fixedLength(FRAME_LEN), toGuest.push);
    await sh("ip", "link", "set", "nfp", "up");
    const net = openPacketPort("nfp", onlyTestFrames, { split: fixedLength(FRAME_LEN) });
    const toNet = collector();
    net.onFrame(toNet.push);
    const first = await linkNic(nl, { netfront: "nf", tap: "tp", mtu: 1400 });
    const second = await linkNic(nl, { netfront: "nf", tap: "tp", mtu: 1400 });
    const operUp = await waitOperUp(nl, ["nf", "tp"], 3000);
    const filtersAfterTwice = { nf: await filtersOf(nl, first.netfront.index), tp: await filtersOf(nl, first.tap.index) };
    const sentToGuest = [1, 2, 3].map(plainFrame);
    sentToGuest.forEach((f) => net.send(f));
    const sentToNet = [4, 5, 6].map(plainFrame);
    sentToNet.forEach((f) => qemu.write(f));
    await toGuest.until((f) => f.length >= 3, 3000);
    await toNet.until((f) => f.length >= 3, 3000);
    const stats = await nicStats(nl, ["nf", "tp"]);
    await sh("ip", "link", "set", "nfp", "down");
    const sawCarrierLoss = await (async () => {
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline) {
        if (events.some((e) => e.name === "nf" && e.type === "new" && !e.lowerUp)) return true;
        await Bun.sleep(10);
      }
      return false;
    })();
    await unlinkNic(nl, { netfront: "nf", tap: "tp" });
    const afterUnlink = {
      ingress: await ingressOn(nl, [first.netfront.index, first.tap.index]),
      nf: await filtersOf(nl, first.netfront.index),
      tp: await filtersOf(nl, first.tap.index),
    };
    await unlinkNic(nl, { netfront: "nf", tap: "tp", deleteTap: true });
    const tapGone = (await sh("ip", "link", "show", "tp")).code !== 0;
    qemu.close();
    net.close();
    nl.close();
    return {
      first, second, operUp, filtersAfterTwice,
      sentToGuest: sentToGuest.map(hex), gotAtGuest: toGuest.frames.map(hex),
      sentToNet: sentToNet.map(hex), gotAtNet: toNet.frames.map(hex),
      stats, sawCarrierLoss, afterUnlink, tapGone,
    };
  },

  async spoof() {
    const nl = openNetlink();
    createTap("tp");
    const qemu = openTapAsQemu("tp");
    await sh("ip", "link", "set", "nfp", "up");
    const net = openPacketPort("nfp", onlyTestFrames, { split: fixedLength(FRAME_LEN) });
    const toNet = collector();
    net.onFrame(toNet.push);
    await linkNic(nl, { netfront: "nf", tap: "tp", allowedSources: ["10.1.0.5", "10.2.0.0/24"] });
    const operUp = await waitOperUp(nl, ["nf", "tp"], 3000);
    const frames = {
      allowedIp: ipv4Frame("10.1.0.5", 1),
      spoofedIp: ipv4Frame("10.1.0.6", 2),
      allowedPrefix: ipv4Frame("10.2.0.77", 3),
      allowedArp: arpFrame("10.1.0.5", 4),
      spoofedArp: arpFrame("10.9.9.9", 5),
      otherProtocol: plainFrame(6),
      dhcpFromZero: (() => {
        const f = ipv4Frame("0.0.0.0", 8);
        f[14 + 22] = 0;
        f[14 + 23] = 67;
        return f;
      })(),
      udpFromZero: ipv4Frame("0.0.0.0", 9),
      arpProbe: arpFrame("0.0.0.0", 10),
      marker: ipv4Frame("10.1.0.5", 7),
    };
    for (const f of Object.values(frames)) qemu.write(f);
    // Frames from one tap write queue are handled in order: once the marker is through, so is the rest.
    await toNet.until((got) => got.some((f) => hex(f) === hex(frames.marker)), 3000);
    const got = new Set(toNet.frames.map(hex));
    const arrived = Object.fromEntries(Object.entries(frames).map(([k, f]) => [k, got.has(hex(f))]));
    const [tp] = await nicStats(nl, ["tp"]);
    await unlinkNic(nl, { netfront: "nf", tap: "tp", deleteTap: true });
    qemu.close();
    net.close();
    nl.close();
    return { operUp, arrived, spoofDrops: tp?.spoofDrops, guard: tp?.guard };
  },

  async errors() {
    const nl = openNetlink();
    createTap("tp");
    const out: Record<string, string> = {};
    try {
      await linkNic(nl, { netfront: "nosuch0", tap: "tp" });
      out.missingDevice = "no error";
    } catch (e) {
      out.missingDevice = `${(e as Error).name}: ${(e as Error).message}`;
    }
    await linkNic(nl, { netfront: "nf", tap: "tp" });
    // A classifier this kernel does not have: the kernel says so in its extended ack.
    const msg = redirectFilter(0, 0);
    if (msg.kind !== "tc") throw new Error("unreachable");
    const index = Number((await sh("cat", "/sys/class/net/tp/ifindex")).out.trim());
    const bogus: Message = { ...msg, tcm: { ...msg.tcm, ifindex: index, info: (7 << 16) | 0x0300 }, attrs: [{ kind: "kind", value: "nosuchcls" }] };
    try {
      await nl.request(bogus);
      out.missingClassifier = "no error";
    } catch (e) {
      out.missingClassifier = `${(e as Error).name}: ${(e as Error).message} [errno ${(e as NetlinkError).errno}]`;
    }
    await unlinkNic(nl, { netfront: "nf", tap: "tp", deleteTap: true });
    nl.close();
    return out;
  },

  /**
   * The design choice in ffi/packet.ts: QEMU attaches to the persistent tap the agent created
   * (no error, no new device), and its attaching and leaving reach the agent as link events.
   */
  async qemu() {
    const nl = openNetlink();
    const events: string[] = [];
    let wake = () => {};
    nl.onLink((e) => {
      if (e.name === "vif9.0-emu") events.push(`${e.type} lowerUp=${e.lowerUp}`);
      wake();
    });
    const waitFor = async (text: string) => {
      const deadline = Date.now() + 10_000;
      while (!events.includes(text) && Date.now() < deadline) await new Promise<void>((r) => { wake = r; setTimeout(r, deadline - Date.now()); });
      return events.includes(text);
    };
    createTap("vif9.0-emu");
    await linkNic(nl, { netfront: "nf", tap: "vif9.0-emu" });
    const before = (await sh("cat", "/sys/class/net/vif9.0-emu/ifindex")).out.trim();
    const q = Bun.spawn(["qemu-system-x86_64", "-M", "none", "-nographic", "-nodefaults", "-netdev", "tap,id=n0,ifname=vif9.0-emu,script=no,downscript=no"], { stdout: "ignore", stderr: "pipe" });
    const attached = await waitFor("new lowerUp=true");
    const during = (await sh("cat", "/sys/class/net/vif9.0-emu/ifindex")).out.trim();
    q.kill();
    await q.exited;
    const detached = await waitFor("new lowerUp=false");
    const qemuStderr = await new Response(q.stderr).text();
    await unlinkNic(nl, { netfront: "nf", tap: "vif9.0-emu", deleteTap: true });
    nl.close();
    return { attached, detached, sameDevice: before === during, qemuStderr };
  },

  /**
   * The agent's NIC tracking (agent/init/link-events.ts) on real link events, through the
   * supervisor's EventQueue and Listeners: the tap deleted and re-created (as QEMU would), then
   * the netfront; each loss shows in the health entry, each return is linked again.
   */
  async relink() {
    const nl = openNetlink();
    createTap("tp");
    const options = { netfront: "nf", tap: "tp", localDhcp: true };
    const first = await linkNic(nl, options);
    const reports: string[] = [];
    const logs: string[] = [];
    const links = new NicLinks({ nl, log: createLogger({ sink: { write: (l) => logs.push(l.trim()) } }), report: (m) => reports.push(m) });
    links.track("nic0", options, first);
    const queue = new EventQueue();
    const listeners = new Listeners();
    let wake = () => {};
    void (async () => {
      for await (const e of queue) {
        if (e.kind === "link" || e.kind === "linksLost") listeners.dispatch(e, (err) => reports.push(String(err)));
        wake();
      }
    })();
    watchLinks({ nl, links, queue, listeners });
    const until = async (what: string, pred: () => boolean) => {
      const deadline = Date.now() + 5000;
      while (!pred()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}; logs: ${logs.join(" | ")}`);
        await new Promise<void>((r) => { wake = r; setTimeout(r, Math.min(left, 50)); });
        await links.idle();
      }
    };
    const linkedAgain = (n: number) => () => logs.filter((l) => l.includes("linked again")).length >= n;
    const index = async (name: string) => (await allLinks(nl)).find((l) => l.name === name)?.index ?? -1;

    await sh("ip", "link", "del", "tp");
    await until("tap loss", () => reports.length >= 1);
    const tapGone = (await links.health())[0];
    createTap("tp");
    await until("tap re-link", linkedAgain(1));
    const newTap = await index("tp");
    const tapBack = { health: (await links.health())[0], nf: await filtersOf(nl, first.netfront.index), tp: await filtersOf(nl, newTap), redirectTo: (await nicStats(nl, ["nf"]))[0]?.redirectTo };

    await sh("ip", "link", "del", "nf"); // takes its peer nfp with it
    await until("netfront loss", () => reports.length >= 2);
    const netfrontGone = (await links.health())[0];
    await sh("ip", "link", "add", "name", "nf", "type", "veth", "peer", "name", "nfp");
    await until("netfront re-link", linkedAgain(2));
    const newNf = await index("nf");
    const netfrontBack = { health: (await links.health())[0], nf: await filtersOf(nl, newNf), redirectTo: (await nicStats(nl, ["tp"]))[0]?.redirectTo, newNf };
    const seen = { reports: [...reports], logs: [...logs] };
    await unlinkNic(nl, { netfront: "nf", tap: "tp", deleteTap: true });
    nl.close();
    return { firstTap: first.tap.index, newTap, tapGone, tapBack, netfrontGone, netfrontBack, ...seen };
  },

  /**
   * Lost link notifications on the real kernel: with the event loop blocked, 3000 veth pairs
   * overflow the event socket (2 MiB), and the tap is deleted and re-created at the end of the
   * burst, so only the read after ENOBUFS can notice it and link it again.
   */
  async overflow() {
    const nl = openNetlink();
    createTap("tp");
    const options = { netfront: "nf", tap: "tp" };
    const first = await linkNic(nl, options);
    const logs: string[] = [];
    const lost: string[] = [];
    const links = new NicLinks({ nl, log: createLogger({ sink: { write: (l) => logs.push(l.trim()) } }), report: () => {} });
    links.track("nic0", options, first);
    nl.onLink((e) => links.onLink(e), (e) => {
      const code = (e as { code?: string }).code ?? String(e);
      lost.push(code);
      links.onLost(code);
    });
    const file = `${process.env.TMPDIR ?? "/tmp"}/net-burst-${process.pid}.txt`;
    const burst = [...Array.from({ length: 3000 }, (_, i) => `link add name x${i} type veth peer name y${i}`), "link del tp", "tuntap add dev tp mode tap"];
    await Bun.write(file, `${burst.join("\n")}\n`);
    // Synchronous on purpose: nothing reads the event socket while the kernel fills it.
    const r = Bun.spawnSync(["ip", "-batch", file]);
    await sh("rm", "-f", file);
    const deadline = Date.now() + 20_000;
    while (!logs.some((l) => l.includes("linked again")) && Date.now() < deadline) {
      await Bun.sleep(20);
      await links.idle();
    }
    const newTap = (await allLinks(nl)).find((l) => l.name === "tp")?.index ?? -1;
    const tp = await filtersOf(nl, newTap);
    nl.close();
    return { batch: r.exitCode, lost, firstTap: first.tap.index, newTap, tp, logs: logs.filter((l) => l.includes("net: ")) };
  },

  /** A packet socket keeps receiving after its link went down and up more times than any error budget. */
  async flaps() {
    await sh("ip", "link", "set", "nf", "up");
    await sh("ip", "link", "set", "nfp", "up");
    const errors: string[] = [];
    const got = collector();
    const port = openPacketPort("nf", dhcpSocketFilter(), { onError: (e) => errors.push((e as Error).message) });
    port.onFrame(got.push);
    for (let i = 0; i < 8; i++) {
      await sh("ip", "link", "set", "nf", "down");
      await sh("ip", "link", "set", "nf", "up");
    }
    const nl = openNetlink();
    const operUp = await waitOperUp(nl, ["nf", "nfp"], 3000);
    nl.close();
    const sender = openPacketPort("nfp", [{ code: 0x06, jt: 0, jf: 0, k: 0 }]);
    const dhcp = ipv4Frame("0.0.0.0", 9);
    dhcp[14 + 9] = 17;
    dhcp[14 + 22] = 0;
    dhcp[14 + 23] = 67;
    sender.send(dhcp);
    const received = await got.until((f) => f.length > 0, 3000);
    sender.close();
    port.close();
    return { operUp, errors, received, same: received && hex(got.frames[0]!) === hex(dhcp) };
  },

  /** Many links: the link dump spans several ~32 KB datagrams that the reader may merge. */
  async bigdump() {
    const nl = openNetlink();
    const links = await nicStats(nl, []);
    const names = (await allLinks(nl)).map((l) => l.name);
    nl.close();
    return { count: names.length, sample: names.filter((n) => /^a(1|75|150)$/.test(n)).sort(), withIngress: links.length };
  },

  /** In a namespace with IPv6 on: the linked pair gets no IPv6 address, the unlinked peer does. */
  async ipv6() {
    const nl = openNetlink();
    createTap("tp");
    const qemu = openTapAsQemu("tp");
    await sh("ip", "link", "set", "nfp", "up");
    await linkNic(nl, { netfront: "nf", tap: "tp" });
    const operUp = await waitOperUp(nl, ["nf", "tp", "nfp"], 3000);
    const addrs = (await sh("cat", "/proc/net/if_inet6")).out.trim().split("\n").filter(Boolean).map((l) => l.trim().split(/\s+/).at(-1));
    qemu.close();
    await unlinkNic(nl, { netfront: "nf", tap: "tp", deleteTap: true });
    nl.close();
    return { operUp, ipv6On: addrs };
  },

  /** Guest side: veth tpv <-> gv, gv in namespace GUEST_NS where udhcpc runs. */
  async dhcp() {
    const guestNs = process.env.GUEST_NS!;
    const nl = openNetlink();
    await sh("ip", "link", "set", "nfp", "up");
    // The responder's requests must not also reach the real network: count DHCP frames there.
    const leaked = collector();
    const net = openPacketPort("nfp", dhcpSocketFilter());
    net.onFrame(leaked.push);
    // The responder starts while the tap is still down, as it may at boot: its packet socket
    // then reports ENETDOWN once, and must carry on when linkNic brings the link up.
    const logs: string[] = [];
    const server = startDhcp({ tap: "tpv", lease: { clientIp: "10.137.0.42", netmask: "255.255.255.0", gateway: "10.137.0.1", dns: ["10.139.1.1", "10.139.1.2"] }, log: (m) => logs.push(m) });
    await linkNic(nl, { netfront: "nf", tap: "tpv", localDhcp: true });
    const operUp = await waitOperUp(nl, ["nf", "tpv"], 3000);
    const script = `${process.env.TMPDIR ?? "/tmp"}/udhcpc-script-${process.pid}.sh`;
    await Bun.write(script, '#!/bin/sh\n[ "$1" = bound ] && echo "lease ip=$ip subnet=$subnet router=$router dns=$dns"\nexit 0\n');
    await sh("chmod", "755", script);
    const r = await sh("ip", "netns", "exec", guestNs, "busybox", "udhcpc", "-i", "gv", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", script);
    await sh("rm", "-f", script);
    const counters = { ...server.counters };
    server.stop();
    net.close();
    await unlinkNic(nl, { netfront: "nf", tap: "tpv" });
    nl.close();
    return { operUp, udhcpc: { code: r.code, out: r.out, err: r.err }, counters, logs, leakedToNetfront: leaked.frames.length };
  },
};

const name = process.argv[2] ?? "";
const fn = scenarios[name];
if (!fn) {
  process.stderr.write(`unknown scenario '${name}'\n`);
  process.exit(2);
}
try {
  process.stdout.write(`${JSON.stringify(await fn())}\n`);
  process.exit(0);
} catch (e) {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
}
