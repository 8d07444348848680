// `stubdom-init console0 [--once]`, run in dom0 (connect.ts says why): one pass, or a pass at
// start and at every change under dom0's console backends, until SIGINT or SIGTERM.
import { parseArgs } from "node:util";
import type { XenStore } from "../xenstore/types.ts";
import { pumpUntilSignal } from "../xenstore/pump.ts";
import { BACKEND_ROOT, connectUndrained } from "./connect.ts";

const USAGE = "usage: stubdom-init console0 [--once]\n";

function pass(xs: XenStore): void {
  for (const a of connectUndrained(xs)) process.stdout.write(`stubdom-init console0: ${a.line}\n`);
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
    xs.watch(BACKEND_ROOT, "stubdom-console0");
    process.stdout.write(`stubdom-init console0: watching ${BACKEND_ROOT}\n`);
    await pumpUntilSignal(xs, {
      each: () => {
        if (!changed) return;
        changed = false;
        pass(xs);
      },
    });
    off();
    return 0;
  } finally {
    xs.close();
  }
}
