// Joining a netfront to QEMU's tap with tc ingress redirects, undoing it, and reading the
// counters. Pure: every kernel operation goes through the Netlink interface.
import { IFF_UP, TC_H_INGRESS, type Message } from "./codec.ts";
import { guardProgram, parsePrefix, type Prefix } from "./bpf.ts";
import {
  addIngress, deleteFilters, deleteIngress, deleteLink, dumpFilters, dumpLinks, dumpQdiscs,
  getLinkByName, guardFilter, noIpv6LinkLocal, PRIO_GUARD, redirectFilter, setLinkUp,
} from "./messages.ts";
import { DUMP_INTERRUPTED, EAFNOSUPPORT, EINTR, ENODEV, ENOENT } from "./errno.ts";
import { NetlinkError, type Netlink } from "./types.ts";

const IFF_LOWER_UP = 0x10000;
const IF_OPER_UP = 6;
/** A guard program stays far below the classic BPF limits with this many prefixes. */
export const MAX_ALLOWED_SOURCES = 32;

export interface NicPair {
  /** The PV interface, e.g. eth0. */
  netfront: string;
  /** QEMU's tap, e.g. vif5.0-emu. */
  tap: string;
}

export interface LinkOptions extends NicPair {
  /** Applied to both links when given (68..65535). */
  mtu?: number;
  /** IPv4 addresses or prefixes the guest may send from; absent means no anti-spoofing. */
  allowedSources?: string[];
  /** The agent answers the guest's DHCP itself (startDhcp): keep those requests off netfront. */
  localDhcp?: boolean;
}

export interface LinkResult {
  netfront: { name: string; index: number };
  tap: { name: string; index: number };
  mtu?: number;
  /** A guard filter is installed on the tap (anti-spoofing and/or local DHCP). */
  guard: boolean;
  /** What was not done but did not stop the link (the caller logs and reports these). */
  warnings: string[];
}

export class NicConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`bad NIC configuration: ${problems.join("; ")}`);
    this.name = "NicConfigError";
  }
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export interface ValidLink {
  netfront: string;
  tap: string;
  mtu?: number;
  allowed?: Prefix[];
  localDhcp: boolean;
}

/** Checks names, MTU and prefixes; returns every problem at once. */
export function validateLink(o: LinkOptions): ValidLink {
  const problems: string[] = [];
  for (const [what, name] of [["netfront", o.netfront], ["tap", o.tap]] as const) {
    if (!IFNAME.test(name) || name === "." || name === "..") problems.push(`${what} '${name}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  }
  if (o.netfront === o.tap) problems.push(`netfront and tap are the same interface '${o.tap}'`);
  if (o.mtu !== undefined && !(Number.isInteger(o.mtu) && o.mtu >= 68 && o.mtu <= 65535)) problems.push(`mtu ${o.mtu} is not an integer in 68..65535`);
  let allowed: Prefix[] | undefined;
  if (o.allowedSources !== undefined) {
    allowed = [];
    if (o.allowedSources.length > MAX_ALLOWED_SOURCES) problems.push(`${o.allowedSources.length} allowed sources (at most ${MAX_ALLOWED_SOURCES})`);
    for (const s of o.allowedSources) {
      const p = parsePrefix(s);
      if (typeof p === "string") problems.push(`allowed source ${p}`);
      else allowed.push(p);
    }
  }
  if (problems.length > 0) throw new NicConfigError(problems);
  return { netfront: o.netfront, tap: o.tap, mtu: o.mtu, allowed, localDhcp: o.localDhcp ?? false };
}

/**
 * Runs one request; a kernel error gets the operation and link names in front of the kernel's
 * text. A dump the kernel marks interrupted (its tables changed meanwhile) is asked again.
 */
async function ask(nl: Netlink, what: string, msg: Message): Promise<Message[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await nl.request(msg);
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === EINTR && e.kernelMessage === DUMP_INTERRUPTED && attempt < 3) continue;
      if (e instanceof NetlinkError) throw new NetlinkError(`${what}`, e.errno, e.kernelMessage);
      throw e;
    }
  }
}

export async function linkIndex(nl: Netlink, name: string, role: string): Promise<number> {
  const replies = await ask(nl, `find ${role} '${name}'`, getLinkByName(name));
  const m = replies.find((r) => r.kind === "link");
  if (m?.kind !== "link") throw new Error(`find ${role} '${name}': the kernel sent no link message`);
  return m.ifi.index;
}

/**
 * Joins netfront and tap: both up (with the MTU), an ingress qdisc on each, on the tap first
 * the guard (when anti-spoofing or local DHCP asks for it), then a u32 match-all filter that
 * redirects every frame to the other link's egress. Kernel modules needed: sch_ingress,
 * cls_u32, act_mirred, and cls_bpf when there is a guard. Running it again converges to the same
 * state: fixed handles and priorities make the filter requests replace in place.
 */
export async function linkNic(nl: Netlink, opts: LinkOptions): Promise<LinkResult> {
  const v = validateLink(opts);
  const pair = `${v.netfront} <-> ${v.tap}`;
  const [nf, tap] = await Promise.all([linkIndex(nl, v.netfront, "netfront"), linkIndex(nl, v.tap, "tap")]);
  const mtu = v.mtu ? ` mtu ${v.mtu}` : "";
  const wantGuard = v.allowed !== undefined || v.localDhcp;
  const isEafnosupport = (e: unknown) => e instanceof NetlinkError && e.errno === EAFNOSUPPORT;
  const isEnoent = (e: unknown) => e instanceof NetlinkError && e.errno === ENOENT;
  // Without anti-spoofing the link must stay down (fail closed). For local DHCP alone the guard
  // only keeps the guest's requests off the real network: link anyway, and say so.
  const guardOptional = (e: unknown) => v.allowed === undefined && e instanceof NetlinkError;
  const results = await batch(nl, [
    // The stub domain has no business on either segment: without a link-local address its
    // own stack sends no IPv6 (router solicitations, DAD, MLD) to the guest or the network.
    // A kernel without IPv6 has nothing to silence.
    { what: `${pair}: no IPv6 link-local address on ${v.netfront}`, msg: noIpv6LinkLocal(nf), tolerate: isEafnosupport },
    { what: `${pair}: no IPv6 link-local address on ${v.tap}`, msg: noIpv6LinkLocal(tap), tolerate: isEafnosupport },
    { what: `${pair}: set ${v.netfront} up${mtu}`, msg: setLinkUp(nf, v.mtu) },
    { what: `${pair}: set ${v.tap} up${mtu}`, msg: setLinkUp(tap, v.mtu) },
    { what: `${pair}: add ingress qdisc on ${v.netfront}`, msg: addIngress(nf) },
    { what: `${pair}: add ingress qdisc on ${v.tap}`, msg: addIngress(tap) },
    wantGuard
      ? { what: `${pair}: add guard filter on ${v.tap}`, msg: guardFilter(tap, guardProgram({ allowed: v.allowed, localDhcp: v.localDhcp })), tolerate: guardOptional }
      : { what: `${pair}: remove guard filter from ${v.tap}`, msg: deleteFilters(tap, PRIO_GUARD), tolerate: isEnoent },
  ]);
  const warnings: string[] = [];
  const guardError = results[results.length - 1];
  if (wantGuard && guardError) warnings.push(`${(guardError as Error).message} (is cls_bpf loaded?); the guest's DHCP requests also reach ${v.netfront}`);
  // Only after the guard is known to be in place does the redirect carry the guest's frames.
  await batch(nl, [
    { what: `${pair}: redirect ${v.tap} -> ${v.netfront}`, msg: redirectFilter(tap, nf) },
    { what: `${pair}: redirect ${v.netfront} -> ${v.tap}`, msg: redirectFilter(nf, tap) },
  ]);
  return { netfront: { name: v.netfront, index: nf }, tap: { name: v.tap, index: tap }, mtu: v.mtu, guard: wantGuard && !guardError, warnings };
}

interface Step {
  what: string;
  msg: Message;
  /** Errors that do not stop the batch; they are returned in the step's slot instead. */
  tolerate?: (e: unknown) => boolean;
}

/**
 * Sends every request before waiting for any answer: the kernel handles an rtnetlink request
 * inside the send, in order, so a batch costs one wait instead of one per request. A request
 * after a failed one has still run; callers put anything that depends on an earlier step in
 * a later batch. Throws the first intolerable error in request order.
 */
async function batch(nl: Netlink, steps: Step[]): Promise<(unknown | undefined)[]> {
  const settled = await Promise.allSettled(steps.map((s) => ask(nl, s.what, s.msg)));
  return settled.map((r, i) => {
    if (r.status === "fulfilled") return undefined;
    if (steps[i]!.tolerate?.(r.reason)) return r.reason;
    throw r.reason;
  });
}

/**
 * Resolves true once every named link is operationally up, false after timeoutMs. linkNic
 * returns when the configuration is in place, but the kernel activates a link's queues a
 * little later (linkwatch; up to a second), and frames sent to it before then are dropped. A
 * netfront without a connected backend never gets there: callers should not wait on it
 * unconditionally. Event-driven: re-checks on each link event, never polls.
 */
export async function waitOperUp(nl: Netlink, names: string[], timeoutMs: number): Promise<boolean> {
  let changed = false;
  let wake = () => {};
  const unsubscribe = nl.onLink(() => {
    changed = true;
    wake();
  });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      changed = false;
      const links = await allLinks(nl);
      if (names.every((n) => links.find((l) => l.name === n)?.operUp)) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    unsubscribe();
  }
}

export interface UnlinkOptions extends NicPair {
  /** Also delete the tap device (the agent created it persistent for QEMU). */
  deleteTap?: boolean;
}

/**
 * Removes the ingress qdiscs (and with them every filter) from both links. Links that no
 * longer exist are skipped: after QEMU is gone there may be nothing left to undo.
 */
export async function unlinkNic(nl: Netlink, opts: UnlinkOptions): Promise<void> {
  const links = await allLinks(nl);
  const qdiscs = (await ask(nl, "list qdiscs", dumpQdiscs(0))).filter(isIngress);
  for (const [role, name] of [["netfront", opts.netfront], ["tap", opts.tap]] as const) {
    const l = links.find((x) => x.name === name);
    if (!l) continue;
    // A link that disappears meanwhile (ENODEV) has nothing left to undo either.
    const gone = (e: unknown) => e instanceof NetlinkError && e.errno === ENODEV;
    if (qdiscs.some((q) => q.kind === "tc" && q.tcm.ifindex === l.index)) {
      await batch(nl, [{ what: `unlink ${opts.netfront} <-> ${opts.tap}: remove ingress qdisc from ${role} ${name}`, msg: deleteIngress(l.index), tolerate: gone }]);
    }
    if (role === "tap" && opts.deleteTap) await batch(nl, [{ what: `delete tap ${name}`, msg: deleteLink(l.index), tolerate: gone }]);
  }
}

function isIngress(m: Message): boolean {
  return m.kind === "tc" && m.tcm.parent === TC_H_INGRESS && m.attrs.some((a) => a.kind === "kind" && a.value === "ingress");
}

export interface LinkInfo {
  index: number;
  name: string;
  up: boolean;
  lowerUp: boolean;
  mtu: number;
  /**
   * RFC 2863 operational state is "up": the kernel has activated the link's queues. Optional
   * only so that records built before it existed still type-check; allLinks always sets it.
   */
  operUp?: boolean;
  mac?: string;
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  rxDropped: number;
  txDropped: number;
}

export async function allLinks(nl: Netlink): Promise<LinkInfo[]> {
  const out: LinkInfo[] = [];
  for (const m of await ask(nl, "list links", dumpLinks())) {
    if (m.kind !== "link") continue;
    const info: LinkInfo = {
      index: m.ifi.index, name: "", up: (m.ifi.flags & IFF_UP) !== 0, lowerUp: (m.ifi.flags & IFF_LOWER_UP) !== 0, mtu: 0, operUp: false,
      rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, rxDropped: 0, txDropped: 0,
    };
    for (const a of m.attrs) {
      if (a.kind === "ifname") info.name = a.value;
      else if (a.kind === "mtu") info.mtu = a.value;
      else if (a.kind === "address") info.mac = a.value;
      else if (a.kind === "operstate") info.operUp = a.value === IF_OPER_UP;
      else if (a.kind === "stats64") Object.assign(info, { rxPackets: a.value.rxPackets, txPackets: a.value.txPackets, rxBytes: a.value.rxBytes, txBytes: a.value.txBytes, rxDropped: a.value.rxDropped, txDropped: a.value.txDropped });
    }
    out.push(info);
  }
  return out;
}

export interface NicStats extends LinkInfo {
  /** Ingress qdisc present (the link is part of a redirect pair). */
  ingress: boolean;
  /** Index of the link this one redirects to, if any. */
  redirectTo?: number;
  /** Frames and bytes that reached the redirect action (failed redirects included). */
  redirectedPackets: number;
  redirectedBytes: number;
  /** Redirects that failed (peer down or gone); the kernel drops those frames too. */
  redirectFailures: number;
  guard: boolean;
  /** Frames the guard dropped (spoofed source or sender address), from the ingress qdisc's drops. */
  spoofDrops: number;
}

/** Counters for the named links (all links with an ingress qdisc when names is empty). */
export async function nicStats(nl: Netlink, names: string[] = []): Promise<NicStats[]> {
  const links = await allLinks(nl);
  const qdiscs = (await ask(nl, "list qdiscs", dumpQdiscs(0))).filter(isIngress);
  const wanted = names.length > 0 ? names.map((n) => {
    const l = links.find((x) => x.name === n);
    if (!l) throw new NetlinkError(`stats for '${n}'`, 19, "no such link");
    return l;
  }) : links.filter((l) => qdiscs.some((q) => q.kind === "tc" && q.tcm.ifindex === l.index));
  const out: NicStats[] = [];
  for (const l of wanted) {
    const q = qdiscs.find((x) => x.kind === "tc" && x.tcm.ifindex === l.index);
    const s: NicStats = { ...l, ingress: q !== undefined, redirectedPackets: 0, redirectedBytes: 0, redirectFailures: 0, guard: false, spoofDrops: 0 };
    if (q?.kind === "tc") {
      let drops = 0;
      for (const a of q.attrs) if (a.kind === "stats2") for (const st of a.value) if (st.kind === "queue") drops = st.drops;
      for (const f of await ask(nl, `list filters on ${l.name}`, dumpFilters(l.index))) {
        if (f.kind !== "tc") continue;
        for (const a of f.attrs) {
          if (a.kind === "bpf") s.guard = true;
          if (a.kind !== "u32") continue;
          for (const u of a.value) {
            if (u.kind !== "actions") continue;
            for (const act of u.value) {
              for (const x of act.attrs) {
                if (x.kind === "mirred") for (const p of x.value) if (p.kind === "parms") s.redirectTo = p.value.ifindex;
                if (x.kind === "stats") {
                  for (const st of x.value) {
                    if (st.kind === "basic") { s.redirectedPackets += st.packets; s.redirectedBytes += st.bytes; }
                    if (st.kind === "queue") s.redirectFailures += st.overlimits;
                  }
                }
              }
            }
          }
        }
      }
      // A failed redirect is a TC_ACT_SHOT too; what remains of the qdisc's drops is the guard's.
      s.spoofDrops = Math.max(0, drops - s.redirectFailures);
    }
    out.push(s);
  }
  return out;
}
