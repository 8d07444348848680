// Shared set-up for the health tests: a store laid out the way libxl leaves it for guest G and
// stub domain S, a controllable clock, and a logger that keeps its lines.
import { createHealthWriter, type HealthSources, type HealthWriter } from "../../agent/health/writer.ts";
import { createLogger, type Logger } from "../../agent/log.ts";
import { BUN, ROOT } from "../xenstore/harness.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import type { XenStoreAdmin } from "../../agent/xenstore/types.ts";

export const GUEST = 4;
export const STUB = 5;

/**
 * What libxl leaves in xenstore for guest G and its stub domain S, as far as health cares
 * (tools/libs/light/libxl_create.c, libxl__domain_make: the home directory gets `roperm`,
 * data/ gets `rwperm`; libxl__spawn_stub_dm writes `target` and calls xs_set_target).
 */
export function layOut(dom0: XenStoreAdmin): void {
  for (const d of [GUEST, STUB]) {
    dom0.write(`/local/domain/${d}/domid`, String(d));
    // libxl: the home is dom0's, readable by the domain; data/ is the domain's own.
    dom0.setPermissions(`/local/domain/${d}`, [
      { domid: 0, perm: "n" },
      { domid: d, perm: "r" },
    ]);
    dom0.mkdir(`/local/domain/${d}/data`);
    dom0.setPermissions(`/local/domain/${d}/data`, [{ domid: d, perm: "n" }]);
  }
  dom0.write(`/local/domain/${STUB}/target`, String(GUEST));
  dom0.write(`/local/domain/${GUEST}/image/device-model-domid`, String(STUB));
  dom0.introduceDomain(GUEST);
  dom0.introduceDomain(STUB);
  dom0.setTarget(STUB, GUEST);
}

export function libxlLayout(): { dom0: MemoryXenStore; stub: MemoryXenStore } {
  const dom0 = new MemoryXenStore();
  layOut(dom0);
  return { dom0, stub: new MemoryXenStore({ store: dom0.store, domid: STUB }) };
}

export interface TestClock {
  /** Seconds since "kernel start" for the writer. */
  boot: () => number;
  wall: () => number;
  advance(ms: number): void;
}

export function testClock(startWallMs = 1_764_000_000_000, startBootMs = 1_000): TestClock {
  let offset = 0;
  return {
    boot: () => (startBootMs + offset) / 1000,
    wall: () => startWallMs + offset,
    advance: (ms) => void (offset += ms),
  };
}

export function memLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ sink: { write: (l) => void lines.push(l) }, clock: () => 0, level: "debug" }), lines };
}

/** A heartbeat timer the test fires by hand. */
export function manualTimer(): { every: (ms: number, fn: () => void) => () => void; fire(): void; intervals: number[]; running: () => boolean } {
  let fn: (() => void) | undefined;
  const intervals: number[] = [];
  return {
    every(ms, f) {
      intervals.push(ms);
      fn = f;
      return () => void (fn = undefined);
    },
    fire: () => fn?.(),
    intervals,
    running: () => fn !== undefined,
  };
}

export const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The real writer as stub domain STUB on `stub`, on the test's clock and hand-fired timer. */
export function testWriter(stub: XenStoreAdmin, clock: TestClock, every: ReturnType<typeof manualTimer>["every"], sources: Partial<HealthSources>, intervalMs?: number): HealthWriter {
  return createHealthWriter({ xs: stub, domid: STUB, log: memLogger().log, clock: clock.boot, wallClock: clock.wall, every, sources, ...(intervalMs ? { intervalMs } : {}) });
}

/**
 * `stubdom-init exporter` as the real command on a free loopback port, reading xenstore at
 * `socket`; resolves once it prints the URL it serves. A child that exits first is an error.
 */
export async function spawnExporter(socket: string): Promise<{ url: string; stop(): Promise<void> }> {
  const p = Bun.spawn([BUN, "agent/main.ts", "exporter", "--listen", "127.0.0.1:0"], {
    cwd: ROOT,
    env: { ...process.env, XENSTORED_PATH: socket },
    stdout: "ignore",
    stderr: "pipe",
  });
  const stop = async () => {
    p.kill("SIGTERM");
    await p.exited;
  };
  const reader = p.stderr.getReader();
  let banner = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`exporter exited before serving: ${banner.trim()}`);
      banner += new TextDecoder().decode(value);
      const url = /serving (http:\S+)/.exec(banner)?.[1];
      if (url) return { url, stop };
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    reader.releaseLock();
  }
}
