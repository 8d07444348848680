// `stubdom-init console0 [--once]`, run in dom0 (connect.ts says why): one pass, or a pass at
// start and at every change under dom0's console backends or of a frontend state it wrote
// (FrontendWatches), until SIGINT or SIGTERM.
import { parseArgs } from "node:util";
import type { XenStore } from "../xenstore/types.ts";
import { pumpUntilSignal } from "../xenstore/pump.ts";
import { BACKEND_ROOT, FrontendWatches, connectUndrained, type Console0Action } from "./connect.ts";

const USAGE = "usage: stubdom-init console0 [--once]\n";

const TOKEN = "stubdom-console0";

function pass(xs: XenStore): Console0Action[] {
  const actions = connectUndrained(xs);
  for (const a of actions) process.stdout.write(`stubdom-init console0: ${a.line}\n`);
  return actions;
}

export async function run(argv: string[]): Promise<number> {
  let once: boolean;
  try {
    once = parseArgs({ args: argv, options: { once: { type: "boolean" } }, strict: true }).values.once === true;
  } catch (e) {
    process.stderr.write(`stubdom-init console0: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  let xs: XenStore;
  try {
    const { openXenStore } = await import("../../ffi/xenstore.ts");
    xs = openXenStore({ watchWakeups: once ? "loop" : "caller" });
  } catch (e) {
    process.stderr.write(`stubdom-init console0: cannot reach xenstore: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    if (once) {
      pass(xs);
      return 0;
    }
    let changed = true;
    const off = xs.onWatch(() => void (changed = true));
    const frontends = new FrontendWatches(xs, TOKEN);
    xs.watch(BACKEND_ROOT, TOKEN);
    process.stdout.write(`stubdom-init console0: watching ${BACKEND_ROOT}\n`);
    await pumpUntilSignal(xs, {
      each: () => {
        if (!changed) return;
        changed = false;
        frontends.update(pass(xs));
      },
    });
    off();
    return 0;
  } finally {
    xs.close();
  }
}
