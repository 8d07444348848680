import { afterEach, describe, expect, test } from "vitest";
import { healthDir } from "../../agent/health/schema.ts";
import { watchStatus, type StatusFrame, type StatusWatch } from "../../agent/health/watch.ts";
import { createHealthWriter, type HealthWriter } from "../../agent/health/writer.ts";
import type { XenStore } from "../../agent/xenstore/types.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { GUEST, libxlLayout, memLogger, STUB } from "./helpers.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  while (cleanup.length > 0) cleanup.pop()?.();
});

/** Counts reads, to prove that a quiet --watch does not poll. */
function counting(inner: XenStore): { xs: XenStore; reads: () => number } {
  let n = 0;
  const xs = new Proxy(inner, {
    get(t, p, r) {
      const v = Reflect.get(t, p, r);
      if (typeof v !== "function") return v;
      return (...a: unknown[]) => {
        if (p === "read" || p === "directory") n++;
        return (v as (...x: unknown[]) => unknown).apply(t, a);
      };
    },
  });
  return { xs, reads: () => n };
}

function frames() {
  const list: StatusFrame[] = [];
  const waiters: { pred: (f: StatusFrame) => boolean; resolve: (f: StatusFrame) => void }[] = [];
  const onFrame = (f: StatusFrame) => {
    list.push(f);
    for (const w of [...waiters]) {
      if (w.pred(f)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(f);
      }
    }
  };
  const next = (pred: (f: StatusFrame) => boolean, timeoutMs = 5000) =>
    new Promise<StatusFrame>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching frame in ${timeoutMs} ms; last: ${JSON.stringify(list.at(-1)?.reports.map((r) => [r.health, r.reasons]))}`)), timeoutMs);
      waiters.push({ pred, resolve: (f) => (clearTimeout(t), resolve(f)) });
    });
  return { list, onFrame, next };
}

function startWriter(stub: XenStore, intervalMs: number): HealthWriter {
  const w = createHealthWriter({ xs: stub, domid: STUB, log: memLogger().log, clock: () => performance.now() / 1000, intervalMs, sources: { nics: () => [] } });
  w.start();
  cleanup.push(() => w.stop());
  return w;
}

const keep = (w: StatusWatch) => (cleanup.push(() => w.stop()), w);
const phaseOf = (f: StatusFrame) => {
  const p = f.reports[0]?.fields.phase;
  return p?.state === "ok" ? p.value : undefined;
};

describe("status --watch", () => {
  test("phase changes are redrawn from watch events, and a quiet store is not polled", async () => {
    const { dom0, stub } = libxlLayout();
    const w = startWriter(stub, 5000);
    const c = counting(dom0);
    const f = frames();
    keep(watchStatus({ xs: c.xs, selection: { all: false, guests: [GUEST] }, onFrame: f.onFrame }));
    expect(phaseOf(f.list[0]!)).toBe("booting");
    await Bun.sleep(200); // let the watches' registration events settle, even on a busy machine
    const quiet = c.reads();
    await Bun.sleep(300);
    expect(c.reads()).toBe(quiet);
    for (const phase of ["configuring", "starting", "running", "stopping"] as const) {
      const seen = f.next((x) => phaseOf(x) === phase);
      w.setPhase(phase);
      expect((await seen).reports[0]?.health).toBe("ok");
    }
  });

  test("a writer that stops is drawn stale after three of its intervals, without any xenstore event", async () => {
    const { dom0, stub } = libxlLayout();
    const w = startWriter(stub, 100);
    const f = frames();
    keep(watchStatus({ xs: dom0, selection: { all: false, guests: [GUEST] }, onFrame: f.onFrame }));
    await f.next((x) => (x.reports[0]?.fields.heartbeat as { value?: number } | undefined)?.value === 3);
    w.stop();
    const stale = await f.next((x) => x.reports[0]?.health === "stale");
    expect(stale.reports[0]?.reasons).toEqual([expect.stringMatching(/^heartbeat \d+ unchanged for \d+\.\ds \(watched here\)$/)]);
  });

  test("keys removed: unreachable; keys back: ok again", async () => {
    const { dom0, stub } = libxlLayout();
    const w = startWriter(stub, 5000);
    const f = frames();
    keep(watchStatus({ xs: dom0, selection: { all: false, guests: [GUEST] }, onFrame: f.onFrame }));
    const gone = f.next((x) => x.reports[0]?.health === "unreachable");
    dom0.rm(healthDir(STUB));
    expect((await gone).reports[0]?.reasons).toEqual([`no health keys at ${healthDir(STUB)}`]);
    // The writer notices at its next write and puts the whole report back.
    const back = f.next((x) => x.reports[0]?.health === "ok");
    w.flush();
    await back;
  });

  test("--all picks up a stub domain created while watching, and drops one destroyed", async () => {
    const { dom0, stub } = libxlLayout();
    startWriter(stub, 5000);
    const f = frames();
    keep(watchStatus({ xs: dom0, selection: { all: true }, onFrame: f.onFrame }));
    expect(f.list[0]?.reports.map((r) => r.stubdom)).toEqual([STUB]);
    const two = f.next((x) => x.reports.length === 2);
    // libxl's order: the domain exists and is introduced, then its keys are written.
    dom0.introduceDomain(9);
    dom0.write("/local/domain/9/target", "8");
    const both = await two;
    expect(both.reports.map((r) => [r.stubdom, r.guest, r.health])).toEqual([
      [STUB, GUEST, "ok"],
      [9, 8, "unreachable"],
    ]);
    const one = f.next((x) => x.reports.length === 1);
    dom0.rm("/local/domain/9");
    dom0.releaseDomain(9);
    expect((await one).reports[0]?.stubdom).toBe(STUB);
  });

  test("a stub domain rewriting its keys in a loop gets at most one frame per 25 ms", async () => {
    const { dom0, stub } = libxlLayout();
    startWriter(stub, 5000);
    const f = frames();
    keep(watchStatus({ xs: dom0, selection: { all: false, guests: [GUEST] }, onFrame: f.onFrame }));
    await Bun.sleep(30);
    const before = f.list.length;
    const started = performance.now();
    let n = 0;
    const flood = setInterval(() => stub.write(`${healthDir(STUB)}/error`, `flood ${n++}`), 1);
    await Bun.sleep(500);
    clearInterval(flood);
    const elapsed = performance.now() - started;
    await Bun.sleep(100);
    const drawn = f.list.length - before;
    expect(n).toBeGreaterThan(20);
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThanOrEqual(Math.ceil(elapsed / 25) + 2);
    const last = f.list.at(-1)?.reports[0]?.fields.error;
    expect(last).toEqual({ state: "ok", value: `flood ${n - 1}` }); // the final state is drawn
  });

  test("a writer with an invalid value but a dead heartbeat still turns stale", async () => {
    const { dom0, stub } = libxlLayout();
    const w = startWriter(stub, 100);
    const f = frames();
    keep(watchStatus({ xs: dom0, selection: { all: false, guests: [GUEST] }, onFrame: f.onFrame }));
    await f.next((x) => (x.reports[0]?.fields.heartbeat as { value?: number } | undefined)?.value === 3);
    w.stop();
    stub.write(`${healthDir(STUB)}/qmp_status`, "BAD");
    await f.next((x) => x.reports[0]?.health === "invalid");
    await f.next((x) => x.reports[0]?.health === "stale");
  });

  test("stop() removes every watch it made", async () => {
    const { dom0, stub } = libxlLayout();
    startWriter(stub, 5000);
    const watches: string[] = [];
    const spy = new Proxy(dom0, {
      get(t, p, r) {
        const v = Reflect.get(t, p, r);
        if (p === "watch") return (path: string, token: string) => (watches.push(path), (v as MemoryXenStore["watch"]).call(t, path, token));
        if (p === "unwatch") return (path: string, token: string) => (watches.splice(watches.indexOf(path), 1), (v as MemoryXenStore["unwatch"]).call(t, path, token));
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
    const f = frames();
    const w = watchStatus({ xs: spy, selection: { all: true }, onFrame: f.onFrame });
    expect(watches).toContain(healthDir(STUB));
    expect(watches).toContain("@introduceDomain");
    w.stop();
    expect(watches).toEqual([]);
    const n = f.list.length;
    dom0.write(`${healthDir(STUB)}/phase`, "running");
    await Bun.sleep(50);
    expect(f.list.length).toBe(n);
  });
});
