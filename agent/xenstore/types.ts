// The XenStore interface the agent talks to. Implemented by ffi/xenstore.ts (real
// libxenstore) and by in-memory fakes in tests. Calls are synchronous because libxenstore's
// are: one request/reply round trip to xenstored. Only watch events are asynchronous.

/** Transaction handle; 0 is "no transaction" (XBT_NULL). */
export type TxId = number;
export const XBT_NULL: TxId = 0;

/** One xenstore permission entry. The first entry of a list names the owner and the default. */
export interface XsPermission {
  domid: number;
  perm: "n" | "r" | "w" | "b"; // none, read, write, both
}

export interface WatchEvent {
  path: string;
  token: string;
}

/** The errno names libxenstore can report (xs_wire.h's xsd_errors, plus client-side ones). */
export type XsErrno =
  | "EINVAL" | "EACCES" | "EEXIST" | "EISDIR" | "ENOENT" | "ENOMEM" | "ENOSPC" | "EIO"
  | "ENOTEMPTY" | "ENOSYS" | "EROFS" | "EBUSY" | "EAGAIN" | "EISCONN" | "E2BIG" | "EPERM"
  | "ETIMEDOUT" | "ECONNRESET" | "EBADF" | "OTHER";

export class XenStoreError extends Error {
  constructor(
    readonly errno: XsErrno | string,
    readonly op: string,
    readonly path: string,
    detail?: string,
  ) {
    super(`xenstore ${op} ${path}: ${errno}${detail ? ` (${detail})` : ""}`);
    this.name = "XenStoreError";
  }
}

export interface XenStore {
  /** Raw bytes of a node's value. Throws XenStoreError (ENOENT, EACCES, ...). */
  read(path: string, tx?: TxId): Uint8Array;
  write(path: string, value: Uint8Array | string, tx?: TxId): void;
  /** Child names (not full paths), in the server's order. */
  directory(path: string, tx?: TxId): string[];
  mkdir(path: string, tx?: TxId): void;
  rm(path: string, tx?: TxId): void;
  getPermissions(path: string, tx?: TxId): XsPermission[];
  setPermissions(path: string, perms: XsPermission[], tx?: TxId): void;
  getDomainPath(domid: number): string;
  transactionStart(): TxId;
  /** Commit (abort=false) or abort. Returns false when the commit lost a race (EAGAIN). */
  transactionEnd(tx: TxId, abort: boolean): boolean;
  watch(path: string, token: string): void;
  unwatch(path: string, token: string): void;
  /** Subscribe to watch events; returns an unsubscribe function. Never blocks the loop. */
  onWatch(listener: (event: WatchEvent) => void): () => void;
  /**
   * Only on a handle opened to deliver watch events when told (no background thread): waits up
   * to `timeoutMs` for events, blocking the caller, and hands them to the listeners.
   */
  pumpWatches?(timeoutMs: number): number;
  close(): void;
}

/** The dom0-only calls libxl makes around a stub domain (used by the toolstack simulator). */
export interface XenStoreAdmin extends XenStore {
  /** xs_introduce_domain; fires @introduceDomain. */
  introduceDomain(domid: number): void;
  /** xs_release_domain; fires @releaseDomain. */
  releaseDomain(domid: number): void;
  /** xs_set_target: `domid` gets the rights of `target` (a stub domain and its guest). */
  setTarget(domid: number, target: number): void;
}
