import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import { valueBytes } from "../../agent/config/read.ts";
import { GOLDEN_DIR, goldenNames, snapshotFor, type Golden } from "./golden.ts";

const files = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith(".json")).sort();
const load = (file: string) => JSON.parse(readFileSync(`${GOLDEN_DIR}${file}`, "utf8")) as Golden;

function deeplyFrozen(v: unknown): boolean {
  if (v === null || typeof v !== "object") return true;
  return Object.isFrozen(v) && Object.values(v).every(deeplyFrozen);
}

test("one golden file per case and per simulator guest, and no stray ones", () => {
  expect(files).toEqual(goldenNames().map((n) => `${n}.json`).sort());
});

describe.each(files)("golden %s", (file) => {
  const golden = load(file);
  const name = file.replace(/\.json$/, "");

  test("parse of the committed snapshot gives the committed result", () => {
    const result = parseConfig(golden.snapshot, parseCmdline(golden.cmdline).options);
    expect(JSON.parse(JSON.stringify(result))).toEqual(golden.expected);
    if (result.ok) expect(deeplyFrozen(result.config)).toBe(true);
    else expect(result.errors.length).toBeGreaterThan(0);
  });

  // The simulator guests' files record the simulator as it was when they were written (its
  // owner may change what it writes); guests.test.ts checks the live simulator instead.
  if (!name.startsWith("guest-")) {
    test("the reader, on the case's xenstore, produces the committed snapshot", () => {
      expect(snapshotFor(name)).toEqual(golden.snapshot);
    });
  }
});

describe("golden contents that matter", () => {
  test("every simulator guest is a golden file that parses", () => {
    const guests = files.filter((f) => f.startsWith("guest-"));
    expect(guests.length).toBeGreaterThanOrEqual(3);
    for (const f of guests) expect(load(f).expected.ok, f).toBe(true);
  });

  test("1,500 arguments come out in numeric order although the server listed them reversed", () => {
    const g = load("args-1500.json");
    const dir = Object.entries(g.snapshot.dirs).find(([k]) => k.endsWith("/dm-argv"))!;
    expect((dir[1] as string[])[0]).toBe("1500");
    expect(g.expected.ok).toBe(true);
    if (!g.expected.ok) return;
    const argv = g.expected.config.dmArgv;
    expect(argv.length).toBe(1498); // 1500 minus the two Qubes pseudo-arguments
    expect(argv.at(-1)).toBe("-no-hpet");
    // Argument k of the extras is iobase=k, so numeric order yields 0, 1, 2, ... (lexical would not).
    const bases = argv.filter((a) => a.startsWith("isa-debugcon.iobase=")).map((a) => Number(a.split("=")[1]));
    expect(bases).toEqual(bases.map((_, i) => i));
    expect(bases.length).toBe(731);
  });

  test("an argument of 4,000 UTF-8 bytes is kept byte-exact", () => {
    const g = load("arg-4000-bytes.json");
    if (!g.expected.ok) throw new Error("expected ok");
    const arg = g.expected.config.dmArgv.find((a) => a.startsWith("type=11,"))!;
    expect(Buffer.byteLength(arg)).toBe(4000);
    expect(arg).toBe(`type=11,value=${"é".repeat(1993)}`);
  });

  test("invalid UTF-8 is kept as base64 in the snapshot, byte-exact", () => {
    const g = load("arg-invalid-utf8.json");
    const v = Object.entries(g.snapshot.values).find(([k]) => k.endsWith("/dm-argv/007"))![1];
    expect(v).toEqual({ b64: expect.any(String) });
    expect([...valueBytes(v as { b64: string })]).toEqual([0x77, 0x69, 0x6e, 0xff, 0xfe, 0x31]);
  });

  test("spaces, '=', escaped commas and UTF-8 survive in the base config", () => {
    const g = load("base.json");
    if (!g.expected.ok) throw new Error("expected ok");
    expect(g.expected.config.dmArgv).toContain("type=11,value=Gäst ☃ with spaces = signs,, and commas");
    expect(g.expected.config.dmArgv.some((a) => a.startsWith("-qubes"))).toBe(false);
    expect(g.expected.config.dmArgv[g.expected.config.restore!.argIndex]).toBe("$STUBDOM_RESTORE_INCOMING_ARG");
  });
});
