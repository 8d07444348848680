// Development VM: virtio-serial ports stand in for Xen channels (vm-harness.md). Without udev
// there is no /dev/virtio-ports/<name> link, so the name is looked up in sysfs.
import { readdirSync, readFileSync } from "node:fs";

/** /dev/vportNpM of the port whose /sys/class/virtio-ports/<port>/name is `name`, or null. */
export function findVirtioPort(name: string, sysClass = "/sys/class/virtio-ports"): string | null {
  let ports: string[];
  try {
    ports = readdirSync(sysClass);
  } catch {
    return null; // no virtio_console: no ports at all
  }
  for (const port of ports.sort()) {
    try {
      if (readFileSync(`${sysClass}/${port}/name`, "utf8").trim() === name) return `/dev/${port}`;
    } catch {
      continue; // a port without a name
    }
  }
  return null;
}
