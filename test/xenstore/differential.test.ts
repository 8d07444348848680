// The same seeded random operations through the in-memory fake and through the FFI binding to
// the wire server must give the same results, errors included: the wire codec, the dispatch
// and libxenstore's own checks sit between the two.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openXenStore } from "../../ffi/xenstore.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import type { XenStore, XsPermission } from "../../agent/xenstore/types.ts";
import { XenStoreError } from "../../agent/xenstore/types.ts";
import { type ServerProc, startServer } from "./harness.ts";
import { rng } from "../rng.ts";

const DOMAIN = 7;


type Clients = { dom0: XenStore; dom: XenStore };

function outcome(f: () => unknown): string {
  try {
    const r = f();
    if (r instanceof Uint8Array) return `ok ${[...r].join(",")}`;
    return `ok ${JSON.stringify(r)}`;
  } catch (e) {
    if (e instanceof XenStoreError) return `err ${e.errno}`;
    throw e;
  }
}

/** One run of `n` operations; returns the outcome of each. */
function script(c: Clients, seed: number, n: number): string[] {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const paths = ["/d/a", "/d/a/b", "/d/a/b/c", "/d/x", "/d/x/y", "/local/domain/7/p", "/local/domain/7/p/q", "p/r", "/d/bad//", "/d/sp ace"];
  const perms: XsPermission[][] = [
    [{ domid: 0, perm: "n" }], [{ domid: 0, perm: "r" }], [{ domid: 7, perm: "n" }],
    [{ domid: 0, perm: "n" }, { domid: 7, perm: "b" }], [{ domid: 7, perm: "n" }, { domid: 3, perm: "w" }],
  ];
  const out: string[] = [];
  let tx = 0;
  let txOwner: XenStore | undefined;
  for (let i = 0; i < n; i++) {
    const who = rand() < 0.5 ? c.dom0 : c.dom;
    const t = who === txOwner ? tx : 0;
    const path = pick(paths);
    const op = Math.floor(rand() * 10);
    let r: string;
    switch (op) {
      case 0:
      case 1:
        r = outcome(() => who.write(path, Uint8Array.from({ length: Math.floor(rand() * 5) }, () => Math.floor(rand() * 256)), t));
        break;
      case 2:
        r = outcome(() => who.read(path, t));
        break;
      case 3:
        r = outcome(() => who.directory(path, t));
        break;
      case 4:
        r = outcome(() => who.rm(path, t));
        break;
      case 5:
        r = outcome(() => who.mkdir(path, t));
        break;
      case 6:
        r = outcome(() => who.setPermissions(path, pick(perms), t));
        break;
      case 7:
        r = outcome(() => who.getPermissions(path, t));
        break;
      case 8:
        if (txOwner) {
          r = outcome(() => txOwner!.transactionEnd(tx, rand() < 0.3));
          txOwner = undefined;
          tx = 0;
        } else {
          txOwner = who;
          tx = who.transactionStart();
          r = "started";
        }
        break;
      default:
        r = outcome(() => who.getDomainPath(DOMAIN));
    }
    out.push(`${i} ${who === c.dom0 ? "dom0" : "dom7"} op${op} ${path} -> ${r}`);
  }
  if (txOwner) out.push(`end -> ${outcome(() => txOwner!.transactionEnd(tx, false))}`);
  return out;
}

let server: ServerProc;
beforeAll(async () => {
  server = await startServer({ domains: [DOMAIN] });
});
afterAll(async () => {
  await server?.stop();
});

describe("the fake and the real client library agree", () => {
  it("on 3 x 400 random operations by dom0 and an unprivileged domain", () => {
    for (const seed of [1, 2, 3]) {
      const mem0 = new MemoryXenStore();
      const mem = { dom0: mem0, dom: new MemoryXenStore({ store: mem0.store, domid: DOMAIN }) };
      const real = { dom0: openXenStore({ path: server.socket }), dom: openXenStore({ path: server.domainSocket(DOMAIN) }) };
      try {
        // Same starting tree on both sides: a clean /d, no dom0 home, a home for the domain.
        for (const c of [mem, real]) {
          for (const p of ["/d", "/local/domain/0"]) {
            try {
              c.dom0.rm(p);
            } catch {
              // absent on the first run
            }
          }
          c.dom0.mkdir("/d");
          c.dom0.write("/local/domain/7", "");
          c.dom0.setPermissions("/local/domain/7", [{ domid: 7, perm: "n" }]);
          for (const p of c.dom0.directory("/local/domain/7")) c.dom0.rm(`/local/domain/7/${p}`);
        }
        const a = script(mem, seed, 400);
        const b = script(real, seed, 400);
        expect(b).toEqual(a);
        expect(a.filter((l) => l.includes("-> err")).length).toBeGreaterThan(20);
        expect(a.filter((l) => l.includes("-> ok")).length).toBeGreaterThan(100);
      } finally {
        real.dom0.close();
        real.dom.close();
      }
    }
  });
});
