// The health report's one schema, shared by the writer (PID 1 in the stub domain) and the
// reader (`stubdom-init status` in dom0). The report is a flat set of keys under
// /local/domain/S/data/stubdom: S can write there, the guest cannot read it (protocol doc §2).
//
// Clocks: the writer and the reader run on different kernels. Every `*_ms` time the writer
// records is in ITS OWN clock, milliseconds since its kernel started (the clock of its log
// lines on hvc0), so differences between them (uptime, time in phase, QEMU age) never mix
// clocks. One key, `heartbeat_wall_ms`, is the writer's wall clock at the last report; under
// Xen a PV domain's wall clock starts from the hypervisor's, which dom0 keeps in step with its
// own, so the reader may compare it with its own wall clock to estimate the report's age. It
// cannot be trusted further than that (a skewed or hostile writer can set anything), which is
// why the reader also watches the heartbeat counter advance on its own monotonic clock.
//
// Every key is decoded on its own from at most MAX_VALUE_BYTES of UTF-8, so one bad value
// costs one field, never the report.
import { z } from "zod";
import { escapeText, truncate } from "./sanitize.ts";

export const HEALTH_VERSION = 1;
/** "Every value under 1 KiB" (issue 7): the reader refuses anything longer. */
export const MAX_VALUE_BYTES = 1023;
/** Free text (error, stderr tail) is cut to this many UTF-8 bytes by the writer. */
export const MAX_TEXT_BYTES = 900;
export const MAX_NICS = 8;
/** PCI passthrough devices looked at and reported, at most (Qubes' sys-net and sys-usb have a few). */
export const MAX_PCI = 8;
/** A passthrough device's error, cut by the writer to this many UTF-8 bytes. */
export const MAX_PCI_ERROR_BYTES = 400;
export const MAX_BOOT_PHASES = 16;
/** The writer's heartbeat interval bounds; the kernel command line allows 1..3600 s. */
export const MIN_INTERVAL_MS = 100;
export const MAX_INTERVAL_MS = 3_600_000;
export const DEFAULT_INTERVAL_MS = 5_000;
// DOMID_FIRST_RESERVED (xen/include/public/xen.h): ids from 0x7FF0 up are not domains.
export const MAX_DOMID = 0x7fef;

export const PHASES = ["booting", "configuring", "starting", "running", "stopping", "crashed", "failed"] as const;
export type Phase = (typeof PHASES)[number];

export function healthDir(domid: number): string {
  return `/local/domain/${domid}/data/stubdom`;
}

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

const uint = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^(0|[1-9][0-9]{0,15})$/, "not a non-negative decimal integer")
    .transform(Number)
    .pipe(z.number().min(min, `below ${min}`).max(max, `above ${max}`));

/**
 * Free text may keep newlines and tabs (stderr lines), nothing else that steers a terminal.
 * The writer replaces the rest; the reader refuses it, so an escape sequence written by
 * someone else shows up as an invalid value, not as an effect.
 */
export const CONTROL_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
const text = z
  .string()
  .refine((s) => s.search(CONTROL_CHARS) < 0, "contains control characters")
  .refine((s) => utf8Bytes(s) <= MAX_TEXT_BYTES, `longer than ${MAX_TEXT_BYTES} bytes`);

const json = <T>(schema: z.ZodType<T>) =>
  z
    .string()
    .transform((s, ctx) => {
      let protoKey = false;
      let parsed: unknown;
      try {
        // zod drops a `__proto__` key without a word; a writer of this schema never sends one.
        parsed = JSON.parse(s, (k, v: unknown) => ((protoKey ||= k === "__proto__"), v));
      } catch {
        ctx.addIssue({ code: "custom", message: "not valid JSON" });
        return z.NEVER;
      }
      if (protoKey) {
        ctx.addIssue({ code: "custom", message: "contains a __proto__ key" });
        return z.NEVER;
      }
      return parsed;
    })
    .pipe(schema);

export const NIC_REDIRECT_PROBLEMS = ["tap_gone", "netfront_gone", "relink_failed"] as const;
export type NicRedirectProblem = (typeof NIC_REDIRECT_PROBLEMS)[number];

const count = z.number().int("not an integer").min(0, "negative").max(Number.MAX_SAFE_INTEGER, "too large");
const ifName = z.string().regex(/^[A-Za-z0-9._-]{1,15}$/, "not an interface name");

export const NicSchema = z.strictObject({
  name: ifName,
  tap: ifName.optional(),
  link: z.enum(["up", "down", "unknown"]),
  rx_packets: count,
  rx_bytes: count,
  rx_dropped: count,
  tx_packets: count,
  tx_bytes: count,
  tx_dropped: count,
  /** Frames from the guest whose source MAC or IP was not its own, dropped by the redirect. */
  spoofed_dropped: count,
  /**
   * Present only while the redirect between netfront and tap is NOT in place: one side's link
   * disappeared, or linking it again failed. Absent means linked (and keeps entries readable
   * by readers older than this field, which refuse unknown fields).
   */
  redirect: z.enum(NIC_REDIRECT_PROBLEMS).optional(),
});
export type NicHealth = z.output<typeof NicSchema>;

export const PCI_STATES = ["waiting", "present", "missing", "removing"] as const;
const hex4 = z.string().regex(/^[0-9a-f]{4}$/, "not four hex digits");

/** One passthrough device (agent/pci/tracker.ts says what each state means). */
const bdf = z.string().regex(/^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/, "not a PCI address");
export const PciSchema = z.strictObject({
  /** The host's address: what libxl gives QEMU. */
  bdf,
  /** Where pcifront shows it in the stub domain, when that differs (pciback not in passthrough mode). */
  local: bdf.optional(),
  state: z.enum(PCI_STATES),
  vendor: hex4.optional(),
  device: hex4.optional(),
  since_ms: count,
  error: z
    .string()
    .refine((s) => s.search(CONTROL_CHARS) < 0, "contains control characters")
    .refine((s) => utf8Bytes(s) <= MAX_PCI_ERROR_BYTES, `longer than ${MAX_PCI_ERROR_BYTES} bytes`)
    .optional(),
});
export type PciHealth = z.output<typeof PciSchema>;
export type PciState = (typeof PCI_STATES)[number];

/** How QEMU is confined (agent/qemu/confine.ts): what an administrator checks first after an exploit report. */
export const ConfinementSchema = z.strictObject({
  /** Our seccomp filter is installed (stubdom-confine). */
  seccomp: z.boolean(),
  /** The kernel's Landlock ABI the rules were made for; 0: no Landlock rules. */
  landlock_abi: z.number().int().min(0).max(255),
  landlock_rules: z.number().int().min(0).max(1000),
  /** QEMU's own `-sandbox` is on too (a QEMU linked with libseccomp). */
  qemu_sandbox: z.boolean(),
  /** Why confinement is off, when it is: `stubdom.confine=0`, or the helper is missing. */
  off: z.string().max(200).refine((s) => s.search(CONTROL_CHARS) < 0, "contains control characters").optional(),
});
export type Confinement = z.output<typeof ConfinementSchema>;

export const BOOT_PHASE_NAME = /^[a-z][a-z0-9_]{0,23}$/;
const BootSchema = z
  .record(z.string().regex(BOOT_PHASE_NAME, "not a phase name"), count)
  .refine((r) => Object.keys(r).length <= MAX_BOOT_PHASES, `more than ${MAX_BOOT_PHASES} phases`);

/**
 * One entry per key: a zod schema from the stored string to the value, and the inverse.
 * Adding a key = one line here; changing a key's meaning = bump HEALTH_VERSION.
 */
const key = <T>(schema: z.ZodType<T, string>, format: (v: T) => string) => ({ schema, format });
const num = (min?: number, max?: number) => key(uint(min, max), String);
const str = <T extends string>(schema: z.ZodType<T, string>) => key(schema, (s: T) => s);

export const KEYS = {
  /** HEALTH_VERSION of the writer. */
  schema: num(1),
  /** The writer's heartbeat interval: the reader's yardstick for "stale". */
  interval_ms: num(MIN_INTERVAL_MS, MAX_INTERVAL_MS),
  phase: str(z.enum(PHASES)),
  phase_since_ms: num(),
  /** Writer clock at the last report. */
  uptime_ms: num(),
  /** Reports written so far; advances at least once per interval while the agent lives. */
  heartbeat: num(),
  /** Writer wall clock (ms since the epoch) at the last report. */
  heartbeat_wall_ms: num(),
  /** Boot phase name → ms since kernel start when it finished. */
  boot_ms: key(json(BootSchema), (v) => JSON.stringify(v)),
  /** PID 1 entry → QEMU execve. */
  agent_overhead_ms: num(),
  confinement: key(json(ConfinementSchema), (v) => JSON.stringify(v)),
  qemu_pid: num(2, 4_194_304),
  qemu_started_ms: num(),
  /** QMP query-status `status` (a RunState), or `unresponsive` when the probe timed out. */
  qmp_status: str(z.string().regex(/^[a-z][a-z-]{0,31}$/, "not a QMP run state")),
  qmp_at_ms: num(),
  exit_code: num(0, 255),
  exit_signal: str(z.string().regex(/^SIG[A-Z0-9]{1,12}$/, "not a signal name")),
  exit_at_ms: num(),
  /** The last lines QEMU wrote to stderr before it exited. */
  exit_stderr: str(text),
  error: str(text),
  error_at_ms: num(),
  mem_total_kib: num(),
  mem_available_kib: num(),
  agent_rss_kib: num(),
  qemu_rss_kib: num(),
  agent_rss_anon_kib: num(),
  qemu_rss_anon_kib: num(),
} as const;

export type HealthKey = keyof typeof KEYS;
export const HEALTH_KEYS = Object.keys(KEYS) as HealthKey[];
export type HealthValue<K extends HealthKey> = z.output<(typeof KEYS)[K]["schema"]>;

/** The whole report as the writer holds it and the reader rebuilds it. */
export type HealthRecord = { -readonly [K in HealthKey]?: HealthValue<K> } & { nics: NicHealth[]; pci?: PciHealth[] };

/** NIC i is stored at `nic/<i>` as compact JSON, i < MAX_NICS. */
export const nicKey = (i: number) => `nic/${i}`;
const nicCodec = key(json(NicSchema), (v) => JSON.stringify(v));
/** PCI device i is stored at `pci/<i>` as compact JSON, i < MAX_PCI. */
export const pciKey = (i: number) => `pci/${i}`;
const pciCodec = key(json(PciSchema), (v) => JSON.stringify(v));

/** The keys and values that represent `rec`, relative to healthDir(). */
export function encodeHealth(rec: HealthRecord): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of HEALTH_KEYS) {
    const v = rec[k];
    if (v === undefined) continue;
    out.set(k, (KEYS[k].format as (v: unknown) => string)(v));
  }
  rec.nics.slice(0, MAX_NICS).forEach((nic, i) => out.set(nicKey(i), nicCodec.format(nic)));
  (rec.pci ?? []).slice(0, MAX_PCI).forEach((dev, i) => out.set(pciKey(i), pciCodec.format(dev)));
  return out;
}

/** A decoded value, or why not; `reason` is already escaped for printing. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeWith<T>(schema: z.ZodType<T, string>, raw: Uint8Array): Decoded<T> {
  if (raw.length > MAX_VALUE_BYTES) return { ok: false, reason: `oversized: ${raw.length} bytes, limit ${MAX_VALUE_BYTES}` };
  let s: string;
  try {
    s = utf8.decode(raw);
  } catch {
    return { ok: false, reason: "not valid UTF-8" };
  }
  if (s.includes("\0")) return { ok: false, reason: "contains a NUL byte" };
  const r = schema.safeParse(s);
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  // zod quotes offending object keys and values in its messages: they are hostile too.
  return { ok: false, reason: truncate(escapeText(`${where}${issue?.message ?? "invalid"}`), 200) };
}

export function decodeKey<K extends HealthKey>(k: K, raw: Uint8Array): Decoded<HealthValue<K>> {
  return decodeWith(KEYS[k].schema as z.ZodType<HealthValue<K>, string>, raw);
}

export function decodeNic(raw: Uint8Array): Decoded<NicHealth> {
  return decodeWith(nicCodec.schema, raw);
}

export function decodePci(raw: Uint8Array): Decoded<PciHealth> {
  return decodeWith(pciCodec.schema, raw);
}
