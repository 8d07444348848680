// SetupSys on the real kernel. Only PID 1 of a real stub domain (or of the development VM)
// runs this: remounting / read-only or disabling Ctrl-Alt-Del on a host would be a disaster,
// which is why tests drive runSetup() with a fake instead.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { klogClear, linkUp, mount, MS, reboot, RB_DISABLE_CAD, sethostname } from "../../ffi/libc.ts";
import type { MountFlag, SetupSys } from "./setup.ts";

const FLAG_BITS: Record<MountFlag, number> = { ro: MS.RDONLY, nosuid: MS.NOSUID, nodev: MS.NODEV, noexec: MS.NOEXEC };
const bits = (flags: readonly MountFlag[]) => flags.reduce((acc, f) => acc | FLAG_BITS[f], 0);

/** Mount points from mountinfo (field 5), with the kernel's octal escapes decoded. */
export function mountPoints(mountinfo: string): Set<string> {
  const out = new Set<string>();
  for (const line of mountinfo.split("\n")) {
    const mp = line.split(" ")[4];
    if (mp) out.add(mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
  }
  return out;
}

export const realSetupSys: SetupSys = {
  isMounted: (target) => mountPoints(readFileSync("/proc/self/mountinfo", "utf8")).has(target),
  mkdir: (path, mode) => void mkdirSync(path, { recursive: true, mode }),
  mount: (source, target, fstype, flags, data) => mount(source, target, fstype, bits(flags), data),
  remount: (target, flags) => mount("none", target, undefined, MS.REMOUNT | bits(flags)),
  write: (path, value) => writeFileSync(path, value),
  symlink: (target, path) => symlinkSync(target, path),
  hostname: (name) => sethostname(name),
  cadOff: () => reboot(RB_DISABLE_CAD),
  linkUp: (ifname) => linkUp(ifname),
  klogClear: () => klogClear(),
};
