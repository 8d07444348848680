// Golden files: test/config/golden/<name>.json = {description, cmdline, snapshot, expected}.
// Two sources: the hand-made cases of cases.ts, and every guest description of the toolstack
// simulator (test/guests/*.json, as `guest-<file>`), written as libxl writes it and read as the
// unprivileged stub domain reads it.
import { readdirSync, readFileSync } from "node:fs";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import { readSnapshot } from "../../agent/config/read.ts";
import type { ParseResult, Snapshot } from "../../agent/config/types.ts";
import { parseGuest } from "../../agent/toolstack/guest.ts";
import { createDomains } from "../../agent/toolstack/simulate.ts";
import { MemoryXenStore } from "../../agent/xenstore/memory.ts";
import { cases, fixtureFor } from "./cases.ts";
import { snapshotOf, storeOf } from "./fixture.ts";

export const GOLDEN_DIR = new URL("./golden/", import.meta.url).pathname;
export const GUESTS_DIR = new URL("../guests/", import.meta.url).pathname;
export const SIMULATOR_IDS = { guestDomid: 7, stubDomid: 8 };

export interface Golden {
  description: string;
  cmdline: string;
  snapshot: Snapshot;
  expected: ParseResult;
}

const guestFiles = () => readdirSync(GUESTS_DIR).filter((f) => f.endsWith(".json")).sort();

export function goldenNames(): string[] {
  return [...Object.keys(cases), ...guestFiles().map((f) => `guest-${f.replace(/\.json$/, "")}`)];
}

/** The xenstore tree of a golden case, as dom0 (privileged) sees it, and how to read it. */
export function treeFor(name: string): { dom0: MemoryXenStore; stubDomid: number; readDomid: number | null } {
  if (name.startsWith("guest-")) {
    const file = `${name.slice("guest-".length)}.json`;
    const g = parseGuest(JSON.parse(readFileSync(`${GUESTS_DIR}${file}`, "utf8")), file);
    const dom0 = new MemoryXenStore();
    createDomains(dom0, g, SIMULATOR_IDS);
    return { dom0, stubDomid: SIMULATOR_IDS.stubDomid, readDomid: null };
  }
  const f = fixtureFor(name);
  return { dom0: storeOf(f), stubDomid: f.stub, readDomid: f.stub };
}

/** What the reader produces for a golden case. */
export function snapshotFor(name: string): Snapshot {
  if (!name.startsWith("guest-")) return snapshotOf(fixtureFor(name));
  const t = treeFor(name);
  return readSnapshot(new MemoryXenStore({ store: t.dom0.store, domid: t.stubDomid }), { domid: t.readDomid });
}

export function goldenFor(name: string): Golden {
  const c = cases[name];
  const description = c?.description ?? `toolstack simulator guest test/guests/${name.slice("guest-".length)}.json, read as the stub domain`;
  const cmdline = c?.cmdline ?? "";
  const snapshot = snapshotFor(name);
  // Through JSON, as the committed file will be.
  const expected = JSON.parse(JSON.stringify(parseConfig(snapshot, parseCmdline(cmdline).options))) as ParseResult;
  return { description, cmdline, snapshot, expected };
}
