// Wall-clock cost of the configuration parse, for the record (no pass/fail): how long PID 1
// spends turning a snapshot into a config, for a typical guest and for the 4,096-argument worst
// case. Run: ./node_modules/.bin/bun test/bench/config.bench.ts
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig, type Meter } from "../../agent/config/parse.ts";
import { readSnapshot } from "../../agent/config/read.ts";
import type { Snapshot } from "../../agent/config/types.ts";
import { baseFixture, BASE_ARGS, numbered, storeOf } from "../config/fixture.ts";

const options = parseCmdline("").options;

function snapshotWith(n: number): Snapshot {
  const f = baseFixture();
  const args = [...BASE_ARGS];
  while (args.length + 2 <= n) args.push("-global", `isa-debugcon.iobase=${args.length}`);
  if (args.length < n) args.push("-S");
  f.argv = numbered(args);
  return readSnapshot(storeOf(f), { domid: f.stub });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

console.log("args   json-bytes  read-ms(memory)  parse-ms(median of 50)  steps");
for (const n of [37, 512, 4096]) {
  const t0 = performance.now();
  const snap = snapshotWith(n);
  const readMs = performance.now() - t0;
  const json = JSON.stringify(snap);
  const times: number[] = [];
  let meter: Meter = { steps: 0 };
  for (let i = 0; i < 50; i++) {
    meter = { steps: 0 };
    const input = JSON.parse(json) as unknown;
    const t = performance.now();
    const r = parseConfig(input, options, meter);
    times.push(performance.now() - t);
    if (!r.ok) throw new Error(JSON.stringify(r.errors.slice(0, 3)));
  }
  console.log(
    `${String(n).padStart(4)}  ${String(json.length).padStart(10)}  ${readMs.toFixed(2).padStart(15)}  ${median(times).toFixed(3).padStart(22)}  ${meter.steps}`,
  );
}
