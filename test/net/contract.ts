// One script of Netlink operations whose observations must be the same on the kernel and on
// FakeNetlink (the fake is only as good as this agreement). Links nf and tp must exist, with
// no ingress qdiscs. Indexes differ between the two, so observations use names.
import { linkNic, nicStats, unlinkNic, type Netlink } from "../../agent/net/index.ts";
import { deleteFilters, redirectFilter } from "../../agent/net/messages.ts";
import { linkIndex } from "../../agent/net/nic.ts";

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

export async function runContract(nl: Netlink): Promise<Record<string, unknown>> {
  const obs: Record<string, unknown> = {};
  const nf = await linkIndex(nl, "nf", "netfront");
  const tp = await linkIndex(nl, "tp", "tap");
  const names = new Map([[nf, "nf"], [tp, "tp"]]);
  const view = async () => (await nicStats(nl, ["nf", "tp"])).map((s) => ({
    name: s.name, up: s.up, mtu: s.mtu, ingress: s.ingress, guard: s.guard,
    redirectTo: s.redirectTo === undefined ? null : names.get(s.redirectTo) ?? `ifindex ${s.redirectTo}`, redirectedPackets: s.redirectedPackets, spoofDrops: s.spoofDrops,
  }));
  obs.filterWithoutQdisc = await outcome(nl.request(redirectFilter(nf, tp)));
  obs.missingNetfront = await outcome(linkNic(nl, { netfront: "nosuch0", tap: "tp" }));
  obs.link = await outcome(linkNic(nl, { netfront: "nf", tap: "tp", mtu: 1450, allowedSources: ["192.168.1.0/24"] }));
  obs.afterLink = await view();
  obs.relinkWithoutGuard = await outcome(linkNic(nl, { netfront: "nf", tap: "tp", mtu: 1450 }));
  obs.afterRelink = await view();
  obs.deleteMissingPrio = await outcome(nl.request(deleteFilters(tp, 9)));
  obs.unlink = await outcome(unlinkNic(nl, { netfront: "nf", tap: "tp" }));
  obs.unlinkAgain = await outcome(unlinkNic(nl, { netfront: "nf", tap: "tp" }));
  obs.afterUnlink = await view();
  return obs;
}
