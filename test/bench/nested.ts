// The measurements that need the real `xl create` path, for the agent and for the busybox
// baseline (test/bench/baseline): boot time, xl create time, the agent's own overhead, the
// memory floor and MemAvailable at 144 MiB, plus the baseline image's sizes.
//
// The timed boots run both images at one stub domain memory, BOOT_MEM: libxl's default
// (128 + 16 MiB video) unless STUBDOM_MEMORY says otherwise (printed); one more boot of each at
// the default measures MemAvailable there, or records that it did not boot.
//
// One nested boot runs them all: Xen + dom0 from test/xen (dom0.ts builds the outer images,
// dom0-init.sh brings up the toolstack), with test/bench/xen-dom0.sh in place of the dom0 test
// script. A Xen + dom0 boot costs about a minute under TCG and a domain build 10-20 s, so one
// boot for ~20 creates keeps `make bench` well inside its 45 minutes; one bootNestedXen() per
// create would not. The runs alternate agent and baseline so that drift hits both.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rootfs, writeCpioImage } from "../../agent/build/image.ts";
import { buildOuterImages, type OuterImages } from "../xen/dom0.ts";
import { OUTER_CPU, PANICS, XEN_CMDLINE, runOuterVm } from "../xen/harness.ts";
import { memoryFromEnv } from "../xen/run.ts";
import { buildBaselineImages } from "./baseline/image.ts";
import type { MeasureResult, Measurement, Values } from "./run.ts";
import { rootfsSize } from "./rootfs.ts";
import { median } from "./util.ts";
import { ROOT } from "../xenstore/harness.ts";

type Kind = "ours" | "baseline";

/** The whole serial console of the last run, for when a number looks wrong. */
const CONSOLE_LOG = join(ROOT, "dist/bench-xen-console.log");

interface CreateLine {
  kind: Kind;
  mem: string;
  mode: string;
  ok: boolean;
  xlCreateMs: number;
  unpause?: number;
  running?: number;
}

function parseBench(log: string) {
  const creates: CreateLine[] = [];
  const status: Array<{ mode: string; json: string }> = [];
  const floors: Partial<Record<Kind, string>> = {};
  const xlErrors: string[] = [];
  /** MemAvailable (KiB) that an init printed on its console, per kind and create mode. */
  const meminfo: Array<{ kind: Kind; mode: string; kib: number }> = [];
  /** The stub domain's console tail after a failed create. */
  const stubLog: string[] = [];
  for (const raw of log.split("\n")) {
    // Xen's console and dom0's hvc each turn \n into \r\n.
    const line = raw.trimEnd();
    const m = /^BENCH (ours|baseline|all) (\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    const [, kind, what, rest = ""] = m as unknown as [string, Kind, string, string];
    if (what === "create") {
      const kv = Object.fromEntries([...rest.matchAll(/(\w+)=(\S+)/g)].map((x) => [x[1], x[2]]));
      creates.push({
        kind,
        mem: kv.mem ?? "?",
        mode: kv.mode ?? "?",
        ok: kv.ok === "1",
        xlCreateMs: Number(kv.xl_create_ms),
        unpause: /unpause (\d+)/.exec(rest) ? Number(/unpause (\d+)/.exec(rest)![1]) : undefined,
        running: /running (\d+)/.exec(rest) ? Number(/running (\d+)/.exec(rest)![1]) : undefined,
      });
    } else if (what === "status") {
      const s = /^mode=(\S+) (.*)$/.exec(rest);
      if (s) status.push({ mode: s[1]!, json: s[2]! });
    } else if (what === "meminfo") {
      const s = /^mode=(\S+) (\d+)$/.exec(rest.trim());
      if (s) meminfo.push({ kind, mode: s[1]!, kib: Number(s[2]) });
    }
    else if (what === "floor") floors[kind] = rest.trim();
    else if (what === "xl-log" || what === "error") xlErrors.push(`${kind}: ${rest}`);
    else if (what === "stub-log") stubLog.push(`${kind}: ${rest}`);
  }
  return { creates, status, floors, xlErrors, meminfo, stubLog };
}

async function bootBench(opts: {
  outer: OuterImages;
  images: Record<Kind, { kernel: string; rootfs: string }>;
  agent: string;
  plan: string;
  timeoutS: number;
}): Promise<{ log: string; problem?: string }> {
  const dir = mkdtempSync(join(tmpdir(), "bench-xen-"));
  try {
    const head = new Rootfs();
    const script = opts.plan + readFileSync(join(ROOT, "test/bench/xen-dom0.sh"), "utf8");
    head.file("e2e/test.sh", new TextEncoder().encode(script), 0o755);
    for (const k of ["ours", "baseline"] as const) {
      head.file(`e2e/${k}-kernel`, { file: opts.images[k].kernel }, 0o644);
      head.file(`e2e/${k}-rootfs`, { file: opts.images[k].rootfs }, 0o644);
    }
    head.file("usr/bin/stubdom-init", { file: opts.agent }, 0o755);
    const headPath = join(dir, "head.cpio");
    await writeCpioImage(head.records, headPath, { compression: "none" });
    // Concatenated archives unpack in order and a later regular file replaces an earlier one:
    // ours comes last so that its e2e/test.sh is the one dom0-init.sh runs.
    const initrd = join(dir, "initrd.cpio");
    const w = Bun.file(initrd).writer();
    for (const f of [opts.outer.dom0Initramfs, headPath]) for await (const c of Bun.file(f).stream()) w.write(c);
    await w.end();
    const qemu = [
      "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", OUTER_CPU, "-m", "2048", "-smp", "2",
      "-display", "none", "-monitor", "none", "-no-reboot",
      "-kernel", opts.outer.xen, "-append", XEN_CMDLINE,
      "-initrd", `${opts.outer.dom0Kernel} console=hvc0 earlyprintk=xen,${initrd}`,
    ];
    const { log, end } = await runOuterVm(qemu, {
      timeoutS: opts.timeoutS,
      consoleFile: join(dir, "console.log"),
      onLine: (l) => void (l.startsWith("BENCH ") && process.stderr.write(`    xen| ${l.trimEnd()}\n`)),
    });
    writeFileSync(CONSOLE_LOG, log);
    const panic = PANICS.find((re) => re.test(log));
    if (panic) return { log, problem: `the nested Xen console shows ${panic.source.replace(/\\/g, "")}` };
    if (!log.includes("E2E DONE")) return { log, problem: `the nested Xen run did not finish (outer QEMU: ${end})` };
    return { log };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function statusValues(json: string): Record<string, unknown> | undefined {
  try {
    const reports = JSON.parse(json) as Array<{ values?: Record<string, unknown> }>;
    return reports[0]?.values;
  } catch {
    return undefined;
  }
}

export const nestedXen: Measurement = {
  name: "nested Xen (xl create: boot, memory floor, MemAvailable at 144 MiB)",
  fields: [
    "boot_ms_agent", "boot_ms_baseline", "boot_ratio", "xl_create_ms_agent", "xl_create_ms_baseline",
    "agent_overhead_ms", "boot_mem_mib", "min_mem_mib_agent", "min_mem_mib_baseline",
    "mem_available_mib_at_144_agent", "mem_available_mib_at_144_baseline",
    "mem_available_mib_at_boot_mem_agent", "mem_available_mib_at_boot_mem_baseline",
    "rootfs_bytes_compressed_baseline", "rootfs_bytes_unpacked_baseline",
  ],
  async run(quick): Promise<MeasureResult> {
    const baseline = await buildBaselineImages();
    const size = await rootfsSize(baseline.rootfs);
    const values: Values = { rootfs_bytes_compressed_baseline: size.compressed, rootfs_bytes_unpacked_baseline: size.unpacked };
    const missing: MeasureResult["missing"] = {};
    const absent: MeasureResult["absent"] = {};
    const samples: Record<string, unknown> = {};
    const fail = (fields: readonly (keyof Values)[], why: string) => {
      for (const f of fields) if (values[f] === undefined) missing[f] = why;
    };
    const nestedFields = nestedXen.fields.filter((f) => !f.startsWith("rootfs_"));
    try {
      const outer = await buildOuterImages();
      const rounds = quick ? 1 : 3;
      const order = Array.from({ length: rounds }, () => "ours baseline").join(" ");
      const bootMem = memoryFromEnv() ?? "default";
      process.stderr.write(`    timed boots at STUBDOM_MEMORY=${bootMem === "default" ? "libxl's default, 128" : bootMem} MiB (+16 MiB video) for both images\n`);
      const plan =
        `BOOT_MEM=${bootMem}\nBOOT_ORDER="${order}"\nAT144_KINDS="ours baseline"\n` +
        `FLOOR_KINDS="ours baseline"\nFLOOR_LO=64\nFLOOR_HI=320\nSTEP=8\n`;
      const { log, problem } = await bootBench({
        outer,
        images: { ours: { kernel: join(ROOT, "dist/qemu-stubdom-linux-kernel"), rootfs: join(ROOT, "dist/qemu-stubdom-linux-rootfs") }, baseline },
        agent: join(ROOT, "dist/stubdom-init"),
        plan,
        timeoutS: (quick ? 20 : 30) * 60,
      });
      const r = summarizeNested(log, problem);
      Object.assign(values, r.values, { boot_mem_mib: bootMem === "default" ? 128 : bootMem });
      Object.assign(missing, r.missing);
      Object.assign(absent, r.absent);
      Object.assign(samples, r.samples);
    } catch (e) {
      fail(nestedFields, (e as Error).message.split("\n")[0]!);
    }
    return { values, missing, absent, samples };
  },
};

const mib = (kib: number) => Number((kib / 1024).toFixed(1));

/** Fields from a nested run's console (the log of dist/bench-xen-console.log can be re-read). */
export function summarizeNested(
  log: string,
  problem?: string,
): Required<Pick<MeasureResult, "values" | "missing" | "absent" | "samples">> {
  // What finished before a failure still counts; the rest is missing for its reason.
  const r = parseBench(log);
  const values: Values = {};
  const missing: NonNullable<MeasureResult["missing"]> = {};
  const absent: NonNullable<MeasureResult["absent"]> = {};
  const samples: Record<string, unknown> = {};
  if (problem) r.xlErrors.push(`ours: ${problem}`, `baseline: ${problem}`);
  samples.xen_creates = r.creates;
  if (r.stubLog.length) samples.xen_failed_stub_console = r.stubLog;
  if (problem) samples.xen_problem = problem;
  const reports = r.status.map((s) => ({ mode: s.mode, values: statusValues(s.json) }));
  samples.agent_status = reports;
  /** MemAvailable (KiB) once running: ours from its health report, the baseline from its console. */
  const availKib = (kind: Kind, mode: string): number[] =>
    kind === "ours"
      ? reports.filter((x) => x.mode === mode).map((x) => x.values?.mem_available_kib).filter((x): x is number => typeof x === "number")
      : r.meminfo.filter((x) => x.kind === kind && x.mode === mode).map((x) => x.kib);
  for (const [kind, suffix] of [["ours", "agent"], ["baseline", "baseline"]] as const) {
    const first = r.xlErrors.find((e) => e.startsWith(`${kind}:`));
    const boots = r.creates.filter((c) => c.kind === kind && c.mode === "boot");
    // A boot is timed when QEMU reached running, even if xl then failed for its own reasons
    // (its monitoring child segfaulted once here); xl create's time counts only when it succeeded.
    const timed = boots.filter((c) => c.unpause !== undefined && c.running !== undefined);
    const created = boots.filter((c) => c.ok);
    samples[`xen_boots_${suffix}`] = { planned: boots.length, reached_running: timed.length, xl_create_ok: created.length };
    const why = (what: string) => `none of ${boots.length} timed boot(s) ${what}${first ? ` (${first})` : ""}`;
    if (timed.length) values[`boot_ms_${suffix}`] = median(timed.map((c) => c.running! - c.unpause!));
    else missing[`boot_ms_${suffix}`] = why("reached running");
    if (created.length) values[`xl_create_ms_${suffix}`] = median(created.map((c) => c.xlCreateMs));
    else missing[`xl_create_ms_${suffix}`] = why("passed xl create");
    const atBoot = availKib(kind, "boot");
    if (atBoot.length) values[`mem_available_mib_at_boot_mem_${suffix}`] = mib(median(atBoot));
    else missing[`mem_available_mib_at_boot_mem_${suffix}`] = why("reported MemAvailable");

    // At libxl's default memory, "did not boot" is the measurement, not a failure to take one.
    const at144 = r.creates.find((c) => c.kind === kind && c.mode === "at144");
    const avail144 = availKib(kind, "at144");
    const field = `mem_available_mib_at_144_${suffix}` as const;
    if (avail144.length) values[field] = mib(median(avail144));
    else if (at144 && at144.running === undefined) {
      const stub = r.stubLog.find((l) => l.startsWith(`${kind}:`) && /Initramfs|Out of memory|deadlocked|panic/i.test(l));
      absent[field] = `did not reach running at 128 + 16 MiB${stub ? ` (${stub.slice(kind.length + 2).trim()})` : first ? ` (${first})` : ""}`;
    } else missing[field] = at144 ? "reached running but reported no MemAvailable" : (problem ?? "no boot at the default memory");

    const floor = r.floors[kind];
    if (floor && /^\d+$/.test(floor)) values[`min_mem_mib_${suffix}`] = Number(floor);
    else missing[`min_mem_mib_${suffix}`] = floor ? `xl create failed at every size up to ${floor.replace(/^above /, "")} MiB` : (problem ?? "no floor line from dom0");
  }
  if (values.boot_ms_agent !== undefined && values.boot_ms_baseline !== undefined) {
    values.boot_ratio = Number((values.boot_ms_agent / values.boot_ms_baseline).toFixed(3));
  } else missing.boot_ratio = "boot time of one of the two images missing";
  const num = (k: string) => reports.map((v) => v.values?.[k]).filter((x): x is number => typeof x === "number");
  const overhead = num("agent_overhead_ms");
  if (overhead.length) values.agent_overhead_ms = median(overhead);
  else missing.agent_overhead_ms = `no agent_overhead_ms in stubdom-init status (${r.status[0]?.json.slice(0, 120) ?? "no status line"})`;
  samples.agent_rss_kib_xen = num("agent_rss_kib");
  return { values, missing, absent, samples };
}
