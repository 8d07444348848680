// `make bench`: every benchmark of issue 10 in one run, each against its baseline in the same
// run, printed as a table and written to dist/bench.json (numbers; null when not measured,
// with the reason under `not_measured`, or null when measured not to exist, e.g. MemAvailable
// at a size where the image does not boot, under `absent`). Benchmarks never fail on a number;
// this exits 1 when a measurement could not be taken. BENCH_QUICK=1 takes each measurement once (a fast check).
// Run: ./node_modules/.bin/bun test/bench/run.ts
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { measureCrashDetect, measureIdleWrites } from "./crash.ts";
import { measureExporterScrape } from "./exporter.ts";
import { nestedXen } from "./nested.ts";
import { rootfsSize } from "./rootfs.ts";
import { saveRestore } from "./save-restore.ts";
import { measureAgentRss } from "./rss.ts";
import { median, percentile } from "./util.ts";
import { BUN, ROOT } from "../xenstore/harness.ts";

const QUICK = process.env.BENCH_QUICK === "1";
const MIB = 1024 * 1024;

/** Every field of dist/bench.json, in table order, with its unit and goal (issue 10). */
const FIELDS = {
  boot_ms_agent: { unit: "ms" },
  boot_ms_baseline: { unit: "ms" },
  boot_ratio: { unit: "", goal: { max: 1.0 } },
  xl_create_ms_agent: { unit: "ms" },
  xl_create_ms_baseline: { unit: "ms" },
  agent_overhead_ms: { unit: "ms" },
  boot_mem_mib: { unit: "MiB" },
  min_mem_mib_agent: { unit: "MiB", goal: { max: 128 } },
  min_mem_mib_baseline: { unit: "MiB" },
  mem_available_mib_at_144_agent: { unit: "MiB" },
  mem_available_mib_at_144_baseline: { unit: "MiB" },
  mem_available_mib_at_boot_mem_agent: { unit: "MiB" },
  mem_available_mib_at_boot_mem_baseline: { unit: "MiB" },
  agent_rss_mib: { unit: "MiB" },
  rootfs_bytes_compressed_agent: { unit: "B" },
  rootfs_bytes_compressed_baseline: { unit: "B" },
  rootfs_bytes_unpacked_agent: { unit: "B" },
  rootfs_bytes_unpacked_baseline: { unit: "B" },
  redirect_gbps: { unit: "Gbit/s" },
  bridge_gbps: { unit: "Gbit/s" },
  redirect_ratio: { unit: "", goal: { min: 1.0 } },
  nic_link_ms: { unit: "ms" },
  crash_detect_ms_p50: { unit: "ms" },
  crash_detect_ms_p99: { unit: "ms", goal: { max: 50 } },
  xenstore_writes_per_min_steady: { unit: "/min", goal: { max: 12 } },
  exporter_scrape_ms: { unit: "ms" },
  save_ms_agent: { unit: "ms" },
  save_ms_dom0: { unit: "ms" },
  save_ms_baseline: { unit: "ms" },
  restore_ms_agent: { unit: "ms" },
  restore_ms_dom0: { unit: "ms" },
  restore_ms_baseline: { unit: "ms" },
  migrate_downtime_ms_agent: { unit: "ms" },
  migrate_downtime_ms_dom0: { unit: "ms" },
  migrate_downtime_ms_baseline: { unit: "ms" },
} as const satisfies Record<string, { unit: string; goal?: { max: number } | { min: number } }>;

export type Field = keyof typeof FIELDS;
export type Values = Partial<Record<Field, number>>;

export interface MeasureResult {
  values: Values;
  /** Fields that could not be taken, with why, while the others were. */
  missing?: Partial<Record<Field, string>>;
  /** Fields measured not to exist (the image did not boot at that size), with what was seen. */
  absent?: Partial<Record<Field, string>>;
  /** Raw samples and conditions, kept in bench.json for the record. */
  samples?: Record<string, unknown>;
}

export interface Measurement {
  name: string;
  fields: readonly Field[];
  run(quick: boolean): Promise<MeasureResult>;
}

const round = (x: number, digits = 2) => Number(x.toFixed(digits));

const measurements: Measurement[] = [
  {
    name: "rootfs sizes (dist/ after make build)",
    fields: ["rootfs_bytes_compressed_agent", "rootfs_bytes_unpacked_agent"],
    async run() {
      const agent = await rootfsSize(join(ROOT, "dist/qemu-stubdom-linux-rootfs"));
      return { values: { rootfs_bytes_compressed_agent: agent.compressed, rootfs_bytes_unpacked_agent: agent.unpacked } };
    },
  },
  {
    name: "agent RSS (dist/stubdom-init init --subreaper, fake QEMU, host)",
    fields: ["agent_rss_mib"],
    async run() {
      const kib = await measureAgentRss(2000);
      return { values: { agent_rss_mib: round(kib / 1024, 1) }, samples: { agent_rss_kib_host: kib } };
    },
  },
  {
    name: "crash detection (SIGKILL -> crashed through a xenstore watch, host)",
    fields: ["crash_detect_ms_p50", "crash_detect_ms_p99"],
    async run(quick) {
      const ms = await measureCrashDetect(quick ? 1 : 50);
      return {
        values: { crash_detect_ms_p50: round(median(ms)), crash_detect_ms_p99: round(percentile(ms, 99)) },
        samples: { crash_detect_ms: ms.map((x) => round(x)) },
      };
    },
  },
  {
    name: "xenstore writes while idle (server trace, host)",
    fields: ["xenstore_writes_per_min_steady"],
    async run(quick) {
      const r = await measureIdleWrites(quick ? 15 : 60);
      return {
        values: { xenstore_writes_per_min_steady: round(r.perMinute, 1) },
        samples: { idle_writes: r.writes, idle_window_s: round(r.seconds) },
      };
    },
  },
  {
    name: "exporter scrape (100 stub domains in the wire server, host)",
    fields: ["exporter_scrape_ms"],
    async run(quick) {
      const ms = await measureExporterScrape(quick ? 5 : 50);
      return { values: { exporter_scrape_ms: round(median(ms)) }, samples: { exporter_scrape_ms: ms.map((x) => round(x)) } };
    },
  },
  {
    name: "network (test/bench/net.ts: iperf3 redirect vs bridge, linkNic)",
    fields: ["redirect_gbps", "bridge_gbps", "redirect_ratio", "nic_link_ms"],
    run: (quick) => netBench(quick ? 2 : 10, quick ? 1 : 3),
  },
  nestedXen,
  saveRestore,
];

/**
 * test/bench/net.ts is a script (its own namespaces, its own process); its printed lines are
 * the interface. A line that no longer parses is a measurement not taken, not a guess.
 */
async function netBench(seconds: number, rounds: number): Promise<MeasureResult> {
  const p = Bun.spawn([BUN, join(ROOT, "test/bench/net.ts"), String(seconds), String(rounds)], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (out.trim()) process.stderr.write(`${out.trimEnd().replace(/^/gm, "    net| ")}\n`);
  if (code !== 0) throw new Error(`test/bench/net.ts exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
  const num = (re: RegExp, what: string) => {
    const m = re.exec(out);
    if (!m) throw new Error(`test/bench/net.ts printed no ${what}: ${out.trim().split("\n")[0] ?? "(nothing)"}`);
    return Number(m[1]);
  };
  const list = (re: RegExp) => (re.exec(out)?.[1] ?? "").split(",").map(Number);
  const redirect = num(/tc redirect\s+([\d.]+) Gbit\/s/, "redirect throughput");
  const bridge = num(/linux bridge\s+([\d.]+) Gbit\/s/, "bridge throughput");
  return {
    values: {
      redirect_gbps: redirect,
      bridge_gbps: bridge,
      redirect_ratio: round(redirect / bridge, 3),
      nic_link_ms: num(/first link of the other \d+\s+median ([\d.]+) ms/, "linkNic median"),
    },
    samples: {
      iperf_seconds: seconds,
      iperf_rounds: rounds,
      redirect_gbps: list(/tc redirect\s+[\d.]+ Gbit\/s\s+\(([^)]*)\)/),
      bridge_gbps: list(/linux bridge\s+[\d.]+ Gbit\/s\s+\(([^)]*)\)/),
    },
  };
}

function fmt(field: Field, v: number): string {
  const unit = FIELDS[field].unit;
  if (unit === "B") return `${v.toLocaleString("en-US")} B (${(v / MIB).toFixed(1)} MiB)`;
  return unit ? `${v} ${unit}` : String(v);
}

function goalText(field: Field, v: number | undefined): string {
  const f = FIELDS[field];
  if (!("goal" in f)) return "";
  const g = f.goal;
  const want = "max" in g ? `<= ${g.max}` : `>= ${g.min}`;
  if (v === undefined) return `goal ${want}`;
  const met = "max" in g ? v <= g.max : v >= g.min;
  return `goal ${want}: ${met ? "met" : "NOT met"}`;
}

async function main(): Promise<number> {
  const t0 = performance.now();
  const values: Values = {};
  const missing: Partial<Record<Field, string>> = {};
  const absent: Partial<Record<Field, string>> = {};
  const samples: Record<string, unknown> = {};
  const durations: Record<string, number> = {};
  for (const m of measurements) {
    const ts = performance.now();
    process.stderr.write(`==> ${m.name}${QUICK ? " [quick]" : ""}\n`);
    try {
      const r = await m.run(QUICK);
      Object.assign(values, r.values);
      Object.assign(missing, r.missing);
      Object.assign(absent, r.absent);
      Object.assign(samples, r.samples);
      for (const f of m.fields) {
        const v = r.values[f];
        if (v === undefined && !r.missing?.[f] && !r.absent?.[f]) missing[f] = "the measurement returned no value";
        else if (v !== undefined && !Number.isFinite(v)) {
          delete values[f];
          missing[f] = `not a finite number (${v})`;
        }
      }
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).trim();
      process.stderr.write(`    not measured: ${why}\n`);
      for (const f of m.fields) missing[f] = why.split("\n")[0]!;
    }
    durations[m.name] = round((performance.now() - ts) / 1000, 1);
    process.stderr.write(`    (${durations[m.name]} s)\n`);
  }

  const fields = Object.keys(FIELDS) as Field[];
  const rows = fields.map((f) => {
    const v = values[f];
    const none = absent[f] ? `none: ${absent[f]}` : `not measured: ${missing[f] ?? "?"}`;
    return [f, v === undefined ? none : fmt(f, v), goalText(f, v)];
  });
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.min(60, Math.max(...rows.map((r) => r[1]!.length)));
  const totalS = round((performance.now() - t0) / 1000, 1);
  process.stdout.write(`\nbench${QUICK ? " (BENCH_QUICK=1: each measurement once)" : ""}, ${totalS} s\n`);
  for (const [a, b, c] of rows) process.stdout.write(`  ${a!.padEnd(w0)}  ${b!.padEnd(w1)}  ${c}\n`);

  const json: Record<string, unknown> = Object.fromEntries(fields.map((f) => [f, values[f] ?? null]));
  Object.assign(json, {
    quick: QUICK,
    date: new Date().toISOString(),
    total_s: totalS,
    not_measured: missing,
    absent,
    samples,
    durations_s: durations,
  });
  mkdirSync(join(ROOT, "dist"), { recursive: true });
  writeFileSync(join(ROOT, "dist/bench.json"), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`wrote dist/bench.json\n`);
  const n = Object.keys(missing).length;
  if (n > 0) process.stdout.write(`${n} field(s) not measured: bench FAILED\n`);
  return n > 0 ? 1 : 0;
}

process.exit(await main());
