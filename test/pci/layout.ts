// A stub domain's PCI backend and frontend as libxl and Linux write them:
// libxl_pci.c libxl__create_pci_backend / libxl__device_pci_add_xenstore (backend dir dom0's,
// readable by the stub domain; the frontend dir the stub domain's own), then pciback exporting
// each device (xen-pciback/xenbus.c: vdev-<i>, state-<i> = 3) and pcifront connecting (state 4).
import { backendDir, frontendDir } from "../../agent/pci/assigned.ts";
import type { XenStoreAdmin } from "../../agent/xenstore/types.ts";

export const STUB = 5;
export const BE = backendDir(STUB);
export const FE = frontendDir(STUB);

/** The backend and frontend with no device yet (libxl__create_pci_backend). */
export function createBackend(dom0: XenStoreAdmin): void {
  // As libxl: each directory made and its permissions set first, so its children inherit them.
  dom0.mkdir(BE);
  dom0.setPermissions(BE, [{ domid: 0, perm: "n" }, { domid: STUB, perm: "r" }]);
  dom0.mkdir(FE);
  dom0.setPermissions(FE, [{ domid: STUB, perm: "n" }, { domid: 0, perm: "r" }]);
  dom0.write(`${BE}/frontend`, FE);
  dom0.write(`${BE}/frontend-id`, String(STUB));
  dom0.write(`${BE}/online`, "1");
  dom0.write(`${BE}/state`, "1");
  dom0.write(`${FE}/backend`, BE);
  dom0.write(`${FE}/backend-id`, "0");
  dom0.write(`${FE}/state`, "1");
}

/** libxl adds device `i` (its host address as libxl prints it, "%04x:%02x:%02x.%01x"). */
export function addDevice(dom0: XenStoreAdmin, i: number, bdf: string): void {
  dom0.write(`${BE}/dev-${i}`, bdf);
  dom0.write(`${BE}/key-${i}`, bdf);
  dom0.write(`${BE}/opts-${i}`, "msitranslate=0,power_mgmt=0,permissive=0,rdm_policy=strict");
  dom0.write(`${BE}/state-${i}`, "1");
  dom0.write(`${BE}/num_devs`, String(i + 1));
}

/** pciback exports device `i` where pcifront will see it ("%04x:%02x:%02x.%02x"). */
export function exportDevice(dom0: XenStoreAdmin, i: number, vdev: string): void {
  dom0.write(`${BE}/vdev-${i}`, vdev);
  dom0.write(`${BE}/state-${i}`, "3");
}
