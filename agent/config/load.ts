// Read then parse: what PID 1 and the `config` command call. The snapshot is returned with the
// result so a failure can be reported (or saved) together with exactly what was read.
import type { XenStore } from "../xenstore/types.ts";
import { parseConfig } from "./parse.ts";
import { readSnapshot } from "./read.ts";
import type { AgentOptions, ParseResult, Snapshot } from "./types.ts";

export function loadConfig(xs: XenStore, options: AgentOptions): { snapshot: Snapshot; result: ParseResult } {
  const snapshot = readSnapshot(xs, { domid: options.domid });
  return { snapshot, result: parseConfig(snapshot, options) };
}
