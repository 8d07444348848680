import { describe, expect, test } from "vitest";
import { buildQemuArgv, RESTORE_PLACEHOLDER, SANDBOX } from "../../agent/qemu/argv.ts";

const base = ["-xen-domid", "5", "-no-shutdown", "-nodefaults", "-name", "guest one", "-m", "256"];

describe("buildQemuArgv", () => {
  test("keeps dm-argv byte-exact and appends monitors then the sandbox", () => {
    const r = buildQemuArgv({ dmArgv: base, restoreArgIndex: null, monitors: ["a", "b"], restoreFd: false });
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
    const r = buildQemuArgv({ dmArgv: dm, restoreArgIndex: dm.length - 1, monitors: ["a", "b"], restoreFd: true });
    if (!r.ok) throw new Error(r.reason);
    expect(r.argv.slice(base.length, base.length + 2)).toEqual(["-incoming", "fd:5"]);
    expect(r.argv).not.toContain(RESTORE_PLACEHOLDER);
  });

  test("refuses a placeholder it was not told about, or a restore without the console", () => {
    const dm = [...base, "-incoming", RESTORE_PLACEHOLDER];
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: null, monitors: [], restoreFd: false }).ok).toBe(false);
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: dm.length - 1, monitors: [], restoreFd: false }).ok).toBe(false);
    expect(buildQemuArgv({ dmArgv: dm, restoreArgIndex: 0, monitors: [], restoreFd: true }).ok).toBe(false);
  });

  test("drops a -sandbox from dm-argv so ours is the only one", () => {
    const r = buildQemuArgv({ dmArgv: ["-sandbox", "off", "-m", "1"], restoreArgIndex: null, monitors: [], restoreFd: false });
    if (!r.ok) throw new Error(r.reason);
    expect(r.dropped).toEqual(["-sandbox", "off"]);
    expect(r.argv).toEqual(["-m", "1", "-sandbox", SANDBOX]);
  });
});
