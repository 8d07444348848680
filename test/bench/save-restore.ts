// Save, restore and migration times (issue 18) of one guest OS three ways, in the same
// `make bench`: its QEMU in our stub domain, in dom0 (device_model_stubdomain_override=0) and in
// the shell baseline's stub domain. Each is one nested boot of test/xen in its save/restore mode
// (dom0-test.sh save_restore): the numbers are those its PASS lines print.
// - save_ms: `xl save` until the file is written and both domains are gone;
// - restore_ms: `xl restore` until it returns with the guest running again;
// - migrate_downtime_ms: the longest gap between the guest's once-a-second ticks around
//   `xl migrate` to the same host (±1 s: dom0-test.sh stamps lines by polling).
import { bootNestedXen, type NestedXenRun, type NestedXenOptions } from "../xen/harness.ts";
import { imagesFor } from "../xen/run.ts";
import type { Field, MeasureResult, Measurement } from "./run.ts";

type Way = "agent" | "dom0" | "baseline";

/** The numbers of one save/restore run, or why each is not there (the check's own words). */
export function saveRestoreNumbers(r: Pick<NestedXenRun, "results" | "times" | "abnormal">): {
  save?: number;
  restore?: number;
  downtime?: number;
  why: Partial<Record<"save" | "restore" | "downtime", string>>;
} {
  const why: Partial<Record<"save" | "restore" | "downtime", string>> = {};
  // A check with no line never ran: the run's first failure (or its abnormal end) says why.
  const first = r.results.find((x) => x.status === "FAIL");
  const cause = r.abnormal ? ` (${r.abnormal})` : first ? ` (first failure: ${first.check}: ${first.detail})` : "";
  const took = (check: string, key: "save" | "restore"): number | undefined => {
    const res = r.results.find((x) => x.check === check);
    const ms = res?.status === "PASS" ? /\bin (\d+) ms\b/.exec(res.detail)?.[1] : undefined;
    if (ms !== undefined) return Number(ms);
    why[key] = res ? `${check} ${res.status}: ${res.detail}` : `no ${check} line${cause}`;
    return undefined;
  };
  const save = took("save", "save");
  const restore = took("restore", "restore");
  const cont = r.results.find((x) => x.check === "migrate-continues");
  const gap = r.times["migrate-tick-gap-ms"];
  let downtime: number | undefined;
  if (cont?.status === "PASS" && gap !== undefined && Number.isFinite(gap) && gap > 0) downtime = gap;
  else why.downtime = cont ? `migrate-continues ${cont.status}: ${cont.detail}` : `no migrate-continues line${cause}`;
  return { save, restore, downtime, why };
}

const FIELD = {
  save: (w: Way) => `save_ms_${w}` as Field,
  restore: (w: Way) => `restore_ms_${w}` as Field,
  downtime: (w: Way) => `migrate_downtime_ms_${w}` as Field,
};
const WAYS: Way[] = ["agent", "dom0", "baseline"];

export const saveRestore: Measurement = {
  name: "save, restore, migrate (nested Xen 4.17: our stub domain, QEMU in dom0, the baseline's)",
  fields: WAYS.flatMap((w) => [FIELD.save(w), FIELD.restore(w), FIELD.downtime(w)]),
  async run() {
    const out: MeasureResult = { values: {}, missing: {}, absent: {}, samples: {} };
    for (const way of WAYS) {
      const kind = way === "agent" ? "ours" : "baseline";
      const opts: NestedXenOptions = {
        kind, ...(await imagesFor(kind)), mode: "saverestore", timeoutMs: 900_000, ...(way === "dom0" ? { dm: "dom0" as const } : {}),
      };
      const t = performance.now();
      const r = await bootNestedXen(opts);
      const n = saveRestoreNumbers(r);
      process.stderr.write(`    ${way}: save ${n.save ?? "-"} ms, restore ${n.restore ?? "-"} ms, migration downtime ${n.downtime ?? "-"} ms (${Math.round((performance.now() - t) / 1000)} s)\n`);
      for (const key of ["save", "restore", "downtime"] as const) {
        const v = n[key];
        if (v !== undefined) out.values[FIELD[key](way)] = v;
        // The baseline's stub domain failing an operation is a property of the baseline; ours or
        // dom0's failing is a measurement not taken (a bug to look at).
        else if (way === "baseline") out.absent![FIELD[key](way)] = n.why[key]!;
        else out.missing![FIELD[key](way)] = n.why[key]!;
      }
      out.samples![`save_restore_${way}_wall_ms`] = r.wallMs;
    }
    return out;
  },
};
