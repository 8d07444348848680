// Health report costs, for the record (no pass/fail), all through Debian's libxenstore against
// the wire server in its own process:
//   - phase change → frame printed by `stubdom-init status --watch --json` (xenstore watch path);
//   - xenstore transactions per minute from an idle writer at the default 5 s interval;
//   - one `status` read of a report, clean and with 5,000 extra keys.
// Run: ./node_modules/.bin/bun test/bench/health.bench.ts   (HEALTH_BENCH_IDLE_S=60 for a full minute)
import { collectReports, systemClock } from "../../agent/health/reader.ts";
import { healthDir } from "../../agent/health/schema.ts";
import { createHealthWriter } from "../../agent/health/writer.ts";
import { createLogger } from "../../agent/log.ts";
import { openXenStore } from "../../ffi/xenstore.ts";
import { layOut, STUB, GUEST } from "../health/helpers.ts";
import { BUN, ROOT, startServer } from "../xenstore/harness.ts";

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const log = createLogger({ sink: { write: () => {} } });
const server = await startServer({ domains: [STUB] });
try {
  const dom0 = openXenStore({ path: server.socket });
  layOut(dom0);
  const stub = openXenStore({ path: server.domainSocket(STUB) });

  // 1. Watch latency.
  const w = createHealthWriter({ xs: stub, domid: STUB, log, clock: () => performance.now() / 1000 });
  w.start();
  const p = Bun.spawn([BUN, "agent/main.ts", "status", String(GUEST), "--watch", "--json"], {
    cwd: ROOT,
    env: { ...process.env, XENSTORED_PATH: server.socket },
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const waitPhase = async (phase: string) => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (JSON.parse(line)[0]?.values?.phase === phase) return;
        continue;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("status --watch ended");
      buf += value;
    }
  };
  await waitPhase("booting");
  // Back to back (each change right after the previous frame: the 25 ms gap between frames
  // applies) and spaced by 100 ms (a change after a quiet moment, the usual case).
  const series = async (spacingMs: number) => {
    const lat: number[] = [];
    for (let i = 0; i < 50; i++) {
      if (spacingMs > 0) await Bun.sleep(spacingMs);
      const phase = i % 2 === 0 ? "running" : "stopping";
      const t0 = performance.now();
      w.setPhase(phase);
      await waitPhase(phase);
      lat.push(performance.now() - t0);
    }
    return `p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms`;
  };
  const backToBack = await series(0);
  const spaced = await series(100);
  p.kill("SIGINT");
  while (!(await reader.read()).done);
  await p.exited;
  w.stop();
  console.log(`watch latency, phase change -> status --watch frame, 50 changes back to back: ${backToBack}`);
  console.log(`watch latency, phase change -> status --watch frame, 50 changes 100 ms apart: ${spaced}`);

  // 2. Idle writes.
  const idleS = Number(process.env.HEALTH_BENCH_IDLE_S ?? 30);
  const idle = createHealthWriter({ xs: stub, domid: STUB, log, clock: () => performance.now() / 1000 });
  idle.start();
  const before = idle.stats().transactions;
  await Bun.sleep(idleS * 1000);
  const n = idle.stats().transactions - before;
  idle.stop();
  console.log(`idle writer, default interval: ${n} transactions in ${idleS} s = ${((n * 60) / idleS).toFixed(1)} per minute (failures ${idle.stats().failures})`);

  // 3. One read of a report, clean and with 5,000 unknown keys.
  const timeRead = () => {
    const t: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      collectReports(dom0, { all: false, guests: [GUEST] }, systemClock);
      t.push(performance.now() - t0);
    }
    return pct(t, 50);
  };
  const clean = timeRead();
  for (let i = 0; i < 5000; i++) dom0.write(`${healthDir(STUB)}/junk${i}`, "x");
  const junk = timeRead();
  console.log(`one report read (median of 20): ${clean.toFixed(2)} ms clean, ${junk.toFixed(2)} ms with 5,000 extra keys`);
  stub.close();
  dom0.close();
} finally {
  await server.stop();
}
