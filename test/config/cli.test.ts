import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { describe, expect, test } from "vitest";
import { runConfig, type CliIo } from "../../agent/config/cli.ts";
import { readSnapshot } from "../../agent/config/read.ts";
import type { XenStore } from "../../agent/xenstore/types.ts";
import { fixtureFor } from "./cases.ts";
import { storeOf } from "./fixture.ts";
import { GOLDEN_DIR } from "./golden.ts";

async function cli(argv: string[], xs?: () => XenStore) {
  let out = "";
  let err = "";
  let closed = 0;
  const io: CliIo = {
    openXenStore: () => {
      if (!xs) throw new Error("no xenstore in this test");
      const store = xs();
      const close = store.close.bind(store);
      store.close = () => {
        closed++;
        close();
      };
      return store;
    },
    readFile: (p) => readFileSync(p, "utf8"),
    out: (t) => void (out += t),
    err: (t) => void (err += t),
  };
  const code = await runConfig(argv, io);
  return { code, out, err, closed };
}

describe("stubdom-init config", () => {
  test("prints a readable summary of a good configuration and closes the handle", async () => {
    const r = await cli(["--domid", "4"], () => storeOf(fixtureFor("base")));
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    expect(r.closed).toBe(1);
    expect(r.out).toContain("stub domain 4 for guest 3 (\"win10\")");
    expect(r.out).toContain("nic 0: rtl8139 00:16:3e:5e:6c:00 via tap vif3.0-emu <-> eth0");
    expect(r.out).toContain("disk /dev/xvdc (cdrom)");
  });

  test("--json prints the ParseResult", async () => {
    const r = await cli(["--domid", "4", "--json", "--cmdline", "stubdom.loglevel=debug"], () => storeOf(fixtureFor("base")));
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out);
    expect(result.ok).toBe(true);
    expect(result.config.options.loglevel).toBe("debug");
    expect(result.config.nics[0].allowedSources).toEqual(["10.137.0.5/32", "fd09:24ef:4179::a89:5/128"]);
  });

  test("errors go to stderr with their key, exit 1", async () => {
    const r = await cli(["--domid", "4"], () => storeOf(fixtureFor("mtu-70000")));
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toBe("/local/domain/0/backend/vif/4/0/mtu: 70000 is outside 68..65535\n");
  });

  test("--snapshot prints exactly what was read", async () => {
    const r = await cli(["--domid", "4", "--snapshot"], () => storeOf(fixtureFor("base")));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(readSnapshot(storeOf(fixtureFor("base")), { domid: 4 }));
  });

  test("--from parses a saved snapshot without opening xenstore", async () => {
    const file = `${GOLDEN_DIR}netdev-no-vif.json`;
    const golden = JSON.parse(readFileSync(file, "utf8"));
    const tmp = `${tmpdir()}/config-cli-${process.pid}.json`;
    writeFileSync(tmp, JSON.stringify(golden.snapshot));
    const r = await cli(["--from", tmp, "--json"]).finally(() => rmSync(tmp, { force: true }));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toEqual(golden.expected);
  });

  test("bad usage exits 2; bad stubdom.* options exit 1", async () => {
    expect((await cli(["--domid", "x"])).code).toBe(2);
    expect((await cli(["--bogus"])).code).toBe(2);
    const r = await cli(["--cmdline", "stubdom.nope=1"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("cmdline:stubdom.nope: unknown option\n");
  });

  test("a failure to open xenstore is reported, exit 1", async () => {
    const r = await cli(["--domid", "4"], () => {
      throw new Error("xs_open: ENOENT");
    });
    expect(r.code).toBe(1);
    expect(r.err).toBe("stubdom-init config: xs_open: ENOENT\n");
  });
});
