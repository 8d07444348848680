// The parse must stay linear in the input: a hostile snapshot of 4,096 arguments must not cost
// quadratic work. Work is counted with parseConfig's meter (one step per loop iteration over
// input elements), never timed; test/bench/config.bench.ts prints wall-clock numbers.
import { expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig, type Meter } from "../../agent/config/parse.ts";
import type { Snapshot } from "../../agent/config/types.ts";
import { baseFixture, BASE_ARGS, snapshotOf } from "./fixture.ts";

const options = parseCmdline("").options;
const base = snapshotOf(baseFixture());
const dir = Object.keys(base.dirs).find((k) => k.endsWith("/dm-argv"))!;

// Every kind of argument the parser looks into, so each of its loops sees n-proportional input.
const FILLER = [
  "-device", "ide-cd,drive=cd1,bus=ide.1", "-drive", "file=/dev/xvdb,if=ide,media=disk", "-serial", "/dev/hvc4",
  "-netdev", "type=user,id=u1", "-global", "a,,b=c,,d", "-S",
];

/** The base guest with `n` arguments; `reversed` lists them backwards, `broken` misnumbers them all. */
function withArgs(n: number, how: "ok" | "reversed" | "broken"): Snapshot {
  const args = [...BASE_ARGS];
  for (let i = 0; args.length < n; i++) args.push(FILLER[i % FILLER.length]!);
  const names = args.map((_, i) => (how === "broken" ? String(2 * n + i) : String(i + 1).padStart(3, "0")));
  if (how === "reversed") names.reverse();
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(base.values)) if (!k.startsWith(`${dir}/`) && typeof v === "string") values[k] = v;
  names.forEach((name, i) => (values[`${dir}/${name}`] = args[how === "reversed" ? n - 1 - i : i]!));
  return { ...base, values: { ...base.values, ...values }, dirs: { ...base.dirs, [dir]: names } };
}

function steps(s: Snapshot): { steps: number; ok: boolean } {
  const meter: Meter = { steps: 0 };
  const r = parseConfig(s, options, meter);
  return { steps: meter.steps, ok: r.ok };
}

test.each(["ok", "reversed", "broken"] as const)("work for %s arguments grows linearly (n vs 8n)", (how) => {
  const small = steps(withArgs(512, how));
  const large = steps(withArgs(4096, how));
  expect(small.ok).toBe(how !== "broken");
  expect(large.ok).toBe(how !== "broken");
  expect(small.steps).toBeGreaterThan(512);
  // Linear: 8x the input costs at most ~8x the steps (a quadratic loop would cost ~64x).
  expect(large.steps / small.steps).toBeLessThan(8.5);
  expect(large.steps).toBeLessThan(6 * 4096);
});

test("the meter sees the argument loops (a sanity check of the measure itself)", () => {
  const a = steps(withArgs(100, "ok")).steps;
  const b = steps(withArgs(200, "ok")).steps;
  expect(b - a).toBeGreaterThanOrEqual(300); // at least three loops visit every argument
});
