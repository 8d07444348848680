// The xenstore database as C xenstored 4.17 keeps it (tools/xenstore/xenstored_core.c,
// xenstored_transaction.c, xenstored_watch.c, xenstored_domain.c), without any I/O: a tree of
// byte values with permission lists, per-connection sessions with watches and transactions,
// and the unprivileged-domain quotas. The wire server and the in-memory fake both sit on it,
// so the agent's unit tests see the same errors a stub domain sees under Xen.
import type { XsErrno, XsPermission } from "./types.ts";

export const PAYLOAD_MAX = 4096;
export const ABS_PATH_MAX = 3072;
export const REL_PATH_MAX = 2048;

/** C xenstored 4.17 defaults for unprivileged domains. */
export interface Quotas {
  nodesPerDomain: number;
  maxEntrySize: number;
  watchesPerDomain: number;
  transactionsPerDomain: number;
  permsPerNode: number;
}

export const defaultQuotas: Quotas = {
  nodesPerDomain: 1000,
  maxEntrySize: 2048,
  watchesPerDomain: 128,
  transactionsPerDomain: 10,
  permsPerNode: 5,
};

/** A failed request: the errno name goes on the wire as is. */
export class XsError extends Error {
  constructor(readonly errno: XsErrno) {
    super(errno);
    this.name = "XsError";
  }
}

const fail = (errno: XsErrno): never => {
  throw new XsError(errno);
};

export interface Node {
  readonly value: Uint8Array;
  readonly perms: readonly XsPermission[];
  readonly children: readonly string[];
  /** Bumped on every committed change; a transaction conflicts when one it saw moved. */
  readonly gen: number;
}

const READ = 1;
const WRITE = 2;
const OWNER = 4;
const permBits: Record<XsPermission["perm"], number> = { n: 0, r: READ, w: WRITE, b: READ | WRITE };

// ---------------------------------------------------------------- paths and permission strings

const validChars = /^[A-Za-z0-9/_@-]*$/;

export function isValidPath(path: string): boolean {
  if (!path.startsWith("/")) return false;
  if (path.length > 1 && path.endsWith("/")) return false;
  if (path.includes("//")) return false;
  if (path.length > ABS_PATH_MAX) return false;
  return validChars.test(path);
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** True when `path` is `ancestor` or lies below it. */
export function isAtOrBelow(path: string, ancestor: string): boolean {
  if (ancestor === "/") return path.startsWith("/");
  return path === ancestor || path.startsWith(`${ancestor}/`);
}

export function formatPerm(p: XsPermission): string {
  return `${p.perm}${p.domid}`;
}

/** `r5` → {domid 5, perm r}; undefined when malformed (xs_strings_to_perms rejects it). */
export function parsePerm(s: string): XsPermission | undefined {
  const m = /^([nrwb])(\d{1,10})$/.exec(s);
  if (!m) return undefined;
  const domid = Number(m[2]);
  if (domid > 0xffff) return undefined;
  return { perm: m[1] as XsPermission["perm"], domid };
}

export const domainPath = (domid: number): string => `/local/domain/${domid}`;

// ---------------------------------------------------------------- the store

/** Who is asking: dom0/socket clients are privileged and bypass permissions and quotas. */
export interface Caller {
  readonly domid: number;
  readonly privileged: boolean;
}

interface WatchEntry {
  /** Canonical (absolute or @special) path. */
  path: string;
  token: string;
  /** Prefix stripped from event paths when the watch was registered with a relative path. */
  relativeTo?: string;
}

interface PendingEvent {
  path: string;
  /** Rm of a descendant: fires only the watches set exactly on it. */
  exact: boolean;
  /**
   * watch_permitted(): a watcher hears of a node it may read, or whose parent it may read
   * (captured when the change happens; absent for @special events).
   */
  perms?: readonly XsPermission[];
  parentPerms?: readonly XsPermission[];
  /** SET_PERMS: the permissions before the change; readers under them are told too. */
  oldPerms?: readonly XsPermission[];
}

type Overlay = Map<string, Node | null>;

class Transaction {
  readonly writes: Overlay = new Map();
  /** Generation of every node the transaction looked at (0 = absent) when it first did. */
  readonly seen = new Map<string, number>();
  readonly snapshot: Overlay = new Map();
  readonly events: PendingEvent[] = [];
  readonly ownedDelta = new Map<number, number>();
  constructor(readonly id: number) {}
}

/** One view of the tree: either the committed store or a transaction's overlay over it. */
interface View {
  get(path: string): Node | undefined;
  put(path: string, node: Omit<Node, "gen">): void;
  del(path: string): void;
  owned(domid: number): number;
  emit(ev: PendingEvent): void;
}

export interface StoreOptions {
  quotas?: Partial<Quotas>;
}

export class Store {
  readonly quotas: Quotas;
  private readonly nodes = new Map<string, Node>();
  private readonly ownedCount = new Map<number, number>();
  private generation = 0;
  private nextTxId = 1;
  readonly sessions = new Set<Session>();
  /** SET_TARGET: domid → the domain whose rights it also has. */
  readonly targets = new Map<number, number>();
  readonly introduced = new Set<number>();
  /** Who may watch @introduceDomain/@releaseDomain: dom0 only until it says otherwise. */
  readonly specialPerms = new Map<string, XsPermission[]>([
    ["@introduceDomain", [{ domid: 0, perm: "n" }]],
    ["@releaseDomain", [{ domid: 0, perm: "n" }]],
  ]);

  constructor(opts: StoreOptions = {}) {
    this.quotas = { ...defaultQuotas, ...opts.quotas };
    const root: XsPermission[] = [{ domid: 0, perm: "n" }];
    this.commitPut("/", { value: new Uint8Array(), perms: root, children: ["tool"] });
    this.commitPut("/tool", { value: new Uint8Array(), perms: root, children: ["xenstored"] });
    this.commitPut("/tool/xenstored", { value: new Uint8Array(), perms: root, children: [] });
  }

  session(caller: Caller, deliver: (path: string, token: string) => void): Session {
    const s = new Session(this, caller, deliver);
    this.sessions.add(s);
    return s;
  }

  // Committed-tree access, used by views and by dump/load.
  node(path: string): Node | undefined {
    return this.nodes.get(path);
  }

  allocTxId(): number {
    return this.nextTxId++;
  }

  ownedBy(domid: number): number {
    return this.ownedCount.get(domid) ?? 0;
  }

  commitPut(path: string, node: Omit<Node, "gen">): void {
    const old = this.nodes.get(path);
    if (old) this.bumpOwned(old.perms, -1);
    this.bumpOwned(node.perms, 1);
    this.nodes.set(path, { ...node, gen: ++this.generation });
  }

  commitDel(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.bumpOwned(old.perms, -1);
    this.nodes.delete(path);
  }

  private bumpOwned(perms: readonly XsPermission[], by: number): void {
    const owner = perms[0]?.domid ?? 0;
    this.ownedCount.set(owner, (this.ownedCount.get(owner) ?? 0) + by);
  }

  /** Deliver events to every session whose watches match and who may read the node. */
  fire(events: readonly PendingEvent[]): void {
    for (const ev of events) for (const s of this.sessions) s.offer(ev);
  }

  /** Every node in tree order (parents first, children in their stored order). */
  *walk(from = "/"): Generator<[string, Node]> {
    const node = this.nodes.get(from);
    if (!node) return;
    yield [from, node];
    for (const c of node.children) yield* this.walk(childPath(from, c));
  }

  /** The whole tree as plain JSON: path → {value | base64, perms}. */
  dump(): Record<string, { value?: string; base64?: string; perms: string }> {
    const out: Record<string, { value?: string; base64?: string; perms: string }> = {};
    const decoder = new TextDecoder("utf-8", { fatal: true });
    for (const [path, node] of this.walk()) {
      const perms = node.perms.map(formatPerm).join(",");
      let text: string | undefined;
      try {
        text = decoder.decode(node.value);
      } catch {
        text = undefined; // not UTF-8: kept as base64 below
      }
      out[path] = text !== undefined && !text.includes("\0")
        ? { value: text, perms }
        : { base64: Buffer.from(node.value).toString("base64"), perms };
    }
    return out;
  }

  /** Replace the tree by a dump. Throws on a malformed entry, naming it. */
  load(data: unknown): void {
    if (typeof data !== "object" || data === null) throw new Error("tree: not an object");
    const entries = Object.entries(data as Record<string, unknown>);
    const parsed: Array<[string, Uint8Array, XsPermission[]]> = [];
    for (const [path, raw] of entries) {
      if (!isValidPath(path)) throw new Error(`tree: ${path}: invalid path`);
      const e = raw as { value?: unknown; base64?: unknown; perms?: unknown };
      if (typeof e !== "object" || e === null) throw new Error(`tree: ${path}: not an object`);
      let value: Uint8Array;
      if (typeof e.value === "string") value = new TextEncoder().encode(e.value);
      else if (typeof e.base64 === "string") value = new Uint8Array(Buffer.from(e.base64, "base64"));
      else if (e.value === undefined && e.base64 === undefined) value = new Uint8Array();
      else throw new Error(`tree: ${path}: value must be a string`);
      const permStrs = typeof e.perms === "string" ? e.perms.split(",") : ["n0"];
      const perms = permStrs.map(parsePerm);
      if (perms.some((p) => p === undefined)) throw new Error(`tree: ${path}: bad perms ${String(e.perms)}`);
      parsed.push([path, value, perms as XsPermission[]]);
    }
    for (const [path] of [...this.nodes]) if (path !== "/") this.commitDel(path);
    this.commitPut("/", { ...this.nodes.get("/")!, children: [] });
    for (const [path, value, perms] of parsed) {
      if (path === "/") {
        this.commitPut("/", { ...this.nodes.get("/")!, value, perms });
        continue;
      }
      let parent = parentOf(path);
      // Missing parents in a hand-written file are created empty, owned like the child.
      const chain: string[] = [];
      while (!this.nodes.has(parent)) {
        chain.unshift(parent);
        parent = parentOf(parent);
      }
      for (const p of [...chain, path]) {
        const par = this.nodes.get(parentOf(p))!;
        const existing = this.nodes.get(p);
        if (!par.children.includes(baseName(p))) {
          this.commitPut(parentOf(p), { ...par, children: [...par.children, baseName(p)] });
        }
        if (p === path) this.commitPut(p, { value, perms, children: existing?.children ?? [] });
        else if (!existing) this.commitPut(p, { value: new Uint8Array(), perms, children: [] });
      }
    }
  }

  committedView(): View {
    return {
      get: (p) => this.nodes.get(p),
      put: (p, n) => this.commitPut(p, n),
      del: (p) => this.commitDel(p),
      owned: (d) => this.ownedBy(d),
      emit: (ev) => this.fire([ev]),
    };
  }
}

/** Directory listing of one DIRECTORY_PART request. */
export interface DirectoryPart {
  generation: number;
  children: string[];
  /** True when the list reached the end. */
  complete: boolean;
}

/** One connection's state: its identity, watches and open transactions. */
export class Session {
  private readonly watches: WatchEntry[] = [];
  private readonly transactions = new Map<number, Transaction>();
  private closed = false;

  constructor(
    readonly store: Store,
    readonly caller: Caller,
    private readonly deliver: (path: string, token: string) => void,
  ) {}

  get home(): string {
    return domainPath(this.caller.domid);
  }

  get target(): number | undefined {
    return this.store.targets.get(this.caller.domid);
  }

  private get unprivileged(): boolean {
    return !this.caller.privileged;
  }

  // ---------------------------------------------------------------- helpers

  /** Relative paths resolve against the caller's home, as canonicalize() does. */
  canonical(path: string): string {
    if (path.startsWith("/") || path.startsWith("@")) return path;
    return `${this.home}/${path}`;
  }

  private permFor(perms: readonly XsPermission[]): number {
    const owner = perms[0];
    const target = this.target;
    if (!owner || !this.unprivileged || owner.domid === this.caller.domid ||
        (target !== undefined && owner.domid === target)) {
      return READ | WRITE | OWNER;
    }
    for (let i = 1; i < perms.length; i++) {
      const p = perms[i]!;
      if (p.domid === this.caller.domid || (target !== undefined && p.domid === target)) return permBits[p.perm];
    }
    return permBits[owner.perm];
  }

  private canRead(perms: readonly XsPermission[]): boolean {
    return (this.permFor(perms) & READ) !== 0;
  }

  private view(tx: number): View {
    if (tx === 0) return this.store.committedView();
    const t = this.transactions.get(tx);
    if (!t) return fail("ENOENT");
    const store = this.store;
    const note = (p: string) => {
      if (t.seen.has(p)) return;
      const n = store.node(p);
      t.seen.set(p, n?.gen ?? 0);
      t.snapshot.set(p, n ?? null);
    };
    return {
      // A transaction keeps seeing what it first saw (test-xenstore's "ta err" checks this).
      get: (p) => {
        note(p);
        if (t.writes.has(p)) return t.writes.get(p) ?? undefined;
        return t.snapshot.get(p) ?? undefined;
      },
      put: (p, n) => {
        note(p);
        const old = t.writes.has(p) ? t.writes.get(p) : t.snapshot.get(p);
        if (old) bump(t.ownedDelta, old.perms, -1);
        bump(t.ownedDelta, n.perms, 1);
        t.writes.set(p, { ...n, gen: 0 });
      },
      del: (p) => {
        note(p);
        const old = t.writes.has(p) ? t.writes.get(p) : t.snapshot.get(p);
        if (old) bump(t.ownedDelta, old.perms, -1);
        t.writes.set(p, null);
      },
      owned: (d) => store.ownedBy(d) + (t.ownedDelta.get(d) ?? 0),
      emit: (ev) => void t.events.push(ev),
    };
  }

  /** get_node(): the node if the caller has `need`, else ENOENT/EACCES as C xenstored hides it. */
  private getNode(v: View, path: string, need: number): Node {
    if (!isValidPath(path)) fail("EINVAL");
    const node = v.get(path);
    let errno: XsErrno;
    if (node) {
      if ((this.permFor(node.perms) & need) === need) return node;
      errno = "EACCES";
    } else {
      errno = "ENOENT";
    }
    // errno_from_parents(): only say ENOENT when the nearest existing ancestor grants `need`.
    let p = path;
    let anc: Node | undefined;
    do {
      p = parentOf(p);
      anc = v.get(p);
    } while (!anc && p !== "/");
    const parentPerm = anc ? this.permFor(anc.perms) : 0;
    return fail((parentPerm & need) !== 0 ? errno : "EACCES");
  }

  private entrySize(n: Omit<Node, "gen">): number {
    // xs_tdb_record_hdr (24 bytes) + 8 per permission + data + NUL-separated child names.
    let childLen = 0;
    for (const c of n.children) childLen += c.length + 1;
    return 24 + 8 * n.perms.length + n.value.length + childLen;
  }

  private putChecked(v: View, path: string, n: Omit<Node, "gen">, quota: boolean): void {
    if (quota && this.unprivileged && this.entrySize(n) >= this.store.quotas.maxEntrySize) fail("ENOSPC");
    v.put(path, n);
  }

  /** construct_node() + create_node(): creates missing parents, inheriting permissions. */
  private create(v: View, path: string, value: Uint8Array): void {
    const chain: string[] = [path];
    let p = parentOf(path);
    while (!v.get(p)) {
      chain.unshift(p);
      p = parentOf(p);
    }
    const existingParent = v.get(p)!;
    if (this.unprivileged &&
        v.owned(this.caller.domid) + chain.length > this.store.quotas.nodesPerDomain) {
      fail("ENOSPC");
    }
    // Check every size before touching the view so that a refusal leaves the tree unchanged.
    let perms = existingParent.perms;
    const planned: Array<[string, Omit<Node, "gen">]> = [];
    planned.push([p, { ...existingParent, children: [...existingParent.children, baseName(chain[0]!)] }]);
    for (let i = 0; i < chain.length; i++) {
      const own: XsPermission[] = perms.map((x) => ({ ...x }));
      if (this.unprivileged) own[0] = { ...own[0]!, domid: this.caller.domid };
      perms = own;
      const next = chain[i + 1];
      planned.push([chain[i]!, {
        value: i === chain.length - 1 ? value : new Uint8Array(),
        perms: own,
        children: next ? [baseName(next)] : [],
      }]);
    }
    if (this.unprivileged) {
      for (const [, n] of planned) if (this.entrySize(n) >= this.store.quotas.maxEntrySize) fail("ENOSPC");
    }
    for (const [pp, n] of planned) v.put(pp, n);
  }

  private event(v: View, path: string, perms: readonly XsPermission[], exact = false): void {
    v.emit({ path, perms, parentPerms: v.get(parentOf(path))?.perms, exact });
  }

  // ---------------------------------------------------------------- requests

  read(path: string, tx = 0): Uint8Array {
    return this.getNode(this.view(tx), this.canonical(path), READ).value;
  }

  write(path: string, value: Uint8Array, tx = 0): void {
    const v = this.view(tx);
    const name = this.canonical(path);
    let node: Node | undefined;
    try {
      node = this.getNode(v, name, WRITE);
    } catch (e) {
      if (!(e instanceof XsError) || e.errno !== "ENOENT") throw e;
    }
    if (node) this.putChecked(v, name, { ...node, value }, true);
    else this.create(v, name, value);
    this.event(v, name, v.get(name)!.perms);
  }

  mkdir(path: string, tx = 0): void {
    const v = this.view(tx);
    const name = this.canonical(path);
    try {
      this.getNode(v, name, WRITE);
      return;
    } catch (e) {
      if (!(e instanceof XsError) || e.errno !== "ENOENT") throw e;
    }
    this.create(v, name, new Uint8Array());
    this.event(v, name, v.get(name)!.perms);
  }

  rm(path: string, tx = 0): void {
    const v = this.view(tx);
    const name = this.canonical(path);
    let node: Node;
    try {
      node = this.getNode(v, name, WRITE);
    } catch (e) {
      if (e instanceof XsError && e.errno === "ENOENT") {
        // Removing something already gone is fine while its parent exists.
        if (v.get(parentOf(name))) return;
      }
      throw e;
    }
    if (name === "/") fail("EINVAL");
    this.event(v, name, node.perms);
    const removeTree = (p: string, n: Node, top: boolean) => {
      for (const c of n.children) {
        const cp = childPath(p, c);
        const cn = v.get(cp);
        if (cn) removeTree(cp, cn, false);
      }
      if (!top) this.event(v, p, n.perms, true);
      v.del(p);
    };
    removeTree(name, node, true);
    const parent = v.get(parentOf(name))!;
    v.put(parentOf(name), { ...parent, children: parent.children.filter((c) => c !== baseName(name)) });
  }

  directory(path: string, tx = 0): string[] {
    return [...this.getNode(this.view(tx), this.canonical(path), READ).children];
  }

  /** Children from byte offset `offset` of the NUL-separated list, fitting one reply. */
  directoryPart(path: string, offset: number, tx = 0): DirectoryPart {
    const node = this.getNode(this.view(tx), this.canonical(path), READ);
    const generation = node.gen;
    const genLen = String(generation).length + 1;
    const max = PAYLOAD_MAX - genLen - 1;
    const out: string[] = [];
    let pos = 0;
    let used = 0;
    let complete = true;
    for (const c of node.children) {
      const len = c.length + 1;
      if (pos >= offset) {
        if (used + c.length >= max) {
          complete = false;
          break;
        }
        out.push(c);
        used += len;
      }
      pos += len;
    }
    return { generation, children: out, complete };
  }

  getPermissions(path: string, tx = 0): XsPermission[] {
    return this.getNode(this.view(tx), this.canonical(path), READ).perms.map((p) => ({ ...p }));
  }

  setPermissions(path: string, perms: XsPermission[], tx = 0): void {
    if (perms.length < 1) fail("EINVAL");
    if (this.unprivileged && perms.length > this.store.quotas.permsPerNode) fail("ENOSPC");
    const name = this.canonical(path);
    if (name.startsWith("@")) {
      // set_perms_special(): who may watch @introduceDomain/@releaseDomain.
      const current = this.store.specialPerms.get(name) ?? fail("EINVAL");
      if ((this.permFor(current) & (WRITE | OWNER)) !== (WRITE | OWNER)) fail("EACCES");
      this.store.specialPerms.set(name, perms.map((p) => ({ ...p })));
      return;
    }
    const v = this.view(tx);
    const node = this.getNode(v, name, WRITE | OWNER);
    if (this.unprivileged && perms[0]!.domid !== node.perms[0]!.domid) fail("EPERM");
    this.putChecked(v, name, { ...node, perms: perms.map((p) => ({ ...p })) }, true);
    // Watchers who could read the node before or after the change hear about it.
    v.emit({ path: name, perms, oldPerms: node.perms, parentPerms: v.get(parentOf(name))?.perms, exact: false });
  }

  watch(path: string, token: string): void {
    let canonical: string;
    let relativeTo: string | undefined;
    if (path.startsWith("@")) {
      if (path.length > REL_PATH_MAX) fail("EINVAL");
      canonical = path;
    } else {
      canonical = this.canonical(path);
      if (!path.startsWith("/")) relativeTo = this.home;
      if (!isValidPath(canonical)) fail("EINVAL");
    }
    if (this.watches.some((w) => w.path === canonical && w.token === token)) fail("EEXIST");
    // C xenstored 4.17 checks `count > quota` before adding: one more than the quota fits.
    if (this.unprivileged && this.watches.length > this.store.quotas.watchesPerDomain) fail("E2BIG");
    const w: WatchEntry = { path: canonical, token, relativeTo };
    this.watches.push(w);
    // The event every new watch fires at once, so clients need no special first read.
    this.deliver(path, token);
  }

  unwatch(path: string, token: string): void {
    const canonical = path.startsWith("@") ? path : this.canonical(path);
    const i = this.watches.findIndex((w) => w.path === canonical && w.token === token);
    if (i < 0) fail("ENOENT");
    this.watches.splice(i, 1);
  }

  resetWatches(): void {
    this.watches.length = 0;
    this.transactions.clear();
  }

  hasTransaction(tx: number): boolean {
    return this.transactions.has(tx);
  }

  transactionStart(): number {
    // Same off-by-one as C xenstored 4.17 (`transaction_started > quota`).
    if (this.unprivileged && this.transactions.size > this.store.quotas.transactionsPerDomain) fail("ENOSPC");
    const t = new Transaction(this.store.allocTxId());
    this.transactions.set(t.id, t);
    return t.id;
  }

  /** Commit or abort. A commit whose reads or writes were overtaken throws EAGAIN. */
  transactionEnd(tx: number, commit: boolean): void {
    const t = this.transactions.get(tx);
    if (!t) return fail("ENOENT");
    this.transactions.delete(tx);
    if (!commit) return;
    for (const [path, gen] of t.seen) {
      if ((this.store.node(path)?.gen ?? 0) !== gen) fail("EAGAIN");
    }
    if (this.unprivileged) {
      const delta = t.ownedDelta.get(this.caller.domid) ?? 0;
      if (delta > 0 && this.store.ownedBy(this.caller.domid) + delta > this.store.quotas.nodesPerDomain) fail("ENOSPC");
    }
    for (const [path, node] of t.writes) {
      if (node === null) this.store.commitDel(path);
      else this.store.commitPut(path, node);
    }
    this.store.fire(t.events);
  }

  getDomainPath(domid: number): string {
    return domainPath(domid);
  }

  // Privileged operations: the wire layer refuses them for unprivileged callers (EACCES).
  introduce(domid: number): void {
    this.requirePrivileged();
    if (this.store.introduced.has(domid)) return;
    this.store.introduced.add(domid);
    this.store.fire([{ path: "@introduceDomain", exact: true }]);
  }

  release(domid: number): void {
    this.requirePrivileged();
    if (!this.store.introduced.delete(domid)) fail("ENOENT");
    this.store.targets.delete(domid);
    this.store.fire([{ path: "@releaseDomain", exact: true }]);
  }

  isIntroduced(domid: number): boolean {
    this.requirePrivileged();
    return this.store.introduced.has(domid);
  }

  setTarget(domid: number, target: number): void {
    this.requirePrivileged();
    this.store.targets.set(domid, target);
  }

  private requirePrivileged(): void {
    if (this.unprivileged) fail("EACCES");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watches.length = 0;
    this.transactions.clear();
    this.store.sessions.delete(this);
  }

  /** Called by the store for every committed change: fire matching watches we may see. */
  offer(ev: PendingEvent): void {
    if (this.closed || this.watches.length === 0) return;
    if (ev.path.startsWith("@")) {
      const perms = this.store.specialPerms.get(ev.path);
      if (!perms || !this.canRead(perms)) return;
    } else if (![ev.perms, ev.oldPerms, ev.parentPerms].some((p) => p !== undefined && this.canRead(p))) {
      return;
    }
    for (const w of [...this.watches]) {
      const hit = ev.exact || ev.path.startsWith("@") ? w.path === ev.path : isAtOrBelow(ev.path, w.path);
      if (!hit) continue;
      const shown = w.relativeTo && ev.path.startsWith(`${w.relativeTo}/`)
        ? ev.path.slice(w.relativeTo.length + 1)
        : ev.path;
      this.deliver(shown, w.token);
    }
  }
}

function bump(m: Map<number, number>, perms: readonly XsPermission[], by: number): void {
  const owner = perms[0]?.domid ?? 0;
  m.set(owner, (m.get(owner) ?? 0) + by);
}
