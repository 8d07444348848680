// A reproducible writer for the "newc" cpio format, the only archive format the kernel unpacks
// into the initramfs. Records are declared, not read from disk metadata: every header gets the
// same owner (0:0) and mtime, entries are sorted and inode numbers are assigned in that order,
// so the bytes depend only on the records' paths, modes and contents.

export type CpioData = Uint8Array | { file: string };

export type CpioRecord =
  | { kind: "dir"; path: string; mode: number }
  | { kind: "file"; path: string; mode: number; data: CpioData }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "char" | "block"; path: string; mode: number; major: number; minor: number };

export interface CpioOptions {
  /** Seconds since the epoch written as every entry's mtime (default 0). */
  mtime?: number;
}

export class CpioError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`cpio: ${path}: ${reason}`);
    this.name = "CpioError";
  }
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
// The kernel's initramfs parser rejects names longer than PATH_MAX.
const PATH_MAX = 4096;
const MAX_U32 = 0xffff_ffff;
/** A newc "TRAILER!!!" record: 110-byte header + 11-byte name, padded to 124. */
const TRAILER_SIZE = 124;

/** Validates an archive path ("usr/bin/x": relative, normalized) and returns it. */
export function normalizeCpioPath(path: string): string {
  const p = path.replace(/^\/+/, "");
  if (p === "" || p.length >= PATH_MAX) throw new CpioError(path, "empty or too long path");
  for (const part of p.split("/")) {
    if (part === "" || part === "." || part === "..") throw new CpioError(path, "path is not normalized");
  }
  if (p.includes("\0")) throw new CpioError(path, "path contains NUL");
  return p;
}

function checkMode(r: CpioRecord): number {
  if (r.kind === "symlink") return 0o777;
  if (!Number.isInteger(r.mode) || r.mode < 0 || r.mode > 0o7777) {
    throw new CpioError(r.path, `mode ${String(r.mode)} is not permission bits (0..0o7777)`);
  }
  return r.mode;
}

/**
 * Sorts records, adds missing parent directories (mode 0755), and rejects duplicates that
 * disagree. Returns the records in archive order with normalized paths.
 */
export function prepareCpioRecords(records: readonly CpioRecord[]): CpioRecord[] {
  const byPath = new Map<string, CpioRecord>();
  for (const r of records) {
    const path = normalizeCpioPath(r.path);
    checkMode(r);
    const rec = { ...r, path } as CpioRecord;
    const prev = byPath.get(path);
    if (prev) {
      // Two declarations of one directory with one mode are harmless (overlay + generated).
      if (prev.kind === "dir" && rec.kind === "dir" && prev.mode === rec.mode) continue;
      throw new CpioError(path, `declared twice (${prev.kind} and ${rec.kind})`);
    }
    byPath.set(path, rec);
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const p = byPath.get(parent);
      if (!p) byPath.set(parent, { kind: "dir", path: parent, mode: 0o755 });
      else if (p.kind !== "dir") throw new CpioError(path, `parent ${parent} is a ${p.kind}, not a directory`);
    }
  }
  // Byte order, not locale order: the same on every machine.
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const enc = new TextEncoder();

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function header(fields: {
  ino: number; mode: number; nlink: number; mtime: number; size: number;
  rmajor: number; rminor: number; name: Uint8Array;
}): Uint8Array {
  const text =
    "070701" + hex8(fields.ino) + hex8(fields.mode) + hex8(0) + hex8(0) + hex8(fields.nlink) +
    hex8(fields.mtime) + hex8(fields.size) + hex8(0) + hex8(0) + hex8(fields.rmajor) +
    hex8(fields.rminor) + hex8(fields.name.length + 1) + hex8(0);
  const headLen = text.length + fields.name.length + 1;
  const out = new Uint8Array(headLen + pad4(headLen));
  out.set(enc.encode(text), 0);
  out.set(fields.name, text.length);
  return out;
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

async function loadData(r: { path: string; data: CpioData }): Promise<Uint8Array> {
  if (r.data instanceof Uint8Array) return r.data;
  try {
    return await Bun.file(r.data.file).bytes();
  } catch (e) {
    throw new CpioError(r.path, `cannot read ${r.data.file}: ${(e as Error).message}`);
  }
}

/** Yields the archive in order: a header, then the padded data, for each entry, then the trailer. */
export async function* cpioChunks(records: readonly CpioRecord[], opts: CpioOptions = {}): AsyncGenerator<Uint8Array> {
  const mtime = opts.mtime ?? 0;
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > MAX_U32) throw new CpioError("(options)", `bad mtime ${mtime}`);
  let ino = 0;
  for (const r of prepareCpioRecords(records)) {
    ino += 1;
    const name = enc.encode(r.path);
    const base = { ino, mtime, name, rmajor: 0, rminor: 0 };
    switch (r.kind) {
      case "dir":
        yield header({ ...base, mode: S_IFDIR | r.mode, nlink: 2, size: 0 });
        break;
      case "char":
      case "block":
        yield header({
          ...base, mode: (r.kind === "char" ? S_IFCHR : S_IFBLK) | r.mode, nlink: 1, size: 0,
          rmajor: r.major, rminor: r.minor,
        });
        break;
      case "symlink": {
        const target = enc.encode(r.target);
        if (target.length === 0 || target.length >= PATH_MAX) throw new CpioError(r.path, "bad symlink target");
        yield header({ ...base, mode: S_IFLNK | 0o777, nlink: 1, size: target.length });
        yield padded(target);
        break;
      }
      case "file": {
        const data = await loadData(r);
        if (data.length > MAX_U32) throw new CpioError(r.path, "file larger than 4 GiB");
        yield header({ ...base, mode: S_IFREG | r.mode, nlink: 1, size: data.length });
        yield padded(data);
        break;
      }
    }
  }
  yield header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rmajor: 0, rminor: 0, name: enc.encode("TRAILER!!!") });
}

function padded(data: Uint8Array): Uint8Array {
  const p = pad4(data.length);
  if (p === 0) return data;
  const out = new Uint8Array(data.length + p);
  out.set(data, 0);
  return out;
}

/** The whole archive in memory. */
export async function encodeCpio(records: readonly CpioRecord[], opts: CpioOptions = {}): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of cpioChunks(records, opts)) chunks.push(c);
  return concat(chunks);
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * An archive of one regular file that the kernel reads past without unpacking it: the file's
 * parent directory is never created, so the initramfs unpacker's open fails and it skips the
 * body (init/initramfs.c: do_name → SkipIt). The body stays in the initrd's memory, where stage 0
 * finds it through /sys/firmware/initrd (retain_initrd); a normal entry would be copied into
 * tmpfs while the initrd is still held (twice the memory at boot). `name` must have a parent.
 */
export function detachedFileChunks(name: string, data: Uint8Array): Uint8Array[] {
  const path = normalizeCpioPath(name);
  if (!path.includes("/")) throw new CpioError(name, "a detached entry needs a parent directory the archive never creates");
  if (data.length > MAX_U32) throw new CpioError(name, "file larger than 4 GiB");
  const head = header({ ino: 1, mode: S_IFREG | 0o444, nlink: 1, mtime: 0, size: data.length, rmajor: 0, rminor: 0, name: enc.encode(path) });
  const trailer = header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rmajor: 0, rminor: 0, name: enc.encode("TRAILER!!!") });
  return [head, padded(data), trailer];
}

/**
 * Where a detached entry's body lies in an archive that starts with it (what stage 0 computes),
 * and where what follows its trailer begins.
 */
export function detachedFileExtent(archive: Uint8Array, name: string): { offset: number; size: number; end: number } {
  const text = new TextDecoder().decode(archive.subarray(0, 110));
  if (!text.startsWith("070701")) throw new CpioError(name, "the archive does not start with a newc header");
  const field = (i: number) => parseInt(text.slice(6 + 8 * i, 14 + 8 * i), 16);
  const size = field(6);
  const nameSize = field(11);
  const got = new TextDecoder().decode(archive.subarray(110, 110 + nameSize - 1));
  if (got !== name) throw new CpioError(name, `the first entry is ${got}`);
  const offset = 110 + nameSize + pad4(110 + nameSize);
  const end = offset + size + pad4(size) + TRAILER_SIZE;
  if (end > archive.length) throw new CpioError(name, `the body (${size} bytes at ${offset}) runs past the archive's end`);
  return { offset, size, end };
}
