import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openXenStore } from "../../ffi/xenstore.ts";
import { parseGuest } from "../../agent/toolstack/guest.ts";
import { createDomains, destroyDomains, waitForRunning, watchShutdownRequests } from "../../agent/toolstack/simulate.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { waitEvents } from "../xenstore/contract.ts";
import { BUN, ROOT, type ServerProc, startServer } from "../xenstore/harness.ts";

const guestFile = (name: string) => join(ROOT, "test/guests", `${name}.json`);
const guest = (name: string) => parseGuest(JSON.parse(readFileSync(guestFile(name), "utf8")), name);
const ids = { guestDomid: 1, stubDomid: 2 };

describe("simulated libxl against the in-memory store", () => {
  it("waits for device-model/G/state = running by watch and reports the time", async () => {
    const dom0 = new MemoryXenStore();
    createDomains(dom0, guest("minimal"), ids);
    const stub = new MemoryXenStore({ store: dom0.store, domid: 2 });
    const wait = waitForRunning(dom0, ids, 2000);
    setTimeout(() => stub.write("device-model/1/state", "starting"), 20);
    setTimeout(() => stub.write("device-model/1/state", "running"), 60);
    const r = await wait;
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.elapsedMs).toBeGreaterThanOrEqual(45);
  });

  it("times out like libxl when the device model never reports", async () => {
    const dom0 = new MemoryXenStore();
    createDomains(dom0, guest("minimal"), ids);
    expect(await waitForRunning(dom0, ids, 50)).toEqual({ ok: false, reason: "startup timed out" });
  });

  it("starts from a clean slate like libxl__domain_make: stale keys of a previous run go", () => {
    const dom0 = new MemoryXenStore();
    createDomains(dom0, guest("minimal"), ids);
    dom0.write("/local/domain/2/device-model/1/state", "running");
    createDomains(dom0, guest("minimal"), ids);
    expect(() => dom0.read("/local/domain/2/device-model/1/state")).toThrow(/ENOENT/);
  });

  it("hears the stub domain's shutdown request and destroys both domains, firing @releaseDomain", async () => {
    const dom0 = new MemoryXenStore();
    const g = guest("full");
    createDomains(dom0, g, ids);
    const stub = new MemoryXenStore({ store: dom0.store, domid: 2 });
    const reasons: string[] = [];
    watchShutdownRequests(dom0, ids, (r) => reasons.push(r));
    const released: string[] = [];
    const watcher = new MemoryXenStore({ store: dom0.store });
    watcher.watch("@releaseDomain", "rel");
    await watcher.settled();
    watcher.onWatch((e) => released.push(e.path));
    stub.write("data/dev-hypervisor/shutdown", "crash\n\x1b[2J");
    await dom0.settled();
    expect(reasons).toEqual(["crash\\x0a\\x1b[2J"]);
    destroyDomains(dom0, g, ids);
    await watcher.settled();
    expect(released).toEqual(["@releaseDomain", "@releaseDomain"]);
    for (const p of ["/local/domain/1", "/local/domain/2", `/vm/${g.uuid}`, "/local/domain/0/backend/vif/2"]) {
      expect(() => dom0.read(p)).toThrow(/ENOENT/);
    }
  });
});

/** Read a process's output as it comes: wait for a line, then take everything. */
function lines(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  return {
    async until(re: RegExp): Promise<string> {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`output ended without ${re}: ${text}`);
        text += decoder.decode(value);
      }
      return text;
    },
    async rest(): Promise<string> {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return text;
        text += decoder.decode(value);
      }
    },
  };
}

describe("stubdom-init simulate-toolstack against the wire server", () => {
  let server: ServerProc;
  beforeAll(async () => {
    server = await startServer({ domains: [2] });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const sim = (...args: string[]) =>
    Bun.spawn([BUN, "agent/main.ts", "simulate-toolstack", "--socket", server.socket, ...args], {
      cwd: ROOT, stdout: "pipe", stderr: "pipe",
    });

  it("creates the domains, waits for running, and prints the elapsed time", async () => {
    const p = sim("--guest", guestFile("demo"), "--exit-when-running");
    const out = lines(p.stdout);
    const stubXs = openXenStore({ path: server.domainSocket(2) });
    try {
      // The simulator prints this line right before it starts waiting, in the same tick.
      expect(await out.until(/created guest/)).toContain("created guest 1 (demo) and stub domain 2 (demo-dm)");
      await Bun.sleep(200);
      stubXs.write("device-model/1/state", "running");
      const [text, code] = await Promise.all([out.rest(), p.exited]);
      expect(text).toContain("stubdom.qemu=/usr/bin/qemu-system-x86_64");
      const secs = Number(/device model running after ([0-9.]+) s/.exec(text)?.[1]);
      // Timers of two processes do not agree to the millisecond: the point is that the
      // simulator measured the wait rather than reporting at once.
      expect(secs).toBeGreaterThanOrEqual(0.15);
      expect(secs).toBeLessThan(10);
      expect(code).toBe(0);
    } finally {
      stubXs.close();
    }
  });

  it("--destroy removes both domains' keys and fires @releaseDomain", async () => {
    const dom0 = openXenStore({ path: server.socket });
    try {
      dom0.watch("@releaseDomain", "rel");
      await waitEvents(dom0, 1);
      const released = waitEvents(dom0, 2);
      const p = sim("--guest", guestFile("demo"), "--destroy");
      const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      expect(out).toContain("destroyed guest 1 and stub domain 2");
      expect(code).toBe(0);
      expect(await released).toEqual([{ path: "@releaseDomain", token: "rel" }, { path: "@releaseDomain", token: "rel" }]);
      for (const path of ["/local/domain/1", "/local/domain/2", "/local/domain/0/backend/vif/2", "/libxl/1"]) {
        expect(() => dom0.read(path)).toThrow(/ENOENT/);
      }
    } finally {
      dom0.close();
    }
  });

  /** Plays the stub domain: waits for its keys, reports running, then asks for a crash shutdown. */
  async function crashThroughSimulator(guestPath: string): Promise<{ out: string; code: number }> {
    const p = sim("--guest", guestPath);
    const stubXs = openXenStore({ path: server.domainSocket(2) });
    try {
      for (let i = 0; i < 100; i++) {
        try {
          stubXs.read("target");
          break;
        } catch {
          await Bun.sleep(50);
        }
      }
      stubXs.write("device-model/1/state", "running");
      await Bun.sleep(300);
      stubXs.write("data/dev-hypervisor/shutdown", "crash");
      const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      return { out, code };
    } finally {
      stubXs.close();
    }
  }

  it("plays the hypervisor: a shutdown request destroys both domains", async () => {
    const { out, code } = await crashThroughSimulator(guestFile("demo"));
    expect(out).toContain("hypervisor: shutdown of domain 1 requested: crash");
    expect(out).toContain("destroyed guest 1 and stub domain 2");
    expect(code).toBe(0);
    const dom0 = openXenStore({ path: server.socket });
    expect(() => dom0.read("/local/domain/2/target")).toThrow(/ENOENT/);
    dom0.close();
  });

  it("with on_crash=preserve, a shutdown request keeps both domains and their keys", async () => {
    const file = join(tmpdir(), `sim-preserve-${process.pid}.json`);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(guestFile("demo"), "utf8")), onCrash: "preserve" }));
    try {
      const { out, code } = await crashThroughSimulator(file);
      expect(out).toContain("hypervisor: shutdown of domain 1 requested: crash");
      expect(out).toContain("on_crash=preserve: keeping guest 1 and stub domain 2");
      expect(out).not.toContain("destroyed");
      expect(code).toBe(0);
      const dom0 = openXenStore({ path: server.socket });
      expect(new TextDecoder().decode(dom0.read("/local/domain/2/target"))).toBe("1");
      dom0.close();
    } finally {
      rmSync(file, { force: true });
    }
  });

  it("reports a startup timeout as libxl does and exits non-zero", async () => {
    const p = sim("--guest", guestFile("minimal"), "--timeout", "1");
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(out).toContain("startup timed out");
    expect(out).toContain("device model did not start: -9");
    expect(code).toBe(1);
  });

  it("rejects an invalid guest file before touching xenstore", async () => {
    const p = sim("--guest", join(ROOT, "package.json"));
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(err).toContain("invalid guest description");
    expect(code).toBe(2);
  });
});
