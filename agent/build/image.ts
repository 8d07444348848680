// A root filesystem declared as records (see cpio.ts), written either as a compressed newc
// cpio (the initramfs) or as a squashfs image (the compressed, paged-on-demand /usr). Both
// writers are reproducible and atomic: the output appears under its final name only when
// complete, so dist/ never holds half an image.
import { chmod, copyFile, lstat, mkdir, readdir, readlink, rename, rm, stat, symlink, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { cpioChunks, detachedFileChunks, prepareCpioRecords, type CpioData, type CpioRecord } from "./cpio.ts";

/** The squashfs mounted on /usr, as a detached entry of the initramfs (stage0.c USR_PAYLOAD). */
export const USR_PAYLOAD = ".stubdom/usr.squashfs";

export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageError";
  }
}

/** A rootfs under construction: helpers that append records, in any order. */
export class Rootfs {
  readonly records: CpioRecord[] = [];

  dir(path: string, mode = 0o755): this {
    this.records.push({ kind: "dir", path, mode });
    return this;
  }
  file(path: string, data: CpioData, mode = 0o644): this {
    this.records.push({ kind: "file", path, mode, data });
    return this;
  }
  symlink(path: string, target: string): this {
    this.records.push({ kind: "symlink", path, target });
    return this;
  }
  charDev(path: string, mode: number, major: number, minor: number): this {
    this.records.push({ kind: "char", path, mode, major, minor });
    return this;
  }
}

/**
 * Modes an overlay file may have. Anything group/world-writable, setuid/setgid, or not
 * readable by its owner is almost certainly a checkout accident, and in a PID 1's image it
 * would be a hole; so it stops the build instead of being copied.
 */
export function overlayModeProblem(kind: "file" | "dir", mode: number): string | undefined {
  const perm = mode & 0o7777;
  if (perm & 0o022) return `mode ${perm.toString(8).padStart(4, "0")} is group- or world-writable`;
  if (perm & 0o6000) return `mode ${perm.toString(8).padStart(4, "0")} is setuid/setgid`;
  if (kind === "file" && !(perm & 0o400)) return `mode ${perm.toString(8).padStart(4, "0")} is not readable by its owner`;
  if (kind === "dir" && (perm & 0o500) !== 0o500) return `mode ${perm.toString(8).padStart(4, "0")} is not searchable by its owner`;
  return undefined;
}

/** Appends every entry of a host directory tree (rootfs-overlay/) at `prefix` in the image. */
export async function addTree(rootfs: Rootfs, hostDir: string, prefix = ""): Promise<void> {
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(hostDir, rel), { withFileTypes: true }).catch((e: Error) => {
      throw new ImageError(`overlay ${join(hostDir, rel)}: cannot read: ${e.message}`);
    });
    for (const e of entries) {
      const relPath = rel ? `${rel}/${e.name}` : e.name;
      const host = join(hostDir, relPath);
      const imagePath = prefix ? `${prefix.replace(/\/$/, "")}/${relPath}` : relPath;
      const st = await lstat(host);
      if (st.isSymbolicLink()) {
        rootfs.symlink(imagePath, await readlink(host));
      } else if (st.isDirectory()) {
        const problem = overlayModeProblem("dir", st.mode);
        if (problem) throw new ImageError(`overlay ${host}: ${problem}`);
        rootfs.dir(imagePath, st.mode & 0o7777);
        await walk(relPath);
      } else if (st.isFile()) {
        const problem = overlayModeProblem("file", st.mode);
        if (problem) throw new ImageError(`overlay ${host}: ${problem}`);
        rootfs.file(imagePath, { file: host }, st.mode & 0o7777);
      } else {
        throw new ImageError(`overlay ${host}: not a regular file, directory or symlink`);
      }
    }
  };
  await walk("");
}

/**
 * Runs `produce(tmp)` to create a file next to `out`, then renames it into place. On any
 * failure the temporary file is removed and `out` is left as it was.
 */
export async function writeAtomically(out: string, produce: (tmp: string) => Promise<void>): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const tmp = join(dirname(out), `.${out.split("/").pop()}.tmp-${process.pid}`);
  try {
    await produce(tmp);
    await rename(tmp, out);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export type CpioCompression = "zstd" | "gzip" | "none";

/** Compressor command lines: fixed levels, no names or times in headers, so output is a function of input. */
function compressor(c: CpioCompression): string[] | undefined {
  switch (c) {
    // wlog=20 bounds the window (1 MiB) the kernel must allocate to unpack the initramfs.
    case "zstd": return ["zstd", "-q", "-19", "--zstd=wlog=20", "-T1", "-c"];
    case "gzip": return ["gzip", "-n", "-9", "-c"];
    case "none": return undefined;
  }
}

async function pipeInto(cmd: string[], out: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const proc = Bun.spawn(cmd, { stdin: "pipe", stdout: Bun.file(out), stderr: "pipe" });
  try {
    for await (const c of chunks) {
      proc.stdin.write(c);
      await proc.stdin.flush();
    }
  } finally {
    await proc.stdin.end();
  }
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new ImageError(`${cmd[0]} exited ${code}: ${err.trim()}`);
}

/** Writes the records as a (compressed) newc cpio at `out`, atomically. */
export async function writeCpioImage(
  records: readonly CpioRecord[],
  out: string,
  opts: { compression?: CpioCompression; mtime?: number } = {},
): Promise<void> {
  const cmd = compressor(opts.compression ?? "zstd");
  await writeAtomically(out, async (tmp) => {
    const chunks = cpioChunks(records, { mtime: opts.mtime });
    if (cmd) return pipeInto(cmd, tmp, chunks);
    const w = Bun.file(tmp).writer();
    for await (const c of chunks) w.write(c);
    await w.end();
  });
}

/**
 * The stub domain's initramfs: first `payload` as a detached entry (cpio.ts: the kernel does not
 * unpack it, stage 0 mounts it in place), then the records as a zstd cpio that the kernel
 * unpacks into rootfs. The kernel reads concatenated archives, skipping the zero padding between.
 */
export async function writeInitramfs(records: readonly CpioRecord[], payload: { name: string; file: string }, out: string): Promise<void> {
  await writeAtomically(out, async (tmp) => {
    const packed = `${tmp}.cpio.zst`;
    try {
      await writeCpioImage(records, packed);
      const w = Bun.file(tmp).writer();
      for (const c of detachedFileChunks(payload.name, await Bun.file(payload.file).bytes())) w.write(c);
      w.write(await Bun.file(packed).bytes());
      await w.end();
    } finally {
      await rm(packed, { force: true });
    }
  });
}

/** Lays the records out as real files under `dir` (emptied first), with their declared modes. */
export async function materialize(records: readonly CpioRecord[], dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const dirs: Array<[string, number]> = [];
  for (const r of prepareCpioRecords(records)) {
    const p = join(dir, r.path);
    switch (r.kind) {
      case "dir":
        await mkdir(p);
        dirs.push([p, r.mode]);
        break;
      case "file":
        if (r.data instanceof Uint8Array) await Bun.write(p, r.data);
        else await copyFile(r.data.file, p).catch((e: Error) => {
          throw new ImageError(`${r.path}: cannot copy ${(r.data as { file: string }).file}: ${e.message}`);
        });
        await chmod(p, r.mode);
        break;
      case "symlink":
        await symlink(r.target, p);
        break;
      default:
        throw new ImageError(`${r.path}: device nodes do not belong in a squashfs here; put them in the initramfs`);
    }
  }
  // Directory modes last: a read-only directory would refuse its own children.
  for (const [p, mode] of dirs.reverse()) {
    await chmod(p, mode);
    await utimes(p, 0, 0);
  }
}

export type SquashfsCompression = "xz" | "zstd";

/**
 * Writes the records as a squashfs image at `out`, atomically. Owners are root, times are
 * fixed, xattrs are dropped and mksquashfs's reproducible mode keeps the order stable.
 */
export async function writeSquashfs(
  records: readonly CpioRecord[],
  out: string,
  opts: { stagingDir: string; compression?: SquashfsCompression; blockKib?: number; mtime?: number; processors?: number },
): Promise<void> {
  await materialize(records, opts.stagingDir);
  const comp = opts.compression ?? "zstd";
  const t = String(opts.mtime ?? 0);
  // The x86 BCJ filter makes xz ~10 % better on machine code, which is most of this image.
  const compArgs = comp === "xz" ? ["-comp", "xz", "-Xbcj", "x86"] : ["-comp", "zstd", "-Xcompression-level", "19"];
  await writeAtomically(out, async (tmp) => {
    const cmd = [
      "mksquashfs", opts.stagingDir, tmp, "-noappend", "-quiet", "-no-progress", "-reproducible",
      "-all-root", "-no-xattrs", "-all-time", t, "-mkfs-time", t, "-b", `${opts.blockKib ?? 1024}K`, ...compArgs,
      ...(opts.processors ? ["-processors", String(opts.processors)] : []),
    ];
    const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
    const [code, o, e] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    if (code !== 0) throw new ImageError(`mksquashfs exited ${code}: ${(e || o).trim()}`);
  });
}

export interface SizedFile {
  path: string;
  size: number;
}

/** Unpacked sizes of the regular files among the records. */
export async function fileSizes(records: readonly CpioRecord[], prefix = ""): Promise<SizedFile[]> {
  const out: SizedFile[] = [];
  for (const r of records) {
    if (r.kind !== "file") continue;
    const size = r.data instanceof Uint8Array ? r.data.length : (await stat(r.data.file)).size;
    out.push({ path: `${prefix}/${r.path.replace(/^\/+/, "")}`, size });
  }
  return out;
}

export function formatSizeTable(files: readonly SizedFile[], top = 15): string {
  const rows = [...files].sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1)).slice(0, top);
  const mib = (n: number) => (n / 1048576).toFixed(2).padStart(8);
  return rows.map((f) => `${mib(f.size)} MiB  ${f.path}`).join("\n");
}
