// Golden files: test/config/golden/<case>.json = {description, cmdline, snapshot, expected}.
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import type { ParseResult, Snapshot } from "../../agent/config/types.ts";
import { cases, fixtureFor } from "./cases.ts";
import { snapshotOf } from "./fixture.ts";

export const GOLDEN_DIR = new URL("./golden/", import.meta.url).pathname;

export interface Golden {
  description: string;
  cmdline: string;
  snapshot: Snapshot;
  expected: ParseResult;
}

export function goldenFor(name: string): Golden {
  const c = cases[name]!;
  const cmdline = c.cmdline ?? "";
  const snapshot = snapshotOf(fixtureFor(name));
  // Through JSON, as the committed file will be.
  const expected = JSON.parse(JSON.stringify(parseConfig(snapshot, parseCmdline(cmdline).options))) as ParseResult;
  return { description: c.description, cmdline, snapshot, expected };
}
