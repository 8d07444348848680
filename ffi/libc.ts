// libc through bun:ffi: the one place the agent reaches the kernel directly. Symbols are
// resolved lazily so that importing this module never fails on a machine without them.
import { dlopen, FFIType, type Library } from "bun:ffi";

const LIBC = "libc.so.6";

const symbols = {
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

let lib: Library<typeof symbols> | undefined;

export function libc(): Library<typeof symbols>["symbols"] {
  if (!lib) {
    try {
      lib = dlopen(LIBC, symbols);
    } catch (e) {
      throw new Error(`cannot load ${LIBC}: ${(e as Error).message}`);
    }
  }
  return lib.symbols;
}
