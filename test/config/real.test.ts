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
import { GUESTS_DIR, goldenFor, SIMULATOR_IDS } from "./golden.ts";

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

// End to end as in a stub domain: the simulator (libxl's writes, permissions, introduce and
// set_target) fills the real server; `config` then connects as domain S, unprivileged, without
// --domid, so it reads its own domid relative to its home like the init does under Xen.
describe.each(["full", "qubes", "restore"])("config for simulator guest %s as the stub domain", (guest) => {
  let server: ServerProc;
  let sim: ReturnType<typeof Bun.spawn> | undefined;
  beforeAll(async () => {
    server = await startServer({ domains: [SIMULATOR_IDS.stubDomid] });
    sim = Bun.spawn(
      [BUN, join(ROOT, "agent/main.ts"), "simulate-toolstack", "--socket", server.socket, "--guest", join(GUESTS_DIR, `${guest}.json`),
        "--guest-domid", String(SIMULATOR_IDS.guestDomid), "--stub-domid", String(SIMULATOR_IDS.stubDomid), "--timeout", "60"],
      { cwd: ROOT, stdout: "pipe", stderr: "inherit" },
    );
    const reader = (sim.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    while (!out.includes("created guest")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`simulate-toolstack ended early: ${out}`);
      out += new TextDecoder().decode(value);
    }
    reader.releaseLock();
  });
  afterAll(async () => {
    sim?.kill("SIGKILL");
    await sim?.exited;
    await server?.stop();
  });

  test("the snapshot and result equal the golden ones", async () => {
    const golden = goldenFor(`guest-${guest}`);
    const socket = server.domainSocket(SIMULATOR_IDS.stubDomid);
    const snap = await sh([BUN, join(ROOT, "agent/main.ts"), "config", "--snapshot"], socket);
    expect(snap.err).toBe("");
    expect(JSON.parse(snap.out)).toEqual(golden.snapshot);
    const json = await sh([BUN, join(ROOT, "agent/main.ts"), "config", "--json"], socket);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toEqual(golden.expected);
  });
});
