// The Prometheus rendering of health reports: a healthy, a stale, a crashed and every hostile
// report give a well-formed exposition (our strict reader, then Debian's promtool) whose
// numbers are the validated ones; junk shows up as not up / invalid, never as a broken scrape.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { guestNames, labelValue, renderPrometheus } from "../../agent/health/prometheus.ts";
import { readReport } from "../../agent/health/reader.ts";
import { createHealthWriter } from "../../agent/health/writer.ts";
import { openXenStore } from "../../ffi/xenstore.ts";
import { debianPackage } from "../vm/debian.ts";
import { startServer } from "../xenstore/harness.ts";
import { parseExposition, sampleOf } from "./exposition.ts";
import { GUEST, layOut, memLogger, spawnExporter, STUB } from "./helpers.ts";
import { BASE, cases, enc, healthy } from "./hostile-cases.ts";

const id = { guest: "web", guest_domid: String(GUEST), stub_domid: String(STUB) };

async function promtool(text: string): Promise<{ code: number; out: string }> {
  const bin = `${debianPackage("prometheus")}/usr/bin/promtool`;
  const p = Bun.spawn([bin, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: out + err };
}

describe("status --prometheus rendering", () => {
  test("a running stub domain: up, its phase, boot phases, QEMU, memory and NIC counters in base units", async () => {
    const t = await healthy();
    t.w.bootPhase("mounts", 300);
    t.w.bootPhase("network", 700);
    t.w.flush();
    t.dom0.write(`/local/domain/${GUEST}/name`, "web");
    const r = t.read();
    const text = renderPrometheus([r], { clock: t.reader, names: guestNames(t.dom0, [r]) });
    const { samples, types } = parseExposition(text);
    expect(sampleOf(samples, "xen_stubdom_boot_phase_duration_seconds", { ...id, boot_phase: "network" })).toBe(0.4);
    expect(sampleOf(samples, "xen_stubdom_up", id)).toBe(1);
    expect(sampleOf(samples, "xen_stubdom_health", { ...id, health: "ok" })).toBe(1);
    expect(sampleOf(samples, "xen_stubdom_phase", { ...id, phase: "running" })).toBe(1);
    expect(sampleOf(samples, "xen_stubdom_phase", { ...id, phase: "crashed" })).toBe(0);
    expect(sampleOf(samples, "xen_stubdom_qemu_up", id)).toBe(1);
    expect(sampleOf(samples, "xen_stubdom_qemu_exits_total", id)).toBe(0);
    expect(sampleOf(samples, "xen_stubdom_memory_total_bytes", id)).toBe(100_000 * 1024);
    expect(sampleOf(samples, "xen_stubdom_resident_anon_bytes", { ...id, process: "agent" })).toBe(12_288 * 1024);
    expect(sampleOf(samples, "xen_stubdom_nic_transmit_packets_total", { ...id, nic: "0", interface: "eth0" })).toBe(3);
    expect(sampleOf(samples, "xen_stubdom_nic_receive_bytes_total", { ...id, nic: "0", interface: "eth0" })).toBe(2);
    expect(sampleOf(samples, "xen_stubdom_heartbeat_age_seconds", id)).toBe(0);
    expect(sampleOf(samples, "xen_stubdom_invalid_values", id)).toBe(0);
    const ends = samples.filter((x) => x.name === "xen_stubdom_boot_phase_end_seconds");
    const durations = samples.filter((x) => x.name === "xen_stubdom_boot_phase_duration_seconds");
    expect(ends.length).toBeGreaterThan(0);
    expect(durations.map((x) => x.labels.boot_phase)).toEqual(ends.map((x) => x.labels.boot_phase));
    expect(durations.reduce((a, x) => a + x.value, 0)).toBeCloseTo(Math.max(...ends.map((x) => x.value)), 6);
    expect(sampleOf(samples, "xen_stubdom_exporter_info", { health_schema: "1" })).toBe(1);
    expect(types.get("xen_stubdom_heartbeats_total")).toBe("counter");
    expect(types.get("xen_stubdom_up")).toBe("gauge");
    const check = await promtool(text);
    expect(check, check.out).toEqual({ code: 0, out: "" });
  });

  test("stale (the writer stopped) and crashed (QEMU exited) reports", async () => {
    const t = await healthy();
    t.w.qemuExited({ signal: "SIGSEGV", stderr: ["boom"] });
    t.w.setPhase("crashed");
    await Promise.resolve();
    const crashed = parseExposition(renderPrometheus([t.read()], { clock: t.reader })).samples;
    const ids = { guest_domid: String(GUEST), stub_domid: String(STUB), guest: "" };
    expect(sampleOf(crashed, "xen_stubdom_phase", { ...ids, phase: "crashed" })).toBe(1);
    expect(sampleOf(crashed, "xen_stubdom_qemu_up", ids)).toBe(0);
    expect(sampleOf(crashed, "xen_stubdom_qemu_exits_total", ids)).toBe(1);
    expect(sampleOf(crashed, "xen_stubdom_qemu_last_exit_info", { ...ids, signal: "SIGSEGV", code: "" })).toBe(1);
    const crashedCheck = await promtool(renderPrometheus([t.read()], { clock: t.reader }));
    expect(crashedCheck, crashedCheck.out).toEqual({ code: 0, out: "" });
    t.w.stop();
    t.clock.advance(60_000);
    const stale = parseExposition(renderPrometheus([t.read()], { clock: t.reader })).samples;
    expect(sampleOf(stale, "xen_stubdom_up", ids)).toBe(0);
    expect(sampleOf(stale, "xen_stubdom_health", { ...ids, health: "stale" })).toBe(1);
    expect(sampleOf(stale, "xen_stubdom_heartbeat_age_seconds", ids)).toBe(60);
    const staleCheck = await promtool(renderPrometheus([t.read()], { clock: t.reader }));
    expect(staleCheck, staleCheck.out).toEqual({ code: 0, out: "" });
  });

  test("label values are escaped: quotes, backslashes, newlines and terminal escapes in a guest's name", async () => {
    expect(labelValue('a"b\\c\nd')).toBe('a\\"b\\\\\\\\c\\\\nd');
    const t = await healthy();
    t.dom0.write(`/local/domain/${GUEST}/name`, 'evil"} 1\nxen_stubdom_up{x="\x1b[2J');
    const r = t.read();
    const text = renderPrometheus([r], { clock: t.reader, names: guestNames(t.dom0, [r]) });
    const { samples } = parseExposition(text);
    expect(samples.filter((s) => s.name === "xen_stubdom_up")).toHaveLength(1);
    expect(samples.find((s) => s.name === "xen_stubdom_up")?.labels.guest).toBe('evil"} 1\\nxen_stubdom_up{x="\\x1b[2J');
  });
});

describe("hostile reports give a valid exposition", () => {
  test.each(cases)("$name", async (c) => {
    const t = await healthy();
    c.tamper(t.dom0);
    const r = t.read();
    const text = renderPrometheus([r], { clock: t.reader });
    const { samples } = parseExposition(text);
    const ids = { guest: "", guest_domid: String(GUEST), stub_domid: String(STUB) };
    expect(sampleOf(samples, "xen_stubdom_up", ids)).toBe(c.health === "ok" ? 1 : 0);
    expect(sampleOf(samples, "xen_stubdom_health", { ...ids, health: c.health })).toBe(1);
    const check = await promtool(text);
    expect(check, check.out).toEqual({ code: 0, out: "" });
  });

  test("two NICs with one name, random bytes in every key: never a repeated series nor a broken line", async () => {
    const t = await healthy();
    const nic = '{"name":"eth0","link":"up","rx_packets":1,"rx_bytes":2,"rx_dropped":0,"tx_packets":3,"tx_bytes":4,"tx_dropped":0,"spoofed_dropped":0}';
    t.dom0.write(`${BASE}/nic/1`, nic);
    const twins = parseExposition(renderPrometheus([t.read()], { clock: t.reader })).samples;
    expect(twins.filter((s) => s.name === "xen_stubdom_nic_up").map((s) => s.labels.nic)).toEqual(["0", "1"]);
    let seed = 11;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 0x1000000;
    const keys = t.dom0.directory(BASE).filter((k) => k !== "nic").concat(["nic/0", "nic/1"]);
    const texts: string[] = [];
    for (let round = 0; round < 150; round++) {
      for (const k of keys) {
        if (rnd() < 0.5) continue;
        const pick = ["\x1b[2J", '"', "\\", "\n", "9".repeat(20), "-1", "running", "{}", nic, "1e400", "NaN"];
        t.dom0.write(`${BASE}/${k}`, rnd() < 0.3 ? Uint8Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)) : enc(pick[Math.floor(rnd() * pick.length)] ?? ""));
      }
      const text = renderPrometheus([readReport(t.dom0, { stubdom: STUB, guest: GUEST }, t.reader)], { clock: t.reader });
      parseExposition(text);
      if (round % 30 === 0) texts.push(text);
    }
    for (const text of texts) {
      const check = await promtool(text);
      expect(check, check.out).toEqual({ code: 0, out: "" });
    }
  });
});

// The exporter as the real command, reading our wire server through Debian's libxenstore while
// the stub domain's real writer reports, scraped by Debian's Prometheus on loopback.
describe("exporter scraped by a real Prometheus", () => {
  const cleanup: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()?.();
  });

  async function freePort(): Promise<number> {
    const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = s.port;
    s.stop(true);
    return port;
  }

  async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
    const end = Date.now() + ms;
    let last: unknown;
    while (Date.now() < end) {
      try {
        const v = await fn();
        if (v !== undefined) return v;
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${String(last)})` : ""}`);
  }

  test("up, then the crash after QEMU dies, then gone after the stub domain is destroyed", async () => {
    const server = await startServer({ domains: [STUB] });
    cleanup.push(async () => void (await server.stop()));
    const dom0 = openXenStore({ path: server.socket });
    cleanup.push(() => dom0.close());
    layOut(dom0);
    dom0.write(`/local/domain/${GUEST}/name`, "web");
    const stubXs = openXenStore({ path: server.domainSocket(STUB) });
    cleanup.push(() => stubXs.close());
    const w = createHealthWriter({ xs: stubXs, domid: STUB, log: memLogger().log, clock: () => performance.now() / 1000, intervalMs: 1000 });
    w.start();
    cleanup.push(() => w.stop());
    w.qemuStarted(process.pid);
    w.setPhase("running");

    const exporter = await spawnExporter(server.socket);
    cleanup.push(() => exporter.stop());
    const url = exporter.url;
    const direct = parseExposition(await (await fetch(url)).text()).samples;
    expect(sampleOf(direct, "xen_stubdom_up", id)).toBe(1);
    expect((await fetch(url.replace("/metrics", "/"))).status).toBe(404);

    const root = debianPackage("prometheus");
    const dir = mkdtempSync(join(tmpdir(), "prom-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const target = new URL(url).host;
    writeFileSync(join(dir, "prometheus.yml"), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: stubdom\n    static_configs:\n      - targets: ["${target}"]\n`);
    const port = await freePort();
    const prom = Bun.spawn(
      [`${root}/usr/bin/prometheus`, `--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdout: "ignore", stderr: "ignore" },
    );
    cleanup.push(async () => {
      prom.kill("SIGTERM");
      await prom.exited;
    });
    const query = async (q: string) => {
      const r = (await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as {
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return r.data.result;
    };
    const up = await until("Prometheus sees the stub domain up", async () => {
      const r = await query(`xen_stubdom_up{guest="web",stub_domid="${STUB}"}`);
      return r[0]?.value[1] === "1" ? r : undefined;
    });
    expect(up[0]?.metric.guest_domid).toBe(String(GUEST));

    w.qemuExited({ signal: "SIGSEGV", stderr: ["boom"] });
    w.setPhase("crashed");
    await until("Prometheus sees the crash", async () => {
      const r = await query(`xen_stubdom_phase{phase="crashed",stub_domid="${STUB}"} == 1 and on(stub_domid) xen_stubdom_qemu_exits_total == 1`);
      return r.length === 1 ? r : undefined;
    });

    w.stop();
    dom0.rm(`/local/domain/${STUB}`);
    await until("Prometheus sees the stub domain gone", async () => {
      const r = await query(`xen_stubdom_up{stub_domid="${STUB}"}`);
      return r.length === 0 ? true : undefined;
    });
    const after = parseExposition(await (await fetch(url)).text()).samples;
    expect(after.filter((s) => s.name === "xen_stubdom_up")).toEqual([]);
  }, 120_000);
});
