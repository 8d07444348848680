// The dom0 side: find stub domains and read their health reports. Everything under a stub
// domain's data/ was written by that domain and may come from a compromised QEMU, so each
// value is decoded on its own against the shared schema, bounded in size, and an invalid one
// is kept as {reason, escaped preview} instead of being trusted or thrown.
//
// Liveness, across two clocks (see schema.ts): a one-shot reader can only compare the
// writer's `heartbeat_wall_ms` with its own wall clock — an estimate, good to the skew between
// the two domains' clocks, which under Xen both start from the hypervisor's. A watching reader
// also times the heartbeat counter on its own monotonic clock, which needs no trust in the
// writer's clock at all; once it has seen the counter move, that observation decides.
import { transaction } from "../xenstore/transaction.ts";
import { readString } from "../xenstore/util.ts";
import { XBT_NULL, XenStoreError, type TxId, type XenStore } from "../xenstore/types.ts";
import { escapeText, preview } from "./sanitize.ts";
import {
  DEFAULT_INTERVAL_MS,
  HEALTH_KEYS,
  HEALTH_VERSION,
  MAX_DOMID,
  MAX_NICS,
  MAX_PCI,
  decodeKey,
  decodeNic,
  decodePci,
  healthDir,
  nicKey,
  pciKey,
  type Decoded,
  type HealthKey,
  type HealthValue,
  type NicHealth,
  type PciHealth,
} from "./schema.ts";

/** Bound on the domains looked at by --all. */
export const MAX_DOMAINS = 4096;
/** Unknown names of a report quoted as examples. */
const EXTRA_SAMPLE = 3;
/** A heartbeat is stale after this many of the writer's intervals. */
export const STALE_INTERVALS = 3;

export type Health = "ok" | "stale" | "invalid" | "unreachable";
/** An invalid value keeps why and an escaped preview of what was there; both are printable. */
export type Field<T> = { state: "ok"; value: T } | { state: "invalid"; reason: string; raw: string };
export type Fields = { [K in HealthKey]?: Field<HealthValue<K>> };

/** A field's value when it is valid; undefined when absent or invalid. */
export const valid = <T>(f: Field<T> | undefined): T | undefined => (f?.state === "ok" ? f.value : undefined);

/** QEMU's exit is recorded and not older than its last start (the table and the metrics agree on this). */
export function qemuExited(f: Fields): boolean {
  const at = valid(f.exit_at_ms);
  const started = valid(f.qemu_started_ms);
  return f.exit_at_ms !== undefined && (started === undefined || at === undefined || at >= started);
}

export interface StubReport {
  stubdom: number | null;
  guest: number | null;
  health: Health;
  /** Why health is not ok; already printable. */
  reasons: string[];
  fields: Fields;
  nics: { index: number; field: Field<NicHealth> }[];
  /** PCI passthrough devices, `pci/<index>`. */
  pci: { index: number; field: Field<PciHealth> }[];
  /** Keys the schema does not know: counted, a few names quoted (escaped). */
  extraKeys: { count: number; sample: string[] };
}

export interface ReaderClock {
  /** This machine's wall clock, ms since the epoch. */
  wallMs(): number;
  /** This process's monotonic clock, ms. */
  monoMs(): number;
}

export const systemClock: ReaderClock = { wallMs: () => Date.now(), monoMs: () => performance.now() };

/** What a watching reader saw of one stub domain's heartbeat counter, on its own clock. */
export interface HeartbeatSeen {
  counter: number;
  sinceMonoMs: number;
  /** The counter changed at least once while watched: then the observation decides. */
  advanced: boolean;
}

export interface Target {
  stubdom: number;
  guest: number | null;
}

const domidText = (s: string) => (/^(0|[1-9][0-9]{0,4})$/.test(s) && Number(s) <= MAX_DOMID ? Number(s) : undefined);

/** Reads a small decimal domid that somebody else wrote; a reason when it is absent or bad. */
function readDomid(xs: XenStore, path: string): number | string {
  let s: string | undefined;
  try {
    s = readString(xs, path, 16);
  } catch (e) {
    return escapeText(e instanceof Error ? e.message : String(e));
  }
  if (s === undefined) return `${path} does not exist`;
  const d = domidText(s);
  return d === undefined ? `${path} is not a domid: "${preview(new TextEncoder().encode(s), 16)}"` : d;
}

/** Guest G's device-model stub domain, cross-checked against the stub domain's `target`. */
export function findStubdom(xs: XenStore, guest: number): { stubdom: number } | { reason: string } {
  const s = readDomid(xs, `/local/domain/${guest}/image/device-model-domid`);
  if (typeof s === "string") return { reason: `no stub domain: ${s}` };
  const t = readDomid(xs, `/local/domain/${s}/target`);
  if (typeof t === "string") return { reason: `domain ${s} is not a stub domain: ${t}` };
  if (t !== guest) return { reason: `domain ${s} serves guest ${t}, not ${guest}` };
  return { stubdom: s };
}

/**
 * Every stub domain (a domain with a `target`), in domid order, and the domains looked at
 * (the first MAX_DOMAINS by domid; `truncated` says some were left out).
 */
export function listStubdoms(xs: XenStore): { targets: Target[]; domains: number[]; truncated: boolean; error?: string } {
  let names: string[];
  try {
    names = xs.directory("/local/domain");
  } catch (e) {
    if (e instanceof XenStoreError && e.errno === "ENOENT") return { targets: [], domains: [], truncated: false };
    return { targets: [], domains: [], truncated: false, error: `cannot list /local/domain: ${escapeText(String((e as Error).message ?? e))}` };
  }
  const all = names
    .map(domidText)
    .filter((d): d is number => d !== undefined)
    .sort((a, b) => a - b);
  const domains = all.slice(0, MAX_DOMAINS);
  const targets: Target[] = [];
  for (const d of domains) {
    const t = readDomid(xs, `/local/domain/${d}/target`);
    if (typeof t === "number") targets.push({ stubdom: d, guest: t });
  }
  return { targets, domains, truncated: all.length > MAX_DOMAINS };
}

export type Selection = { all: true } | { all: false; guests: number[] };

/**
 * The reports for a selection, one per stub domain (or per guest whose stub domain is not
 * found), and the xenstore paths whose change could change them: what --watch must watch.
 */
export function collectReports(
  xs: XenStore,
  sel: Selection,
  clock: ReaderClock,
  seen?: Map<number, HeartbeatSeen>,
): { reports: StubReport[]; notes: string[]; paths: string[] } {
  const paths = new Set<string>();
  let reports: StubReport[];
  const notes: string[] = [];
  if (sel.all) {
    const { targets, domains, truncated, error } = listStubdoms(xs);
    if (truncated) notes.push(`only the first ${MAX_DOMAINS} domains were looked at`);
    if (error) notes.push(error);
    // A new stub domain shows itself by its `target`, which may be written after it is introduced.
    paths.add("@introduceDomain").add("@releaseDomain");
    for (const d of domains) paths.add(`/local/domain/${d}/target`);
    reports = targets.map((t) => readReport(xs, t, clock, seen));
  } else {
    reports = sel.guests.map((g) => {
      paths.add(`/local/domain/${g}/image/device-model-domid`);
      const found = findStubdom(xs, g);
      if ("reason" in found) return unreachableReport({ stubdom: null, guest: g }, found.reason);
      paths.add(`/local/domain/${found.stubdom}/target`);
      return readReport(xs, { stubdom: found.stubdom, guest: g }, clock, seen);
    });
  }
  for (const r of reports) if (r.stubdom !== null) paths.add(healthDir(r.stubdom));
  return { reports, notes, paths: [...paths] };
}

export function unreachableReport(t: { stubdom: number | null; guest: number | null }, reason: string): StubReport {
  return { ...t, health: "unreachable", reasons: [reason], fields: {}, nics: [], pci: [], extraKeys: { count: 0, sample: [] } };
}

/** undefined = absent; a string = the read failed for another reason. */
function readRaw(xs: XenStore, path: string, tx: TxId): Uint8Array | undefined | string {
  try {
    return xs.read(path, tx);
  } catch (e) {
    if (e instanceof XenStoreError && e.errno === "ENOENT") return undefined;
    return `read failed: ${escapeText(e instanceof XenStoreError ? e.errno : String(e))}`;
  }
}

/**
 * One consistent snapshot of a stub domain's report (read inside a transaction that commits, and
 * is read again when the commit loses a race, so a report is never seen half-written), validated
 * and assessed.
 */
export function readReport(xs: XenStore, target: Target, clock: ReaderClock, seen?: Map<number, HeartbeatSeen>): StubReport {
  let report: StubReport;
  try {
    // xenstored snapshots a node when a transaction first touches it, not when the transaction
    // starts: only a commit without EAGAIN proves that no key changed while the report was read.
    report = transaction(xs, (tx) => readFields(xs, target, tx));
  } catch {
    // No transaction slot, or a writer that never pauses: read once without one (a torn report
    // is then possible).
    report = readFields(xs, target, XBT_NULL);
  }
  if (report.health !== "unreachable") assess(report, clock, seen);
  return report;
}

function readFields(xs: XenStore, target: Target, tx: TxId): StubReport {
  const base = healthDir(target.stubdom);
  let names: string[];
  try {
    names = xs.directory(base, tx);
  } catch (e) {
    const why = e instanceof XenStoreError && e.errno === "ENOENT" ? "no health keys" : `cannot list: ${escapeText(e instanceof XenStoreError ? e.errno : String(e))}`;
    return unreachableReport(target, `${why} at ${base}`);
  }
  const fields: Fields = {};
  const raws = new Map<string, Uint8Array>();
  for (const k of HEALTH_KEYS) {
    const raw = readRaw(xs, `${base}/${k}`, tx);
    if (raw === undefined) continue;
    if (typeof raw === "string") {
      (fields as Record<string, Field<unknown>>)[k] = { state: "invalid", reason: raw, raw: "" };
      continue;
    }
    raws.set(k, raw);
    const d = decodeKey(k, raw);
    (fields as Record<string, Field<unknown>>)[k] = d.ok ? { state: "ok", value: d.value } : { state: "invalid", reason: d.reason, raw: preview(raw) };
  }
  const entries = <T>(max: number, keyOf: (i: number) => string, decode: (raw: Uint8Array) => Decoded<T>) => {
    const out: { index: number; field: Field<T> }[] = [];
    for (let i = 0; i < max; i++) {
      const raw = readRaw(xs, `${base}/${keyOf(i)}`, tx);
      if (raw === undefined) continue;
      if (typeof raw === "string") {
        out.push({ index: i, field: { state: "invalid", reason: raw, raw: "" } });
        continue;
      }
      const d = decode(raw);
      out.push({ index: i, field: d.ok ? { state: "ok", value: d.value } : { state: "invalid", reason: d.reason, raw: preview(raw) } });
    }
    return out;
  };
  const nics = entries(MAX_NICS, nicKey, decodeNic);
  const pci = entries(MAX_PCI, pciKey, decodePci);
  const known = new Set<string>([...HEALTH_KEYS, "nic", "pci"]);
  const unknown = names.filter((n) => !known.has(n));
  const extraKeys = {
    count: unknown.length,
    sample: unknown.slice(0, EXTRA_SAMPLE).map((n) => preview(new TextEncoder().encode(n), 32)),
  };
  crossCheck(fields, raws);
  return { ...target, health: "ok", reasons: [], fields, nics, pci, extraKeys };
}

const invalidate = (fields: Fields, k: HealthKey, raws: Map<string, Uint8Array>, reason: string) => {
  const raw = raws.get(k);
  (fields as Record<string, Field<unknown>>)[k] = { state: "invalid", reason, raw: raw ? preview(raw) : "" };
};

/** Relations between keys that one key's schema cannot see, all within the writer's clock. */
function crossCheck(fields: Fields, raws: Map<string, Uint8Array>): void {
  const schema = fields.schema;
  if (schema?.state === "ok" && schema.value !== HEALTH_VERSION) {
    invalidate(fields, "schema", raws, `unsupported version ${schema.value} (this reader knows ${HEALTH_VERSION})`);
  }
  const up = fields.uptime_ms;
  if (up?.state === "ok") {
    for (const k of ["phase_since_ms", "qemu_started_ms", "qmp_at_ms", "exit_at_ms", "error_at_ms"] as const) {
      const f = fields[k];
      if (f?.state === "ok" && f.value > up.value) invalidate(fields, k, raws, `after the writer's uptime_ms (${up.value})`);
    }
    const boot = fields.boot_ms;
    if (boot?.state === "ok") {
      const late = Object.entries(boot.value).find(([, v]) => v > up.value);
      if (late) invalidate(fields, "boot_ms", raws, `${late[0]}: after the writer's uptime_ms (${up.value})`);
    }
  }
  const total = fields.mem_total_kib;
  const avail = fields.mem_available_kib;
  if (total?.state === "ok" && avail?.state === "ok" && avail.value > total.value) {
    invalidate(fields, "mem_available_kib", raws, `above mem_total_kib (${total.value})`);
  }
}

const CORE: HealthKey[] = ["schema", "phase", "heartbeat", "heartbeat_wall_ms", "uptime_ms"];

export function fmtDuration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  const sign = ms < 0 ? "-" : "";
  if (s < 60) return `${sign}${(Math.abs(ms) / 1000).toFixed(s < 10 ? 1 : 0)}s`;
  const p = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m${p(s % 60)}s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)}h${p(Math.floor(s / 60) % 60)}m`;
  return `${sign}${Math.floor(s / 86400)}d${p(Math.floor(s / 3600) % 24)}h`;
}

/** Sets health and reasons from the fields, this reader's clocks and what it has watched. */
function assess(r: StubReport, clock: ReaderClock, seen?: Map<number, HeartbeatSeen>): void {
  const f = r.fields;
  const bad = CORE.filter((k) => f[k]?.state !== "ok");
  for (const k of bad) r.reasons.push(`${k} is ${f[k] === undefined ? "missing" : "invalid"}`);
  const interval = f.interval_ms?.state === "ok" ? f.interval_ms.value : DEFAULT_INTERVAL_MS;
  const limit = STALE_INTERVALS * interval;

  let stale = false;
  const hb = f.heartbeat;
  if (seen && r.stubdom !== null && hb?.state === "ok") {
    const now = clock.monoMs();
    const prev = seen.get(r.stubdom);
    if (!prev || prev.counter !== hb.value) {
      seen.set(r.stubdom, { counter: hb.value, sinceMonoMs: now, advanced: prev !== undefined });
    } else if (now - prev.sinceMonoMs > limit) {
      stale = true;
      r.reasons.push(`heartbeat ${hb.value} unchanged for ${fmtDuration(now - prev.sinceMonoMs)} (watched here)`);
    }
  }
  const observed = r.stubdom !== null && seen?.get(r.stubdom)?.advanced === true;
  const wall = f.heartbeat_wall_ms;
  if (wall?.state === "ok" && !observed) {
    const age = clock.wallMs() - wall.value;
    if (age < -limit) {
      f.heartbeat_wall_ms = { state: "invalid", reason: `${fmtDuration(-age)} ahead of this machine's clock`, raw: String(wall.value) };
      r.reasons.push(`heartbeat_wall_ms is ${fmtDuration(-age)} in the future`);
    } else if (age > limit && !stale) {
      stale = true;
      r.reasons.push(`last heartbeat ${fmtDuration(age)} ago by the wall clock (interval ${fmtDuration(interval)})`);
    }
  }
  const coreBad = CORE.some((k) => f[k]?.state !== "ok");
  const invalid = Object.entries(f).filter(([, v]) => v?.state === "invalid").map(([k]) => k);
  const badNics = r.nics.filter((n) => n.field.state === "invalid").map((n) => nicKey(n.index));
  const badPci = r.pci.filter((n) => n.field.state === "invalid").map((n) => pciKey(n.index));
  const others = [...invalid, ...badNics, ...badPci].filter((k) => !CORE.includes(k as HealthKey));
  if (others.length > 0) r.reasons.push(`values that failed validation: ${others.join(", ")}`);
  r.health = coreBad ? "invalid" : stale ? "stale" : others.length > 0 ? "invalid" : "ok";
}

/**
 * When `r` would turn stale if nothing changes, in this process's monotonic clock; undefined
 * when it cannot (already stale or unreachable, or no usable heartbeat). A report with some
 * invalid values still has one: a dead writer must show as stale whatever else it wrote.
 */
export function staleDeadline(r: StubReport, clock: ReaderClock, seen: Map<number, HeartbeatSeen>): number | undefined {
  if (r.health === "stale" || r.health === "unreachable" || r.stubdom === null) return undefined;
  const f = r.fields;
  const interval = f.interval_ms?.state === "ok" ? f.interval_ms.value : DEFAULT_INTERVAL_MS;
  const limit = STALE_INTERVALS * interval;
  const s = seen.get(r.stubdom);
  const byWatch = s ? s.sinceMonoMs + limit : undefined;
  if (s?.advanced) return byWatch;
  const wall = f.heartbeat_wall_ms;
  const byWall = wall?.state === "ok" ? clock.monoMs() + (wall.value + limit - clock.wallMs()) : undefined;
  const all = [byWatch, byWall].filter((x): x is number => x !== undefined);
  return all.length > 0 ? Math.min(...all) : undefined;
}
