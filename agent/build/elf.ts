// Reads what the dynamic loader reads from an ELF file (the interpreter, DT_NEEDED, DT_RPATH,
// DT_RUNPATH, DT_SONAME) plus named sections (a kernel module's .modinfo). The build computes
// library closures of foreign binaries with it instead of running `ldd`, which would execute
// them with the host's loader. Every offset is bounds-checked: a truncated or corrupt file is
// an ElfError naming the file, never an out-of-range read.

export interface ElfInfo {
  class: 32 | 64;
  /** e_type: 2 = EXEC, 3 = DYN (PIE or shared object), 1 = REL (kernel module). */
  type: number;
  machine: number;
  interpreter?: string;
  needed: string[];
  rpath: string[];
  runpath: string[];
  soname?: string;
}

export class ElfError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`ELF ${file}: ${reason}`);
    this.name = "ElfError";
  }
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

class Reader {
  readonly view: DataView;
  readonly is64: boolean;
  /** `bytes` hold the file from offset `base` on; every offset given to the reader is a file offset. */
  constructor(readonly bytes: Uint8Array, readonly file: string, readonly base = 0, is64?: boolean) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (is64 !== undefined) {
      this.is64 = is64;
      return;
    }
    if (bytes.length < 52) throw new ElfError(file, `too short for an ELF header (${bytes.length} bytes)`);
    if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
      throw new ElfError(file, "not an ELF file (bad magic)");
    }
    if (bytes[4] !== 1 && bytes[4] !== 2) throw new ElfError(file, `bad EI_CLASS ${bytes[4]}`);
    // Only little-endian: every Debian amd64 object is, and a big-endian one would be a mistake.
    if (bytes[5] !== 1) throw new ElfError(file, `not little-endian (EI_DATA ${bytes[5]})`);
    this.is64 = bytes[4] === 2;
    if (this.is64 && bytes.length < 64) throw new ElfError(file, "too short for an ELF64 header");
  }
  check(off: number, len: number, what: string): void {
    const end = this.base + this.bytes.length;
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < this.base || len < 0 || off + len > end) {
      throw new ElfError(this.file, `${what} at ${off}+${len} lies outside the ${this.base === 0 ? "file" : "part read"} (${end} bytes)`);
    }
  }
  u16(off: number): number {
    this.check(off, 2, "u16");
    return this.view.getUint16(off - this.base, true);
  }
  u32(off: number): number {
    this.check(off, 4, "u32");
    return this.view.getUint32(off - this.base, true);
  }
  /** A word: u32 in ELF32, u64 in ELF64 (as a safe integer). */
  word(off: number): number {
    if (!this.is64) return this.u32(off);
    this.check(off, 8, "u64");
    const v = this.view.getBigUint64(off - this.base, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(this.file, `value ${v} at ${off} is too large`);
    return Number(v);
  }
  cstring(off: number, end: number, what: string): string {
    this.check(off, 0, what);
    const stop = Math.min(end, this.base + this.bytes.length) - this.base;
    let i = off - this.base;
    while (i < stop && this.bytes[i] !== 0) i++;
    if (i >= stop) throw new ElfError(this.file, `${what} at ${off} is not NUL-terminated`);
    return new TextDecoder().decode(this.bytes.subarray(off - this.base, i));
  }
}

interface Phdr { type: number; offset: number; vaddr: number; filesz: number }
interface Shdr { name: number; offset: number; size: number; type: number }

function header(r: Reader) {
  const is64 = r.is64;
  return {
    type: r.u16(16),
    machine: r.u16(18),
    phoff: r.word(is64 ? 32 : 28),
    shoff: r.word(is64 ? 40 : 32),
    phentsize: r.u16(is64 ? 54 : 42),
    phnum: r.u16(is64 ? 56 : 44),
    shentsize: r.u16(is64 ? 58 : 46),
    shnum: r.u16(is64 ? 60 : 48),
    shstrndx: r.u16(is64 ? 62 : 50),
  };
}

function programHeaders(r: Reader, h: ReturnType<typeof header>): Phdr[] {
  if (h.phnum === 0) return [];
  const min = r.is64 ? 56 : 32;
  if (h.phentsize < min) throw new ElfError(r.file, `e_phentsize ${h.phentsize} < ${min}`);
  r.check(h.phoff, h.phnum * h.phentsize, "program header table");
  const out: Phdr[] = [];
  for (let i = 0; i < h.phnum; i++) {
    const o = h.phoff + i * h.phentsize;
    out.push(
      r.is64
        ? { type: r.u32(o), offset: r.word(o + 8), vaddr: r.word(o + 16), filesz: r.word(o + 32) }
        : { type: r.u32(o), offset: r.u32(o + 4), vaddr: r.u32(o + 8), filesz: r.u32(o + 16) },
    );
  }
  return out;
}

function sectionHeaders(r: Reader, h: ReturnType<typeof header>): Shdr[] {
  if (h.shnum === 0 || h.shoff === 0) return [];
  const min = r.is64 ? 64 : 40;
  if (h.shentsize < min) throw new ElfError(r.file, `e_shentsize ${h.shentsize} < ${min}`);
  r.check(h.shoff, h.shnum * h.shentsize, "section header table");
  const out: Shdr[] = [];
  for (let i = 0; i < h.shnum; i++) {
    const o = h.shoff + i * h.shentsize;
    out.push(
      r.is64
        ? { name: r.u32(o), type: r.u32(o + 4), offset: r.word(o + 24), size: r.word(o + 32) }
        : { name: r.u32(o), type: r.u32(o + 4), offset: r.u32(o + 16), size: r.u32(o + 20) },
    );
  }
  return out;
}

/** Maps a virtual address to a file offset through the PT_LOAD segments (DT_STRTAB is a vaddr). */
function vaddrToOffset(r: Reader, phdrs: Phdr[], vaddr: number): number {
  for (const p of phdrs) {
    if (p.type === PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz) return p.offset + (vaddr - p.vaddr);
  }
  throw new ElfError(r.file, `address 0x${vaddr.toString(16)} is in no PT_LOAD segment`);
}

export function parseElf(bytes: Uint8Array, file: string): ElfInfo {
  const r = new Reader(bytes, file);
  const h = header(r);
  const phdrs = programHeaders(r, h);
  return dynamicInfo(r, h, phdrs, (_off, _len) => r);
}

function dynamicEntries(rd: Reader, dyn: Phdr): Array<[number, number]> {
  rd.check(dyn.offset, dyn.filesz, "PT_DYNAMIC");
  const entSize = rd.is64 ? 16 : 8;
  const entries: Array<[number, number]> = [];
  for (let o = dyn.offset; o + entSize <= dyn.offset + dyn.filesz; o += entSize) {
    const tag = rd.is64 ? rd.word(o) : rd.u32(o);
    if (tag === DT_NULL) break;
    entries.push([tag, rd.word(o + entSize / 2)]);
  }
  return entries;
}

/**
 * What the loader reads: PT_INTERP and the dynamic section's names. `part(off, len)` gives a
 * reader holding that range of the file (the whole file, or a part read on demand).
 */
function dynamicInfo(r: Reader, h: ReturnType<typeof header>, phdrs: Phdr[], part: (off: number, len: number) => Reader): ElfInfo {
  const file = r.file;
  const info: ElfInfo = { class: r.is64 ? 64 : 32, type: h.type, machine: h.machine, needed: [], rpath: [], runpath: [] };

  const interp = phdrs.find((p) => p.type === PT_INTERP);
  if (interp) {
    const ri = part(interp.offset, interp.filesz);
    ri.check(interp.offset, interp.filesz, "PT_INTERP");
    info.interpreter = ri.cstring(interp.offset, interp.offset + interp.filesz, "PT_INTERP");
  }

  const dyn = phdrs.find((p) => p.type === PT_DYNAMIC);
  if (!dyn) return info;
  const entries = dynamicEntries(part(dyn.offset, dyn.filesz), dyn);
  const strtabVaddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
  const stringTags = [DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH];
  if (!entries.some(([t]) => stringTags.includes(t))) return info;
  if (strtabVaddr === undefined || strsz === undefined) throw new ElfError(file, "PT_DYNAMIC has no DT_STRTAB/DT_STRSZ");
  const strtab = vaddrToOffset(r, phdrs, strtabVaddr);
  const rs = part(strtab, strsz);
  rs.check(strtab, strsz, "DT_STRTAB");
  const str = (off: number) => {
    if (off >= strsz) throw new ElfError(file, `dynamic string offset ${off} beyond DT_STRSZ ${strsz}`);
    return rs.cstring(strtab + off, strtab + strsz, "dynamic string");
  };
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(str(val));
    else if (tag === DT_SONAME) info.soname = str(val);
    else if (tag === DT_RPATH) info.rpath.push(...str(val).split(":").filter((s) => s !== ""));
    else if (tag === DT_RUNPATH) info.runpath.push(...str(val).split(":").filter((s) => s !== ""));
  }
  return info;
}

/**
 * The same as readElf, reading only the headers, PT_INTERP, PT_DYNAMIC and the string table:
 * a few KiB instead of the whole file. PID 1 uses it on QEMU (15 MB, paged in from the
 * compressed /usr under memory pressure); the build reads whole files.
 */
export async function readElfHeaders(path: string): Promise<ElfInfo> {
  const f = Bun.file(path);
  const at = async (off: number, len: number) => {
    try {
      return new Uint8Array(await f.slice(off, off + len).arrayBuffer());
    } catch (e) {
      throw new ElfError(path, `cannot read: ${(e as Error).message}`);
    }
  };
  const head = await at(0, 4096);
  const r0 = new Reader(head, path);
  const h = header(r0);
  const phEnd = h.phoff + h.phentsize * h.phnum;
  const r = phEnd <= head.length ? r0 : new Reader(await at(0, phEnd), path);
  const phdrs = programHeaders(r, h);
  const parts = new Map<string, Reader>();
  const read = async (off: number, len: number) => parts.set(`${off}+${len}`, new Reader(await at(off, len), path, off, r.is64));
  for (const p of phdrs.filter((x) => x.type === PT_INTERP || x.type === PT_DYNAMIC)) await read(p.offset, p.filesz);
  const part = (off: number, len: number) => parts.get(`${off}+${len}`) ?? r;
  const dyn = phdrs.find((p) => p.type === PT_DYNAMIC);
  if (dyn) {
    // The string table's place is known only from PT_DYNAMIC.
    const entries = dynamicEntries(part(dyn.offset, dyn.filesz), dyn);
    const strtab = entries.find(([t]) => t === DT_STRTAB)?.[1];
    const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
    if (strtab !== undefined && strsz !== undefined) await read(vaddrToOffset(r, phdrs, strtab), strsz);
  }
  return dynamicInfo(r, h, phdrs, part);
}

/** The contents of the named section, or undefined when the file has no such section. */
export function elfSection(bytes: Uint8Array, file: string, name: string): Uint8Array | undefined {
  const r = new Reader(bytes, file);
  const h = header(r);
  const shdrs = sectionHeaders(r, h);
  if (shdrs.length === 0) return undefined;
  const names = shdrs[h.shstrndx];
  if (!names) throw new ElfError(file, `e_shstrndx ${h.shstrndx} out of range`);
  r.check(names.offset, names.size, "section name table");
  for (const s of shdrs) {
    if (r.cstring(names.offset + s.name, names.offset + names.size, "section name") !== name) continue;
    const SHT_NOBITS = 8;
    if (s.type === SHT_NOBITS) return new Uint8Array(0);
    r.check(s.offset, s.size, `section ${name}`);
    return bytes.subarray(s.offset, s.offset + s.size);
  }
  return undefined;
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Bun.file(path).bytes();
  } catch (e) {
    throw new ElfError(path, `cannot read: ${(e as Error).message}`);
  }
}

export async function readElf(path: string): Promise<ElfInfo> {
  return parseElf(await readBytes(path), path);
}

/** True when the file starts with the ELF magic (for deciding which files need a closure). */
export async function isElf(path: string): Promise<boolean> {
  const head = new Uint8Array(await Bun.file(path).slice(0, 4).arrayBuffer());
  return head.length === 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

export async function readElfSection(path: string, name: string): Promise<Uint8Array | undefined> {
  return elfSection(await readBytes(path), path, name);
}
