// exporter_scrape_ms: `stubdom-init exporter` (the real command, through Debian's libxenstore)
// against the wire server holding 100 stub domains' reports as a writer leaves them; the time
// of one HTTP scrape of /metrics, after the exporter read the tree once through its watches.
import { encodeHealth, healthDir, type HealthRecord } from "../../agent/health/schema.ts";
import { openXenStore } from "../../ffi/xenstore.ts";
import { startServer } from "../xenstore/harness.ts";
import { spawnExporter } from "../health/helpers.ts";

const STUBS = 100;

function report(stub: number, now: number): HealthRecord {
  return {
    schema: 1, interval_ms: 5000, phase: "running", phase_since_ms: 9000, uptime_ms: 60_000, heartbeat: 12,
    heartbeat_wall_ms: now, boot_ms: { setup: 100, network: 900, qemu_ready: 8000 }, agent_overhead_ms: 3000,
    qemu_pid: 80 + stub, qemu_started_ms: 4000, qmp_status: "running", qmp_at_ms: 58_000,
    mem_total_kib: 220_000, mem_available_kib: 100_000, agent_rss_kib: 60_000, qemu_rss_kib: 28_000,
    agent_rss_anon_kib: 10_000, qemu_rss_anon_kib: 12_000,
    nics: [{ name: "eth0", tap: "vif1.0-emu", link: "up", rx_packets: 1, rx_bytes: 2, rx_dropped: 0, tx_packets: 3, tx_bytes: 4, tx_dropped: 0, spoofed_dropped: 0 }],
  };
}

/** Scrape times in ms (after `warmup` scrapes); throws if a scrape misses a stub domain. */
export async function measureExporterScrape(scrapes: number, warmup = 5): Promise<number[]> {
  const server = await startServer();
  const dom0 = openXenStore({ path: server.socket });
  let exporter: Awaited<ReturnType<typeof spawnExporter>> | undefined;
  try {
    const now = Date.now();
    for (let i = 0; i < STUBS; i++) {
      const guest = 1 + 2 * i;
      const stub = guest + 1;
      dom0.write(`/local/domain/${guest}/name`, `guest-${i}`);
      dom0.write(`/local/domain/${guest}/image/device-model-domid`, String(stub));
      dom0.write(`/local/domain/${stub}/target`, String(guest));
      for (const [k, v] of encodeHealth(report(stub, now))) dom0.write(`${healthDir(stub)}/${k}`, v);
    }
    exporter = await spawnExporter(server.socket);
    const url = exporter.url;
    const times: number[] = [];
    for (let i = 0; i < warmup + scrapes; i++) {
      const t0 = performance.now();
      const body = await (await fetch(url)).text();
      const ms = performance.now() - t0;
      const ups = body.match(/^xen_stubdom_up\{.*\} 1$/gm)?.length ?? 0;
      if (ups !== STUBS) {
        if (i < warmup) continue; // the exporter's first frame may still be on its way
        throw new Error(`scrape ${i}: ${ups} of ${STUBS} stub domains up`);
      }
      if (i >= warmup) times.push(ms);
    }
    if (times.length !== scrapes) throw new Error(`${times.length} of ${scrapes} scrapes timed`);
    return times;
  } finally {
    await exporter?.stop();
    dom0.close();
    await server.stop();
  }
}

if (import.meta.main) {
  const ms = await measureExporterScrape(Number(process.argv[2] ?? 50));
  ms.sort((a, b) => a - b);
  console.log(`exporter scrape, ${STUBS} stub domains: median ${ms[Math.floor(ms.length / 2)]?.toFixed(2)} ms, max ${ms.at(-1)?.toFixed(2)} ms (${ms.length} scrapes)`);
}
