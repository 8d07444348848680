// Details of the parse that the golden files do not pin down one by one.
import { describe, expect, test } from "vitest";
import { parseCmdline } from "../../agent/config/cmdline.ts";
import { parseConfig } from "../../agent/config/parse.ts";
import { parseQemuOpts } from "../../agent/config/qemu-opts.ts";
import type { ParseResult, Snapshot, StubdomConfig } from "../../agent/config/types.ts";
import { baseFixture, BASE_ARGS, numbered, snapshotOf, type Fixture } from "./fixture.ts";

const options = parseCmdline("").options;
const parse = (f: Fixture): ParseResult => parseConfig(snapshotOf(f), options);
const ok = (r: ParseResult): StubdomConfig => {
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
};
const errs = (r: ParseResult) => {
  if (r.ok) throw new Error("expected errors");
  return r.errors;
};
const withArgs = (change: (args: string[]) => void, tweak?: (f: Fixture) => void): ParseResult => {
  const f = baseFixture();
  const args = [...BASE_ARGS];
  change(args);
  f.argv = numbered(args);
  tweak?.(f);
  return parse(f);
};

describe("parseQemuOpts", () => {
  test("implied first item, ',,' as a literal comma, later duplicates win, bare keys are on", () => {
    const o = parseQemuOpts("e1000,netdev=net0,mac=00:16:3e:00:00:01,romfile=a,,b.rom,mac=00:16:3e:00:00:02,x-flag");
    expect(o.implied).toBe("e1000");
    expect(Object.fromEntries(o.opts)).toEqual({ netdev: "net0", mac: "00:16:3e:00:00:02", romfile: "a,b.rom", "x-flag": "on" });
    expect(parseQemuOpts("type=tap,id=n").implied).toBeNull();
    expect(parseQemuOpts("").implied).toBe("");
  });
});

describe("parseConfig", () => {
  test("the base guest, field by field", () => {
    const c = ok(parse(baseFixture()));
    expect(c.restore).toEqual({ argIndex: c.dmArgv.indexOf("$STUBDOM_RESTORE_INCOMING_ARG") });
    expect(c.dmArgv[c.restore!.argIndex - 1]).toBe("-incoming");
    expect(c.qubes).toEqual({
      net: { clientIp: "10.137.0.5", gateway: "10.137.0.1", netmask: "255.255.255.255", dns: ["10.139.1.1", "10.139.1.2"] },
      audio: { audiovmXid: 0 },
    });
    expect(c.disks).toEqual([
      { path: "/dev/xvda", argIndex: c.dmArgv.indexOf("file=/dev/xvda,if=ide,index=0,media=disk,format=raw,cache=writeback"), cdrom: false, attached: true },
      { path: "/dev/xvdc", argIndex: c.dmArgv.indexOf("if=none,readonly=on,id=ide-5632,file=/dev/xvdc,format=raw"), cdrom: true, attached: true },
    ]);
    expect(c.nics[0]!.guestMac).toBe("00:16:3e:5e:6c:00"); // lower-cased from 00:16:3E:...
  });

  test("vbd device numbers map to xvd names, extended numbering included", () => {
    const f = baseFixture();
    f.vbds = [51712 + 16, (1 << 28) | (26 << 8)]; // xvdb, xvdaa
    const args = [...BASE_ARGS, "-drive", "file=/dev/xvdb,if=ide,index=1,media=disk", "-drive", "file=/dev/xvdaa,if=ide,index=2,media=disk"];
    f.argv = numbered(args);
    const c = ok(parse(f));
    expect(c.disks.map((d) => [d.path, d.attached])).toEqual([
      ["/dev/xvda", false],
      ["/dev/xvdc", false],
      ["/dev/xvdb", true],
      ["/dev/xvdaa", true],
    ]);
  });

  test.each([
    ["IDE hda and hdc", [3 << 8, 22 << 8], [true, true]],
    ["SCSI sda, sdc", [8 << 8, (8 << 8) | 32], [true, true]],
    ["IDE hdb (second unit of major 3) is xvdb, not xvdc", [(3 << 8) | 64], [false, false]],
    ["partitions are not disks", [(202 << 8) | 1, (22 << 8) | 1], [false, false]],
  ])("vbd numbers as blkfront names them: %s", (_, vbds, attached) => {
    const f = baseFixture();
    f.vbds = vbds;
    expect(ok(parse(f)).disks.map((d) => d.attached)).toEqual(attached);
  });

  test("a custom tap name falls back to the netdev id for the vif number", () => {
    const c = ok(withArgs((a) => (a[a.indexOf("-netdev") + 1] = "tap,id=net0,ifname=win10-emu,script=no")));
    expect(c.nics.map((n) => [n.index, n.ifname, n.netfront.name])).toEqual([[0, "win10-emu", "eth0"]]);
  });

  test("netfront names follow the rank of the vif number, not the number", () => {
    const f = baseFixture();
    f.vifs.set(5, { front: { mac: "00:16:3e:00:00:15", "backend-id": "0", backend: "/local/domain/0/backend/vif/4/5" }, backendDomid: 0, back: {} });
    f.argv = numbered([...BASE_ARGS, "-device", "e1000,id=nic5,netdev=net5,mac=00:16:3e:00:00:15", "-netdev", "type=tap,id=net5,ifname=vif3.5-emu"]);
    expect(ok(parse(f)).nics.map((n) => [n.index, n.netfront.name])).toEqual([
      [0, "eth0"],
      [5, "eth1"],
    ]);
  });

  test("a vif without a netdev is a PV-only NIC, not an error", () => {
    const f = baseFixture();
    f.vifs.set(1, { front: { mac: "00:16:3e:00:00:11", "backend-id": "0", backend: "/local/domain/0/backend/vif/4/1" }, backendDomid: 0, back: {} });
    expect(ok(parse(f)).nics.length).toBe(1);
  });

  test("a second -incoming, a stray placeholder, a trailing option without value", () => {
    const e = errs(withArgs((a) => a.push("-incoming", "$STUBDOM_RESTORE_INCOMING_ARG", "$STUBDOM_RESTORE_INCOMING_ARG", "-serial")));
    expect(e.map((x) => x.reason)).toEqual([
      "a second -incoming",
      "$STUBDOM_RESTORE_INCOMING_ARG not after -incoming",
      "-serial needs a value",
    ]);
  });

  test("a guest named like an option is a value, not an option", () => {
    const c = ok(withArgs((a) => (a[a.indexOf("-name") + 1] = "-serial")));
    expect(c.serials).toEqual(["/dev/hvc3"]);
  });

  test("two serials, in order", () => {
    expect(ok(withArgs((a) => a.push("-serial", "/dev/hvc4"))).serials).toEqual(["/dev/hvc3", "/dev/hvc4"]);
  });

  test("-qubes-audio: and -qubes-net: errors", () => {
    const e = errs(
      withArgs((a) => {
        a[a.length - 2] = "-qubes-net:client_ip=10.0.0.1";
        a[a.length - 1] = "-qubes-audio:audiovm_xid=-1";
        a.push("-qubes-net:client_ip=10.0.0.1,gw=10.0.0.2,netmask=255.255.255.0");
      }),
    );
    expect(e.map((x) => x.reason)).toEqual([
      "-qubes-net: lacks gw=",
      "-qubes-net: lacks netmask=",
      "-qubes-audio: needs audiovm_xid=<domid>, got \"-1\"",
      "a second -qubes-net: argument",
    ]);
  });

  test("a NIC whose -device has no mac", () => {
    const e = errs(withArgs((a) => (a[a.indexOf("-netdev") - 1] = "e1000,id=nic0,netdev=net0")));
    expect(e).toEqual([{ key: expect.stringMatching(/dm-argv\/025$/), reason: "-device for netdev net0 has no mac=" }]);
  });

  test("IPv6 CIDRs are accepted in canonical form; a bare v6 address becomes /128", () => {
    const f = baseFixture();
    f.vifs.get(0)!.back.ip = "2001:DB8::/32  10.0.0.0/8\t192.168.1.7";
    expect(ok(parse(f)).nics[0]!.allowedSources).toEqual(["2001:db8::/32", "10.0.0.0/8", "192.168.1.7/32"]);
  });

  test("a value of 4,096 characters but more than 4,096 UTF-8 bytes is refused by the parse too", () => {
    const snap = snapshotOf(baseFixture());
    const key = "/local/domain/3/name";
    const hostile: Snapshot = { ...snap, values: { ...snap.values, [key]: "é".repeat(4096) } };
    expect(errs(parseConfig(hostile, options))).toEqual([{ key, reason: "longer than 4096 bytes" }]);
  });

  test("a snapshot of the wrong shape is reported by path, not thrown", () => {
    expect(errs(parseConfig({ format: "x", domid: 4, values: {}, dirs: {} }, options))).toEqual([
      { key: "snapshot:format", reason: expect.any(String) },
    ]);
    expect(errs(parseConfig(null, options))[0]!.key).toBe("snapshot:.");
    const proto = JSON.parse('{"format":"stubdom-config-snapshot/1","domid":null,"values":{"__proto__":"4","constructor":"x"},"dirs":{}}');
    expect(errs(parseConfig(proto, options))).toEqual([{ key: "domid", reason: "not in the snapshot (the reader did not get that far)" }]);
  });

  test("the config and everything in it is frozen", () => {
    const c = ok(parse(baseFixture())) as unknown as { dmArgv: string[]; nics: { allowedSources: string[] }[] };
    expect(() => c.dmArgv.push("-S")).toThrow();
    expect(() => c.nics[0]!.allowedSources.push("0.0.0.0/0")).toThrow();
  });
});
