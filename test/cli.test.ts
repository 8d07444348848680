import { expect, test } from "vitest";
import { commands, helpText } from "../agent/cli.ts";

test("--help lists every subcommand", () => {
  const text = helpText();
  for (const name of ["status", "config", "net", "xenstored", "simulate-toolstack"]) {
    expect(Object.keys(commands)).toContain(name);
    expect(text).toMatch(new RegExp(`^  ${name} +\\S`, "m"));
  }
});
