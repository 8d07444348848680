import { expect, test } from "vitest";
import { parseStatusArgs } from "../../agent/health/cli.ts";

test.each([
  [[], { selection: { all: true }, json: false, watch: false }],
  [["--all", "--json"], { selection: { all: true }, json: true, watch: false }],
  [["4", "7", "4", "--watch"], { selection: { all: false, guests: [4, 7] }, json: false, watch: true }],
  [["32751"], { selection: { all: false, guests: [32751] }, json: false, watch: false }],
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
])("status %j is refused", (argv, message) => {
  const r = parseStatusArgs(argv);
  expect("error" in r).toBe(true);
  if ("error" in r) {
    if (typeof message === "string") expect(r.error).toBe(message);
    else expect(r.error).toMatch(message);
  }
});
