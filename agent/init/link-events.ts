// The NIC pairs after boot, kept honest by rtnetlink link events (no polling): a netfront or
// tap that disappears takes its redirect with it (tc filters live on the link), which is
// logged, reported and shown in the health report's NIC entry; when it comes back (QEMU
// re-creates its tap, a netfront is re-attached) under the same name, the pair is linked
// again with the options it was first linked with. When notifications were lost (ENOBUFS),
// the links are read once and compared, as if each change had been announced.
import type { NicHealth, NicRedirectProblem } from "../health/schema.ts";
import { nicHealth } from "../health/nics.ts";
import type { Logger } from "../log.ts";
import { allLinks, linkNic, nicStats, type LinkOptions, type LinkResult } from "../net/nic.ts";
import type { LinkEvent, Netlink } from "../net/types.ts";
import type { AgentEvent, Listeners } from "./events.ts";

type Role = "netfront" | "tap";
const ROLES: readonly Role[] = ["netfront", "tap"];

/** One side's link: its ifindex, or gone. */
type Side = number | "gone";

interface Pair {
  readonly options: LinkOptions;
  sides: Record<Role, Side>;
  /** Why the redirect is not in place; undefined = linked. */
  problem?: NicRedirectProblem;
}

/** How an event relates to what we know of that side. */
type Seen = "same" | "other" | "gone";
type Step = "none" | "lost" | "back";

/**
 * The table: a link deleted under its known index is lost; one announced under a new index
 * (re-created) or after it was gone is back. Everything else (flag and carrier changes, our
 * own changes while linking, a late delete of an index already replaced) changes nothing.
 */
export const LINK_STEPS: Record<LinkEvent["type"], Record<Seen, Step>> = {
  del: { same: "lost", other: "none", gone: "none" },
  new: { same: "none", other: "back", gone: "back" },
};

const goneProblem: Record<Role, NicRedirectProblem> = { netfront: "netfront_gone", tap: "tap_gone" };

export interface NicLinksDeps {
  nl: Netlink;
  log: Logger;
  /** A problem for the health report's error (it never stops the agent). */
  report(message: string): void;
  /** Linking again; default linkNic. */
  relink?: (nl: Netlink, options: LinkOptions) => Promise<LinkResult>;
  /** A pair was linked again (the caller renews what was bound to the old links, e.g. DHCP). */
  relinked?: (device: string) => void;
}

export class NicLinks {
  private readonly pairs = new Map<string, Pair>();
  private chain: Promise<void> = Promise.resolve();
  private readonly relink: (nl: Netlink, options: LinkOptions) => Promise<LinkResult>;

  constructor(private readonly deps: NicLinksDeps) {
    this.relink = deps.relink ?? linkNic;
  }

  /** A pair linked at boot, by QEMU device id (nic<n>). */
  track(device: string, options: LinkOptions, linked: LinkResult): void {
    this.pairs.set(device, { options, sides: { netfront: linked.netfront.index, tap: linked.tap.index } });
  }

  /** The guest unplugged the emulated NIC: its pair was unlinked on purpose. */
  forget(names: { netfront: string; tap: string }): void {
    for (const [device, pair] of this.pairs) {
      if (pair.options.netfront === names.netfront && pair.options.tap === names.tap) this.pairs.delete(device);
    }
  }

  onLink(ev: LinkEvent): void {
    for (const [device, pair] of this.pairs) {
      for (const role of ROLES) {
        if (pair.options[role] !== ev.name) continue;
        const known = pair.sides[role];
        const seen: Seen = known === "gone" ? "gone" : known === ev.index ? "same" : "other";
        this.apply(device, pair, role, LINK_STEPS[ev.type][seen], ev.index);
      }
    }
  }

  /** Notifications were lost: read the links once and replay what changed. */
  onLost(reason: string): void {
    this.deps.log.warn(`net: link notifications lost (${reason}): reading the links again`);
    this.resync();
  }

  /** Compares the links with what we know, as if every change had been announced. */
  resync(): void {
    this.enqueue(async () => {
      const links = await allLinks(this.deps.nl);
      for (const [device, pair] of this.pairs) {
        for (const role of ROLES) {
          const now = links.find((l) => l.name === pair.options[role]);
          const known = pair.sides[role];
          if (!now && known !== "gone") this.apply(device, pair, role, "lost", known);
          else if (now && now.index !== known) this.apply(device, pair, role, "back", now.index);
        }
      }
    });
  }

  /** Resolves when every queued re-link has run (tests, and a clean stop). */
  idle(): Promise<void> {
    return this.chain;
  }

  /** The health report's NIC entries: counters of what exists, and any redirect problem. */
  async health(): Promise<NicHealth[]> {
    const present = new Set((await allLinks(this.deps.nl)).map((l) => l.name));
    const out: NicHealth[] = [];
    for (const pair of this.pairs.values()) {
      const { netfront, tap } = pair.options;
      const names = [netfront, tap].filter((n) => present.has(n));
      const stats = names.length > 0 ? await nicStats(this.deps.nl, names) : [];
      const nf = stats.find((s) => s.name === netfront);
      const tp = stats.find((s) => s.name === tap);
      const entry: NicHealth = nf
        ? nicHealth(nf, tp)
        : { name: netfront, ...(tp ? { tap } : {}), link: "down", rx_packets: 0, rx_bytes: 0, rx_dropped: 0, tx_packets: 0, tx_bytes: 0, tx_dropped: 0, spoofed_dropped: 0 };
      out.push(pair.problem ? { ...entry, link: "down", redirect: pair.problem } : entry);
    }
    return out;
  }

  private apply(device: string, pair: Pair, role: Role, step: Step, index: number): void {
    const { log } = this.deps;
    const name = pair.options[role];
    if (step === "lost") {
      pair.sides[role] = "gone";
      pair.problem = goneProblem[role];
      this.problem(`net: ${device}: ${role} ${name} disappeared: ${pair.options.netfront} <-> ${pair.options.tap} is not linked`);
    } else if (step === "back") {
      pair.sides[role] = index;
      const other = pair.sides[role === "tap" ? "netfront" : "tap"];
      if (other === "gone") {
        log.info(`net: ${device}: ${role} ${name} is back (index ${index}); waiting for the other side`);
        return;
      }
      log.info(`net: ${device}: ${role} ${name} is back (index ${index}): linking ${pair.options.netfront} <-> ${pair.options.tap} again`);
      this.enqueue(() => this.linkAgain(device, pair));
    }
  }

  private async linkAgain(device: string, pair: Pair): Promise<void> {
    if (this.pairs.get(device) !== pair) return; // unplugged meanwhile
    try {
      const r = await this.relink(this.deps.nl, pair.options);
      pair.sides = { netfront: r.netfront.index, tap: r.tap.index };
      pair.problem = undefined;
      for (const w of r.warnings) this.deps.log.warn(`net: ${device}: ${w}`);
      this.deps.log.info(`net: ${device}: ${pair.options.netfront} <-> ${pair.options.tap} linked again`);
      this.deps.relinked?.(device);
    } catch (e) {
      pair.problem = "relink_failed";
      this.problem(`net: ${device}: linking ${pair.options.netfront} <-> ${pair.options.tap} again failed: ${(e as Error).message}`);
    }
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((e: unknown) => this.problem(`net: ${(e as Error).message}`));
  }

  private problem(message: string): void {
    this.deps.log.error(message);
    this.deps.report(message);
  }
}

export interface LinkWatchOptions {
  nl: Netlink;
  links: NicLinks;
  /** The supervisor's queue: link events enter the one loop there... */
  queue: { push(e: AgentEvent): void };
  /** ...and come back out through its listeners. */
  listeners: Listeners;
}

/**
 * Link events through the supervisor's loop. The event socket opens here, after boot linked
 * the pairs: one read of the links covers whatever changed before it listened.
 */
export function watchLinks(o: LinkWatchOptions): void {
  o.listeners.on("link", (e) => o.links.onLink(e.event));
  o.listeners.on("linksLost", (e) => o.links.onLost(e.reason));
  o.nl.onLink(
    (event) => o.queue.push({ kind: "link", event }),
    (error) => o.queue.push({ kind: "linksLost", reason: error instanceof Error ? error.message : String(error) }),
  );
  o.links.resync();
}
