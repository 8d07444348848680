import { describe, expect, it } from "vitest";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { Store } from "../../agent/xenstore/model.ts";
import { transaction } from "../../agent/xenstore/transaction.ts";
import { readDirectory, readInt, readString } from "../../agent/xenstore/util.ts";
import { errnoOf, xenstoreContract } from "./contract.ts";

describe("MemoryXenStore: the XenStore contract", () => {
  xenstoreContract(() => {
    const dom0 = new MemoryXenStore();
    return {
      dom0: () => new MemoryXenStore({ store: dom0.store }),
      domain: (domid) => new MemoryXenStore({ store: dom0.store, domid }),
      setTarget: (domid, target) => dom0.setTarget(domid, target),
    };
  });
});

describe("MemoryXenStore specifics", () => {
  it("delivers watch events asynchronously, never inside the call", async () => {
    const xs = new MemoryXenStore();
    const seen: string[] = [];
    xs.onWatch((e) => seen.push(e.path));
    xs.watch("/x", "t");
    expect(seen).toEqual([]);
    await xs.settled();
    expect(seen).toEqual(["/x"]);
  });

  it("refuses an unknown special node and lets only dom0 set who sees special events", () => {
    const dom0 = new MemoryXenStore();
    const stub = new MemoryXenStore({ store: dom0.store, domid: 2 });
    expect(errnoOf(() => dom0.setPermissions("@nonsense", [{ domid: 0, perm: "n" }]))).toBe("EINVAL");
    expect(errnoOf(() => stub.introduceDomain(5))).toBe("EACCES");
    expect(errnoOf(() => stub.releaseDomain(5))).toBe("EACCES");
    expect(errnoOf(() => dom0.releaseDomain(5))).toBe("ENOENT");
  });

  it("round-trips the tree through dump/load, binary values and permissions included", () => {
    const xs = new MemoryXenStore();
    xs.write("/a/b", new Uint8Array([0xff, 0]));
    xs.write("/a/c", "text");
    xs.setPermissions("/a/c", [{ domid: 3, perm: "n" }, { domid: 0, perm: "r" }]);
    const json = JSON.parse(JSON.stringify(xs.store.dump()));
    const copy = new Store();
    copy.load(json);
    const ys = new MemoryXenStore({ store: copy });
    expect([...ys.read("/a/b")]).toEqual([0xff, 0]);
    expect(ys.directory("/a")).toEqual(["b", "c"]);
    expect(ys.getPermissions("/a/c")).toEqual([{ domid: 3, perm: "n" }, { domid: 0, perm: "r" }]);
    expect(() => copy.load({ "/bad//path": {} })).toThrow(/bad\/\/path: invalid path/);
  });

  it("leaves the tree unchanged when a quota refuses a multi-node create", () => {
    const dom0 = new MemoryXenStore({ quotas: { nodesPerDomain: 3 } });
    dom0.mkdir("/local/domain/4");
    dom0.setPermissions("/local/domain/4", [{ domid: 4, perm: "n" }]);
    const d4 = new MemoryXenStore({ store: dom0.store, domid: 4 });
    expect(errnoOf(() => d4.write("a/b/c/d", "x"))).toBe("ENOSPC");
    expect(dom0.directory("/local/domain/4")).toEqual([]);
    d4.write("a/b", "ok");
    expect(dom0.directory("/local/domain/4/a")).toEqual(["b"]);
  });

  it("stops delivering after close and reports EBADF for calls on a closed handle", async () => {
    const xs = new MemoryXenStore();
    let n = 0;
    xs.onWatch(() => n++);
    xs.watch("/z", "t");
    xs.close();
    await Promise.resolve();
    expect(n).toBe(0);
    expect(errnoOf(() => xs.read("/z"))).toBe("EBADF");
  });
});

describe("transaction()", () => {
  it("refuses an async body, which would write after the commit", () => {
    const xs = new MemoryXenStore();
    expect(() => transaction(xs, async (tx) => xs.write("/late", "x", tx))).toThrow(/must be synchronous/);
    expect(errnoOf(() => xs.read("/late"))).toBe("ENOENT");
  });

  it("aborts and rethrows when the body throws, and gives up after bounded EAGAINs", () => {
    const xs = new MemoryXenStore();
    expect(() => transaction(xs, (tx) => {
      xs.write("/half", "x", tx);
      throw new Error("body failed");
    })).toThrow("body failed");
    expect(errnoOf(() => xs.read("/half"))).toBe("ENOENT");
    xs.write("/hot", "0");
    let runs = 0;
    expect(() => transaction(xs, (tx) => {
      runs++;
      xs.read("/hot", tx);
      xs.write("/hot", String(runs)); // outside the transaction: always a conflict
    }, 3)).toThrow(/EAGAIN \(still conflicting after 3 attempts\)/);
    expect(runs).toBe(3);
  });
});

describe("readers for untrusted values", () => {
  const xs = new MemoryXenStore();
  xs.write("/v/s", "hello");
  xs.write("/v/n", "42");
  xs.write("/v/bin", new Uint8Array([0xc3, 0x28]));
  xs.write("/v/nul", new Uint8Array([0x61, 0]));

  it("return undefined for absent keys and the value otherwise", () => {
    expect(readString(xs, "/v/none", 10)).toBeUndefined();
    expect(readString(xs, "/v/s", 10)).toBe("hello");
    expect(readInt(xs, "/v/n", { min: 0, max: 100 })).toBe(42);
    expect(readDirectory(xs, "/v/none", 5)).toEqual([]);
  });

  it("name the key and the reason when a value is out of bounds", () => {
    expect(() => readString(xs, "/v/s", 4)).toThrow("xenstore read /v/s: E2BIG (value is 5 bytes, limit 4)");
    expect(() => readString(xs, "/v/bin", 10)).toThrow(/\/v\/bin: EINVAL \(value is not valid UTF-8\)/);
    expect(() => readString(xs, "/v/nul", 10)).toThrow(/NUL byte/);
    expect(() => readInt(xs, "/v/n", { min: 0, max: 10 })).toThrow(/42 is outside 0\.\.10/);
    expect(() => readInt(xs, "/v/s", { min: 0, max: 10 })).toThrow(/not a decimal integer/);
    expect(() => readDirectory(xs, "/v", 2)).toThrow(/4 entries, limit 2/);
  });
});
