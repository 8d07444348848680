// The fake matched against the real thing: each case's tree is served by the project's
// xenstore server (a separate process) and read by `stubdom-init config` through Debian's
// libxenstore, and the snapshot and result must equal the committed golden ones, which the
// other tests produce with the in-memory store.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BUN, ROOT, sh, startServer, type ServerProc } from "../xenstore/harness.ts";
import { fixtureFor } from "./cases.ts";
import { storeOf } from "./fixture.ts";
import { goldenFor } from "./golden.ts";

// The 1,500- and 4,097-argument cases, byte-exact and invalid UTF-8 values, and the hostile ones
// whose reads stop early: the cases where a wire or library detail could change the snapshot.
const CASES = ["base", "args-1500", "argv-too-many", "arg-invalid-utf8", "arg-4000-bytes", "vm-outside-vm", "missing-target", "mtu-70000"];

describe.each(CASES)("config %s against the real server and libxenstore", (name) => {
  let server: ServerProc;
  const dir = mkdtempSync(join(tmpdir(), "config-real-"));
  beforeAll(async () => {
    const file = join(dir, "tree.json");
    writeFileSync(file, JSON.stringify(storeOf(fixtureFor(name)).store.dump()));
    server = await startServer({ extra: ["--load", file] });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("--snapshot equals the in-memory reader's, --json the golden result", async () => {
    const golden = goldenFor(name);
    const snap = await sh([BUN, join(ROOT, "agent/main.ts"), "config", "--domid", "4", "--snapshot"], server.socket);
    expect(snap.err).toEqual(golden.expected.ok ? "" : expect.any(String));
    expect(JSON.parse(snap.out)).toEqual(golden.snapshot);
    const json = await sh([BUN, join(ROOT, "agent/main.ts"), "config", "--domid", "4", "--json"], server.socket);
    expect(json.code).toBe(golden.expected.ok ? 0 : 1);
    // --domid becomes the options' domid; the goldens were parsed with default options.
    const expected = golden.expected.ok
      ? { ...golden.expected, config: { ...golden.expected.config, options: { ...golden.expected.config.options, domid: 4 } } }
      : golden.expected;
    expect(JSON.parse(json.out)).toEqual(expected);
  });
});
