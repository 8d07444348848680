import { expect, test } from "vitest";
import { createLogger } from "../../agent/log.ts";
import { baseSetup, describe as describeEntry, runSetup, SetupError, xenSetup, type SetupSys } from "../../agent/init/setup.ts";
import { mountPoints } from "../../agent/init/setup-sys.ts";

function recorder(opts: { mounted?: string[]; failing?: Partial<Record<keyof SetupSys, string>> } = {}) {
  const calls: string[] = [];
  const lines: string[] = [];
  const log = createLogger({ sink: { write: (l) => lines.push(l.slice(15).trim()) }, clock: () => 0 });
  const call = (name: keyof SetupSys) => (...args: unknown[]) => {
    calls.push(`${name} ${args.map((a) => JSON.stringify(a)).join(" ")}`);
    const err = opts.failing?.[name];
    if (err) throw new Error(err);
  };
  const sys: SetupSys = {
    isMounted: (t) => (opts.mounted ?? []).includes(t),
    mkdir: call("mkdir"),
    mount: call("mount"),
    remount: call("remount"),
    write: call("write"),
    symlink: call("symlink"),
    hostname: call("hostname"),
    cadOff: call("cadOff"),
    linkUp: call("linkUp"),
    klogClear: call("klogClear"),
  };
  return { sys, calls, lines, log };
}

test("the base table logs like a shell transcript and skips what stage 0 mounted", () => {
  const r = recorder({ mounted: ["/proc", "/sys", "/dev"] });
  runSetup(baseSetup("stubdom"), r.sys, r.log);
  expect(r.lines).toEqual([
    "info  mount -t proc -o nosuid,nodev,noexec proc /proc  # already mounted",
    "info  mount -t sysfs -o nosuid,nodev,noexec sysfs /sys  # already mounted",
    "info  mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev  # already mounted",
    "info  mkdir -p -m 755 /dev/pts",
    "info  mount -t devpts -o nosuid,noexec,mode=0620,ptmxmode=000 devpts /dev/pts",
    "info  mkdir -p -m 1777 /dev/shm",
    "info  mount -t tmpfs -o nosuid,nodev,noexec,size=1m,mode=1777 shm /dev/shm",
    "info  mkdir -p -m 1777 /tmp",
    "info  mount -t tmpfs -o nosuid,nodev,noexec,size=1m,mode=1777 tmpfs /tmp",
    "info  ln -s /proc/self/fd /dev/fd",
    "info  mount -o remount,ro /",
    "info  sysctl -w vm.overcommit_memory=1",
    "info  hostname stubdom",
    "info  ctrlaltdel soft",
    "info  ip link set lo up",
  ]);
  expect(r.calls).toContain(`remount "/" ["ro"]`);
  expect(r.calls).toContain(`write "/proc/sys/vm/overcommit_memory" "1"`);
  expect(r.calls.filter((c) => c.startsWith("mount ")).length).toBe(3);
});

test("a failed optional entry logs and goes on; a failed required one stops the boot", () => {
  const opt = recorder({ failing: { linkUp: "ENODEV" } });
  runSetup(baseSetup("s"), opt.sys, opt.log);
  expect(opt.lines).toContain("warn  ip link set lo up: failed (optional): ENODEV");

  const req = recorder({ failing: { remount: "EBUSY" } });
  expect(() => runSetup(baseSetup("s"), req.sys, req.log)).toThrow(SetupError);
  expect(req.lines.at(-1)).toBe("error mount -o remount,ro /: FAILED: EBUSY");
  expect(req.calls.some((c) => c.startsWith("write"))).toBe(false); // nothing after the failure
});

test("xen entries: xenfs is required, the gntalloc limit is not", () => {
  expect(xenSetup().map((e) => [describeEntry(e), e.required])).toEqual([
    ["mount -t xenfs xenfs /proc/xen", true],
    ["echo 1073741823 > /sys/module/xen_gntalloc/parameters/limit", false],
  ]);
});

test("mountPoints decodes the kernel's escapes", () => {
  const info = "22 1 0:21 / / rw - rootfs rootfs rw\n30 22 0:5 / /mnt/with\\040space rw - tmpfs x rw\n";
  expect([...mountPoints(info)]).toEqual(["/", "/mnt/with space"]);
});
