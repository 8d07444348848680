// The drivers the agent needs: built into our kernel (listed in the image's modules.builtin),
// or, with a modular kernel, loaded with finit_module in dependency order from
// /usr/lib/modules/<release>/modules.dep.
import { moduleName, parseModulesDep, resolveModules, type ModuleEntry } from "../build/modules.ts";
import type { Logger } from "../log.ts";

export interface ModuleRequest {
  readonly name: string;
  readonly params?: string;
  readonly required: boolean;
}

export interface ModuleSys {
  /** finit_module of the file; throws SysError (errno 17 EEXIST when already loaded). */
  load(path: string, params: string): void;
  /** Built into the kernel or already loaded (/sys/module/<name>, modules.builtin). */
  present(name: string): boolean;
}

export class ModuleLoadError extends Error {
  override name = "ModuleLoadError";
}

const EEXIST = 17;

/**
 * xen-privcmd needs unrestricted=1 in a stub domain: Debian's 6.1 kernels restrict it in a
 * domU since XSA-482, and Xen 4.17's libxendevicemodel then fails ("failed to map ioreq server
 * resources: error 2", vm-harness.md). Under lockdown the kernel ignores the parameter.
 */
export function stubdomModules(xen: boolean): ModuleRequest[] {
  const req = (name: string, params?: string): ModuleRequest => ({ name, required: true, ...(params ? { params } : {}) });
  const opt = (name: string): ModuleRequest => ({ name, required: false });
  // cls_bpf carries agent/net's anti-spoofing guard; optional here so that an image without it
  // still boots (the NIC's link then reports the error).
  const net = [
    req("tun"), req("sch_ingress"), req("cls_u32"), req("act_mirred"), opt("cls_bpf"), opt("cls_matchall"), opt("act_gact"),
  ];
  return xen
    ? [
        // xenfs creates /proc/xen, where the xen setup entries mount it.
        req("xen-evtchn"), req("xen-gntdev"), req("xen-gntalloc"), req("xen-privcmd", "unrestricted=1"), req("xenfs"),
        req("xen-netfront"), req("xen-blkfront"), ...net,
      ]
    : [
        opt("virtio_pci"), req("virtio_console"), opt("virtio_net"), opt("virtio_blk"),
        // A VM's ACPI power button as /dev/input/eventN (power-button.ts). A Xen PV stub domain
        // has no ACPI: `xl shutdown` comes through /sbin/poweroff there.
        opt("button"), opt("evdev"),
        ...net,
      ];
}

/** Loads every request and what it depends on, each once; throws on a required failure. */
export function loadModules(dir: string, depText: string, requests: readonly ModuleRequest[], sys: ModuleSys, log: Logger): void {
  const index = parseModulesDep(depText, `${dir}/modules.dep`);
  const params = new Map(requests.filter((r) => r.params).map((r) => [moduleName(r.name), r.params ?? ""]));
  const done = new Set<string>();
  for (const r of requests) {
    let order: ModuleEntry[];
    try {
      order = resolveModules(index, [r.name]);
    } catch (e) {
      if (sys.present(moduleName(r.name))) {
        log.info(`modprobe ${r.name}  # built in`);
        continue;
      }
      const msg = `modprobe ${r.name}: ${(e as Error).message}`;
      if (r.required) throw new ModuleLoadError(msg);
      log.warn(`${msg} (optional)`);
      continue;
    }
    for (const m of order) {
      if (done.has(m.name)) continue;
      done.add(m.name);
      const p = params.get(m.name) ?? "";
      const line = `insmod ${dir}/${m.path}${p ? ` ${p}` : ""}`;
      try {
        sys.load(`${dir}/${m.path}`, p);
        log.info(line);
      } catch (e) {
        if ((e as { errno?: number }).errno === EEXIST) {
          log.info(`${line}  # already loaded`);
          continue;
        }
        const msg = `${line}: ${(e as Error).message}`;
        if (r.required) throw new ModuleLoadError(msg);
        log.warn(`${msg} (optional)`);
      }
    }
  }
}

/** The active mode from /sys/kernel/security/lockdown ("none [integrity] confidentiality"). */
export function lockdownMode(text: string): string | null {
  return /\[([a-z]+)\]/.exec(text)?.[1] ?? null;
}
