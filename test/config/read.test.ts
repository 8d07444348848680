import { describe, expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import { readSnapshot } from "../../agent/config/read.ts";
import { LIMITS, type Snapshot } from "../../agent/config/types.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { XenStoreError, type XenStore } from "../../agent/xenstore/types.ts";
import { baseFixture, storeOf } from "./fixture.ts";

const defaults = parseCmdline("").options;
const errorsOf = (snap: Snapshot) => {
  const r = parseConfig(snap, defaults);
  if (r.ok) throw new Error("expected errors");
  return r.errors;
};

/** A XenStore whose reads go through `f` first, to inject what a real server rarely does. */
function intercept(xs: XenStore, f: (op: "read" | "directory", path: string) => unknown): XenStore {
  return new Proxy(xs, {
    get(target, prop, receiver) {
      if (prop === "read" || prop === "directory") {
        return (path: string) => f(prop, path) ?? (target[prop] as (p: string) => unknown).call(target, path);
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

describe("readSnapshot", () => {
  test("without a known domid it reads the relative `domid` key, and the parse uses it", () => {
    const f = baseFixture();
    const dom0 = storeOf(f);
    const stub = new MemoryXenStore({ store: dom0.store, domid: f.stub, privileged: true });
    const snap = readSnapshot(stub, { domid: null });
    expect(snap.domid).toBeNull();
    expect(snap.values.domid).toBe("4");
    const r = parseConfig(snap, defaults);
    expect(r.ok && r.config.stubDomid).toBe(4);
    expect(r.ok && r.config.guestDomid).toBe(3);
  });

  test("an unreadable key is recorded with its errno, and the parse names it", () => {
    const f = baseFixture();
    const dom0 = storeOf(f);
    // Not privileged and no permissions granted: every read of dom0's nodes is refused.
    const stub = new MemoryXenStore({ store: dom0.store, domid: f.stub });
    const snap = readSnapshot(stub, { domid: f.stub });
    expect(snap.values["/local/domain/4/target"]).toEqual({ error: "EACCES" });
    expect(errorsOf(snap)).toContainEqual({ key: "/local/domain/4/target", reason: "read failed: EACCES" });
  });

  test("a value longer than the xenstore payload is not kept", () => {
    const xs = intercept(storeOf(baseFixture()), (op, path) =>
      op === "read" && path === "/local/domain/3/name" ? new Uint8Array(LIMITS.maxValueBytes + 1) : undefined,
    );
    const snap = readSnapshot(xs, { domid: 4 });
    expect(snap.values["/local/domain/3/name"]).toEqual({ error: "E2BIG" });
    expect(errorsOf(snap)).toEqual([{ key: "/local/domain/3/name", reason: "read failed: E2BIG" }]);
  });

  test("a directory past its bound keeps one name more than the bound and reads none of them", () => {
    const names = Array.from({ length: 100_000 }, (_, i) => String(i + 1));
    const reads: string[] = [];
    const base = storeOf(baseFixture());
    const xs = intercept(base, (op, path) => {
      if (op === "directory" && path.endsWith("/dm-argv")) return names;
      if (op === "read") reads.push(path);
      return undefined;
    });
    const snap = readSnapshot(xs, { domid: 4 });
    const dir = Object.entries(snap.dirs).find(([k]) => k.endsWith("/dm-argv"))![1] as string[];
    expect(dir.length).toBe(LIMITS.maxArgs + 1);
    expect(reads.some((p) => p.includes("/dm-argv/"))).toBe(false);
    expect(errorsOf(snap)).toEqual([{ key: expect.stringMatching(/\/dm-argv$/), reason: "more than 4096 entries" }]);
  });

  test("it does not follow a vm path outside /vm/ or a backend that is not the vif's own", () => {
    const f = baseFixture();
    f.vm = "/local/domain/0";
    f.vifs.get(0)!.front.backend = "/local/domain/0/backend/vif/9/0";
    const reads: string[] = [];
    const xs = intercept(storeOf(f), (op, path) => void reads.push(`${op} ${path}`));
    readSnapshot(xs, { domid: 4 });
    expect(reads.filter((r) => r.includes("/local/domain/0/"))).toEqual([]);
    expect(reads).toContain("read /local/domain/3/vm");
  });

  test("it never throws, even when the store throws something that is not a XenStoreError", () => {
    const xs = intercept(storeOf(baseFixture()), (op, path) => {
      if (path.endsWith("/device/vif")) throw new TypeError("boom");
      if (path.endsWith("/name")) throw new XenStoreError("EIO", op, path);
      return undefined;
    });
    const snap = readSnapshot(xs, { domid: 4 });
    expect(snap.dirs["/local/domain/4/device/vif"]).toEqual({ error: "EIO (boom)" });
    expect(snap.values["/local/domain/3/name"]).toEqual({ error: "EIO" });
    expect(errorsOf(snap).map((e) => e.key).sort()).toEqual(["/local/domain/3/name", "/local/domain/4/device/vif"]);
  });

  test("a missing own domid stops the read at once", () => {
    const xs = new MemoryXenStore();
    const snap = readSnapshot(xs, { domid: null });
    expect(snap).toEqual({ format: "stubdom-config-snapshot/1", domid: null, values: { domid: null }, dirs: {} });
    expect(errorsOf(snap)).toEqual([{ key: "domid", reason: "missing" }]);
  });
});
