// stubdom.selftest=SECONDS: a child process of this same binary running JavaScript only (no
// bun:ffi, no Xen library: allocation churn that keeps the collector busy) for SECONDS at a
// time, again and again, each exit logged. A platform that corrupts processes (the nested-Xen
// harness under TCG, test/xen/README.md) kills it as it kills PID 1; a bug of ours cannot.
import type { Logger } from "../log.ts";
import type { Processes } from "./processes.ts";

const CHURN = `
const end = Date.now() + Number(process.argv.at(-1)) * 1000;
let keep = [], n = 0;
while (Date.now() < end) {
  keep.push({ a: [n, String(n), { b: new Uint8Array(64 + (n % 512)) }], s: "x" + n });
  if (keep.length > 5000) keep = keep.slice(2500);
  n++;
}
console.log("selftest ok: " + n + " iterations");
`;

/** Runs for PID 1's life; each run goes through `processes` so the reaper leaves it alone. */
export async function runSelftest(o: { processes: Processes; seconds: number; log: Logger }): Promise<void> {
  for (let run = 1; ; run++) {
    let child;
    try {
      // BUN_BE_BUN: the compiled agent behaves as the bun CLI, which runs -e code.
      child = o.processes.spawn([process.execPath, "-e", CHURN, String(o.seconds)], { env: { BUN_BE_BUN: "1" }, console: "stderr" });
    } catch (e) {
      o.log.error(`selftest: cannot start: ${(e as Error).message}`);
      return;
    }
    const exit = await child.exited.catch((e: unknown) => ({ code: null, signal: `lost (${String(e)})` }));
    o.log.info(`selftest run ${run}: ${exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`}`);
  }
}
