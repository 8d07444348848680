// What a compromised stub domain could write into its own health keys, and how the dom0 reader
// shows it: never trusted, never raw, never a crash.
import { describe, expect, test } from "vitest";
import { renderJson, renderTable } from "../../agent/health/render.ts";
import { BASE, RAW_UNSAFE, cases, enc, healthy } from "./hostile-cases.ts";

describe("hostile values: each with its expected rendering", () => {
  test.each(cases)("$name", async (c) => {
    const t = await healthy();
    c.tamper(t.dom0);
    const r = t.read();
    const table = renderTable([r]);
    const json = renderJson([r]);
    expect(r.health, table).toBe(c.health);
    expect(table).not.toMatch(RAW_UNSAFE);
    expect(json).toMatch(/^[\x20-\x7e]*\n$/);
    expect(JSON.parse(json)[0].health).toBe(c.health);
    for (const s of c.shows) {
      if (typeof s === "string") expect(table).toContain(s);
      else expect(table).toMatch(s);
    }
  });

  test("random bytes in every key never crash the reader nor reach the terminal raw", async () => {
    const t = await healthy();
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 0x1000000;
    const keys = t.dom0.directory(BASE).filter((k) => k !== "nic").concat(["nic/0", "nic/1"]);
    const pieces = ["\x1b[", "\u009b", "\u202e", "\0", "{", '"name":', "9".repeat(20), "-1", "running", "\n", "\xff"];
    for (let round = 0; round < 200; round++) {
      for (const k of keys) {
        if (rnd() < 0.5) continue;
        const bytes =
          rnd() < 0.5
            ? Uint8Array.from({ length: Math.floor(rnd() * 1500) }, () => Math.floor(rnd() * 256))
            : enc(Array.from({ length: Math.floor(rnd() * 8) }, () => pieces[Math.floor(rnd() * pieces.length)]).join(""));
        t.dom0.write(`${BASE}/${k}`, bytes);
      }
      const r = t.read();
      expect(renderTable([r])).not.toMatch(RAW_UNSAFE);
      expect(renderJson([r])).toMatch(/^[\x20-\x7e]*\n$/);
    }
  });
});
