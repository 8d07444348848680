// Health reports as Prometheus metrics (text exposition format 0.0.4), for node_exporter's
// textfile collector (`status --prometheus`) and for `stubdom-init exporter`. Every value comes
// from a stub domain and may be hostile: numbers are only those the schema validated, label
// values are escaped (escapeText, then the exposition's own \\, \" and \n), a NIC is labelled by
// its index (unique by construction) so a report that repeats a name cannot make two series
// collide, and an invalid value is left out and counted in xen_stubdom_invalid_values.
import { PCI_STATES, PHASES } from "./schema.ts";
import type { XenStore } from "../xenstore/types.ts";
import { readString } from "../xenstore/util.ts";
import { qemuExited, valid as ok, type Health, type HeartbeatSeen, type ReaderClock, type StubReport } from "./reader.ts";
import { escapeText, truncate } from "./sanitize.ts";

export const EXPORTER_VERSION = "0.1.0";
const HEALTH_STATES: Health[] = ["ok", "stale", "invalid", "unreachable"];

type Labels = Record<string, string>;
interface Family {
  help: string;
  type: "gauge" | "counter";
  samples: { labels: Labels; value: number }[];
}

/** A label value made safe: printable (escapeText), bounded, and escaped for the exposition. */
export function labelValue(s: string): string {
  return truncate(escapeText(s), 128).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function sampleLine(name: string, labels: Labels, value: number): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${labelValue(v)}"`)
    .join(",");
  const v = Number.isFinite(value) ? String(value) : Number.isNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf";
  return `${name}${l ? `{${l}}` : ""} ${v}`;
}

/** Guests' names as the toolstack wrote them (/local/domain/G/name, at most 64 bytes); unreadable ones left out. */
export function guestNames(xs: XenStore, reports: StubReport[]): Map<number, string> {
  const names = new Map<number, string>();
  for (const r of reports) {
    if (r.guest === null || names.has(r.guest)) continue;
    try {
      const name = readString(xs, `/local/domain/${r.guest}/name`, 64);
      if (name !== undefined) names.set(r.guest, name);
    } catch {
      // Absent, too long or not UTF-8: the series keeps guest="" and its domid.
    }
  }
  return names;
}

export interface PrometheusOptions {
  /** Guest domid → name (from the toolstack's /local/domain/G/name). */
  names?: Map<number, string>;
  clock: ReaderClock;
  /** What a watching reader saw of each heartbeat counter (the exporter); else the wall clock estimates. */
  seen?: Map<number, HeartbeatSeen>;
}

/** Seconds since the last heartbeat: by this reader's own observation when it has one, else by the writer's wall clock. */
function heartbeatAge(r: StubReport, opts: PrometheusOptions): number | undefined {
  const s = r.stubdom !== null ? opts.seen?.get(r.stubdom) : undefined;
  if (s?.advanced) return Math.max(0, opts.clock.monoMs() - s.sinceMonoMs) / 1000;
  const wall = ok(r.fields.heartbeat_wall_ms);
  return wall === undefined ? undefined : Math.max(0, opts.clock.wallMs() - wall) / 1000;
}

export function renderPrometheus(reports: StubReport[], opts: PrometheusOptions): string {
  const families = new Map<string, Family>();
  const put = (name: string, type: Family["type"], help: string, labels: Labels, value: number | undefined) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { help, type, samples: [] }));
    if (value !== undefined) f.samples.push({ labels, value });
  };
  put("xen_stubdom_exporter_info", "gauge", "Version of this reader and of the health report schema it reads.", { version: EXPORTER_VERSION, health_schema: "1" }, 1);
  for (const r of reports) {
    const f = r.fields;
    const id: Labels = {
      guest: r.guest !== null ? (opts.names?.get(r.guest) ?? "") : "",
      guest_domid: r.guest === null ? "" : String(r.guest),
      stub_domid: r.stubdom === null ? "" : String(r.stubdom),
    };
    const g = (name: string, help: string, value: number | undefined, extra: Labels = {}) => put(name, "gauge", help, { ...id, ...extra }, value);
    const c = (name: string, help: string, value: number | undefined, extra: Labels = {}) => put(name, "counter", help, { ...id, ...extra }, value);
    const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
    const bytes = (kib: number | undefined) => (kib === undefined ? undefined : kib * 1024);

    g("xen_stubdom_up", "1 when the stub domain's health report is fresh and every value in it valid.", r.health === "ok" ? 1 : 0);
    for (const h of HEALTH_STATES) g("xen_stubdom_health", "The reader's verdict on the report (a state set).", r.health === h ? 1 : 0, { health: h });
    const phase = ok(f.phase);
    for (const p of PHASES) g("xen_stubdom_phase", "The stub domain's phase (a state set; all 0 when the phase is missing or invalid).", phase === p ? 1 : 0, { phase: p });
    const invalid = Object.values(f).filter((v) => v?.state === "invalid").length + [...r.nics, ...r.pci].filter((n) => n.field.state === "invalid").length;
    g("xen_stubdom_invalid_values", "Values of the report that failed validation (left out of the other metrics).", invalid);
    g("xen_stubdom_unknown_keys", "Keys of the report this reader does not know (ignored).", r.extraKeys.count);
    if (r.health === "unreachable") continue;

    const up = ok(f.uptime_ms);
    const since = ok(f.phase_since_ms);
    g("xen_stubdom_uptime_seconds", "The stub domain kernel's uptime at its last report.", sec(up));
    g("xen_stubdom_phase_age_seconds", "Time spent in the current phase at the last report.", up !== undefined && since !== undefined ? (up - since) / 1000 : undefined);
    c("xen_stubdom_heartbeats_total", "Reports the stub domain has written.", ok(f.heartbeat));
    g("xen_stubdom_heartbeat_age_seconds", "Time since the last report, by this reader's observation or else the writer's wall clock.", heartbeatAge(r, opts));
    // Phases in the order they finished; each lasted from the end of the one before (or boot).
    let prev = 0;
    for (const [name, ms] of Object.entries(ok(f.boot_ms) ?? {}).sort((a, b) => a[1] - b[1])) {
      g("xen_stubdom_boot_phase_end_seconds", "When each boot phase of the agent finished, since the stub kernel started.", sec(ms), { boot_phase: name });
      g("xen_stubdom_boot_phase_duration_seconds", "How long each boot phase of the agent took (from the end of the one before).", sec(ms - prev), { boot_phase: name });
      prev = ms;
    }
    g("xen_stubdom_agent_overhead_seconds", "From PID 1's entry to QEMU's execve.", sec(ok(f.agent_overhead_ms)));
    const conf = ok(f.confinement);
    if (conf !== undefined) {
      g("xen_stubdom_qemu_seccomp", "1 when QEMU runs under the agent's seccomp filter.", conf.seccomp ? 1 : 0);
      g("xen_stubdom_qemu_landlock_abi", "The Landlock ABI of QEMU's rules; 0: no Landlock rules.", conf.landlock_abi);
    }

    const pid = ok(f.qemu_pid);
    const exited = qemuExited(f);
    g("xen_stubdom_qemu_up", "1 while QEMU runs (started and no exit recorded since).", pid !== undefined && !exited ? 1 : 0);
    const qmp = ok(f.qmp_status);
    if (qmp !== undefined && !exited) g("xen_stubdom_qemu_state", "QEMU's run state from QMP (query-status), or unresponsive.", 1, { state: qmp });
    c("xen_stubdom_qemu_exits_total", "QEMU exits recorded in this stub domain (after one, the crash policy ends it).", exited ? 1 : 0);
    if (exited) {
      const code = ok(f.exit_code);
      g("xen_stubdom_qemu_last_exit_info", "How QEMU last exited.", 1, { code: code === undefined ? "" : String(code), signal: ok(f.exit_signal) ?? "" });
    }

    g("xen_stubdom_memory_total_bytes", "MemTotal of the stub domain.", bytes(ok(f.mem_total_kib)));
    g("xen_stubdom_memory_available_bytes", "MemAvailable of the stub domain.", bytes(ok(f.mem_available_kib)));
    g("xen_stubdom_resident_bytes", "Resident memory (VmRSS) of a process of the stub domain.", bytes(ok(f.agent_rss_kib)), { process: "agent" });
    g("xen_stubdom_resident_bytes", "Resident memory (VmRSS) of a process of the stub domain.", bytes(ok(f.qemu_rss_kib)), { process: "qemu" });
    g("xen_stubdom_resident_anon_bytes", "Anonymous resident memory (RssAnon) of a process: what a leak grows.", bytes(ok(f.agent_rss_anon_kib)), { process: "agent" });
    g("xen_stubdom_resident_anon_bytes", "Anonymous resident memory (RssAnon) of a process: what a leak grows.", bytes(ok(f.qemu_rss_anon_kib)), { process: "qemu" });

    for (const n of r.nics) {
      if (n.field.state !== "ok") continue;
      const v = n.field.value;
      const nic = { nic: String(n.index), interface: v.name };
      g("xen_stubdom_nic_up", "1 when the netfront's link is up.", v.link === "up" ? 1 : 0, nic);
      g("xen_stubdom_nic_redirect_up", "1 when the redirect between netfront and QEMU's tap is in place.", v.redirect === undefined ? 1 : 0, nic);
      c("xen_stubdom_nic_receive_packets_total", "Packets received by the netfront.", v.rx_packets, nic);
      c("xen_stubdom_nic_receive_bytes_total", "Bytes received by the netfront.", v.rx_bytes, nic);
      c("xen_stubdom_nic_receive_dropped_total", "Received packets dropped.", v.rx_dropped, nic);
      c("xen_stubdom_nic_transmit_packets_total", "Packets sent by the netfront.", v.tx_packets, nic);
      c("xen_stubdom_nic_transmit_bytes_total", "Bytes sent by the netfront.", v.tx_bytes, nic);
      c("xen_stubdom_nic_transmit_dropped_total", "Sent packets dropped.", v.tx_dropped, nic);
      c("xen_stubdom_nic_spoofed_dropped_total", "Frames from the guest with a source MAC or IP not its own, dropped.", v.spoofed_dropped, nic);
    }
    for (const p of r.pci) {
      if (p.field.state !== "ok") continue;
      const v = p.field.value;
      for (const state of PCI_STATES) {
        g("xen_stubdom_pci_device_state", "A passthrough device's state in the stub domain (a state set).", v.state === state ? 1 : 0, { bdf: v.bdf, state });
      }
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) {
    if (f.samples.length === 0) continue;
    out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
    for (const s of f.samples) out.push(sampleLine(name, s.labels, s.value));
  }
  return `${out.join("\n")}\n`;
}
