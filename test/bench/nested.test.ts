// The nested-Xen benchmark's console parser: which lines become numbers, which become
// "measured not to exist" (absent) and which become "not measured" (a failed bench).
import { expect, test } from "vitest";
import { summarizeNested } from "./nested.ts";

const status = (mode: string, avail: number, overhead: number) =>
  `BENCH ours status mode=${mode} [{"values":{"mem_available_kib":${avail},"agent_overhead_ms":${overhead},"agent_rss_kib":40000}}]`;

const LOG = [
  "(XEN) noise",
  "BENCH ours create mem=256 mode=boot ok=1 xl_create_ms=20000 unpause 1000 10 9 running 15000\r",
  status("boot", 102400, 7000),
  "BENCH baseline create mem=256 mode=boot ok=1 xl_create_ms=10000 unpause 2000 12 11 running 7000\r",
  "BENCH baseline meminfo mode=boot 204800",
  "BENCH ours create mem=256 mode=boot ok=1 xl_create_ms=22000 unpause 1000 14 13 running 17000",
  status("boot", 110592, 9000),
  "BENCH baseline create mem=256 mode=boot ok=0 xl_create_ms=31000 unpause 2000 16 15",
  "BENCH baseline xl-log libxl: error: startup timed out",
  "BENCH ours create mem=default mode=at144 ok=0 xl_create_ms=31000 unpause 1000 18 17",
  "BENCH ours stub-log [    1.2] Initramfs unpacking failed: write error",
  "BENCH baseline create mem=default mode=at144 ok=1 xl_create_ms=9000 unpause 1 20 19 running 5001",
  "BENCH baseline meminfo mode=at144 51200",
  "BENCH ours floor 200",
  "BENCH baseline floor 120",
  "E2E DONE",
].join("\n");

test("timed boots, MemAvailable per mode, a failed boot at 144 MiB is absent, not missing", () => {
  const r = summarizeNested(LOG);
  expect(r.values).toMatchObject({
    boot_ms_agent: 14000, // nearest-rank median of 14000 and 16000
    xl_create_ms_agent: 20000,
    boot_ms_baseline: 5000, // the failed create reached no running line: not timed
    xl_create_ms_baseline: 10000,
    boot_ratio: 2.8,
    agent_overhead_ms: 7000,
    mem_available_mib_at_boot_mem_agent: 100,
    mem_available_mib_at_boot_mem_baseline: 200,
    mem_available_mib_at_144_baseline: 50,
    min_mem_mib_agent: 200,
    min_mem_mib_baseline: 120,
  });
  expect(r.values.mem_available_mib_at_144_agent).toBeUndefined();
  expect(r.absent.mem_available_mib_at_144_agent).toMatch(/did not reach running at 128 \+ 16 MiB \(.*Initramfs unpacking failed/);
  expect(r.missing).toEqual({});
});

test("a run that stopped early leaves what it did not reach as not measured", () => {
  const cut = LOG.split("\n").slice(0, 3).join("\n");
  const r = summarizeNested(cut, "the nested Xen run did not finish");
  expect(r.values.boot_ms_agent).toBe(14000);
  expect(Object.keys(r.missing).sort()).toEqual(
    [
      "boot_ms_baseline", "boot_ratio", "mem_available_mib_at_144_agent", "mem_available_mib_at_144_baseline",
      "mem_available_mib_at_boot_mem_baseline", "min_mem_mib_agent", "min_mem_mib_baseline", "xl_create_ms_baseline",
    ].sort(),
  );
  expect(r.absent).toEqual({});
});
