import { describe, expect, test } from "vitest";
import { existsSync } from "node:fs";
import { readElf } from "../../agent/build/elf.ts";
import { buildQemuArgv, hasSeccomp, RESTORE_PLACEHOLDER, SANDBOX } from "../../agent/qemu/argv.ts";

const base = ["-xen-domid", "5", "-no-shutdown", "-nodefaults", "-name", "guest one", "-m", "256"];

describe("buildQemuArgv", () => {
  test("keeps dm-argv byte-exact and appends monitors then the sandbox", () => {
    const r = buildQemuArgv({ dmArgv: base, restoreArgIndex: null, monitors: ["a", "b"], restoreFd: false, sandbox: true });
    expect(r).toEqual({
      ok: true,
      dropped: [],
      argv: [
        ...base,
        "-chardev", "socket,id=a,fd=3,server=on,wait=off", "-mon", "chardev=a,mode=control",
        "-chardev", "socket,id=b,fd=4,server=on,wait=off", "-mon", "chardev=b,mode=control",
        "-sandbox", SANDBOX,
      ],
    });
  });

  test("replaces the restore placeholder by the fd after the monitors' sockets", () => {
    const dm = [...base, "-incoming", RESTORE_PLACEHOLDER];
    const r = buildQemuArgv({ dmArgv: dm, restoreArgIndex: dm.length - 1, monitors: ["a", "b"], restoreFd: true, sandbox: true });
    if (!r.ok) throw new Error(r.reason);
    expect(r.argv.slice(base.length, base.length + 2)).toEqual(["-incoming", "fd:5"]);
    expect(r.argv).not.toContain(RESTORE_PLACEHOLDER);
  });

  test("refuses a placeholder it was not told about, or a restore without the console", () => {
    const dm = [...base, "-incoming", RESTORE_PLACEHOLDER];
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: null, monitors: [], restoreFd: false, sandbox: true }).ok).toBe(false);
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: dm.length - 1, monitors: [], restoreFd: false, sandbox: true }).ok).toBe(false);
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: 0, monitors: [], restoreFd: true, sandbox: true }).ok).toBe(false);
  });

  test("drops a -sandbox from dm-argv so ours is the only one", () => {
    const r = buildQemuArgv({ dmArgv: ["-sandbox", "off", "-m", "1"], restoreArgIndex: null, monitors: [], restoreFd: false, sandbox: true });
    if (!r.ok) throw new Error(r.reason);
    expect(r.dropped).toEqual(["-sandbox", "off"]);
    expect(r.argv).toEqual(["-m", "1", "-sandbox", SANDBOX]);
  });

  test("leaves the sandbox out for a QEMU without seccomp", () => {
    const r = buildQemuArgv({ dmArgv: ["-m", "1"], restoreArgIndex: null, monitors: [], restoreFd: false, sandbox: false });
    expect(r).toEqual({ ok: true, dropped: [], argv: ["-m", "1"] });
  });
});

describe("hasSeccomp on Debian's QEMU binaries", () => {
  // Debian's TCG QEMU links libseccomp; its Xen device model does not (and exits on -sandbox).
  const xenQemu = ".cache/pkgs/qemu-system-xen/usr/libexec/xen-qemu-system-i386";
  test("qemu-system-x86_64 (host package) has it, xen-qemu-system-i386 (image package) has not", async () => {
    expect(existsSync(xenQemu), `${xenQemu} missing: run make build first`).toBe(true);
    expect(hasSeccomp((await readElf("/usr/bin/qemu-system-x86_64")).needed)).toBe(true);
    expect(hasSeccomp((await readElf(xenQemu)).needed)).toBe(false);
  });
});
