// What a compromised stub domain could write into its own health keys: the cases the dom0
// readers (status's table and JSON, the Prometheus metrics) are tested against, and a healthy
// report to tamper with.
import { readReport, type Health, type ReaderClock } from "../../agent/health/reader.ts";
import { healthDir } from "../../agent/health/schema.ts";
import type { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { GUEST, libxlLayout, manualTimer, STUB, testClock, testWriter } from "./helpers.ts";

export const BASE = healthDir(STUB);
export const enc = (s: string) => new TextEncoder().encode(s);

/** A running stub domain's report (one NIC), written by the real writer. */
export async function healthy() {
  const { dom0, stub } = libxlLayout();
  const clock = testClock();
  const w = testWriter(stub, clock, manualTimer().every, {
    memory: () => ({ totalKib: 100_000, availableKib: 50_000 }),
    agentRss: () => ({ rssKib: 30_000, anonKib: 12_288 }),
    qemuRss: () => ({ rssKib: 20_000, anonKib: 11_264 }),
    nics: () => [
      { name: "eth0", link: "up", rx_packets: 1, rx_bytes: 2, rx_dropped: 0, tx_packets: 3, tx_bytes: 4, tx_dropped: 0, spoofed_dropped: 0 },
    ],
  });
  w.start();
  w.qemuStarted(312);
  w.setPhase("running");
  await Promise.resolve();
  const reader: ReaderClock = { wallMs: clock.wall, monoMs: () => 0 };
  return { dom0, stub, w, clock, reader, read: () => readReport(dom0, { stubdom: STUB, guest: GUEST }, reader) };
}

// Control characters (but the table's own newlines), DEL, C1, bidi and zero-width characters.
export const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

export type Case = {
  name: string;
  /** Changes made by the hostile stub domain (dom0 plays it: it may write anything). */
  tamper: (xs: MemoryXenStore) => void;
  health: Health;
  /** Lines (or parts of lines) the table must contain. */
  shows: (string | RegExp)[];
};

export const set = (k: string, v: string | Uint8Array) => (xs: MemoryXenStore) => xs.write(`${BASE}/${k}`, v);

export const cases: Case[] = [
  {
    name: "oversized value",
    tamper: set("phase", "running".repeat(400)),
    health: "invalid",
    shows: ["invalid phase: oversized: 2800 bytes, limit 1023: \"runningrunningrunningrunningrunningrunningrunnin…\"", /^5 +4 +invalid +invalid /m],
  },
  {
    name: "binary bytes",
    tamper: set("qemu_pid", new Uint8Array([0xff, 0x00, 0x1b, 0x5b, 0x32, 0x4a])),
    health: "invalid",
    shows: ['invalid qemu_pid: not valid UTF-8: "\\xff\\x00\\x1b[2J"', / invalid +48\.8M\/97\.7M/],
  },
  {
    name: "invalid UTF-8 (truncated sequence)",
    tamper: set("error", new Uint8Array([0x6f, 0x6b, 0xc3, 0x28])),
    health: "invalid",
    shows: ['invalid error: not valid UTF-8: "ok\\xc3("', /invalid$/m],
  },
  {
    name: "NUL inside a value",
    tamper: set("phase", enc("running\0crashed")),
    health: "invalid",
    shows: ['invalid phase: contains a NUL byte: "running\\x00crashed"'],
  },
  {
    name: "ANSI escapes in free text",
    tamper: set("error", "\x1b[2J\x1b]0;owned\x07\x1b[31mred"),
    health: "invalid",
    shows: ['invalid error: contains control characters: "\\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred"'],
  },
  {
    name: "C1 CSI (U+009B) in free text",
    tamper: set("exit_stderr", "a\u009b2Jb"),
    health: "invalid",
    shows: ['invalid exit_stderr: contains control characters: "a\\x9b2Jb"'],
  },
  {
    name: "bidi override in valid text is shown escaped",
    tamper: set("error", "disk \u202eflow\u202c ok"),
    health: "ok",
    shows: [/disk \\u\{202e\}flow\\u\{202c\} ok$/m, "    error: disk \\u{202e}flow\\u{202c} ok"],
  },
  {
    name: "escape sequence in an enum",
    tamper: set("qmp_status", "\x1b[2Jrunning"),
    health: "invalid",
    shows: ['invalid qmp_status: not a QMP run state: "\\x1b[2Jrunning"', / 312 invalid /],
  },
  {
    name: "wrong type: text for a number",
    tamper: set("uptime_ms", "ten"),
    health: "invalid",
    shows: ['invalid uptime_ms: not a non-negative decimal integer: "ten"', "invalid: uptime_ms is invalid"],
  },
  {
    name: "wrong type inside a NIC's JSON",
    tamper: set("nic/0", '{"name":"eth0","link":"up","rx_packets":"1","rx_bytes":2,"rx_dropped":0,"tx_packets":3,"tx_bytes":4,"tx_dropped":0,"spoofed_dropped":0}'),
    health: "invalid",
    shows: ['invalid nic/0: rx_packets: Invalid input: expected number, received string: "{"name":"eth0","link":"up","rx_packets":"1","rx_…"', / nic0 invalid /],
  },
  {
    name: "escape sequence as a NIC name and as an unknown JSON key",
    tamper: set("nic/0", '{"name":"\\u001b[31m","link":"up","\\u001b]0;x":1}'),
    health: "invalid",
    shows: ["invalid nic/0: name: not an interface name"],
  },
  {
    name: "not JSON where JSON is expected",
    tamper: set("boot_ms", "{mounts: 5"),
    health: "invalid",
    shows: ['invalid boot_ms: not valid JSON: "{mounts: 5"'],
  },
  {
    name: "prototype key in JSON",
    tamper: set("boot_ms", '{"__proto__":{"polluted":1},"constructor":2}'),
    health: "invalid",
    shows: ['invalid boot_ms: contains a __proto__ key: "{\"__proto__\":{\"polluted\":1},\"constructor\":2}"'],
  },
  {
    name: "deeply nested JSON",
    tamper: set("nic/0", "[".repeat(500) + "]".repeat(500)),
    health: "invalid",
    shows: ["invalid nic/0: Invalid input: expected object, received array"],
  },
  {
    name: "negative number",
    tamper: set("mem_total_kib", "-5"),
    health: "invalid",
    shows: ['invalid mem_total_kib: not a non-negative decimal integer: "-5"', "48.8M/invalid rss"],
  },
  {
    name: "number beyond 2^53",
    tamper: set("heartbeat", "99999999999999999999"),
    health: "invalid",
    shows: ['invalid heartbeat: not a non-negative decimal integer: "99999999999999999999"'],
  },
  {
    name: "negative number inside JSON",
    tamper: set("boot_ms", '{"mounts":-1}'),
    health: "invalid",
    shows: ["invalid boot_ms: mounts: negative"],
  },
  {
    name: "available memory above total",
    tamper: set("mem_available_kib", "200000"),
    health: "invalid",
    shows: ['invalid mem_available_kib: above mem_total_kib (100000): "200000"'],
  },
  {
    name: "future timestamp in the writer's clock",
    tamper: set("phase_since_ms", "999999999"),
    health: "invalid",
    shows: ['invalid phase_since_ms: after the writer\'s uptime_ms (1000): "999999999"', /^5 +4 +invalid +running +1\.0s/m],
  },
  {
    name: "future wall-clock heartbeat",
    tamper: set("heartbeat_wall_ms", String(1_764_000_000_000 + 86_400_000)),
    health: "invalid",
    shows: ["invalid: heartbeat_wall_ms is 1d00h in the future", "invalid heartbeat_wall_ms: 1d00h ahead of this machine's clock"],
  },
  {
    name: "unsupported schema version",
    tamper: set("schema", "2"),
    health: "invalid",
    shows: ['invalid schema: unsupported version 2 (this reader knows 1): "2"'],
  },
  {
    name: "missing required key",
    tamper: (xs) => xs.rm(`${BASE}/phase`),
    health: "invalid",
    shows: ["invalid: phase is missing", /^5 +4 +invalid +- +1\.0s/m],
  },
  {
    name: "missing optional keys",
    tamper: (xs) => {
      for (const k of ["qemu_pid", "mem_total_kib", "mem_available_kib", "agent_rss_kib", "qemu_rss_kib", "agent_rss_anon_kib", "qemu_rss_anon_kib", "nic"]) xs.rm(`${BASE}/${k}`);
    },
    health: "ok",
    shows: [/^5 +4 +ok +running 0\.0s +1\.0s +- +- +- +-$/m],
  },
  {
    name: "whole subtree gone",
    tamper: (xs) => xs.rm(BASE),
    health: "unreachable",
    shows: [`unreachable: no health keys at ${BASE}`],
  },
  {
    name: "5,000 extra keys",
    tamper: (xs) => {
      for (let i = 0; i < 5000; i++) xs.write(`${BASE}/junk${i}`, "\x1b[2J".repeat(100));
    },
    health: "ok",
    shows: ["5000 unknown keys ignored (junk0, junk1, junk2, …)"],
  },
  {
    name: "5,000 extra NICs",
    tamper: (xs) => {
      for (let i = 8; i < 5008; i++) xs.write(`${BASE}/nic/${i}`, "{}");
    },
    health: "ok",
    shows: [/ eth0 up +-$/m],
  },
  {
    name: "a value that is a directory of junk",
    tamper: (xs) => {
      xs.write(`${BASE}/phase/evil`, "\x1b[2J");
    },
    health: "ok",
    shows: [/^5 +4 +ok +running /m],
  },
];

