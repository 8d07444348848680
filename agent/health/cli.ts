// `stubdom-init status [GUEST_DOMID...|--all] [--json|--prometheus] [--watch]`, run in dom0.
// Exit status: 0 when every stub domain shown reports fresh, valid keys and is neither crashed
// nor failed; 1 otherwise (also when none is found or xenstore is unreachable); 2 for a usage
// error, so a monitoring script can use it as is. With --prometheus, 0 whenever the snapshot was
// written (health is in the metrics). libxenstore picks the connection (XENSTORED_PATH).
import { parseArgs } from "node:util";
import { pumpUntilSignal } from "../xenstore/pump.ts";
import type { XenStore } from "../xenstore/types.ts";
import { collectReports, systemClock, type Selection, type StubReport } from "./reader.ts";
import { guestNames, renderPrometheus } from "./prometheus.ts";
import { renderJson, renderTable } from "./render.ts";
import { escapeText } from "./sanitize.ts";
import { MAX_DOMID } from "./schema.ts";
import { watchStatus, type StatusFrame } from "./watch.ts";

const USAGE = "usage: stubdom-init status [GUEST_DOMID...|--all] [--json|--prometheus] [--watch]\n";

export interface StatusArgs {
  selection: Selection;
  json: boolean;
  /** The Prometheus text format (for node_exporter's textfile collector); not with --watch. */
  prometheus: boolean;
  watch: boolean;
}

export function parseStatusArgs(argv: string[]): StatusArgs | { error: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { all: { type: "boolean" }, json: { type: "boolean" }, prometheus: { type: "boolean" }, watch: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    return { error: escapeText((e as Error).message) };
  }
  const { values, positionals } = parsed;
  const guests: number[] = [];
  for (const p of positionals) {
    if (!/^[0-9]{1,5}$/.test(p) || Number(p) > MAX_DOMID) return { error: `not a guest domid: ${escapeText(p)}` };
    if (!guests.includes(Number(p))) guests.push(Number(p));
  }
  if (values.all && guests.length > 0) return { error: "give guest domids or --all, not both" };
  if (values.prometheus && values.json) return { error: "give --json or --prometheus, not both" };
  if (values.prometheus && values.watch) return { error: "--prometheus is one snapshot (`stubdom-init exporter` serves a watched one)" };
  const selection: Selection = guests.length > 0 ? { all: false, guests } : { all: true };
  return { selection, json: values.json === true, prometheus: values.prometheus === true, watch: values.watch === true };
}

function healthy(r: StubReport): boolean {
  const phase = r.fields.phase;
  return r.health === "ok" && phase?.state === "ok" && phase.value !== "crashed" && phase.value !== "failed";
}

export function renderFrame(frame: StatusFrame, json: boolean): string {
  if (json) return renderJson(frame.reports);
  return renderTable(frame.reports) + frame.notes.map((n) => `note: ${n}\n`).join("");
}

async function open(watch: boolean): Promise<XenStore> {
  const { openXenStore } = await import("../../ffi/xenstore.ts");
  return openXenStore({ watchWakeups: watch ? "caller" : "loop" });
}

export async function run(argv: string[]): Promise<number> {
  const args = parseStatusArgs(argv);
  if ("error" in args) {
    process.stderr.write(`stubdom-init status: ${args.error}\n${USAGE}`);
    return 2;
  }
  let xs: XenStore;
  try {
    xs = await open(args.watch);
  } catch (e) {
    process.stderr.write(`stubdom-init status: cannot reach xenstore: ${escapeText((e as Error).message)}\n`);
    return 1;
  }
  try {
    if (!args.watch) {
      const r = collectReports(xs, args.selection, systemClock);
      if (args.prometheus) {
        process.stdout.write(renderPrometheus(r.reports, { clock: systemClock, names: guestNames(xs, r.reports) }));
        // The exposition has no place for notes; they go where a person running it sees them.
        for (const n of r.notes) process.stderr.write(`stubdom-init status: ${n}\n`);
        // Health is in the metrics; exit 0 says the snapshot is whole, so `> tmp && mv` works.
        return 0;
      }
      process.stdout.write(renderFrame({ reports: r.reports, notes: r.notes }, args.json));
      return r.reports.length > 0 && r.reports.every(healthy) ? 0 : 1;
    }
    // Clear and redraw on a terminal; on a pipe, append frames (one JSON line each with --json).
    const tty = process.stdout.isTTY === true && !args.json;
    let last = "";
    const w = watchStatus({
      xs,
      selection: args.selection,
      onFrame: (frame) => {
        const text = renderFrame(frame, args.json);
        if (text === last) return;
        last = text;
        process.stdout.write(tty ? `\x1b[H\x1b[2J${text}` : args.json ? text : `${text}\n`);
      },
    });
    // After events, long enough for watchStatus's settle and minimum gap (5 + 25 ms).
    await pumpUntilSignal(xs, { afterEventsMs: 30 });
    w.stop();
    return 0;
  } finally {
    xs.close();
  }
}
