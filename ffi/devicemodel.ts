// libxendevicemodel (Debian libxendevicemodel1) through bun:ffi: only for telling Xen that the
// guest whose device model we are has crashed, so the toolstack's on_crash policy runs
// (xen-stubdom-protocol.md §7). Each call opens and closes its own handle: it happens once
// per life, and a handle kept open would hold /dev/xen/privcmd for nothing.
import { FFIType } from "bun:ffi";
import { errno, lazyLibrary, SysError } from "./libc.ts";

const LIB = "libxendevicemodel.so.1";
const symbols = {
  xendevicemodel_open: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.ptr },
  xendevicemodel_shutdown: { args: [FFIType.ptr, FFIType.u16, FFIType.u32], returns: FFIType.i32 },
  xendevicemodel_close: { args: [FFIType.ptr], returns: FFIType.i32 },
} as const;

const dm = lazyLibrary(LIB, symbols, "libxendevicemodel1");

// xen/include/public/sched.h
export const SHUTDOWN = { poweroff: 0, reboot: 1, suspend: 2, crash: 3 } as const;

export function xendevicemodelShutdown(domid: number, reason: keyof typeof SHUTDOWN): void {
  const h = dm().xendevicemodel_open(null, 0);
  if (h === null) throw new SysError("xendevicemodel_open", errno());
  try {
    if (dm().xendevicemodel_shutdown(h, domid, SHUTDOWN[reason]) < 0) {
      throw new SysError("xendevicemodel_shutdown", errno(), `domain ${domid} ${reason}`);
    }
  } finally {
    dm().xendevicemodel_close(h);
  }
}
