// Random, malformed and truncated frames on many connections at once. The server must answer
// every complete frame (or close a connection whose stream it cannot parse), keep serving the
// others, and leave the tree exactly as it was when every mutating request was refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dispatch } from "../../agent/xenstore/dispatch.ts";
import { Store } from "../../agent/xenstore/model.ts";
import { encodeFrame, MsgType, splitStrings, strings } from "../../agent/xenstore/wire.ts";
import { RawClient, type ServerProc, startServer, text } from "./harness.ts";
import { rng } from "../rng.ts";

const UNPRIVILEGED = 3;
const mutating = new Set<number>([
  MsgType.WRITE, MsgType.MKDIR, MsgType.RM, MsgType.SET_PERMS, MsgType.INTRODUCE, MsgType.RELEASE,
  MsgType.SET_TARGET,
]);


/** Every node's path, value and permissions, walked through a dom0 connection. */
async function snapshot(c: RawClient, path = "/", out: string[] = []): Promise<string[]> {
  const v = await c.request(MsgType.READ, strings(path));
  const p = await c.request(MsgType.GET_PERMS, strings(path));
  out.push(`${path}=${text(v?.payload)} ${text(p?.payload)}`);
  const d = await c.request(MsgType.DIRECTORY, strings(path));
  for (const child of splitStrings(d!.payload)) await snapshot(c, path === "/" ? `/${child}` : `${path}/${child}`, out);
  return out;
}

let server: ServerProc;
beforeAll(async () => {
  server = await startServer({ domains: [UNPRIVILEGED] });
  const c = await RawClient.connect(server.socket);
  await c.request(MsgType.WRITE, "/local/domain/1/name\0guest");
  await c.request(MsgType.WRITE, "/vm/x/image/dm-argv/001\0-xen-domid");
  await c.request(MsgType.SET_PERMS, strings("/vm", "n0", "r3"));
  c.close();
});
afterAll(async () => {
  await server?.stop();
});

describe("fuzzing the wire server", () => {
  it("answers or drops bad frames on 40 connections and keeps the tree intact", async () => {
    const dom0 = await RawClient.connect(server.socket);
    const before = await snapshot(dom0);
    const rand = rng(20261125);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const garbagePayload = (): Uint8Array => pick([
      () => bytes(Math.floor(rand() * 64)),
      () => strings(pick(["", "/", "//", "/a/", "rel", "/x y", "@", "/vm/x", "T", "F", "99999999"])),
      () => new TextEncoder().encode(pick(["/no-nul", "T", "1"])),
      () => strings("/local/domain/1/name", pick(["n3", "b0", "zz", "r99999999"])),
      () => strings(...Array.from({ length: 5 }, () => pick(["/vm", "0", "tok", ""]))),
    ])();

    let refusedMutations = 0;
    const framed = async (privileged: boolean) => {
      const c = await RawClient.connect(privileged ? server.socket : server.domainSocket(UNPRIVILEGED));
      let answered = 0;
      for (let i = 0; i < 60; i++) {
        // An unprivileged domain may send any type (it can change nothing here); dom0 sends
        // types whose garbage payloads cannot form a valid mutation.
        const type = privileged ? pick([0, 2, 3, 7, 9, 10, 15, 16, 17, 18, 20, 22, 23, 99, 0xffffffff])
          : Math.floor(rand() * 25);
        const r = await c.request(type, garbagePayload(), pick([0, 0, 1, 7, 0xffffffff]));
        if (!r) break;
        answered++;
        expect([type, MsgType.ERROR]).toContain(r.type);
        if (mutating.has(type)) {
          if (r.type !== MsgType.ERROR) throw new Error(`mutation ${type} accepted on a fuzz connection`);
          refusedMutations++;
        }
      }
      expect(c.closed).toBe(false);
      c.close();
      return answered;
    };
    const truncated = async () => {
      const c = await RawClient.connect(server.socket);
      const whole = encodeFrame({ type: MsgType.WRITE, reqId: 1, txId: 0, payload: strings("/trunc", "value") });
      c.sendRaw(whole.subarray(0, 1 + Math.floor(rand() * (whole.length - 1))));
      await Bun.sleep(5);
      c.close();
    };
    const oversized = async () => {
      const c = await RawClient.connect(server.socket);
      const f = encodeFrame({ type: MsgType.WRITE, reqId: 1, txId: 0, payload: new Uint8Array() });
      new DataView(f.buffer).setUint32(12, 4097 + Math.floor(rand() * 1e6), true);
      c.sendRaw(f);
      c.sendRaw(bytes(100));
      expect(await c.nextReply(2000)).toBeUndefined();
      expect(c.closed).toBe(true);
    };
    const noise = async () => {
      const c = await RawClient.connect(server.socket);
      c.sendRaw(bytes(1 + Math.floor(rand() * 3000)));
      await Bun.sleep(10);
      c.close();
    };

    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) jobs.push(framed(true), framed(false), truncated(), i % 2 ? oversized() : noise());
    const answered = (await Promise.all(jobs)).filter((x): x is number => typeof x === "number");
    expect(answered.every((n) => n === 60)).toBe(true);
    expect(refusedMutations).toBeGreaterThan(20);

    // Still serving, on a fresh connection and on the old one, with the same tree.
    const fresh = await RawClient.connect(server.socket);
    expect(text((await fresh.request(MsgType.READ, strings("/local/domain/1/name")))?.payload)).toBe("guest");
    expect(await snapshot(dom0)).toEqual(before);
    fresh.close();
    dom0.close();
  }, 60_000);
});

// libxenstore turns any other error name into EINVAL; the server must only use these.
const WIRE_ERRORS = new Set([
  "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS",
  "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
]);

describe("fuzzing the request dispatch in-process", () => {
  it("answers 50,000 random frames of an unprivileged domain with the request type or a known error, changing nothing", () => {
    const store = new Store();
    const dom0 = store.session({ domid: 0, privileged: true }, () => {});
    dom0.write("/local/domain/1/name", new TextEncoder().encode("guest"));
    dom0.setPermissions("/local/domain/1/name", [{ domid: 1, perm: "n" }, { domid: 3, perm: "r" }]);
    dom0.write("/vm/x/image/dm-argv/001", new TextEncoder().encode("-xen-domid"));
    const before = JSON.stringify(store.dump());
    const session = store.session({ domid: UNPRIVILEGED, privileged: false }, () => {});
    const rand = rng(7);
    const words = ["", "/", "/local/domain/1/name", "name", "/vm/x", "@releaseDomain", "T", "F", "1", "3", "//", "r3", "n1", "b0"];
    const seen = new Set<string>();
    for (let i = 0; i < 50_000; i++) {
      const type = Math.floor(rand() * 26);
      const payload = rand() < 0.5
        ? Uint8Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256))
        : strings(...Array.from({ length: Math.floor(rand() * 4) }, () => words[Math.floor(rand() * words.length)]!));
      const reply = dispatch(session, { type, reqId: i, txId: rand() < 0.8 ? 0 : Math.floor(rand() * 4), payload });
      expect([type, MsgType.ERROR]).toContain(reply.type);
      if (reply.type === MsgType.ERROR) {
        const name = new TextDecoder().decode(reply.payload.subarray(0, -1));
        expect(WIRE_ERRORS.has(name)).toBe(true);
        seen.add(name);
      }
    }
    expect(JSON.stringify(store.dump())).toBe(before);
    expect(seen.size).toBeGreaterThanOrEqual(4);
  });
});
