// The agent's options from the kernel command line. They are parsed on their own, before
// xenstore is reachable, because one of them says how to reach xenstore.
import { z } from "zod";
import { MAX_DOMID } from "./keys.ts";
import { LIMITS, type AgentOptions, type CmdlineResult, type ConfigError } from "./types.ts";

export const DEFAULT_OPTIONS: AgentOptions = Object.freeze({
  loglevel: "info",
  crash: "shutdown-guest",
  crashGraceMs: 1000,
  healthInterval: 5,
  xenstore: Object.freeze({ kind: "default" }),
  domid: null,
  qmp: Object.freeze({ kind: "vchan" }),
  qemu: "/usr/libexec/xen-qemu-system-i386",
  shell: false,
  selftest: 0,
  confine: true,
});

const PREFIX = "stubdom.";
const portName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 of [A-Za-z0-9._-]");
const absPath = z.string().regex(/^\/[\x21-\x7e]{0,255}$/, "must be an absolute path of printable ASCII");
const decimal = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,6}$/, "must be a decimal number")
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
const virtio = (what: string) =>
  z
    .string()
    .startsWith("virtio:", `must be ${what}virtio:<port name>`)
    .transform((s) => s.slice("virtio:".length))
    .pipe(portName)
    .transform((name) => ({ kind: "virtio" as const, name }));

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

interface Option {
  /** Parse `raw` into its field of `into`; the reason when it is not valid. */
  apply(into: Mutable<AgentOptions>, raw: string): string | null;
  /** The value of a bare `stubdom.<name>` without `=`; undefined: a value is required. */
  bare?: string;
}

function option<K extends keyof AgentOptions>(field: K, schema: z.ZodType<AgentOptions[K], string>, bare?: string): Option {
  return {
    apply(into, raw) {
      const r = schema.safeParse(raw);
      if (!r.success) return r.error.issues[0]?.message ?? "invalid value";
      into[field] = r.data;
      return null;
    },
    bare,
  };
}

// Unknown names are reported, never ignored, so that a typo does not pass silently.
const OPTIONS = new Map<string, Option>([
  ["loglevel", option("loglevel", z.enum(["debug", "info", "warn", "error"]))],
  ["crash", option("crash", z.enum(["shutdown-guest", "poweroff", "hold"]))],
  ["crash_grace_ms", option("crashGraceMs", decimal(0, 60_000))],
  ["health_interval", option("healthInterval", decimal(1, 3600))],
  ["xenstore", option("xenstore", z.union([absPath.transform((path) => ({ kind: "path" as const, path })), virtio("an absolute path or ")]))],
  ["domid", option("domid", decimal(0, MAX_DOMID))],
  ["qmp", option("qmp", z.union([z.literal("vchan").transform(() => ({ kind: "vchan" as const })), virtio("vchan or ")]))],
  ["qemu", option("qemu", absPath)],
  ["shell", option("shell", z.enum(["0", "1"]).transform((s) => s === "1"), "1")],
  ["selftest", option("selftest", decimal(0, 3600))],
  ["confine", option("confine", z.enum(["0", "1"]).transform((s) => s === "1"), "1")],
]);

/** Split like the kernel does: whitespace separates, double quotes group; `--` ends the options. */
function tokens(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inQuote = false;
  let have = false;
  for (const ch of text) {
    if (ch === '"') {
      inQuote = !inQuote;
      have = true;
    } else if (!inQuote && (ch === " " || ch === "\t" || ch === "\n" || ch === "\r")) {
      if (have) out.push(cur);
      cur = "";
      have = false;
    } else {
      cur += ch;
      have = true;
    }
  }
  if (have) out.push(cur);
  const end = out.indexOf("--");
  return end < 0 ? out : out.slice(0, end);
}

/** Options from /proc/cmdline text. Never throws; a later duplicate wins, as in the kernel. */
export function parseCmdline(text: string): CmdlineResult {
  const errors: ConfigError[] = [];
  const options: Mutable<AgentOptions> = { ...DEFAULT_OPTIONS };
  let input = text;
  if (input.length > LIMITS.maxCmdlineBytes) {
    errors.push({ key: "cmdline", reason: `longer than ${LIMITS.maxCmdlineBytes} characters; the rest is ignored` });
    input = input.slice(0, LIMITS.maxCmdlineBytes);
  }
  for (const token of tokens(input)) {
    if (!token.startsWith(PREFIX)) continue;
    const eq = token.indexOf("=");
    const name = eq < 0 ? token.slice(PREFIX.length) : token.slice(PREFIX.length, eq);
    const key = `cmdline:${PREFIX}${name}`;
    const opt = OPTIONS.get(name);
    if (!opt) {
      errors.push({ key, reason: "unknown option" });
      continue;
    }
    const raw = eq < 0 ? opt.bare : token.slice(eq + 1);
    if (raw === undefined) {
      errors.push({ key, reason: "needs a value" });
      continue;
    }
    const reason = opt.apply(options, raw);
    if (reason) errors.push({ key, reason: `${JSON.stringify(raw)}: ${reason}` });
  }
  return { options: Object.freeze(options), errors };
}
