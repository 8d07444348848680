// Benchmark, not a test: QEMU SIGKILL → the agent has recorded the crash, told the hypervisor
// and "powered off" (exited), with the scripted fake QEMU, the agent as a subreaper.
//   ./node_modules/.bin/bun test/init/crash.bench.ts [RUNS]
// Prints p50/p99 of that latency and of agent_overhead_ms (process start → QEMU spawn).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";

const ROOT = new URL("../..", import.meta.url).pathname;
const BUN = `${ROOT}node_modules/.bin/bun`;
const runs = Number(process.argv[2] ?? "20");

async function once(): Promise<{ detectMs: number; overheadMs: number }> {
  const dir = mkdtempSync(`${tmpdir()}/crash-bench-`);
  writeFileSync(
    `${dir}/plan.json`,
    JSON.stringify({ binary: BUN, dmArgv: [`${ROOT}test/init/fake-qemu.ts`, "--mode", "ok"], guestDomid: 5 }),
  );
  const agent = Bun.spawn(
    [BUN, `${ROOT}agent/main.ts`, "init", "--subreaper", "--plan", `${dir}/plan.json`, "--run-dir", dir,
      "--health-file", `${dir}/health`, "--hypervisor-log", `${dir}/hv`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  const dec = new TextDecoder();
  const reader = agent.stderr.getReader();
  while (!/QEMU ready/.test(log)) {
    const r = await reader.read();
    if (r.done) throw new Error(`agent ended early:\n${log}`);
    log += dec.decode(r.value);
  }
  const pid = Number(/QEMU pid (\d+)/.exec(log)?.[1]);
  const t0 = performance.now();
  process.kill(pid, "SIGKILL");
  const code = await agent.exited;
  const detectMs = performance.now() - t0;
  if (code !== 3 || readFileSync(`${dir}/hv`, "utf8") !== "shutdownGuest 5 crash\n") {
    throw new Error(`unexpected end: exit ${code}\n${log}`);
  }
  const overhead = readFileSync(`${dir}/health`, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { call: string; args: number[] })
    .find((c) => c.call === "agentOverhead")?.args[0];
  return { detectMs, overheadMs: overhead ?? Number.NaN };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};

const detect: number[] = [];
const overhead: number[] = [];
for (let i = 0; i < runs; i++) {
  const r = await once();
  detect.push(r.detectMs);
  overhead.push(r.overheadMs);
}
console.log(JSON.stringify({
  runs,
  crash_to_poweroff_ms_p50: +pct(detect, 50).toFixed(1),
  crash_to_poweroff_ms_p99: +pct(detect, 99).toFixed(1),
  agent_overhead_ms_p50: pct(overhead, 50),
  agent_overhead_ms_p99: pct(overhead, 99),
}));
