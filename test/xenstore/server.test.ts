// The wire server against Debian's real clients: test-xenstore (xen-utils-4.17) and the
// xenstore-utils tools, plus per-domain sockets checked frame by frame.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MsgType, strings } from "../../agent/xenstore/wire.ts";
import { debianPackage } from "../vm/debian.ts";
import { RawClient, type ServerProc, sh, startServer, text } from "./harness.ts";

let server: ServerProc;
let testXenstore: string;

beforeAll(async () => {
  server = await startServer({ domains: [2] });
  testXenstore = join(debianPackage("xen-utils-4.17"), "usr/lib/xen-4.17/bin/test-xenstore");
});
afterAll(async () => {
  await server?.stop();
});

describe("Debian's test-xenstore against the server", () => {
  it("passes all 12 tests", async () => {
    const r = await sh([testXenstore], server.socket);
    expect(r.out.trim().split("\n")).toHaveLength(12);
    expect(r.out).not.toContain("failed");
    expect(r.code).toBe(0);
  });

  it("passes with -i 20", async () => {
    const r = await sh([testXenstore, "-i", "20"], server.socket);
    expect(r.out).not.toContain("failed");
    expect(r.code).toBe(0);
  });

  it("passes 10 s of random tests (-r 10)", async () => {
    const r = await sh([testXenstore, "-r", "10"], server.socket);
    expect(r.out + r.err).not.toContain("failed");
    expect(r.code).toBe(0);
  }, 40_000);
});

describe("xenstore-utils round trips", () => {
  const run = (...cmd: string[]) => sh(cmd, server.socket);

  it("write, read, exists, list, ls -f -p, chmod, rm -t", async () => {
    expect((await run("xenstore-write", "/u/a", "one", "/u/b/c", "two words")).code).toBe(0);
    expect((await run("xenstore-read", "/u/a", "/u/b/c")).out).toBe("one\ntwo words\n");
    expect((await run("xenstore-exists", "/u/b/c")).code).toBe(0);
    expect((await run("xenstore-exists", "/u/nothing")).code).not.toBe(0);
    expect((await run("xenstore-list", "/u")).out).toBe("a\nb\n");
    expect((await run("xenstore-chmod", "/u/a", "n0", "r5")).code).toBe(0);
    const ls = await run("xenstore-ls", "-f", "-p", "/u");
    expect(ls.out).toContain('/u/a = "one"   (n0,r5)');
    expect(ls.out).toContain('/u/b/c = "two words"   (n0)');
    expect((await run("xenstore-rm", "-t", "/u/b/c")).code).toBe(0);
    // -t also removes the parents left empty.
    expect((await run("xenstore-exists", "/u/b")).code).not.toBe(0);
    expect((await run("xenstore-read", "/u/a")).out).toBe("one\n");
  });

  it("watch -n counts the initial event and then the changes", async () => {
    await run("xenstore-write", "/w/x", "0");
    let done = false;
    const watcher = run("xenstore-watch", "-n", "3", "/w").finally(() => {
      done = true;
    });
    // Keep changing /w/x until the watcher has counted its three events: a write that lands
    // before its watch is registered is simply not counted.
    for (let i = 0; !done && i < 100; i++) {
      await run("xenstore-write", "/w/x", String(i));
      await Bun.sleep(50);
    }
    const r = await watcher;
    expect(r.code).toBe(0);
    expect(r.out.trim().split("\n")).toEqual(["/w", "/w/x", "/w/x"]);
  });
});

describe("a socket bound to a domain", () => {
  it("resolves relative paths to the domain's home and enforces its permissions", async () => {
    const dom0 = await RawClient.connect(server.socket);
    await dom0.request(MsgType.WRITE, "/local/domain/2/name\0stub-dm");
    await dom0.request(MsgType.SET_PERMS, strings("/local/domain/2", "n2"));
    await dom0.request(MsgType.SET_PERMS, strings("/local/domain/2/name", "n0", "r2"));
    await dom0.request(MsgType.WRITE, "/secret\0s");
    const stub = await RawClient.connect(server.domainSocket(2));
    expect(text((await stub.request(MsgType.GET_DOMAIN_PATH, strings("2")))?.payload)).toBe("/local/domain/2\0");
    expect(text((await stub.request(MsgType.READ, strings("name")))?.payload)).toBe("stub-dm");
    const denied = await stub.request(MsgType.READ, strings("/secret"));
    expect(denied?.type).toBe(MsgType.ERROR);
    expect(text(denied?.payload)).toBe("EACCES\0");
    const priv = await stub.request(MsgType.SET_TARGET, strings("2", "1"));
    expect(text(priv?.payload)).toBe("EACCES\0");
    expect(text((await stub.request(MsgType.WRITE, "name\0changed"))?.payload)).toBe("EACCES\0");
    expect(text((await stub.request(MsgType.WRITE, "data/x\0v"))?.payload)).toBe("OK\0");
    expect(text((await dom0.request(MsgType.GET_PERMS, strings("/local/domain/2/data/x")))?.payload)).toBe("n2\0");
    dom0.close();
    stub.close();
  });

  it("gets the target's rights after SET_TARGET from dom0", async () => {
    const dom0 = await RawClient.connect(server.socket);
    await dom0.request(MsgType.WRITE, "/local/domain/1/guest-owned\0g");
    await dom0.request(MsgType.SET_PERMS, strings("/local/domain/1/guest-owned", "n1"));
    const stub = await RawClient.connect(server.domainSocket(2));
    expect(text((await stub.request(MsgType.READ, strings("/local/domain/1/guest-owned")))?.payload)).toBe("EACCES\0");
    expect(text((await dom0.request(MsgType.SET_TARGET, strings("2", "1")))?.payload)).toBe("OK\0");
    expect(text((await stub.request(MsgType.READ, strings("/local/domain/1/guest-owned")))?.payload)).toBe("g");
    dom0.close();
    stub.close();
  });
});

describe("protocol details", () => {
  it("answers an unknown type with ENOSYS and echoes req_id and tx_id", async () => {
    const c = await RawClient.connect(server.socket);
    const r = await c.request(99, strings("x"));
    expect(r?.type).toBe(MsgType.ERROR);
    expect(text(r?.payload)).toBe("ENOSYS\0");
    const bad = await c.request(MsgType.READ, strings("/tool"), 12345);
    expect(bad?.txId).toBe(12345);
    expect(text(bad?.payload)).toBe("ENOENT\0");
    c.close();
  });

  it("lists a directory too big for one reply with DIRECTORY_PART", async () => {
    const c = await RawClient.connect(server.socket);
    for (let i = 0; i < 300; i++) await c.request(MsgType.WRITE, `/big/child-with-a-longish-name-${i}\0`);
    expect(text((await c.request(MsgType.DIRECTORY, strings("/big")))?.payload)).toBe("E2BIG\0");
    const r = await sh(["xenstore-list", "/big"], server.socket);
    expect(r.out.trim().split("\n")).toHaveLength(300);
    c.close();
  });

  it("RESET_WATCHES drops the connection's watches and transactions", async () => {
    const c = await RawClient.connect(server.socket);
    await c.request(MsgType.WATCH, strings("/reset", "r"));
    await c.eventCount(1);
    const tx = text((await c.request(MsgType.TRANSACTION_START, strings("")))?.payload).replace("\0", "");
    expect(text((await c.request(MsgType.RESET_WATCHES, new Uint8Array()))?.payload)).toBe("OK\0");
    await c.request(MsgType.WRITE, "/reset/x\0v");
    expect(text((await c.request(MsgType.READ, strings("/reset/x"), Number(tx)))?.payload)).toBe("ENOENT\0");
    await Bun.sleep(100);
    expect(c.events).toHaveLength(1);
    expect(text((await c.request(MsgType.UNWATCH, strings("/reset", "r")))?.payload)).toBe("ENOENT\0");
    c.close();
  });

  it("fires @introduceDomain and @releaseDomain", async () => {
    const c = await RawClient.connect(server.socket);
    await c.request(MsgType.WATCH, strings("@releaseDomain", "rel"));
    await c.request(MsgType.INTRODUCE, strings("9", "0", "0"));
    expect(text((await c.request(MsgType.IS_DOMAIN_INTRODUCED, strings("9")))?.payload)).toBe("T\0");
    await c.request(MsgType.RELEASE, strings("9"));
    expect((await c.eventCount(2)).map((e) => text(e.payload))).toEqual(["@releaseDomain\0rel\0", "@releaseDomain\0rel\0"]);
    c.close();
  });
});

describe("--save and --load", () => {
  it("saves the tree at SIGTERM and loads it back", async () => {
    const file = join(server.dir, "tree.json");
    const a = await startServer({ extra: ["--save", file] });
    await sh(["xenstore-write", "/saved/k", "v"], a.socket);
    await sh(["xenstore-chmod", "/saved/k", "n3", "r0"], a.socket);
    expect(await a.stop()).toBe(0);
    const saved = JSON.parse(readFileSync(file, "utf8"));
    expect(saved["/saved/k"]).toEqual({ value: "v", perms: "n3,r0" });
    const b = await startServer({ extra: ["--load", file] });
    expect((await sh(["xenstore-ls", "-p", "/saved"], b.socket)).out).toMatch(/k = "v".*\(n3,r0\)/);
    await b.stop();
    writeFileSync(file, JSON.stringify({ "/bad//": {} }));
    const bad = Bun.spawn(["./node_modules/.bin/bun", "agent/main.ts", "xenstored", "--socket", join(server.dir, "s3"), "--load", file], {
      cwd: new URL("../..", import.meta.url).pathname, stderr: "pipe",
    });
    expect(await bad.exited).toBe(1);
    expect(await new Response(bad.stderr).text()).toContain("invalid path");
  });
});
