// libc through bun:ffi: the one place the agent reaches the kernel directly. Symbols are
// resolved lazily so that importing this module never fails on a machine without them.
// Other ffi/ modules may dlopen libc.so.6 for their own symbols; errno is read through
// errno() below, right after the failing call (bun-as-pid1.md: never dlsym `errno`).
import { dlopen, FFIType, read, type Library } from "bun:ffi";

const LIBC = "libc.so.6";

const symbols = {
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
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

/** The calling thread's errno. Call immediately after the failing FFI call. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

const names: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 7: "E2BIG", 9: "EBADF",
  10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 16: "EBUSY", 17: "EEXIST",
  19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 24: "EMFILE", 28: "ENOSPC",
  30: "EROFS", 32: "EPIPE", 34: "ERANGE", 38: "ENOSYS", 39: "ENOTEMPTY", 61: "ENODATA",
  71: "EPROTO", 90: "EMSGSIZE", 93: "EPROTONOSUPPORT", 95: "EOPNOTSUPP", 98: "EADDRINUSE",
  104: "ECONNRESET", 105: "ENOBUFS", 106: "EISCONN", 110: "ETIMEDOUT", 111: "ECONNREFUSED",
};

export function errnoName(n: number): string {
  return names[n] ?? `errno ${n}`;
}

/** An error from a libc call: `mount /proc: EBUSY (Device or resource busy)`. */
export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number, readonly subject = "") {
    super(`${call}${subject ? ` ${subject}` : ""}: ${errnoName(errno)} (${libc().strerror(errno)})`);
    this.name = "SysError";
  }
}
