// The health report's writer, run by PID 1 in the stub domain. PID 1 tells it what happens
// (phase, boot phases, QEMU started/exited, QMP status, errors); it samples memory and NIC
// counters itself at each heartbeat, and writes whatever changed in ONE xenstore transaction.
//
// Cost: one transaction per interval in steady state. Phase changes and QEMU start/exit are
// written at once, coalesced per microtask so `qemuExited(); setPhase("crashed")` is a single
// transaction. Errors and QMP status wait for the next heartbeat, so a caller that reports
// an error in a tight loop cannot turn the writer into a xenstore flood.
//
// It never throws into its caller: PID 1 must not die because dom0's view of it is late. A
// failed write is logged once and retried, in full, at the next heartbeat.
import type { Clock, Logger } from "../log.ts";
import { transaction } from "../xenstore/transaction.ts";
import { XenStoreError, type TxId, type XenStore } from "../xenstore/types.ts";
import { headUtf8, tailUtf8 } from "./cut.ts";
import { procMemory, procRss, type MemInfo, type ProcRss } from "./proc.ts";
import {
  BOOT_PHASE_NAME,
  CONTROL_CHARS,
  ConfinementSchema,
  DEFAULT_INTERVAL_MS,
  HEALTH_VERSION,
  MAX_BOOT_PHASES,
  MAX_INTERVAL_MS,
  MAX_NICS,
  MAX_PCI,
  MAX_PCI_ERROR_BYTES,
  MAX_TEXT_BYTES,
  MIN_INTERVAL_MS,
  NicSchema,
  PciSchema,
  encodeHealth,
  healthDir,
  type Confinement,
  type HealthRecord,
  type NicHealth,
  type PciHealth,
  type Phase,
} from "./schema.ts";

/** Where the heartbeat's samples come from; each may fail or return undefined. */
export interface HealthSources {
  memory(): MemInfo | undefined;
  agentRss(): ProcRss | undefined;
  qemuRss(pid: number): ProcRss | undefined;
  /**
   * Link state and counters per NIC pair, at most MAX_NICS reported. Netlink answers
   * asynchronously, so a promise is accepted; one that takes longer than a second (or half
   * the interval) is not waited for: that heartbeat keeps the previous counters.
   */
  nics(): NicHealth[] | Promise<NicHealth[]>;
  /** PCI passthrough devices (agent/pci/tracker.ts), at most MAX_PCI reported. */
  pci(): PciHealth[];
}

export const procSources: HealthSources = {
  memory: () => procMemory(),
  agentRss: () => procRss("self"),
  qemuRss: (pid) => procRss(pid),
  nics: () => [],
  pci: () => [],
};

export interface HealthWriterOptions {
  xs: XenStore;
  /** The stub domain's own domid: keys go to /local/domain/<domid>/data/stubdom. */
  domid: number;
  log: Logger;
  /** Heartbeat interval; default 5000 (stubdom.health_interval × 1000), clamped to 100 ms..1 h. */
  intervalMs?: number;
  /** Seconds since kernel start (agent/log.ts); all `*_ms` keys are in this clock. */
  clock: Clock;
  /** Wall clock, ms since the epoch; default Date.now. */
  wallClock?: () => number;
  /** Missing sources fall back to procSources (NICs and PCI devices: none). */
  sources?: Partial<HealthSources>;
  /** Runs `fn` every `ms` until the returned function is called; default setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
}

export interface QemuExit {
  code?: number;
  /** Signal name, e.g. "SIGKILL", when QEMU was killed by a signal. */
  signal?: string;
  /** The last lines QEMU wrote to stderr; only the tail that fits MAX_TEXT_BYTES is kept. */
  stderr: string[];
}

export interface HealthWriterStats {
  /** Transactions committed (each one is one heartbeat). */
  transactions: number;
  /** Flushes that failed and were left for the next heartbeat. */
  failures: number;
}

export interface HealthWriter {
  /** Write the first report at once and start the heartbeat. */
  start(): void;
  /** Written at once (coalesced with other calls of the same tick). */
  setPhase(phase: Phase): void;
  /** A boot phase finished `atMs` ms after kernel start (default: now). Next heartbeat. */
  bootPhase(name: string, atMs?: number): void;
  /** PID 1 entry → QEMU execve, in ms. Next heartbeat. */
  agentOverhead(ms: number): void;
  /** How the QEMU about to start is confined. Written with qemuStarted. */
  confinement(c: Confinement): void;
  /** Written at once. */
  qemuStarted(pid: number, atMs?: number): void;
  /** Written at once. Clears the QMP status and QEMU RSS; pid and start time stay. */
  qemuExited(exit: QemuExit): void;
  /** query-status result, or "unresponsive" when the probe timed out. Next heartbeat; ignored while no QEMU runs. */
  qmpStatus(status: string): void;
  /** The last error, cut to MAX_TEXT_BYTES. Next heartbeat. */
  error(message: string): void;
  /** Write now; false when the write failed (it is retried at the next heartbeat). */
  flush(): boolean;
  /** Stop the heartbeat after a last write (synchronous). Later phase/QEMU events are still written at once. */
  stop(): void;
  stats(): HealthWriterStats;
}

const defaultEvery = (ms: number, fn: () => void) => {
  const t = setInterval(fn, ms);
  return () => clearInterval(t);
};

const QMP_STATUS = /^[a-z][a-z-]{0,31}$/;
const SIGNAL = /^SIG[A-Z0-9]{1,12}$/;
const isCount = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;

export function createHealthWriter(opts: HealthWriterOptions): HealthWriter {
  const { xs, log } = opts;
  const base = healthDir(opts.domid);
  const wall = opts.wallClock ?? Date.now;
  const every = opts.every ?? defaultEvery;
  const sources: HealthSources = { ...procSources, ...opts.sources };
  const intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, Math.round(opts.intervalMs ?? DEFAULT_INTERVAL_MS)));
  const nowMs = () => Math.max(0, Math.round(opts.clock() * 1000));
  const nicTimeoutMs = Math.min(1000, intervalMs / 2);

  const rec: HealthRecord = {
    schema: HEALTH_VERSION,
    interval_ms: intervalMs,
    phase: "booting",
    phase_since_ms: nowMs(),
    nics: [],
    pci: [],
  };
  const boot: Record<string, number> = {};
  /** What the last committed transaction left in xenstore; undefined before the first. */
  let written: Map<string, string> | undefined;
  const stats: HealthWriterStats = { transactions: 0, failures: 0 };
  let stopTimer: (() => void) | undefined;
  let urgentQueued = false;
  let qemuAlive = false;
  /** The last message per kind of problem: a failure repeated every heartbeat is logged once. */
  const problems = new Map<string, string>();
  const WRITE = "health: write failed, retrying at the next heartbeat";

  const problem = (what: string, e: unknown) => {
    const msg = `${what}: ${e instanceof Error ? e.message : String(e)}`;
    if (problems.get(what) !== msg) log.warn(msg);
    problems.set(what, msg);
  };
  /** Run a caller's request; whatever goes wrong is logged, never thrown. */
  const guard = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      problem(`health: ${what}`, e);
    }
  };
  const sample = <T>(what: string, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (e) {
      problem(`health: reading ${what}`, e);
      return undefined;
    }
  };

  const takeSamples = () => {
    const mem = sample("memory", sources.memory);
    rec.mem_total_kib = mem && isCount(mem.totalKib) ? mem.totalKib : undefined;
    rec.mem_available_kib = mem && isCount(mem.availableKib) ? mem.availableKib : undefined;
    const rss = sample("agent RSS", sources.agentRss);
    rec.agent_rss_kib = rss && isCount(rss.rssKib) ? rss.rssKib : undefined;
    rec.agent_rss_anon_kib = rss && isCount(rss.anonKib) ? rss.anonKib : undefined;
    const pid = rec.qemu_pid;
    const qrss = qemuAlive && pid !== undefined ? sample("QEMU RSS", () => sources.qemuRss(pid)) : undefined;
    rec.qemu_rss_kib = qrss && isCount(qrss.rssKib) ? qrss.rssKib : undefined;
    rec.qemu_rss_anon_kib = qrss && isCount(qrss.anonKib) ? qrss.anonKib : undefined;
    const pci = sample("PCI devices", sources.pci);
    const cut = (p: PciHealth) => (p.error === undefined ? p : { ...p, error: headUtf8(p.error, MAX_PCI_ERROR_BYTES) });
    if (pci) rec.pci = valid("PCI device", PciSchema, pci.slice(0, MAX_PCI).map(cut));
  };

  // The reader would refuse a malformed entry anyway; refusing it here says which source erred.
  function valid<T>(what: string, schema: { safeParse(v: unknown): { success: boolean; error?: { issues: { message: string }[] } } }, items: T[]): T[] {
    return items.filter((n, i) => {
      const r = schema.safeParse(n);
      if (!r.success) problem(`health: ${what} ${i}`, new Error(r.error?.issues[0]?.message ?? "invalid"));
      return r.success;
    });
  }
  const setNics = (nics: NicHealth[]) => void (rec.nics = valid("NIC", NicSchema, nics.slice(0, MAX_NICS)));

  /** Sample everything and write: at once, or when the NIC source's promise settles or times out. */
  const beat = () => {
    takeSamples();
    const got = sample("NIC counters", sources.nics);
    if (!(got instanceof Promise)) {
      if (got) setNics(got);
      flush();
      return;
    }
    let done = false;
    const finish = (nics?: NicHealth[]) =>
      guard("heartbeat", () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (nics) setNics(nics);
        flush();
      });
    const timer = setTimeout(() => {
      problem("health: reading NIC counters", new Error(`no answer within ${nicTimeoutMs} ms`));
      finish();
    }, nicTimeoutMs);
    got.then(finish, (e) => {
      problem("health: reading NIC counters", e);
      finish();
    });
  };

  const rmQuiet = (path: string, tx: TxId) => {
    try {
      xs.rm(path, tx);
    } catch (e) {
      if (!(e instanceof XenStoreError && e.errno === "ENOENT")) throw e;
    }
  };

  const present = (path: string, tx: TxId): boolean => {
    try {
      xs.read(path, tx);
      return true;
    } catch (e) {
      if (e instanceof XenStoreError && e.errno === "ENOENT") return false;
      throw e;
    }
  };

  const flush = (): boolean => {
    try {
      const t = nowMs();
      rec.uptime_ms = t;
      rec.heartbeat = stats.transactions + 1;
      rec.heartbeat_wall_ms = Math.max(0, Math.round(wall()));
      rec.boot_ms = Object.keys(boot).length > 0 ? { ...boot } : undefined;
      // Every input is bounded on the way in (text, boot phases, validated NICs), so each
      // value fits MAX_VALUE_BYTES; the writer tests check the largest possible report.
      const desired = encodeHealth(rec);
      transaction(xs, (tx) => {
        // Someone (dom0, a tool) may have removed the report: one read tells, and then
        // everything is written again rather than only what changed.
        const before = written && present(`${base}/schema`, tx) ? written : undefined;
        // A fresh agent owns the whole subtree: whatever a previous writer left is removed.
        if (!before) rmQuiet(base, tx);
        for (const [k, v] of desired) if (before?.get(k) !== v) xs.write(`${base}/${k}`, v, tx);
        if (before) for (const k of before.keys()) if (!desired.has(k)) rmQuiet(`${base}/${k}`, tx);
      });
      written = desired;
      stats.transactions++;
      if (problems.delete(WRITE)) log.info("health: writing again");
      return true;
    } catch (e) {
      stats.failures++;
      problem(WRITE, e);
      return false;
    }
  };

  const urgent = () => {
    if (urgentQueued) return;
    urgentQueued = true;
    queueMicrotask(() => {
      urgentQueued = false;
      flush();
    });
  };

  return {
    start() {
      guard("start", () => {
        if (stopTimer) return;
        beat();
        stopTimer = every(intervalMs, () => guard("heartbeat", beat));
      });
    },
    setPhase(phase) {
      guard("setPhase", () => {
        if (rec.phase === phase) return;
        rec.phase = phase;
        rec.phase_since_ms = nowMs();
        urgent();
      });
    },
    bootPhase(name, atMs) {
      guard("bootPhase", () => {
        if (!BOOT_PHASE_NAME.test(name)) throw new Error(`bad boot phase name ${JSON.stringify(name.slice(0, 40))}`);
        if (!(name in boot) && Object.keys(boot).length >= MAX_BOOT_PHASES) throw new Error(`more than ${MAX_BOOT_PHASES} boot phases`);
        const at = atMs ?? nowMs();
        if (!isCount(Math.round(at))) throw new Error(`bad time ${at} for boot phase ${name}`);
        boot[name] = Math.round(at);
      });
    },
    agentOverhead(ms) {
      guard("agentOverhead", () => {
        if (!isCount(Math.round(ms))) throw new Error(`bad overhead ${ms}`);
        rec.agent_overhead_ms = Math.round(ms);
      });
    },
    confinement(c) {
      guard("confinement", () => {
        const r = ConfinementSchema.safeParse(c);
        if (!r.success) throw new Error(`bad confinement: ${r.error.issues[0]?.message}`);
        rec.confinement = r.data;
      });
    },
    qemuStarted(pid, atMs) {
      guard("qemuStarted", () => {
        if (!Number.isInteger(pid) || pid < 2) throw new Error(`bad pid ${pid}`);
        rec.qemu_pid = pid;
        qemuAlive = true;
        rec.qemu_started_ms = Math.max(0, Math.round(atMs ?? nowMs()));
        rec.qmp_status = undefined;
        rec.qmp_at_ms = undefined;
        // The previous exit stays until this QEMU exits in turn; the reader compares times.
        urgent();
      });
    },
    qemuExited(exit) {
      guard("qemuExited", () => {
        qemuAlive = false;
        rec.exit_at_ms = nowMs();
        const code = exit.code;
        rec.exit_code = code !== undefined && Number.isInteger(code) && code >= 0 && code <= 255 ? code : undefined;
        rec.exit_signal = exit.signal !== undefined && SIGNAL.test(exit.signal) ? exit.signal : undefined;
        const stderr = tailUtf8(exit.stderr.join("\n"), MAX_TEXT_BYTES);
        rec.exit_stderr = stderr.length > 0 ? stderr : undefined;
        rec.qmp_status = undefined;
        rec.qmp_at_ms = undefined;
        rec.qemu_rss_kib = undefined;
        rec.qemu_rss_anon_kib = undefined;
        urgent();
      });
    },
    qmpStatus(status) {
      guard("qmpStatus", () => {
        // A probe that resolves after QEMU exited describes nothing that still exists.
        if (!qemuAlive) return;
        rec.qmp_status = QMP_STATUS.test(status) ? status : "unknown";
        rec.qmp_at_ms = nowMs();
      });
    },
    error(message) {
      guard("error", () => {
        rec.error = headUtf8(message, MAX_TEXT_BYTES);
        rec.error_at_ms = nowMs();
      });
    },
    flush: () => flush(),
    stop() {
      guard("stop", () => {
        stopTimer?.();
        stopTimer = undefined;
        // A last report must not wait for netlink: PID 1 may be about to power off.
        takeSamples();
        flush();
      });
    },
    stats: () => ({ ...stats }),
  };
}
