// Anonymous memory files (memfd_create) and positioned reads. QEMU writes its device state on
// save into /dev/fdset/1 and, opening it with O_TRUNC, ftruncates the fd it is given: a tty
// fails that with EINVAL, a memory file does not. The agent hands QEMU a write-only descriptor
// of one and copies what QEMU wrote to console 1 afterwards (agent/init/save-stream.ts).
// Ownership: every fd returned here belongs to the caller, who closes it.
import { FFIType } from "bun:ffi";
import { check, cstr, lazyLibrary } from "./libc.ts";

const { i32, i64, u32, u64, ptr: p } = FFIType;

const lib = lazyLibrary("libc.so.6", {
  memfd_create: { args: [p, u32], returns: i32 },
  pread: { args: [i32, p, u64, i64], returns: i64 },
  lseek: { args: [i32, i64, i32], returns: i64 },
  ftruncate: { args: [i32, i64], returns: i32 },
});

const MFD_CLOEXEC = 1;
const SEEK_END = 2;

/** A new memory file, read-write and close-on-exec. */
export function memfdCreate(name: string): number {
  return check("memfd_create", lib().memfd_create(cstr(name), MFD_CLOEXEC), name);
}

/** The file's size in bytes (lseek to its end; reads and writes here are positioned). */
export function fileSize(fd: number): number {
  return check("lseek", lib().lseek(fd, 0n, SEEK_END), String(fd));
}

/** Up to `max` bytes at `offset`; fewer at the end of the file. The bytes are a copy of ours. */
export function readAt(fd: number, offset: number, max: number): Uint8Array {
  const buf = new Uint8Array(max);
  const n = check("pread", lib().pread(fd, buf, BigInt(max), BigInt(offset)), String(fd));
  return buf.subarray(0, n);
}

export function truncateFile(fd: number, size = 0): void {
  check("ftruncate", lib().ftruncate(fd, BigInt(size)), String(fd));
}
