import { expect, test } from "vitest";
import { parseStatusArgs } from "../../agent/health/cli.ts";
import { parseListen } from "../../agent/health/exporter.ts";

test.each([
  [[], { selection: { all: true }, json: false, prometheus: false, watch: false }],
  [["--all", "--json"], { selection: { all: true }, json: true, prometheus: false, watch: false }],
  [["4", "7", "4", "--watch"], { selection: { all: false, guests: [4, 7] }, json: false, prometheus: false, watch: true }],
  [["32751"], { selection: { all: false, guests: [32751] }, json: false, prometheus: false, watch: false }],
  [["--all", "--prometheus"], { selection: { all: true }, json: false, prometheus: true, watch: false }],
])("status %j", (argv, expected) => {
  expect(parseStatusArgs(argv)).toEqual(expected);
});

test.each([
  [["--all", "4"], "give guest domids or --all, not both"],
  [["32752"], "not a guest domid: 32752"],
  [["-1"], /-1/],
  [["4x"], "not a guest domid: 4x"],
  [["\u001b[2J"], "not a guest domid: \\x1b[2J"],
  [["--verbose"], /verbose/],
  [["--json", "--prometheus"], "give --json or --prometheus, not both"],
  [["--prometheus", "--watch"], /one snapshot/],
])("status %j is refused", (argv, message) => {
  const r = parseStatusArgs(argv);
  expect("error" in r).toBe(true);
  if ("error" in r) {
    if (typeof message === "string") expect(r.error).toBe(message);
    else expect(r.error).toMatch(message);
  }
});

test.each([
  ["127.0.0.1:9714", { hostname: "127.0.0.1", port: 9714 }],
  ["[::1]:9714", { hostname: "::1", port: 9714 }],
  [":9714", { hostname: "0.0.0.0", port: 9714 }],
  ["localhost:0", { hostname: "localhost", port: 0 }],
  ["127.0.0.1", undefined],
  ["127.0.0.1:65536", undefined],
  ["a b:1", undefined],
  ["\u001b[2J:1", undefined],
])("exporter --listen %s", (s, expected) => {
  expect(parseListen(s)).toEqual(expected);
});
