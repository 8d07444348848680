import { describe, expect, test } from "vitest";
import { decodeKey, decodeNic, decodePci, healthDir, HEALTH_KEYS, MAX_TEXT_BYTES, type NicHealth, type PciHealth } from "../../agent/health/schema.ts";
import { createHealthWriter, type HealthSources } from "../../agent/health/writer.ts";
import { XenStoreError, type XenStore } from "../../agent/xenstore/types.ts";
import { libxlLayout, manualTimer, memLogger, STUB, testClock, text } from "./helpers.ts";

const BASE = healthDir(STUB);

/** Records every call the writer makes, and can be told to fail. */
function spy(inner: XenStore) {
  const calls: string[] = [];
  let failWith: XenStoreError | undefined;
  const xs = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        calls.push(`${String(prop)} ${typeof args[0] === "string" ? args[0] : ""}`.trim());
        if (failWith && prop !== "onWatch") throw failWith;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { xs, calls, fail: (e: XenStoreError | undefined) => void (failWith = e) };
}

const nic = (i: number, over: Partial<NicHealth> = {}): NicHealth => ({
  name: `eth${i}`,
  tap: `vif4.${i}-emu`,
  link: "up",
  rx_packets: 10,
  rx_bytes: 1000,
  rx_dropped: 0,
  tx_packets: 20,
  tx_bytes: 2000,
  tx_dropped: 1,
  spoofed_dropped: 3,
  ...over,
});

const sources = (over: Partial<HealthSources> = {}): Partial<HealthSources> => ({
  memory: () => ({ totalKib: 120_000, availableKib: 60_000 }),
  agentRss: () => ({ rssKib: 31_000, anonKib: 12_000 }),
  qemuRss: () => ({ rssKib: 27_000, anonKib: 11_000 }),
  nics: () => [nic(0)],
  ...over,
});

function setup(over: { sources?: Partial<HealthSources>; intervalMs?: number } = {}) {
  const { dom0, stub } = libxlLayout();
  const s = spy(stub);
  const clock = testClock();
  const timer = manualTimer();
  const { log, lines } = memLogger();
  const w = createHealthWriter({
    xs: s.xs,
    domid: STUB,
    log,
    clock: clock.boot,
    wallClock: clock.wall,
    every: timer.every,
    intervalMs: over.intervalMs,
    sources: over.sources ?? sources(),
  });
  const read = (k: string) => text(dom0.read(`${BASE}/${k}`));
  const has = (k: string) => {
    try {
      dom0.read(`${BASE}/${k}`);
      return true;
    } catch {
      return false;
    }
  };
  const tick = () => new Promise<void>((r) => queueMicrotask(r));
  return { dom0, stub, s, clock, timer, lines, w, read, has, tick };
}

function countNodes(xs: XenStore, path: string): number {
  return 1 + xs.directory(path).reduce((n, c) => n + countNodes(xs, `${path}/${c}`), 0);
}

describe("health writer", () => {
  test("start writes a complete report that the shared schema decodes, within the size limits", () => {
    const t = setup();
    t.w.bootPhase("mounts", 812);
    t.w.bootPhase("modules", 903);
    t.w.agentOverhead(640);
    t.w.qemuStarted(312);
    t.w.qmpStatus("running");
    t.w.error("x".repeat(5000));
    t.w.qemuExited({ code: 1, stderr: Array.from({ length: 400 }, (_, i) => `line ${i}`) });
    t.w.start();
    expect(t.read("schema")).toBe("1");
    expect(t.read("interval_ms")).toBe("5000");
    expect(t.read("phase")).toBe("booting");
    expect(t.read("heartbeat")).toBe("1");
    expect(t.read("heartbeat_wall_ms")).toBe("1764000000000");
    expect(t.read("uptime_ms")).toBe("1000");
    expect(JSON.parse(t.read("boot_ms"))).toEqual({ mounts: 812, modules: 903 });
    expect(t.read("agent_overhead_ms")).toBe("640");
    expect(t.read("mem_available_kib")).toBe("60000");
    expect(t.read("agent_rss_kib")).toBe("31000");
    expect(t.read("agent_rss_anon_kib")).toBe("12000");
    expect(t.has("qemu_rss_kib")).toBe(false); // QEMU has exited
    expect(t.has("qemu_rss_anon_kib")).toBe(false);
    expect(t.read("exit_code")).toBe("1");
    expect(t.read("exit_stderr").endsWith("line 399")).toBe(true);
    expect(JSON.parse(t.read("nic/0"))).toEqual(nic(0));

    const names = t.dom0.directory(BASE);
    for (const k of names.filter((n) => n !== "nic")) {
      const raw = t.dom0.read(`${BASE}/${k}`);
      expect(raw.length, k).toBeLessThan(1024);
      expect(HEALTH_KEYS).toContain(k);
      expect(decodeKey(k as (typeof HEALTH_KEYS)[number], raw), k).toMatchObject({ ok: true });
    }
    expect(decodeNic(t.dom0.read(`${BASE}/nic/0`))).toEqual({ ok: true, value: nic(0) });
    expect(new TextEncoder().encode(t.read("error")).length).toBe(MAX_TEXT_BYTES);
    expect(countNodes(t.dom0, BASE)).toBeLessThan(60);
  });

  test("the fullest possible report stays within 45 nodes and 1 KiB per value", () => {
    const pci = (i: number): PciHealth => ({
      bdf: `0000:${i.toString(16).padStart(2, "0")}:1f.7`, local: "ffff:ff:1f.7", state: "missing", vendor: "ffff", device: "ffff", since_ms: Number.MAX_SAFE_INTEGER, error: "€".repeat(400),
    });
    const t = setup({
      sources: sources({
        nics: () => Array.from({ length: 20 }, (_, i) => nic(i, { rx_bytes: Number.MAX_SAFE_INTEGER })),
        pci: () => Array.from({ length: 20 }, (_, i) => pci(i)),
      }),
    });
    for (let i = 0; i < 16; i++) t.w.bootPhase(`phase_with_a_long_name_${i.toString(16)}`, Number.MAX_SAFE_INTEGER);
    t.w.agentOverhead(1);
    t.w.qemuStarted(4_194_304);
    t.w.qemuExited({ signal: "SIGKILL", stderr: ["é".repeat(2000)] });
    t.w.error("€".repeat(2000));
    t.w.start();
    expect(t.dom0.directory(`${BASE}/nic`)).toHaveLength(8);
    expect(t.dom0.directory(`${BASE}/pci`)).toHaveLength(8);
    // The error is cut to its byte bound, on a character boundary; the rest is kept.
    expect(decodePci(t.dom0.read(`${BASE}/pci/7`))).toEqual({ ok: true, value: { ...pci(7), error: "€".repeat(133) } });
    expect(countNodes(t.dom0, BASE)).toBeLessThanOrEqual(45);
    const walk = (p: string): void => {
      expect(t.dom0.read(p).length, p).toBeLessThan(1024);
      for (const c of t.dom0.directory(p)) walk(`${p}/${c}`);
    };
    walk(BASE);
    expect(decodeKey("boot_ms", t.dom0.read(`${BASE}/boot_ms`))).toMatchObject({ ok: true });
  });

  test("steady state: one transaction per heartbeat, writing only the keys that changed", () => {
    const t = setup();
    t.w.start();
    expect(t.w.stats().transactions).toBe(1);
    t.s.calls.length = 0;
    t.clock.advance(5000);
    t.timer.fire();
    expect(t.w.stats().transactions).toBe(2);
    expect(t.s.calls.filter((c) => c.startsWith("transactionStart"))).toHaveLength(1);
    expect(t.s.calls.filter((c) => c.startsWith("write")).sort()).toEqual(
      ["heartbeat", "heartbeat_wall_ms", "uptime_ms"].map((k) => `write ${BASE}/${k}`),
    );
    expect(t.read("heartbeat")).toBe("2");
    expect(t.read("uptime_ms")).toBe("6000");
    expect(t.timer.intervals).toEqual([5000]);
  });

  test("phase changes and QEMU exit are written at once, coalesced into one transaction", async () => {
    const t = setup();
    t.w.start();
    t.w.qemuStarted(312);
    await t.tick();
    expect(t.read("qemu_pid")).toBe("312");
    expect(t.w.stats().transactions).toBe(2);
    t.clock.advance(1234);
    t.w.qemuExited({ signal: "SIGKILL", stderr: ["qemu: \u001b[31mboom"] });
    t.w.setPhase("crashed");
    expect(t.read("phase")).toBe("booting"); // not before the microtask
    await t.tick();
    expect(t.w.stats().transactions).toBe(3);
    expect(t.read("phase")).toBe("crashed");
    expect(t.read("phase_since_ms")).toBe("2234");
    expect(t.read("exit_signal")).toBe("SIGKILL");
    expect(t.read("exit_stderr")).toBe("qemu: \uFFFD[31mboom");
    expect(t.has("exit_code")).toBe(false);
    // Same phase again: nothing to write.
    t.w.setPhase("crashed");
    await t.tick();
    expect(t.w.stats().transactions).toBe(3);
  });

  test("errors wait for the next heartbeat, so a caller looping on errors cannot flood xenstore", async () => {
    const t = setup();
    t.w.start();
    for (let i = 0; i < 1000; i++) t.w.error(`attempt ${i} failed`);
    await t.tick();
    expect(t.w.stats().transactions).toBe(1);
    t.timer.fire();
    expect(t.w.stats().transactions).toBe(2);
    expect(t.read("error")).toBe("attempt 999 failed");
  });

  test("a failing xenstore never throws into the caller; the write is retried at the next heartbeat", async () => {
    const t = setup();
    t.w.start();
    t.s.fail(new XenStoreError("EACCES", "write", BASE));
    expect(() => {
      t.w.setPhase("running");
      t.w.qemuStarted(99);
      t.w.error("disk gone");
      t.timer.fire();
      t.timer.fire();
    }).not.toThrow();
    await t.tick();
    expect(t.w.stats()).toEqual({ transactions: 1, failures: 3 });
    expect(t.lines.filter((l) => l.includes("write failed"))).toHaveLength(1); // logged once
    t.s.fail(undefined);
    t.timer.fire();
    expect(t.w.stats().transactions).toBe(2);
    expect(t.read("phase")).toBe("running");
    expect(t.read("qemu_pid")).toBe("99");
    expect(t.read("error")).toBe("disk gone");
    expect(t.lines.some((l) => l.includes("writing again"))).toBe(true);
  });

  test("a source that throws costs its own keys, not the heartbeat", () => {
    const t = setup({
      sources: sources({
        memory: () => {
          throw new Error("no /proc");
        },
        nics: () => {
          throw new Error("netlink down");
        },
      }),
    });
    t.w.start();
    expect(t.read("heartbeat")).toBe("1");
    expect(t.has("mem_total_kib")).toBe(false);
    expect(t.read("agent_rss_kib")).toBe("31000");
    t.timer.fire();
    t.timer.fire();
    expect(t.read("heartbeat")).toBe("3");
    // Once per kind of failure, not once per heartbeat.
    expect(t.lines.filter((l) => l.includes("no /proc"))).toHaveLength(1);
    expect(t.lines.filter((l) => l.includes("netlink down"))).toHaveLength(1);
  });

  test("a malformed NIC entry from the source is left out and logged, the others are written", () => {
    const t = setup({ sources: sources({ nics: () => [nic(0, { name: "x".repeat(5000) }), nic(1), nic(2, { rx_bytes: -1 })] }) });
    t.w.start();
    expect(t.dom0.directory(`${BASE}/nic`)).toEqual(["0"]);
    expect(JSON.parse(t.read("nic/0"))).toEqual(nic(1));
    expect(t.lines.filter((l) => l.includes("NIC"))).toHaveLength(2);
  });

  test("NIC counters from an asynchronous source go into the same heartbeat; a source that hangs is not waited for", async () => {
    let answer: (n: NicHealth[]) => void = () => {};
    let hang = false;
    const t = setup({
      intervalMs: 100,
      sources: sources({ nics: () => (hang ? new Promise<NicHealth[]>(() => {}) : new Promise<NicHealth[]>((r) => (answer = r))) }),
    });
    t.w.start();
    expect(t.w.stats().transactions).toBe(0); // waiting for netlink
    answer([nic(0)]);
    await t.tick();
    expect(t.w.stats().transactions).toBe(1);
    expect(JSON.parse(t.read("nic/0"))).toEqual(nic(0));
    hang = true;
    t.timer.fire();
    expect(t.w.stats().transactions).toBe(1);
    // Given up after min(1 s, interval / 2) = 50 ms; allow a busy machine to be late.
    for (let i = 0; i < 100 && t.w.stats().transactions < 2; i++) await Bun.sleep(20);
    expect(t.w.stats().transactions).toBe(2);
    expect(JSON.parse(t.read("nic/0"))).toEqual(nic(0)); // the previous counters
    expect(t.lines.filter((l) => l.includes("no answer within 50 ms"))).toHaveLength(1);
  });

  test("keys of a previous writer are removed; NICs that disappear are removed", () => {
    let nics = [nic(0), nic(1)];
    const t2 = setup({ sources: sources({ nics: () => nics }) });
    t2.dom0.write(`${BASE}/left_over`, "junk");
    t2.dom0.write(`${BASE}/nic/7`, "junk");
    t2.w.start();
    expect(t2.has("left_over")).toBe(false);
    expect(t2.dom0.directory(`${BASE}/nic`).sort()).toEqual(["0", "1"]);
    nics = [nic(0)];
    t2.timer.fire();
    expect(t2.dom0.directory(`${BASE}/nic`)).toEqual(["0"]);
  });

  test("a report removed behind the writer's back is written again in full at the next heartbeat", () => {
    const t = setup();
    t.w.start();
    t.dom0.rm(BASE);
    t.timer.fire();
    expect(t.read("phase")).toBe("booting");
    expect(t.read("schema")).toBe("1");
    expect(JSON.parse(t.read("nic/0"))).toEqual(nic(0));
  });

  test("the interval is clamped and published for the reader", () => {
    const t = setup({ intervalMs: 1 });
    t.w.start();
    expect(t.timer.intervals).toEqual([100]);
    expect(t.read("interval_ms")).toBe("100");
    t.w.stop();
    expect(t.timer.running()).toBe(false);
  });

  test("hostile or broken caller input is refused or bounded, never thrown", async () => {
    const t = setup();
    t.w.start();
    expect(() => {
      t.w.bootPhase("Bad Name\u001b", 1);
      t.w.bootPhase("ok", -5);
      t.w.qemuStarted(Number.NaN);
      t.w.qmpStatus("running"); // no QEMU yet: ignored
    }).not.toThrow();
    await t.tick();
    t.timer.fire();
    expect(t.has("boot_ms")).toBe(false);
    expect(t.has("qemu_pid")).toBe(false);
    expect(t.has("qmp_status")).toBe(false);
    t.w.qemuStarted(50);
    t.w.qmpStatus("\u001b[2J");
    await t.tick();
    t.timer.fire();
    expect(t.read("qmp_status")).toBe("unknown");
    expect(() => t.w.qemuExited({ code: 300, signal: "KILL; rm -rf", stderr: [] })).not.toThrow();
    await t.tick();
    expect(t.has("exit_code")).toBe(false);
    expect(t.has("exit_signal")).toBe(false);
    expect(t.has("exit_stderr")).toBe(false);
    expect(t.has("qmp_status")).toBe(false);
    expect(t.has("exit_at_ms")).toBe(true);
  });
});
