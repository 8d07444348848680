// The in-memory XenStore: the fake for unit tests, on the same model as the wire server (and so
// the same permission, quota and transaction errors). Several clients can share one Store to
// play dom0 and a stub domain side by side:
//
//   const dom0 = new MemoryXenStore();                       // privileged, domid 0
//   const stub = new MemoryXenStore({ store: dom0.store, domid: 2 });
//
// Like libxenstore, calls are synchronous and watch events are not: they arrive in a
// microtask after the call that caused them (await `settled()` to let them through).
import { PAYLOAD_MAX, Store, XsError, type Quotas, type Session } from "./model.ts";
import {
  XBT_NULL,
  XenStoreError,
  type TxId,
  type WatchEvent,
  type XenStoreAdmin,
  type XsPermission,
} from "./types.ts";

export interface MemoryXenStoreOptions {
  /** Share a store between clients; a new empty one (with /tool/xenstored) otherwise. */
  store?: Store;
  /** Acting domain; relative paths resolve to /local/domain/<domid>. Default 0. */
  domid?: number;
  /** Bypass permissions and quotas. Default: domid === 0. */
  privileged?: boolean;
  /** Quotas of a new store (ignored when `store` is given). */
  quotas?: Partial<Quotas>;
}

const encoder = new TextEncoder();

export class MemoryXenStore implements XenStoreAdmin {
  readonly store: Store;
  readonly domid: number;
  private readonly session: Session;
  private readonly listeners = new Set<(event: WatchEvent) => void>();
  private pending = 0;
  private closed = false;

  constructor(opts: MemoryXenStoreOptions = {}) {
    this.store = opts.store ?? new Store({ quotas: opts.quotas });
    this.domid = opts.domid ?? 0;
    const privileged = opts.privileged ?? this.domid === 0;
    this.session = this.store.session({ domid: this.domid, privileged }, (path, token) => this.queue({ path, token }));
  }

  private queue(event: WatchEvent): void {
    this.pending++;
    queueMicrotask(() => {
      this.pending--;
      if (this.closed) return;
      for (const l of [...this.listeners]) l(event);
    });
  }

  /** Resolves once every event queued so far has been handed to the listeners. */
  async settled(): Promise<void> {
    while (this.pending > 0) await Promise.resolve();
  }

  private call<T>(op: string, path: string, body: () => T): T {
    if (this.closed) throw new XenStoreError("EBADF", op, path, "handle closed");
    try {
      return body();
    } catch (e) {
      if (e instanceof XsError) throw new XenStoreError(e.errno, op, path);
      throw e;
    }
  }

  read(path: string, tx: TxId = XBT_NULL): Uint8Array {
    return this.call("read", path, () => this.session.read(path, tx).slice());
  }

  write(path: string, value: Uint8Array | string, tx: TxId = XBT_NULL): void {
    const bytes = typeof value === "string" ? encoder.encode(value) : value.slice();
    this.call("write", path, () => {
      // libxenstore refuses an over-long request before sending it.
      if (encoder.encode(path).length + 1 + bytes.length > PAYLOAD_MAX) throw new XsError("E2BIG");
      this.session.write(path, bytes, tx);
    });
  }

  directory(path: string, tx: TxId = XBT_NULL): string[] {
    return this.call("directory", path, () => this.session.directory(path, tx));
  }

  mkdir(path: string, tx: TxId = XBT_NULL): void {
    this.call("mkdir", path, () => this.session.mkdir(path, tx));
  }

  rm(path: string, tx: TxId = XBT_NULL): void {
    this.call("rm", path, () => this.session.rm(path, tx));
  }

  getPermissions(path: string, tx: TxId = XBT_NULL): XsPermission[] {
    return this.call("get_permissions", path, () => this.session.getPermissions(path, tx));
  }

  setPermissions(path: string, perms: XsPermission[], tx: TxId = XBT_NULL): void {
    this.call("set_permissions", path, () => this.session.setPermissions(path, perms, tx));
  }

  getDomainPath(domid: number): string {
    return this.session.getDomainPath(domid);
  }

  transactionStart(): TxId {
    return this.call("transaction_start", "", () => this.session.transactionStart());
  }

  transactionEnd(tx: TxId, abort: boolean): boolean {
    try {
      this.call("transaction_end", "", () => this.session.transactionEnd(tx, !abort));
      return true;
    } catch (e) {
      if (e instanceof XenStoreError && e.errno === "EAGAIN") return false;
      throw e;
    }
  }

  watch(path: string, token: string): void {
    this.call("watch", path, () => this.session.watch(path, token));
  }

  unwatch(path: string, token: string): void {
    this.call("unwatch", path, () => this.session.unwatch(path, token));
  }

  onWatch(listener: (event: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** dom0's calls that libxl makes: xs_introduce_domain, xs_release_domain, xs_set_target. */
  introduceDomain(domid: number): void {
    this.call("introduce", String(domid), () => this.session.introduce(domid));
  }

  releaseDomain(domid: number): void {
    this.call("release", String(domid), () => this.session.release(domid));
  }

  setTarget(domid: number, target: number): void {
    this.call("set_target", String(domid), () => this.session.setTarget(domid, target));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.session.close();
    this.listeners.clear();
  }
}
