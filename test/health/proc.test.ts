import { expect, test } from "vitest";
import { parseMeminfo, parseStatusRss, procMemory, procRss } from "../../agent/health/proc.ts";
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

test("status: VmRSS and RssAnon, absent for a zombie", () => {
  expect(parseStatusRss("Name:\tqemu\nVmRSS:\t   27312 kB\nRssAnon:\t   11020 kB\nRssFile:\t   16292 kB\nThreads: 4\n")).toEqual({
    rssKib: 27312,
    anonKib: 11020,
  });
  expect(parseStatusRss("Name:\tqemu\nVmRSS:\t   27312 kB\n")).toBeUndefined();
  expect(parseStatusRss("Name:\tqemu\nState:\tZ (zombie)\n")).toBeUndefined();
});

test("the /proc sources read this machine's real files", () => {
  const mem = procMemory();
  expect(mem?.totalKib).toBeGreaterThan(0);
  expect(mem?.availableKib).toBeGreaterThan(0);
  expect(mem!.availableKib).toBeLessThanOrEqual(mem!.totalKib);
  const self = procSources.agentRss();
  expect(self?.rssKib).toBeGreaterThan(1000);
  expect(self?.anonKib).toBeGreaterThan(100);
  expect(self!.anonKib).toBeLessThan(self!.rssKib);
  expect(procRss(process.pid)?.rssKib).toBeGreaterThan(1000);
  expect(procSources.qemuRss(2 ** 22 + 1)).toBeUndefined(); // no such pid
});
