// The Hypervisor interface's two implementations: Xen's (libxendevicemodel) and the
// development VM's, where a toolstack simulator watches a xenstore key instead.
import { xendevicemodelShutdown } from "../../ffi/devicemodel.ts";
import type { XenStore } from "../xenstore/types.ts";
import type { Hypervisor } from "./platform.ts";

export const xenHypervisor: Hypervisor = {
  shutdownGuest: (guest, reason) => xendevicemodelShutdown(guest, reason),
};

export function devHypervisorKey(stubDomid: number): string {
  return `/local/domain/${stubDomid}/data/dev-hypervisor/shutdown`;
}

export function devHypervisor(xs: XenStore, stubDomid: number): Hypervisor {
  return { shutdownGuest: (_guest, reason) => xs.write(devHypervisorKey(stubDomid), reason) };
}
