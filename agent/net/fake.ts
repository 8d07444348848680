// An in-memory kernel for unit tests of code that takes a Netlink. It models what the agent
// uses (links, ingress qdiscs, filters by priority, link events) and answers with the errors
// and extended-ack texts the real kernel gives; test/net/contract.ts runs the same checks
// against this fake and against the kernel.
import {
  IFF_UP, NLM_F_DUMP, RTM_DELLINK, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETLINK, RTM_GETQDISC,
  RTM_GETTFILTER, RTM_NEWLINK, RTM_NEWQDISC, RTM_NEWTFILTER, TC_H_INGRESS, type Message, type TcAttr,
} from "./codec.ts";
import { ENODEV, EINVAL, ENOENT } from "./errno.ts";
import { NetlinkError, type LinkEvent, type Netlink } from "./types.ts";

const IFF_LOWER_UP = 0x10000;

interface FakeLink {
  index: number;
  name: string;
  up: boolean;
  carrier: boolean;
  mtu: number;
  ingress: boolean;
  /** Filters on the ingress qdisc, by priority. */
  filters: Map<number, { handle: number; info: number; attrs: TcAttr[] }>;
}

export class FakeNetlink implements Netlink {
  private readonly links = new Map<number, FakeLink>();
  private nextIndex = 1;
  private readonly listeners = new Set<(ev: LinkEvent) => void>();
  private readonly lostListeners = new Set<(e: unknown) => void>();
  /** Every request, in order, for tests that check what was asked. */
  readonly requests: Message[] = [];

  addLink(name: string, opts: { mtu?: number; carrier?: boolean } = {}): number {
    const index = this.nextIndex++;
    this.links.set(index, { index, name, up: false, carrier: opts.carrier ?? true, mtu: opts.mtu ?? 1500, ingress: false, filters: new Map() });
    this.emit("new", this.links.get(index)!);
    return index;
  }

  removeLink(name: string): void {
    const l = this.byName(name);
    if (!l) return;
    this.links.delete(l.index);
    this.emit("del", l);
  }

  setCarrier(name: string, carrier: boolean): void {
    const l = this.byName(name);
    if (!l) throw new Error(`fake: no link ${name}`);
    l.carrier = carrier;
    this.emit("new", l);
  }

  /** The state tests compare: links with their ingress filters (kind and priority). */
  snapshot(): Record<string, { up: boolean; mtu: number; ingress: boolean; filters: string[] }> {
    const out: Record<string, { up: boolean; mtu: number; ingress: boolean; filters: string[] }> = {};
    for (const l of this.links.values()) {
      out[l.name] = {
        up: l.up, mtu: l.mtu, ingress: l.ingress,
        filters: [...l.filters.entries()].sort(([a], [b]) => a - b).map(([prio, f]) => `${prio}:${kindOf(f.attrs)}`),
      };
    }
    return out;
  }

  private byName(name: string): FakeLink | undefined {
    return [...this.links.values()].find((l) => l.name === name);
  }

  private emit(type: "new" | "del", l: FakeLink): void {
    const ev: LinkEvent = { type, index: l.index, name: l.name, up: l.up, lowerUp: l.up && l.carrier, attrs: [{ kind: "ifname", value: l.name }, { kind: "mtu", value: l.mtu }] };
    for (const fn of this.listeners) fn(ev);
  }

  private linkMsg(l: FakeLink): Message {
    return {
      kind: "link",
      header: { type: RTM_NEWLINK, flags: 0, seq: 0, pid: 0 },
      ifi: { family: 0, type: 1, index: l.index, flags: (l.up ? IFF_UP : 0) | (l.up && l.carrier ? IFF_LOWER_UP : 0), change: 0 },
      attrs: [{ kind: "ifname", value: l.name }, { kind: "mtu", value: l.mtu }, { kind: "operstate", value: l.up && l.carrier ? 6 : 2 }],
    };
  }

  async request(msg: Message): Promise<Message[]> {
    this.requests.push(msg);
    const h = msg.header;
    const dump = (h.flags & NLM_F_DUMP) === NLM_F_DUMP;
    if (msg.kind === "link") {
      if (h.type === RTM_GETLINK && dump) return [...this.links.values()].map((l) => this.linkMsg(l));
      const nameAttr = msg.attrs.find((a) => a.kind === "ifname");
      const l = msg.ifi.index !== 0 ? this.links.get(msg.ifi.index) : nameAttr?.kind === "ifname" ? this.byName(nameAttr.value) : undefined;
      if (!l) throw new NetlinkError("netlink request", ENODEV);
      if (h.type === RTM_GETLINK) return [this.linkMsg(l)];
      if (h.type === RTM_NEWLINK) {
        if (msg.ifi.change & IFF_UP) l.up = (msg.ifi.flags & IFF_UP) !== 0;
        for (const a of msg.attrs) if (a.kind === "mtu") l.mtu = a.value;
        this.emit("new", l);
        return [];
      }
      if (h.type === RTM_DELLINK) {
        this.removeLink(l.name);
        return [];
      }
    }
    if (msg.kind === "tc") {
      const t = msg.tcm;
      if (h.type === RTM_GETQDISC && dump) {
        return [...this.links.values()].filter((l) => l.ingress).map((l) => ({
          kind: "tc", header: { type: RTM_NEWQDISC, flags: 0, seq: 0, pid: 0 },
          tcm: { family: 0, ifindex: l.index, handle: 0xffff0000, parent: TC_H_INGRESS, info: 1 },
          attrs: [{ kind: "kind", value: "ingress" }, { kind: "stats2", value: [{ kind: "queue", qlen: 0, backlog: 0, drops: 0, requeues: 0, overlimits: 0 }] }],
        }));
      }
      const l = this.links.get(t.ifindex);
      if (!l) throw new NetlinkError("netlink request", ENODEV, "Cannot find specified netdevice");
      switch (h.type) {
        case RTM_NEWQDISC: l.ingress = true; return [];
        case RTM_DELQDISC:
          if (!l.ingress) throw new NetlinkError("netlink request", EINVAL, "Invalid handle");
          l.ingress = false;
          l.filters.clear();
          return [];
        case RTM_NEWTFILTER: {
          if (!l.ingress) throw new NetlinkError("netlink request", EINVAL, "Parent Qdisc doesn't exists");
          l.filters.set(t.info >>> 16, { handle: t.handle, info: t.info, attrs: msg.attrs });
          return [];
        }
        case RTM_DELTFILTER:
          if (!l.ingress) throw new NetlinkError("netlink request", EINVAL, "Parent Qdisc doesn't exists");
          if (!l.filters.delete(t.info >>> 16)) throw new NetlinkError("netlink request", ENOENT, "Filter with specified priority/protocol not found");
          return [];
        case RTM_GETTFILTER:
          if (!l.ingress) throw new NetlinkError("netlink request", EINVAL, "Parent Qdisc doesn't exists");
          return [...l.filters.entries()].map(([, f]) => ({
            kind: "tc", header: { type: RTM_NEWTFILTER, flags: 0, seq: 0, pid: 0 },
            tcm: { family: 0, ifindex: l.index, handle: f.handle, parent: t.parent, info: f.info }, attrs: f.attrs,
          }));
      }
    }
    throw new Error(`fake netlink: request type ${h.type} not modelled`);
  }

  onLink(listener: (ev: LinkEvent) => void, onLost?: (error: unknown) => void): () => void {
    this.listeners.add(listener);
    if (onLost) this.lostListeners.add(onLost);
    return () => {
      this.listeners.delete(listener);
      if (onLost) this.lostListeners.delete(onLost);
    };
  }

  /** The event socket overflowed: changes made meanwhile are not announced (use `quietly`). */
  loseEvents(error: unknown = Object.assign(new Error("ENOBUFS"), { code: "ENOBUFS" })): void {
    for (const fn of [...this.lostListeners]) fn(error);
  }

  /** Runs `fn` with link events suppressed, as if they were lost in an overflow. */
  quietly(fn: () => void): void {
    const saved = [...this.listeners];
    this.listeners.clear();
    try {
      fn();
    } finally {
      for (const l of saved) this.listeners.add(l);
    }
  }

  close(): void {
    this.listeners.clear();
    this.lostListeners.clear();
  }
}

function kindOf(attrs: TcAttr[]): string {
  const k = attrs.find((a) => a.kind === "kind");
  return k?.kind === "kind" ? k.value : "?";
}
