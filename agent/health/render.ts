// Turning reports into a table for people or JSON for programs. Every string that came from a
// stub domain passes through escapeText/safeJson on its way out, valid or not: validation says
// what a value means, escaping says how it may be printed, and neither replaces the other.
import { fmtDuration, qemuExited, valid as ok, type Field, type StubReport } from "./reader.ts";
import { escapeText, safeJson, truncate } from "./sanitize.ts";
import type { Confinement, NicHealth, PciHealth } from "./schema.ts";

const cell = <T>(f: Field<T> | undefined, fmt: (v: T) => string, missing = "-"): string =>
  f === undefined ? missing : f.state === "invalid" ? "invalid" : fmt(f.value);

const mib = (kib: number | undefined) => (kib === undefined ? "?" : `${(kib / 1024).toFixed(1)}M`);

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function phaseCell(r: StubReport): string {
  const f = r.fields;
  return cell(f.phase, (p) => {
    const since = ok(f.phase_since_ms);
    const up = ok(f.uptime_ms);
    return since !== undefined && up !== undefined ? `${p} ${fmtDuration(up - since)}` : p;
  });
}

function exitText(r: StubReport): string | undefined {
  const f = r.fields;
  if (f.exit_at_ms === undefined) return undefined;
  const sig = ok(f.exit_signal);
  const code = ok(f.exit_code);
  return sig !== undefined ? sig : code !== undefined ? `code ${code}` : "?";
}

function qemuCell(r: StubReport): string {
  const f = r.fields;
  return cell(f.qemu_pid, (pid) => (qemuExited(f) ? `${pid} exited ${exitText(r)}` : `${pid} ${cell(f.qmp_status, (s) => s, "?")}`));
}

const MEMORY_KEYS = [
  "mem_available_kib", "mem_total_kib", "agent_rss_kib", "qemu_rss_kib", "agent_rss_anon_kib", "qemu_rss_anon_kib",
] as const;

/** "avail/total rss agent+qemu anon agent+qemu" (MiB): anonymous memory is what grows if a process leaks. */
function memoryCell(r: StubReport): string {
  const f = r.fields;
  if (MEMORY_KEYS.every((k) => f[k] === undefined)) return "-";
  const [avail, total, agent, qemu, agentAnon, qemuAnon] = MEMORY_KEYS.map((k) => (f[k]?.state === "invalid" ? "invalid" : mib(ok(f[k]))));
  return `${avail}/${total} rss ${agent}+${qemu} anon ${agentAnon}+${qemuAnon}`;
}

const nicCell = (r: StubReport) =>
  r.nics.length === 0
    ? "-"
    : r.nics.map((n) => (n.field.state === "ok" ? `${n.field.value.name} ${n.field.value.redirect ?? n.field.value.link}` : `nic${n.index} invalid`)).join(", ");

const nicLine = (i: number, n: NicHealth) =>
  `nic${i} ${n.name}${n.tap ? `<->${n.tap}` : ""} ${n.link}${n.redirect ? ` (redirect: ${n.redirect})` : ""}: rx ${n.rx_packets} pkts ${bytes(n.rx_bytes)} ${n.rx_dropped} dropped, ` +
  `tx ${n.tx_packets} pkts ${bytes(n.tx_bytes)} ${n.tx_dropped} dropped, ${n.spoofed_dropped} spoofed dropped`;

/** "pci 0000:03:00.0 8086:10d3 present for 12.0s", then the error, escaped. */
const pciLine = (p: PciHealth, uptime: number | undefined) =>
  `pci ${p.bdf}${p.local ? ` (here ${p.local})` : ""}${p.vendor && p.device ? ` ${p.vendor}:${p.device}` : ""} ${p.state}` +
  `${uptime !== undefined && uptime >= p.since_ms ? ` for ${fmtDuration(uptime - p.since_ms)}` : ""}` +
  `${p.error ? `: ${truncate(escapeText(p.error), 300)}` : ""}`;

export const confinementText = (c: Confinement): string =>
  c.off !== undefined && !c.seccomp
    ? `OFF (${escapeText(c.off)})${c.qemu_sandbox ? ", QEMU -sandbox" : ""}`
    : [
        c.seccomp ? "seccomp filter" : "no seccomp filter",
        c.landlock_abi > 0 ? `Landlock ABI ${c.landlock_abi} (${c.landlock_rules} rules)` : "no Landlock",
        ...(c.qemu_sandbox ? ["QEMU -sandbox"] : []),
      ].join(", ");

/**
 * Per-report lines under the table row: why it is not ok, NIC counters, exit, invalid values.
 * Reasons and previews arrive escaped; values are escaped here.
 */
function details(r: StubReport): string[] {
  const f = r.fields;
  const out: string[] = [];
  if (r.health !== "ok") for (const reason of r.reasons) out.push(`${r.health}: ${reason}`);
  for (const n of r.nics) if (n.field.state === "ok") out.push(nicLine(n.index, n.field.value));
  for (const p of r.pci) if (p.field.state === "ok") out.push(pciLine(p.field.value, ok(f.uptime_ms)));
  const exit = exitText(r);
  if (exit !== undefined) {
    const at = ok(f.exit_at_ms);
    const stderr = ok(f.exit_stderr);
    const last = stderr?.split("\n").filter((l) => l.trim() !== "").slice(-3) ?? [];
    out.push(`last exit: ${exit}${at !== undefined ? ` at uptime ${fmtDuration(at)}` : ""}${last.length ? ", stderr:" : ""}`);
    for (const l of last) out.push(`  | ${truncate(escapeText(l), 160)}`);
  }
  const c = ok(f.confinement);
  if (c !== undefined) out.push(`confinement: ${confinementText(c)}`);
  const err = ok(f.error);
  if (err !== undefined) {
    const at = ok(f.error_at_ms);
    out.push(`error${at !== undefined ? ` at uptime ${fmtDuration(at)}` : ""}: ${truncate(escapeText(err.replace(/\n/g, " ")), 300)}`);
  }
  for (const [k, v] of Object.entries(f)) {
    if (v?.state === "invalid") out.push(`invalid ${k}: ${v.reason}${v.raw ? `: "${v.raw}"` : ""}`);
  }
  for (const [kind, list] of [["nic", r.nics], ["pci", r.pci]] as const) {
    for (const n of list) if (n.field.state === "invalid") out.push(`invalid ${kind}/${n.index}: ${n.field.reason}${n.field.raw ? `: "${n.field.raw}"` : ""}`);
  }
  if (r.extraKeys.count > 0) out.push(`${r.extraKeys.count} unknown keys ignored (${r.extraKeys.sample.join(", ")}${r.extraKeys.count > r.extraKeys.sample.length ? ", …" : ""})`);
  return out;
}

const HEADER = ["STUBDOM", "GUEST", "HEALTH", "PHASE", "UPTIME", "QEMU", "MEMORY avail/total rss|anon agent+qemu", "NICS", "LAST ERROR"];
const MAX_CELL = [7, 5, 11, 24, 8, 28, 52, 32, 40];

export function renderTable(reports: StubReport[]): string {
  if (reports.length === 0) return "no stub domains found\n";
  const rows = reports.map((r) => {
    const f = r.fields;
    const cells = [
      r.stubdom === null ? "?" : String(r.stubdom),
      r.guest === null ? "?" : String(r.guest),
      r.health,
      phaseCell(r),
      cell(f.uptime_ms, fmtDuration),
      qemuCell(r),
      memoryCell(r),
      nicCell(r),
      cell(f.error, (e) => e.replace(/\n/g, " ")),
    ];
    return cells.map((c, i) => truncate(escapeText(c), MAX_CELL[i] ?? 40));
  });
  const widths = HEADER.map((h, i) => Math.max(h.length, ...rows.map((row) => Array.from(row[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(Math.max(0, (widths[i] ?? 0) - Array.from(c).length))))
      .join("  ")
      .trimEnd();
  const out = [line(HEADER)];
  reports.forEach((r, i) => {
    out.push(line(rows[i] ?? []));
    for (const d of details(r)) out.push(`    ${d}`);
  });
  return `${out.join("\n")}\n`;
}

/** The report as plain data: valid values, invalid ones with reason and escaped preview. */
export function reportJson(r: StubReport): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  const invalid: Record<string, { reason: string; raw: string }> = {};
  for (const [k, v] of Object.entries(r.fields)) {
    if (v?.state === "ok") values[k] = v.value;
    else if (v) invalid[k] = { reason: v.reason, raw: v.raw };
  }
  return {
    stubdom: r.stubdom,
    guest: r.guest,
    health: r.health,
    reasons: r.reasons,
    values,
    nics: r.nics.map((n) => (n.field.state === "ok" ? { index: n.index, ...n.field.value } : { index: n.index, invalid: { reason: n.field.reason, raw: n.field.raw } })),
    pci: r.pci.map((n) => (n.field.state === "ok" ? { index: n.index, ...n.field.value } : { index: n.index, invalid: { reason: n.field.reason, raw: n.field.raw } })),
    invalid,
    extra_keys: r.extraKeys,
  };
}

/** One line of ASCII-only JSON: an array of reports. */
export function renderJson(reports: StubReport[]): string {
  return `${safeJson(reports.map(reportJson))}\n`;
}
