// Behaviour every XenStore implementation must show, run against the in-memory fake
// (memory.test.ts) and against the FFI binding talking to the wire server (ffi.test.ts), so
// the fake is checked against the real client library.
import { expect, it } from "vitest";
import type { WatchEvent, XenStore, XenStoreAdmin } from "../../agent/xenstore/types.ts";
import { XenStoreError } from "../../agent/xenstore/types.ts";
import { transaction } from "../../agent/xenstore/transaction.ts";

export interface Harness {
  /** A privileged (dom0) client. */
  dom0(): XenStoreAdmin;
  /** A client acting as unprivileged domain `domid`. */
  domain(domid: number): XenStore;
  /** xs_set_target(domid, target) through a privileged path. */
  setTarget(domid: number, target: number): void;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

export function errnoOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof XenStoreError) return e.errno;
    throw e;
  }
  return "no error";
}

export function waitEvents(xs: XenStore, n: number, timeoutMs = 3000): Promise<WatchEvent[]> {
  const got: WatchEvent[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out with ${got.length}/${n} events: ${JSON.stringify(got)}`));
    }, timeoutMs);
    const off = xs.onWatch((e) => {
      got.push(e);
      if (got.length === n) {
        clearTimeout(timer);
        off();
        resolve(got);
      }
    });
  });
}

/** Collect every event that arrives within `ms`. */
export function collectEvents(xs: XenStore, ms: number): Promise<WatchEvent[]> {
  const got: WatchEvent[] = [];
  const off = xs.onWatch((e) => got.push(e));
  return new Promise((resolve) => setTimeout(() => {
    off();
    resolve(got);
  }, ms));
}

export function xenstoreContract(h: () => Harness): void {
  it("writes and reads raw bytes, creating missing parents with empty values", () => {
    const xs = h().dom0();
    xs.write("/t/a/b/c", new Uint8Array([0, 1, 255, 0]));
    expect([...xs.read("/t/a/b/c")]).toEqual([0, 1, 255, 0]);
    expect(xs.read("/t/a/b").length).toBe(0);
    xs.write("/t/a/s", "hello");
    expect(text(xs.read("/t/a/s"))).toBe("hello");
    expect(xs.directory("/t/a")).toEqual(["b", "s"]);
  });

  it("rejects malformed paths with EINVAL and missing nodes with ENOENT", () => {
    const xs = h().dom0();
    expect(errnoOf(() => xs.read("/t//x"))).toBe("EINVAL");
    expect(errnoOf(() => xs.read("/t/x/"))).toBe("EINVAL");
    expect(errnoOf(() => xs.read("/t/sp ace"))).toBe("EINVAL");
    expect(errnoOf(() => xs.read("/t/none/here"))).toBe("ENOENT");
    expect(errnoOf(() => xs.rm("/"))).toBe("EINVAL");
  });

  it("rm removes a subtree, is quiet when only the node is missing, ENOENT without a parent", () => {
    const xs = h().dom0();
    xs.write("/t/r/x/y", "1");
    xs.write("/t/r/z", "2");
    xs.rm("/t/r/x");
    expect(xs.directory("/t/r")).toEqual(["z"]);
    xs.rm("/t/r/x");
    expect(errnoOf(() => xs.rm("/t/r/x/y"))).toBe("ENOENT");
  });

  it("mkdir creates an empty node and leaves an existing one alone", () => {
    const xs = h().dom0();
    xs.write("/t/m", "keep");
    xs.mkdir("/t/m");
    xs.mkdir("/t/m/d/e");
    expect(text(xs.read("/t/m"))).toBe("keep");
    expect(xs.directory("/t/m/d")).toEqual(["e"]);
  });

  it("sets and gets permissions; new nodes inherit the parent's", () => {
    const xs = h().dom0();
    xs.mkdir("/t/p");
    xs.setPermissions("/t/p", [{ domid: 0, perm: "n" }, { domid: 5, perm: "r" }]);
    xs.write("/t/p/child", "x");
    expect(xs.getPermissions("/t/p/child")).toEqual([{ domid: 0, perm: "n" }, { domid: 5, perm: "r" }]);
  });

  it("enforces permissions for an unprivileged domain, hiding existence like xenstored", () => {
    const hh = h();
    const d0 = hh.dom0();
    const d7 = hh.domain(7);
    d0.write("/t/secret/inner", "s");
    d0.setPermissions("/t/secret", [{ domid: 0, perm: "n" }]);
    d0.setPermissions("/t/secret/inner", [{ domid: 0, perm: "n" }]);
    expect(errnoOf(() => d7.read("/t/secret/inner"))).toBe("EACCES");
    // The parent is unreadable, so absence is not disclosed either.
    expect(errnoOf(() => d7.read("/t/secret/nothing"))).toBe("EACCES");
    d0.write("/t/open/v", "o");
    d0.setPermissions("/t/open", [{ domid: 0, perm: "r" }]);
    d0.setPermissions("/t/open/v", [{ domid: 0, perm: "r" }]);
    expect(text(d7.read("/t/open/v"))).toBe("o");
    expect(errnoOf(() => d7.read("/t/open/missing"))).toBe("ENOENT");
    expect(errnoOf(() => d7.write("/t/open/v", "no"))).toBe("EACCES");
    expect(errnoOf(() => d7.write("/t/open/new", "no"))).toBe("EACCES");
  });

  it("lets a domain own what it creates in its writable home, relative paths included", () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.mkdir("/local/domain/7");
    d0.setPermissions("/local/domain/7", [{ domid: 7, perm: "n" }]);
    const d7 = hh.domain(7);
    d7.write("data/x", "1");
    expect(text(d0.read("/local/domain/7/data/x"))).toBe("1");
    expect(d0.getPermissions("/local/domain/7/data/x")).toEqual([{ domid: 7, perm: "n" }]);
    expect(d7.getDomainPath(7)).toBe("/local/domain/7");
    // Owners may change the ACL but not give the node away.
    d7.setPermissions("data/x", [{ domid: 7, perm: "n" }, { domid: 3, perm: "r" }]);
    expect(errnoOf(() => d7.setPermissions("data/x", [{ domid: 3, perm: "n" }]))).toBe("EPERM");
  });

  it("gives a domain with a target the target's rights (SET_TARGET)", () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.write("/local/domain/1/owned", "g");
    d0.setPermissions("/local/domain/1", [{ domid: 1, perm: "n" }]);
    d0.setPermissions("/local/domain/1/owned", [{ domid: 1, perm: "n" }]);
    d0.write("/local/domain/1/acl", "a");
    d0.setPermissions("/local/domain/1/acl", [{ domid: 0, perm: "n" }, { domid: 1, perm: "r" }]);
    const d2 = hh.domain(2);
    expect(errnoOf(() => d2.read("/local/domain/1/owned"))).toBe("EACCES");
    hh.setTarget(2, 1);
    expect(text(d2.read("/local/domain/1/owned"))).toBe("g");
    d2.write("/local/domain/1/owned", "by-stub");
    expect(text(d2.read("/local/domain/1/acl"))).toBe("a");
    expect(errnoOf(() => d2.write("/local/domain/1/acl", "x"))).toBe("EACCES");
  });

  it("fires the immediate event on watch, then one per change at or below the path", async () => {
    const xs = h().dom0();
    xs.mkdir("/t/w");
    const first = waitEvents(xs, 1);
    xs.watch("/t/w", "tok");
    expect(await first).toEqual([{ path: "/t/w", token: "tok" }]);
    const more = waitEvents(xs, 2);
    xs.write("/t/w/a", "1");
    xs.write("/t/other", "no event");
    xs.write("/t/w", "2");
    expect(await more).toEqual([{ path: "/t/w/a", token: "tok" }, { path: "/t/w", token: "tok" }]);
    expect(errnoOf(() => xs.watch("/t/w", "tok"))).toBe("EEXIST");
    xs.unwatch("/t/w", "tok");
    expect(errnoOf(() => xs.unwatch("/t/w", "tok"))).toBe("ENOENT");
    const none = collectEvents(xs, 100);
    xs.write("/t/w/b", "after");
    expect(await none).toEqual([]);
  });

  it("reports watch events relative to the home of a relative watch", async () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.mkdir("/local/domain/8/device-model");
    d0.setPermissions("/local/domain/8", [{ domid: 8, perm: "n" }]);
    d0.setPermissions("/local/domain/8/device-model", [{ domid: 8, perm: "n" }]);
    const d8 = hh.domain(8);
    const ev = waitEvents(d8, 2);
    d8.watch("device-model", "dm");
    d0.write("/local/domain/8/device-model/1/state", "running");
    expect(await ev).toEqual([
      { path: "device-model", token: "dm" },
      { path: "device-model/1/state", token: "dm" },
    ]);
  });

  it("fires rm events for the node and each watched descendant", async () => {
    const xs = h().dom0();
    xs.write("/t/rm/a/b", "1");
    xs.watch("/t/rm", "top");
    xs.watch("/t/rm/a/b", "leaf");
    await waitEvents(xs, 2);
    const ev = waitEvents(xs, 2);
    xs.rm("/t/rm/a");
    const got = await ev;
    expect(got).toContainEqual({ path: "/t/rm/a", token: "top" });
    expect(got).toContainEqual({ path: "/t/rm/a/b", token: "leaf" });
  });

  it("does not deliver events for nodes the watcher cannot read", async () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.write("/t/hidden/x", "1");
    d0.setPermissions("/t/hidden", [{ domid: 0, perm: "n" }]);
    d0.setPermissions("/t/hidden/x", [{ domid: 0, perm: "n" }]);
    const d9 = hh.domain(9);
    const initial = waitEvents(d9, 1);
    d9.watch("/t/hidden", "h");
    await initial;
    const later = collectEvents(d9, 150);
    d0.write("/t/hidden/x", "2");
    expect(await later).toEqual([]);
  });

  it("delivers events for a node the watcher cannot read when it may read the parent", async () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.write("/t/pr/x", "1");
    d0.setPermissions("/t/pr", [{ domid: 0, perm: "n" }, { domid: 10, perm: "r" }]);
    d0.setPermissions("/t/pr/x", [{ domid: 0, perm: "n" }]);
    const d10 = hh.domain(10);
    const ev = waitEvents(d10, 2);
    d10.watch("/t/pr", "p");
    d0.write("/t/pr/x", "2");
    expect(await ev).toEqual([{ path: "/t/pr", token: "p" }, { path: "/t/pr/x", token: "p" }]);
    expect(errnoOf(() => d10.read("/t/pr/x"))).toBe("EACCES");
  });

  it("sends @releaseDomain to dom0 and to domains dom0 lets read it", async () => {
    const hh = h();
    const d0 = hh.dom0();
    const d13 = hh.domain(13);
    const d14 = hh.domain(14);
    for (const x of [d0, d13, d14]) x.watch("@releaseDomain", "rel");
    const initial = await Promise.all([d0, d13, d14].map((x) => waitEvents(x, 1)));
    expect(initial.flat().map((e) => e.path)).toEqual(["@releaseDomain", "@releaseDomain", "@releaseDomain"]);
    expect(errnoOf(() => d13.setPermissions("@releaseDomain", [{ domid: 13, perm: "n" }]))).toBe("EACCES");
    d0.setPermissions("@releaseDomain", [{ domid: 0, perm: "n" }, { domid: 13, perm: "r" }]);
    const got0 = waitEvents(d0, 1);
    const got13 = waitEvents(d13, 1);
    const got14 = collectEvents(d14, 200);
    d0.introduceDomain(15);
    d0.releaseDomain(15);
    expect(await got0).toEqual([{ path: "@releaseDomain", token: "rel" }]);
    expect(await got13).toEqual([{ path: "@releaseDomain", token: "rel" }]);
    expect(await got14).toEqual([]);
    d0.setPermissions("@releaseDomain", [{ domid: 0, perm: "n" }]);
  });

  it("commits transactions atomically and defers their events to the commit", async () => {
    const xs = h().dom0();
    xs.mkdir("/t/tx");
    xs.watch("/t/tx", "t");
    await waitEvents(xs, 1);
    const tx = xs.transactionStart();
    xs.write("/t/tx/a", "1", tx);
    expect(text(xs.read("/t/tx/a", tx))).toBe("1");
    expect(errnoOf(() => xs.read("/t/tx/a"))).toBe("ENOENT");
    const quiet = collectEvents(xs, 100);
    expect(await quiet).toEqual([]);
    const ev = waitEvents(xs, 1);
    expect(xs.transactionEnd(tx, false)).toBe(true);
    expect(await ev).toEqual([{ path: "/t/tx/a", token: "t" }]);
    expect(text(xs.read("/t/tx/a"))).toBe("1");
  });

  it("aborts without a trace and fails a commit that lost a race with EAGAIN", () => {
    const xs = h().dom0();
    xs.write("/t/c/n", "0");
    const ab = xs.transactionStart();
    xs.write("/t/c/gone", "x", ab);
    expect(xs.transactionEnd(ab, true)).toBe(true);
    expect(errnoOf(() => xs.read("/t/c/gone"))).toBe("ENOENT");

    const t1 = xs.transactionStart();
    const v = Number(text(xs.read("/t/c/n", t1)));
    xs.write("/t/c/n", "100");
    // The transaction keeps its snapshot after the outside write.
    expect(text(xs.read("/t/c/n", t1))).toBe("0");
    xs.write("/t/c/n", String(v + 1), t1);
    expect(xs.transactionEnd(t1, false)).toBe(false);
    expect(text(xs.read("/t/c/n"))).toBe("100");
    expect(errnoOf(() => xs.read("/t/c/n", t1))).toBe("ENOENT");
  });

  it("transaction() retries the whole body on EAGAIN", () => {
    const xs = h().dom0();
    xs.write("/t/rmw", "0");
    let runs = 0;
    const out = transaction(xs, (tx) => {
      runs++;
      const v = Number(text(xs.read("/t/rmw", tx)));
      if (runs === 1) xs.write("/t/rmw", "10");
      xs.write("/t/rmw", String(v + 1), tx);
      return v;
    });
    expect(runs).toBe(2);
    expect(out).toBe(10);
    expect(text(xs.read("/t/rmw"))).toBe("11");
  });

  it("applies the entry-size and node quotas to unprivileged domains only", () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.mkdir("/local/domain/11");
    d0.setPermissions("/local/domain/11", [{ domid: 11, perm: "n" }]);
    const d11 = hh.domain(11);
    expect(errnoOf(() => d11.write("big", "x".repeat(2048)))).toBe("ENOSPC");
    d11.write("ok", "x".repeat(1900));
    d0.write("/t/dom0big", "x".repeat(4000));
    expect(errnoOf(() => d0.write("/t/toobig", "x".repeat(4096)))).toBe("E2BIG");
  });

  it("limits a domain's open transactions and watches", () => {
    const hh = h();
    const d0 = hh.dom0();
    d0.mkdir("/local/domain/12");
    d0.setPermissions("/local/domain/12", [{ domid: 12, perm: "n" }]);
    const d12 = hh.domain(12);
    // C xenstored 4.17 compares the count with `>` before adding: quota + 1 fit.
    const txs = Array.from({ length: 11 }, () => d12.transactionStart());
    expect(errnoOf(() => d12.transactionStart())).toBe("ENOSPC");
    for (const t of txs) d12.transactionEnd(t, true);
    for (let i = 0; i < 129; i++) d12.watch(`w${i}`, "t");
    expect(errnoOf(() => d12.watch("w129", "t"))).toBe("E2BIG");
  });
}
