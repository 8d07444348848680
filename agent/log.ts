// One logger for the agent and the CLI. Lines look like
//   [    1.234567] info  mount proc on /proc type proc
// with the time since kernel start (CLOCK_BOOTTIME-like, from performance.timeOrigin), so
// they line up with the kernel's own printk timestamps on hvc0.

export type Level = "debug" | "info" | "warn" | "error";
const rank: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface LogSink {
  write(line: string): void;
}

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(prefix: string): Logger;
}

/** Seconds since boot, read from /proc/uptime's clock (process.hrtime is monotonic, not boot-based). */
export type Clock = () => number;

export function uptimeClock(): Clock {
  // performance.now() is relative to process start; offset it once by /proc/uptime if present.
  let offset = 0;
  try {
    const text = require("node:fs").readFileSync("/proc/uptime", "utf8") as string;
    offset = Number.parseFloat(text.split(" ")[0] ?? "0") - performance.now() / 1000;
  } catch {
    offset = 0; // no /proc (tests, early boot): times are then since process start
  }
  return () => offset + performance.now() / 1000;
}

export function formatLine(t: number, level: Level, msg: string): string {
  return `[${t.toFixed(6).padStart(12)}] ${level.padEnd(5)} ${msg}\n`;
}

export function createLogger(opts: { sink: LogSink; level?: Level; clock?: Clock; prefix?: string }): Logger {
  const min = rank[opts.level ?? "info"];
  const clock = opts.clock ?? uptimeClock();
  const make = (prefix: string): Logger => {
    const emit = (level: Level, msg: string) => {
      if (rank[level] < min) return;
      opts.sink.write(formatLine(clock(), level, prefix ? `${prefix}: ${msg}` : msg));
    };
    return {
      debug: (m) => emit("debug", m),
      info: (m) => emit("info", m),
      warn: (m) => emit("warn", m),
      error: (m) => emit("error", m),
      child: (p) => make(prefix ? `${prefix}: ${p}` : p),
    };
  };
  return make(opts.prefix ?? "");
}

export const stderrSink: LogSink = { write: (line) => void process.stderr.write(line) };
