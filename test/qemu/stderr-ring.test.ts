import { expect, test } from "vitest";
import { StderrRing } from "../../agent/qemu/stderr-ring.ts";

test("keeps the last lines, cut to size, across chunk boundaries", () => {
  const echoed: string[] = [];
  const r = new StderrRing({ lines: 3, lineBytes: 5, echoPerWindow: 100, windowMs: 1000 }, (l) => echoed.push(l), () => 0);
  r.push("one\ntw");
  r.push("o\nthree\nfour-long-line\nfi");
  expect(r.tail()).toEqual(["three", "four-…", "fi"]);
  expect(echoed).toEqual(["one", "two", "three", "four-…"]);
});

test("a flood is echoed at a bounded rate and summarised", () => {
  let now = 0;
  const echoed: string[] = [];
  const r = new StderrRing({ lines: 2, lineBytes: 100, echoPerWindow: 10, windowMs: 1000 }, (l) => echoed.push(l), () => now);
  for (let i = 0; i < 10_000; i++) r.push(`line ${i}\n`);
  now = 1000;
  r.push("after\n");
  expect(echoed.length).toBe(12);
  expect(echoed[10]).toBe("(9990 lines of stderr not shown)");
  expect(r.tail()).toEqual(["line 9999", "after"]);
  expect(r.total).toBe(10_001);
  for (let i = 0; i < 20; i++) r.push(`late ${i}\n`);
  r.flush();
  expect(echoed.at(-1)).toBe("(11 lines of stderr not shown)");
});
