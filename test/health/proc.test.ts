import { expect, test } from "vitest";
import { parseMeminfo, parseStatusRss, procMemory, procRssKib } from "../../agent/health/proc.ts";
import { procSources } from "../../agent/health/writer.ts";

const MEMINFO = `MemTotal:         118204 kB
MemFree:           50112 kB
MemAvailable:      61032 kB
Buffers:            1024 kB
`;

test("meminfo: MemTotal and MemAvailable, or nothing when one is missing", () => {
  expect(parseMeminfo(MEMINFO)).toEqual({ totalKib: 118204, availableKib: 61032 });
  expect(parseMeminfo("MemTotal:  5 kB\n")).toBeUndefined();
  expect(parseMeminfo("MemTotal: x kB\nMemAvailable: 3 kB\n")).toBeUndefined();
});

test("status: VmRSS, absent for a zombie", () => {
  expect(parseStatusRss("Name:\tqemu\nVmRSS:\t   27312 kB\nThreads: 4\n")).toBe(27312);
  expect(parseStatusRss("Name:\tqemu\nState:\tZ (zombie)\n")).toBeUndefined();
});

test("the /proc sources read this machine's real files", () => {
  const mem = procMemory();
  expect(mem?.totalKib).toBeGreaterThan(0);
  expect(mem?.availableKib).toBeGreaterThan(0);
  expect(mem!.availableKib).toBeLessThanOrEqual(mem!.totalKib);
  const self = procSources.agentRssKib();
  expect(self).toBeGreaterThan(1000);
  expect(procRssKib(process.pid)).toBeGreaterThan(1000);
  expect(procSources.qemuRssKib(2 ** 22 + 1)).toBeUndefined(); // no such pid
});
