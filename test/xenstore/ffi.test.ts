// The FFI binding to Debian's libxenstore against the wire server (a separate process): the
// same contract as the in-memory fake, which is how the fake is checked against the real
// client library, plus what only the binding can get wrong.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FfiXenStore, openXenStore } from "../../ffi/xenstore.ts";
import { XenStoreError } from "../../agent/xenstore/types.ts";
import { waitEvents, xenstoreContract } from "./contract.ts";
import { BUN, ROOT, type ServerProc, startServer } from "./harness.ts";

let server: ServerProc;
const open: FfiXenStore[] = [];
const track = (x: FfiXenStore) => {
  open.push(x);
  return x;
};

beforeAll(async () => {
  server = await startServer({ domains: [2, 7, 8, 9, 10, 11, 12, 13, 14] });
});
afterEach(() => {
  for (const x of open.splice(0)) x.close();
});
afterAll(async () => {
  await server?.stop();
});

describe("FfiXenStore: the XenStore contract against the wire server", () => {
  xenstoreContract(() => ({
    dom0: () => track(openXenStore({ path: server.socket })),
    domain: (domid) => track(openXenStore({ path: server.domainSocket(domid) })),
    setTarget: (domid, target) => track(openXenStore({ path: server.socket })).setTarget(domid, target),
  }));
});

describe("FfiXenStore specifics", () => {
  it("keeps timers firing while a watch waits for an event", async () => {
    const xs = track(openXenStore({ path: server.socket }));
    const writer = track(openXenStore({ path: server.socket }));
    xs.watch("/ffi/timer", "t");
    await waitEvents(xs, 1);
    let ticks = 0;
    const iv = setInterval(() => ticks++, 10);
    const started = performance.now();
    const ev = waitEvents(xs, 1, 5000);
    setTimeout(() => writer.write("/ffi/timer", "x"), 400);
    const [got] = await ev;
    clearInterval(iv);
    const waited = performance.now() - started;
    expect(got).toEqual({ path: "/ffi/timer", token: "t" });
    expect(waited).toBeGreaterThanOrEqual(390);
    // 10 ms timers over ~400 ms: a blocked loop would show 0 or 1; leave room for a busy CI.
    expect(ticks).toBeGreaterThanOrEqual(10);
  });

  it("loads the library lazily and names the file and the reason when it cannot", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xs-nolib-"));
    try {
      writeFileSync(join(dir, "libxenstore.so.4"), "not an ELF file");
      const code = `
        const mod = await import(${JSON.stringify(`${ROOT}ffi/xenstore.ts`)});
        console.log("imported");
        try { mod.openXenStore({ path: "/nonexistent" }); } catch (e) { console.log(e.message); }
      `;
      // The dynamic loader looks in LD_LIBRARY_PATH first, so the broken copy shadows the real one.
      const p = Bun.spawn([BUN, "-e", code], { stdout: "pipe", env: { ...process.env, LD_LIBRARY_PATH: dir } });
      const out = await new Response(p.stdout).text();
      expect(out).toMatch(/^imported\ncannot load libxenstore\.so\.4: .*libxenstore\.so\.4.*\(Debian package libxenstore4\)\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("does not spin while a watch waits: the pump sleeps in the event loop's poller", async () => {
    // In a process of its own, so that other test files' threads do not count.
    const code = `
      const { openXenStore } = await import(${JSON.stringify(`${ROOT}ffi/xenstore.ts`)});
      const xs = openXenStore({ path: ${JSON.stringify(server.socket)} });
      let events = 0;
      xs.onWatch(() => events++);
      xs.watch("/ffi/idle", "i");
      await Bun.sleep(200);
      const before = process.cpuUsage();
      await Bun.sleep(1000);
      const used = process.cpuUsage(before);
      xs.close();
      console.log(JSON.stringify({ events, ms: (used.user + used.system) / 1000 }));
    `;
    const p = Bun.spawn([BUN, "-e", code], { stdout: "pipe", stderr: "inherit" });
    const out = JSON.parse(await new Response(p.stdout).text()) as { events: number; ms: number };
    expect(out.events).toBe(1);
    // A token byte read and not drained, or a pipe that stays readable, would spin a core (~1000 ms).
    expect(out.ms).toBeLessThan(300);
  });

  it("round-trips binary values, empty values and permissions", () => {
    const xs = track(openXenStore({ path: server.socket }));
    xs.write("/ffi/bin", new Uint8Array([0, 255, 0, 7]));
    expect([...xs.read("/ffi/bin")]).toEqual([0, 255, 0, 7]);
    xs.write("/ffi/empty", "");
    expect(xs.read("/ffi/empty").length).toBe(0);
    xs.setPermissions("/ffi/bin", [{ domid: 4, perm: "b" }, { domid: 0, perm: "w" }]);
    expect(xs.getPermissions("/ffi/bin")).toEqual([{ domid: 4, perm: "b" }, { domid: 0, perm: "w" }]);
    expect(xs.getDomainPath(3)).toBe("/local/domain/3");
  });

  it("lists directories larger than one reply (DIRECTORY_PART fallback)", () => {
    const xs = track(openXenStore({ path: server.socket }));
    const tx = xs.transactionStart();
    for (let i = 0; i < 400; i++) xs.write(`/ffi/many/entry-number-${i}`, "", tx);
    expect(xs.transactionEnd(tx, false)).toBe(true);
    const names = xs.directory("/ffi/many");
    expect(names).toHaveLength(400);
    expect(names[399]).toBe("entry-number-399");
  });

  it("reports typed errors naming the operation and path", () => {
    const xs = track(openXenStore({ path: server.socket }));
    let err: unknown;
    try {
      xs.read("/ffi/does/not/exist");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(XenStoreError);
    expect((err as XenStoreError).errno).toBe("ENOENT");
    expect((err as XenStoreError).message).toBe("xenstore read /ffi/does/not/exist: ENOENT");
    xs.close();
    expect(() => xs.read("/x")).toThrow(/EBADF/);
  });

  it("fails to open a missing transport with the errno and the path", () => {
    expect(() => openXenStore({ path: `${server.dir}/no-such-socket` })).toThrow(
      new RegExp(`xenstore open ${server.dir}/no-such-socket: ENOENT`),
    );
  });

  it("reports a throwing listener and still serves the others", async () => {
    const errors: string[] = [];
    const xs = track(new FfiXenStore({ path: server.socket, onListenerError: (e, ev) => errors.push(`${ev.path}: ${e}`) }));
    xs.onWatch(() => {
      throw new Error("listener bug");
    });
    const ev = waitEvents(xs, 1);
    xs.watch("/ffi/throwing", "t");
    expect(await ev).toEqual([{ path: "/ffi/throwing", token: "t" }]);
    expect(errors).toEqual(["/ffi/throwing: Error: listener bug"]);
  });

  it("unwatches and aborts what it left open before closing, as the xenbus device does", async () => {
    const traced = await startServer({ extra: ["--trace"] });
    try {
      const xs = openXenStore({ path: traced.socket });
      xs.watch("/ffi/left", "open");
      xs.transactionStart();
      const done = xs.transactionStart();
      xs.transactionEnd(done, true);
      xs.close();
      await Bun.sleep(200);
      const log = traced.stderr();
      expect(log).toMatch(/IN  \d+ UNWATCH req=\d+ tx=0 \(\/ffi\/left open \)/);
      expect(log.match(/IN  \d+ TRANSACTION_END/g)).toHaveLength(2);
    } finally {
      await traced.stop();
    }
  });

  it("delivers many events in order without losing any", async () => {
    const xs = track(openXenStore({ path: server.socket }));
    const writer = track(openXenStore({ path: server.socket }));
    xs.watch("/ffi/burst", "b");
    await waitEvents(xs, 1);
    const ev = waitEvents(xs, 200, 10_000);
    for (let i = 0; i < 200; i++) writer.write(`/ffi/burst/${i}`, "x");
    const got = await ev;
    expect(got.map((e) => e.path)).toEqual(Array.from({ length: 200 }, (_, i) => `/ffi/burst/${i}`));
  });

  it("watchWakeups caller: events only inside pumpWatches, in order, none lost", () => {
    const xs = track(openXenStore({ path: server.socket, watchWakeups: "caller" }));
    const writer = track(openXenStore({ path: server.socket }));
    const got: string[] = [];
    xs.onWatch((e) => got.push(e.path));
    expect(xs.pumpWatches(10)).toBe(0); // no watch yet: nothing to wait for
    xs.watch("/ffi/pumped", "p");
    expect(xs.pumpWatches(2000)).toBe(1); // the event every new watch fires at once
    expect(got).toEqual(["/ffi/pumped"]);
    for (let i = 0; i < 50; i++) writer.write(`/ffi/pumped/${i}`, "x");
    const deadline = Date.now() + 10_000;
    while (got.length < 51 && Date.now() < deadline) xs.pumpWatches(200);
    expect(got.slice(1)).toEqual(Array.from({ length: 50 }, (_, i) => `/ffi/pumped/${i}`));
    expect(xs.pumpWatches(50)).toBe(0); // quiet: the wait times out
    const looped = track(openXenStore({ path: server.socket }));
    expect(() => looped.pumpWatches(0)).toThrow(/arrive on their own/);
  });

  it("watch events through the event loop: 2,000 in a burst, in order, none lost, no thread of JavaScript added", async () => {
    const threads = () => readFileSync("/proc/self/status", "utf8").match(/^Threads:\s+(\d+)/m)?.[1];
    const xs = track(openXenStore({ path: server.socket }));
    const writer = track(openXenStore({ path: server.socket }));
    const got: string[] = [];
    xs.onWatch((e) => got.push(e.path));
    const before = Number(threads());
    xs.watch("/ffi/burst", "b");
    for (let i = 0; i < 2000; i++) writer.write(`/ffi/burst/${i}`, "x");
    const deadline = Date.now() + 20_000;
    while (got.length < 2001 && Date.now() < deadline) await Bun.sleep(20);
    expect(got.slice(1)).toEqual(Array.from({ length: 2000 }, (_, i) => `/ffi/burst/${i}`));
    // libxenstore's own reader thread is the only one the watch adds (a Worker would add ~3).
    expect(Number(threads())).toBeLessThanOrEqual(before + 1);
  });
});
