import { expect, test } from "vitest";
import { createLogger } from "../../agent/log.ts";
import { loadModules, lockdownMode, ModuleLoadError, stubdomModules } from "../../agent/init/modules.ts";

const DEP = [
  "kernel/drivers/xen/xen-evtchn.ko:",
  "kernel/drivers/xen/xen-privcmd.ko:",
  "kernel/drivers/xen/xenfs/xenfs.ko: kernel/drivers/xen/xen-privcmd.ko",
  "kernel/net/sched/act_mirred.ko:",
].join("\n");

function sys(opts: { loaded?: string[]; builtin?: string[]; fail?: Record<string, number> } = {}) {
  const loads: string[] = [];
  const lines: string[] = [];
  return {
    loads,
    lines,
    log: createLogger({ sink: { write: (l) => lines.push(l.slice(15).trim()) }, clock: () => 0 }),
    sys: {
      load: (path: string, params: string) => {
        const errno = opts.fail?.[path.split("/").pop() ?? ""];
        if (errno) throw Object.assign(new Error(`errno ${errno}`), { errno });
        loads.push(`${path.replace("/m/", "")}${params ? ` ${params}` : ""}`);
      },
      present: (name: string) => (opts.builtin ?? []).includes(name),
    },
  };
}

test("dependencies first, each module once, xen-privcmd with unrestricted=1", () => {
  const s = sys();
  loadModules("/m", DEP, [
    { name: "xenfs", required: true },
    { name: "xen-privcmd", params: "unrestricted=1", required: true },
    { name: "xen-evtchn", required: true },
  ], s.sys, s.log);
  expect(s.loads).toEqual([
    "kernel/drivers/xen/xen-privcmd.ko unrestricted=1",
    "kernel/drivers/xen/xenfs/xenfs.ko",
    "kernel/drivers/xen/xen-evtchn.ko",
  ]);
  expect(s.lines[0]).toBe("info  insmod /m/kernel/drivers/xen/xen-privcmd.ko unrestricted=1");
});

test("already loaded (EEXIST) and built-in modules are fine; a missing required one is not", () => {
  const s = sys({ fail: { "act_mirred.ko": 17 }, builtin: ["tun"] });
  loadModules("/m", DEP, [{ name: "act_mirred", required: true }, { name: "tun", required: true }], s.sys, s.log);
  expect(s.lines).toEqual([
    "info  insmod /m/kernel/net/sched/act_mirred.ko  # already loaded",
    "info  modprobe tun  # built in",
  ]);
  const missing = sys();
  expect(() => loadModules("/m", DEP, [{ name: "tun", required: true }], missing.sys, missing.log)).toThrow(ModuleLoadError);
  const optional = sys();
  loadModules("/m", DEP, [{ name: "cls_matchall", required: false }], optional.sys, optional.log);
  expect(optional.lines[0]).toMatch(/^warn  modprobe cls_matchall: .*\(optional\)$/);
});

test("a load error of a required module stops the boot with the module's line", () => {
  const s = sys({ fail: { "xen-evtchn.ko": 1 } });
  expect(() => loadModules("/m", DEP, [{ name: "xen-evtchn", required: true }], s.sys, s.log)).toThrow(
    /insmod \/m\/kernel\/drivers\/xen\/xen-evtchn.ko: errno 1/,
  );
});

test("the Xen list asks for unrestricted privcmd; the development list has no Xen modules", () => {
  expect(stubdomModules(true).find((m) => m.name === "xen-privcmd")?.params).toBe("unrestricted=1");
  expect(stubdomModules(false).some((m) => m.name.startsWith("xen"))).toBe(false);
  // The power button (ACPI button + evdev) only exists in a VM, and its absence must not stop a boot.
  for (const name of ["button", "evdev"]) {
    expect(stubdomModules(false).find((m) => m.name === name)?.required).toBe(false);
    expect(stubdomModules(true).some((m) => m.name === name)).toBe(false);
  }
});

test("lockdown mode is the bracketed word", () => {
  expect(lockdownMode("[none] integrity confidentiality\n")).toBe("none");
  expect(lockdownMode("none [integrity] confidentiality\n")).toBe("integrity");
  expect(lockdownMode("")).toBeNull();
});
