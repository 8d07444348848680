import { describe, expect, test } from "vitest";
import { DEFAULT_OPTIONS, parseCmdline } from "../../agent/config/cmdline.ts";

describe("parseCmdline", () => {
  test("defaults when no stubdom.* key is present", () => {
    const r = parseCmdline("console=hvc0 quiet root=/dev/ram0\n");
    expect(r.errors).toEqual([]);
    expect(r.options).toEqual(DEFAULT_OPTIONS);
    expect(r.options).toEqual({
      loglevel: "info",
      crash: "shutdown-guest",
      crashGraceMs: 1000,
      healthInterval: 5,
      xenstore: { kind: "default" },
      domid: null,
      qmp: { kind: "vchan" },
      qemu: "/usr/libexec/xen-qemu-system-i386",
      shell: false,
      selftest: 0,
      confine: true,
    });
  });

  test("every option", () => {
    const r = parseCmdline(
      "console=hvc0 stubdom.loglevel=debug stubdom.crash=hold stubdom.crash_grace_ms=0 stubdom.health_interval=3600 " +
        "stubdom.xenstore=virtio:xenstore stubdom.domid=7 stubdom.qmp=virtio:qmp " +
        "stubdom.qemu=/usr/bin/qemu-system-x86_64 stubdom.shell stubdom.selftest=30 stubdom.confine=0\n",
    );
    expect(r.errors).toEqual([]);
    expect(r.options).toEqual({
      loglevel: "debug",
      crash: "hold",
      crashGraceMs: 0,
      healthInterval: 3600,
      xenstore: { kind: "virtio", name: "xenstore" },
      domid: 7,
      qmp: { kind: "virtio", name: "qmp" },
      qemu: "/usr/bin/qemu-system-x86_64",
      shell: true,
      selftest: 30,
      confine: false,
    });
    expect(Object.isFrozen(r.options)).toBe(true);
  });

  test("xenstore as a path, shell=0, later duplicate wins", () => {
    const r = parseCmdline("stubdom.xenstore=/dev/vport1p1 stubdom.shell=1 stubdom.shell=0");
    expect(r.errors).toEqual([]);
    expect(r.options.xenstore).toEqual({ kind: "path", path: "/dev/vport1p1" });
    expect(r.options.shell).toBe(false);
  });

  test("quotes group and `--` ends the kernel's options", () => {
    const r = parseCmdline('foo="a b stubdom.bogus=1" stubdom.loglevel=warn -- stubdom.nonsense');
    expect(r.errors).toEqual([]);
    expect(r.options.loglevel).toBe("warn");
  });

  test("errors name the key and keep the default", () => {
    const r = parseCmdline(
      "stubdom.loglevel=verbose stubdom.bogus=1 stubdom.health_interval=0 stubdom.health_interval=3601 " +
        "stubdom.health_interval=1e3 stubdom.domid=32752 stubdom.xenstore=relative stubdom.qmp=virtio: " +
        "stubdom.qemu stubdom.crash= stubdom.shell=yes stubdom.crash_grace_ms=60001",
    );
    expect(r.options).toEqual(DEFAULT_OPTIONS);
    expect(r.errors.map((e) => e.key)).toEqual([
      "cmdline:stubdom.loglevel",
      "cmdline:stubdom.bogus",
      "cmdline:stubdom.health_interval",
      "cmdline:stubdom.health_interval",
      "cmdline:stubdom.health_interval",
      "cmdline:stubdom.domid",
      "cmdline:stubdom.xenstore",
      "cmdline:stubdom.qmp",
      "cmdline:stubdom.qemu",
      "cmdline:stubdom.crash",
      "cmdline:stubdom.shell",
      "cmdline:stubdom.crash_grace_ms",
    ]);
    expect(r.errors[1]!.reason).toBe("unknown option");
    expect(r.errors[2]!.reason).toContain("at least 1");
    expect(r.errors[3]!.reason).toContain("at most 3600");
    expect(r.errors[8]!.reason).toBe("needs a value");
  });

  test("prototype names are unknown options, not lookups", () => {
    const r = parseCmdline("stubdom.__proto__=1 stubdom.constructor=x stubdom.toString");
    expect(r.options).toEqual(DEFAULT_OPTIONS);
    expect(r.errors.map((e) => e.reason)).toEqual(["unknown option", "unknown option", "unknown option"]);
  });

  test("an oversized command line is cut and reported", () => {
    const r = parseCmdline(`stubdom.loglevel=error ${"x".repeat(10_000)} stubdom.loglevel=debug`);
    expect(r.options.loglevel).toBe("error");
    expect(r.errors).toEqual([{ key: "cmdline", reason: expect.stringContaining("longer than 4096") }]);
  });
});
