// libxenstore's transactions are optimistic: a commit that lost a race fails with EAGAIN and
// the whole body must run again on fresh reads (docs/misc/xenstore.txt).
import { XenStoreError, type TxId, type XenStore } from "./types.ts";

/** Enough for real contention between a handful of writers; a livelock fails loudly. */
export const MAX_TRANSACTION_ATTEMPTS = 16;

/**
 * Run `body` in a transaction and commit it, retrying the whole body when the commit reports
 * EAGAIN. The body must only read and write through `tx` and have no other side effects it
 * cannot repeat. If it throws, the transaction is aborted and the error rethrown.
 */
export function transaction<T>(xs: XenStore, body: (tx: TxId) => T, attempts = MAX_TRANSACTION_ATTEMPTS): T {
  for (let i = 0; i < attempts; i++) {
    const tx = xs.transactionStart();
    let result: T;
    try {
      result = body(tx);
    } catch (e) {
      try {
        xs.transactionEnd(tx, true);
      } catch {
        // The body's error is the one worth reporting; the abort only frees the handle.
      }
      throw e;
    }
    if (result instanceof Promise) {
      // Its writes would land after the commit, outside the transaction.
      xs.transactionEnd(tx, true);
      throw new TypeError("transaction(): the body must be synchronous (it returned a Promise)");
    }
    if (xs.transactionEnd(tx, false)) return result;
  }
  throw new XenStoreError("EAGAIN", "transaction", "", `still conflicting after ${attempts} attempts`);
}
