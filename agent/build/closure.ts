// The shared-library closure of executables inside a sysroot made of extracted Debian
// packages. Paths are seen through merged-/usr (/lib, /lib64, /bin, /sbin are /usr/...), the
// layout of the image, so a library that bookworm's libc6 ships in /lib/x86_64-linux-gnu and
// one that libglib ships in /usr/lib/x86_64-linux-gnu meet in one directory, where glibc's
// loader finds both without an ld.so.cache.
import { lstat, readdir, readlink } from "node:fs/promises";
import { posix } from "node:path";
import { readElf, type ElfInfo } from "./elf.ts";

export class ClosureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClosureError";
  }
}

/** Rewrites /lib/x, /lib64/x, /bin/x, /sbin/x to their merged-/usr equivalents. */
export function mergedUsr(path: string): string {
  const p = posix.normalize(path);
  const m = /^\/(lib|lib64|bin|sbin|libx32|lib32)(\/.*)?$/.exec(p);
  return m ? `/usr/${m[1]}${m[2] ?? ""}` : p;
}

type Entry = { kind: "file"; host: string } | { kind: "symlink"; target: string } | { kind: "dir" };

/** A union of package trees, indexed once, answering "which host file is image path P". */
export class Sysroot {
  private constructor(private readonly index: Map<string, Entry>) {}

  /** Indexes each root (a `dpkg -x` tree); on a path conflict the earlier root wins. */
  static async load(roots: readonly string[]): Promise<Sysroot> {
    const index = new Map<string, Entry>();
    const walk = async (root: string, rel: string): Promise<void> => {
      const dir = root + rel;
      for (const d of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const imagePath = mergedUsr(`${rel}/${d.name}`);
        const host = `${dir}/${d.name}`;
        if (d.isDirectory()) {
          if (!index.has(imagePath)) index.set(imagePath, { kind: "dir" });
          await walk(root, `${rel}/${d.name}`);
        } else if (!index.has(imagePath)) {
          if (d.isSymbolicLink()) index.set(imagePath, { kind: "symlink", target: await readlink(host) });
          else if (d.isFile()) index.set(imagePath, { kind: "file", host });
        }
      }
    };
    for (const r of roots) {
      const st = await lstat(r).catch(() => undefined);
      if (!st?.isDirectory()) throw new ClosureError(`sysroot: ${r} is not a directory`);
      await walk(r.replace(/\/+$/, ""), "");
    }
    return new Sysroot(index);
  }

  has(imagePath: string): boolean {
    return this.index.has(mergedUsr(imagePath));
  }

  /** Every indexed path (image paths, merged-/usr) below a directory. */
  list(dir: string): string[] {
    const prefix = mergedUsr(dir).replace(/\/$/, "") + "/";
    return [...this.index.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  /**
   * Follows symlinks (relative or absolute, within the sysroot) to a regular file.
   * Returns its host path and canonical image path, or undefined if it does not resolve.
   */
  resolve(imagePath: string): { host: string; path: string } | undefined {
    let p = mergedUsr(imagePath);
    for (let hops = 0; hops < 40; hops++) {
      // Resolve symlinked parent directories first (e.g. /usr/lib64 -> lib in some packages).
      const parts = p.split("/").filter(Boolean);
      let cur = "";
      let redirected = false;
      for (let i = 0; i < parts.length; i++) {
        cur = mergedUsr(`${cur}/${parts[i]}`);
        const e = this.index.get(cur);
        if (e === undefined) return undefined;
        if (e.kind === "symlink") {
          const base = posix.dirname(cur);
          const target = e.target.startsWith("/") ? e.target : posix.join(base, e.target);
          p = mergedUsr(posix.join(target, ...parts.slice(i + 1)));
          redirected = true;
          break;
        }
        if (e.kind === "file") {
          if (i !== parts.length - 1) return undefined;
          return { host: e.host, path: cur };
        }
      }
      if (!redirected) return undefined;
    }
    return undefined;
  }
}

/** x86-64 glibc's trusted directories, after merged-/usr: where the loader looks last. */
export const DEFAULT_LIBRARY_DIRS: readonly string[] = ["/usr/lib/x86_64-linux-gnu", "/usr/lib"];

export interface ClosureFile {
  /** Where the file goes in the image (a library under its DT_NEEDED name). */
  path: string;
  /** The host file holding its bytes. */
  host: string;
  /** Which object asked for it first ("" for a root). */
  neededBy: string;
}

export interface ClosureRoot {
  /** Image path of an executable or of a library loaded with dlopen. */
  path: string;
  /** Host file; if omitted, looked up in the sysroot. */
  host?: string;
}

function expandOrigin(dir: string, objectPath: string): string {
  const origin = posix.dirname(objectPath);
  return dir.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
}

/**
 * Every library the roots need, transitively, with the interpreter of each executable.
 * Search order per object is the loader's: DT_RPATH (when there is no DT_RUNPATH), then
 * DT_RUNPATH, then `libraryDirs`. A name that resolves nowhere is a ClosureError naming the
 * library, who needs it and where it looked.
 */
export async function libraryClosure(
  roots: readonly ClosureRoot[],
  sysroot: Sysroot,
  opts: { libraryDirs?: readonly string[]; readElf?: (host: string) => Promise<ElfInfo> } = {},
): Promise<ClosureFile[]> {
  const dirs = opts.libraryDirs ?? DEFAULT_LIBRARY_DIRS;
  const read = opts.readElf ?? readElf;
  const out = new Map<string, ClosureFile>();
  const queue: ClosureFile[] = [];
  for (const r of roots) {
    const path = mergedUsr(r.path);
    const host = r.host ?? sysroot.resolve(path)?.host;
    if (!host) throw new ClosureError(`${r.path}: not found in the sysroot`);
    if (out.has(path)) continue;
    const f = { path, host, neededBy: "" };
    out.set(path, f);
    queue.push(f);
  }
  const bySoname = new Map<string, string>();
  while (queue.length > 0) {
    const obj = queue.shift() as ClosureFile;
    const info = await read(obj.host);
    const wanted: Array<{ name: string; path?: string }> = info.needed.map((n) => ({ name: n }));
    if (info.interpreter) wanted.push({ name: info.interpreter, path: mergedUsr(info.interpreter) });
    const search = [...(info.runpath.length === 0 ? info.rpath : []), ...info.runpath].map((d) =>
      mergedUsr(expandOrigin(d, obj.path)),
    );
    for (const w of wanted) {
      let found: { path: string; host: string } | undefined;
      const tried: string[] = [];
      if (w.path !== undefined || w.name.includes("/")) {
        const p = w.path ?? mergedUsr(w.name);
        tried.push(p);
        const r = sysroot.resolve(p);
        if (r) found = { path: p, host: r.host };
      } else {
        const known = bySoname.get(w.name);
        if (known) continue;
        for (const d of [...search, ...dirs]) {
          const p = posix.join(d, w.name);
          tried.push(p);
          const r = sysroot.resolve(p);
          if (r) {
            found = { path: posix.join(mergedUsr(d), w.name), host: r.host };
            break;
          }
        }
      }
      if (!found) {
        throw new ClosureError(`${w.name}, needed by ${obj.path}, is in no package of the sysroot (looked in ${tried.join(", ")})`);
      }
      if (w.path === undefined && !w.name.includes("/")) bySoname.set(w.name, found.path);
      if (out.has(found.path)) continue;
      const f = { path: found.path, host: found.host, neededBy: obj.path };
      out.set(found.path, f);
      queue.push(f);
    }
  }
  return [...out.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}
