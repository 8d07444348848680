// parseConfig on random and randomly damaged snapshots: it must never throw, and it must say
// something (a config or at least one error with a key and a reason). A seeded generator keeps
// failures reproducible: the failing seed is in the test name.
import { describe, expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import type { ParseResult } from "../../agent/config/types.ts";
import { baseFixture, snapshotOf } from "./fixture.ts";
import { rng } from "../rng.ts";


const NASTY = [
  "", " ", "-", "0", "-1", "4", "3", "00", "1e3", "NaN", "__proto__", "constructor", "toString",
  "/vm/x", "/vm/", "/local/domain/0", "-incoming", "$STUBDOM_RESTORE_INCOMING_ARG", "-netdev",
  "type=tap,id=net0,ifname=vif3.0-emu", "-device", "e1000,netdev=net0,mac=00:16:3e:00:00:01",
  "-drive", "file=/dev/xvda", "-qubes-net:", "-qubes-audio:audiovm_xid=", "-serial", ",,,,", "=",
  "10.0.0.1/8", "::/0", "ff:ff:ff:ff:ff:ff", "65536", "\u0000", "\u2028", "\ud800", "é".repeat(3000),
];

function randomString(r: () => number): string {
  if (r() < 0.5) return NASTY[Math.floor(r() * NASTY.length)]!;
  const len = Math.floor(r() * (r() < 0.1 ? 5000 : 24));
  let s = "";
  for (let i = 0; i < len; i++) s += String.fromCharCode(r() < 0.8 ? 32 + Math.floor(r() * 95) : Math.floor(r() * 0x3000));
  return s;
}

function randomJson(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 8));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return [0, -1, 1e308, Number.NaN, 4, 3, 0.5, 32752][Math.floor(r() * 8)];
    case 3: case 4: return randomString(r);
    case 5: return Array.from({ length: Math.floor(r() * 6) }, () => randomJson(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 6); i > 0; i--) o[randomString(r)] = randomJson(r, depth + 1);
      if (r() < 0.3) o.format = "stubdom-config-snapshot/1";
      return o;
    }
  }
}

function check(result: ParseResult): void {
  if (result.ok) return;
  expect(result.errors.length).toBeGreaterThan(0);
  for (const e of result.errors) {
    expect(typeof e.key).toBe("string");
    expect(e.reason.length).toBeGreaterThan(0);
  }
}

const options = parseCmdline("").options;
const base = snapshotOf(baseFixture());

test.each([21, 22])("parseCmdline never throws on random command lines (seed %i, 1,000 inputs)", (seed) => {
  const r = rng(seed);
  const words = ["stubdom.", "stubdom.loglevel=", "stubdom.domid=", "stubdom.xenstore=virtio:", "stubdom.shell", '"', "=", "--", " ", "\t"];
  for (let i = 0; i < 1000; i++) {
    let text = "";
    for (let j = Math.floor(r() * 12); j > 0; j--) text += r() < 0.5 ? words[Math.floor(r() * words.length)] : randomString(r);
    const result = parseCmdline(text);
    for (const e of result.errors) expect(e.key === "cmdline" || e.key.startsWith("cmdline:stubdom.")).toBe(true);
    expect(Object.isFrozen(result.options)).toBe(true);
  }
});

describe("parseConfig never throws", () => {
  test.each([1, 2, 3, 4])("on random JSON (seed %i, 500 inputs)", (seed) => {
    const r = rng(seed);
    for (let i = 0; i < 500; i++) check(parseConfig(randomJson(r, 0), options));
  });

  test.each([11, 12, 13, 14])("on randomly damaged real snapshots (seed %i, 300 inputs)", (seed) => {
    const r = rng(seed);
    const valueKeys = Object.keys(base.values);
    const dirKeys = Object.keys(base.dirs);
    let oks = 0;
    for (let i = 0; i < 300; i++) {
      const values: Record<string, unknown> = { ...base.values };
      const dirs: Record<string, unknown> = { ...base.dirs };
      for (let m = 1 + Math.floor(r() * 4); m > 0; m--) {
        const which = r();
        if (which < 0.45) values[valueKeys[Math.floor(r() * valueKeys.length)]!] = r() < 0.9 ? randomString(r) : randomJson(r, 2);
        else if (which < 0.6) delete values[valueKeys[Math.floor(r() * valueKeys.length)]!];
        else if (which < 0.8) {
          const k = dirKeys[Math.floor(r() * dirKeys.length)]!;
          const list: unknown[] = Array.isArray(dirs[k]) ? [...(dirs[k] as unknown[])] : [];
          if (r() < 0.5) list.push(randomString(r));
          else list.sort(() => r() - 0.5);
          dirs[k] = list;
        } else if (which < 0.9) dirs[dirKeys[Math.floor(r() * dirKeys.length)]!] = randomJson(r, 3);
        else values[randomString(r)] = randomString(r);
      }
      const result = parseConfig({ ...base, values, dirs }, options);
      check(result);
      if (result.ok) oks++;
    }
    // Some damage is harmless (a shuffled listing, an unused key): both outcomes are exercised.
    expect(oks).toBeGreaterThan(0);
    expect(oks).toBeLessThan(300);
  });
});
