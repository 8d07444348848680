// libxl's side of a stub domain's life, against any XenStoreAdmin: create both domains' keys,
// wait (by watch, as libxl's xswait does) for the device model to report `running`, and
// destroy the domains.
//
// The development VM has no hypervisor, so the crash policy's "tell Xen the guest crashed"
// (xendevicemodel_shutdown) cannot reach one. Instead the stub domain writes the reason to
// /local/domain/S/data/dev-hypervisor/shutdown (S owns data/), and the simulator plays Xen and
// libxl: it prints `hypervisor: shutdown of domain G requested: <reason>` and then does what
// libxl does with on_crash=destroy, destroying both domains.
import { domainPath } from "../xenstore/model.ts";
import { transaction } from "../xenstore/transaction.ts";
import type { XenStoreAdmin } from "../xenstore/types.ts";
import { isXsErrno, readString } from "../xenstore/util.ts";
import type { GuestDescription } from "./guest.ts";
import { devShutdownKey, type Domids, stubUuid, toolstackWrites } from "./plan.ts";

/** Write every key, then introduce both domains and give S its target's rights. */
export function createDomains(xs: XenStoreAdmin, g: GuestDescription, ids: Domids): number {
  const writes = toolstackWrites(g, ids);
  transaction(xs, (tx) => {
    // libxl__domain_make starts from a clean slate for the domain, its vm and libxl dirs.
    for (const p of domainDirs(g, ids)) rmIfPresent(xs, p, tx);
    for (const w of writes) {
      xs.write(w.path, w.value, tx);
      if (w.perms) xs.setPermissions(w.path, w.perms, tx);
    }
  });
  xs.introduceDomain(ids.guestDomid);
  xs.introduceDomain(ids.stubDomid);
  xs.setTarget(ids.stubDomid, ids.guestDomid);
  return writes.length;
}

/** libxl ignores xs_rm failures here: a directory whose parent is gone is already removed. */
function rmIfPresent(xs: XenStoreAdmin, path: string, tx: number): void {
  try {
    xs.rm(path, tx);
  } catch (e) {
    if (!isXsErrno(e, "ENOENT")) throw e;
  }
}

function domainDirs(g: GuestDescription, ids: Domids): string[] {
  return [
    domainPath(ids.guestDomid), domainPath(ids.stubDomid),
    `/vm/${g.uuid}`, `/vm/${stubUuid(g.uuid)}`,
    `/libxl/${ids.guestDomid}`, `/libxl/${ids.stubDomid}`,
  ];
}

/** Remove what libxl__destroy_domid removes for both domains, then release them. */
export function destroyDomains(xs: XenStoreAdmin, g: GuestDescription, ids: Domids): void {
  const paths = domainDirs(g, ids);
  const backendDomids = new Set([0, ...g.nics.map((n) => n.backendDomid)]);
  for (const b of backendDomids) {
    for (const kind of ["vbd", "vif", "console"]) {
      for (const d of [ids.guestDomid, ids.stubDomid]) paths.push(`${domainPath(b)}/backend/${kind}/${d}`);
    }
  }
  transaction(xs, (tx) => {
    for (const p of paths) rmIfPresent(xs, p, tx);
  });
  for (const d of [ids.stubDomid, ids.guestDomid]) {
    try {
      xs.releaseDomain(d);
    } catch {
      // Already released (a second --destroy): the keys are gone, which is what was asked.
    }
  }
}

export const stateKey = (ids: Domids) => `${domainPath(ids.stubDomid)}/device-model/${ids.guestDomid}/state`;

export type WaitResult = { ok: true; elapsedMs: number } | { ok: false; reason: string };

/** Wait for device-model/G/state = running by watch, no polling. */
export function waitForRunning(xs: XenStoreAdmin, ids: Domids, timeoutMs: number): Promise<WaitResult> {
  const key = stateKey(ids);
  const token = `sim-state-${ids.guestDomid}`;
  const started = performance.now();
  return new Promise((resolve) => {
    const finish = (r: WaitResult) => {
      clearTimeout(timer);
      off();
      try {
        xs.unwatch(key, token);
      } catch {
        // The handle may be closing; the watch dies with it.
      }
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: "startup timed out" }), timeoutMs);
    const off = xs.onWatch((e) => {
      if (e.token !== token) return;
      let state: string | undefined;
      try {
        state = readString(xs, key, 64);
      } catch {
        state = undefined; // S wrote something that is not a state: keep waiting, as libxl does
      }
      if (state === "running") finish({ ok: true, elapsedMs: performance.now() - started });
    });
    xs.watch(key, token);
  });
}

/** Printable form of an untrusted reason: at most 200 characters, control bytes escaped. */
export function printableReason(s: string): string {
  const cut = s.length > 200 ? `${s.slice(0, 200)}...` : s;
  return cut.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/**
 * Call `onRequest` with the reason whenever the stub domain writes its shutdown request.
 * Returns a function that stops watching.
 */
export function watchShutdownRequests(xs: XenStoreAdmin, ids: Domids, onRequest: (reason: string) => void): () => void {
  const key = devShutdownKey(ids.stubDomid);
  const token = `sim-shutdown-${ids.guestDomid}`;
  const off = xs.onWatch((e) => {
    if (e.token !== token) return;
    let reason: string | undefined;
    try {
      reason = readString(xs, key, 1024);
    } catch (err) {
      reason = `unreadable request (${(err as Error).message})`;
    }
    if (reason !== undefined) onRequest(printableReason(reason));
  });
  xs.watch(key, token);
  return () => {
    off();
    try {
      xs.unwatch(key, token);
    } catch {
      // Already gone with the handle.
    }
  };
}
