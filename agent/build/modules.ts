// Kernel modules: which .ko files a set of module names needs, in load order. Debian's
// linux-image packages ship no modules.dep (depmod writes it at install time), so the build
// derives the same graph from each module's own `.modinfo` "depends=" field (written by
// modpost from the symbol references), then writes a modules.dep for the subset it ships.
// The agent (PID 1) reads that file from /usr/lib/modules/<kver>/ to load in order.
import { readdir } from "node:fs/promises";
import { posix } from "node:path";
import { readElfSection } from "./elf.ts";

export class ModuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModuleError";
  }
}

export interface ModuleEntry {
  /** Canonical module name: basename without .ko*, dashes as underscores (what the kernel uses). */
  name: string;
  /** Path relative to /lib/modules/<kver>/, e.g. kernel/drivers/block/loop.ko. */
  path: string;
  /** Canonical names of the modules it needs directly. */
  deps: string[];
}

export type ModuleIndex = Map<string, ModuleEntry>;

export function moduleName(pathOrName: string): string {
  return posix.basename(pathOrName).replace(/\.ko(\.(xz|gz|zst))?$/, "").replace(/-/g, "_");
}

/** Canonical names from modules.builtin ("kernel/drivers/net/tun.ko" per line), sorted. */
export function parseModulesBuiltin(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map(moduleName).sort();
}

/** Parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko" per line). */
export function parseModulesDep(text: string, source = "modules.dep"): ModuleIndex {
  const index: ModuleIndex = new Map();
  const pending: Array<[ModuleEntry, string[]]> = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new ModuleError(`${source}:${i + 1}: no "module:" at the start of the line`);
    const path = line.slice(0, colon).trim();
    if (!/\.ko(\.(xz|gz|zst))?$/.test(path)) throw new ModuleError(`${source}:${i + 1}: ${path} is not a .ko path`);
    const depPaths = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    const entry = { name: moduleName(path), path, deps: [] as string[] };
    if (index.has(entry.name)) throw new ModuleError(`${source}:${i + 1}: module ${entry.name} listed twice`);
    index.set(entry.name, entry);
    pending.push([entry, depPaths]);
  });
  for (const [entry, depPaths] of pending) {
    for (const d of depPaths) {
      const name = moduleName(d);
      if (!index.has(name)) throw new ModuleError(`${source}: ${entry.path} depends on ${d}, which has no line of its own`);
      entry.deps.push(name);
    }
  }
  return index;
}

/**
 * Module names in load order: every module after all it depends on, each once. Unknown names
 * and dependency cycles are errors naming the module.
 */
export function resolveModules(index: ModuleIndex, names: readonly string[]): ModuleEntry[] {
  const order: ModuleEntry[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, chain: string[]) => {
    const s = state.get(name);
    if (s === "done") return;
    if (s === "visiting") throw new ModuleError(`module dependency cycle: ${[...chain, name].join(" -> ")}`);
    const e = index.get(name);
    if (!e) {
      throw new ModuleError(
        chain.length === 0 ? `module ${name} is not in the kernel's modules` : `module ${name}, needed by ${chain.at(-1)}, is not in the kernel's modules`,
      );
    }
    state.set(name, "visiting");
    for (const d of e.deps) visit(d, [...chain, name]);
    state.set(name, "done");
    order.push(e);
  };
  for (const n of names) visit(moduleName(n), []);
  return order;
}

/** modules.dep text for the given entries, lines sorted by path; deps listed nearest-first as depmod does. */
export function formatModulesDep(entries: readonly ModuleEntry[], index: ModuleIndex): string {
  const lines = [...entries]
    .sort((a, b) => (a.path < b.path ? -1 : 1))
    .map((e) => {
      // modprobe loads a line's dependencies from the last to the first.
      const deps = resolveModules(index, e.deps).reverse().map((d) => d.path);
      return deps.length ? `${e.path}: ${deps.join(" ")}` : `${e.path}:`;
    });
  return lines.join("\n") + "\n";
}

/** Parses a module's .modinfo section ("key=value\0" records). */
export function parseModinfo(bytes: Uint8Array): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const rec of new TextDecoder().decode(bytes).split("\0")) {
    const eq = rec.indexOf("=");
    if (eq <= 0) continue;
    const k = rec.slice(0, eq);
    out.set(k, [...(out.get(k) ?? []), rec.slice(eq + 1)]);
  }
  return out;
}

/** Builds the dependency index of every .ko under `moduleDir` (a /lib/modules/<kver>/). */
export async function indexModules(moduleDir: string): Promise<ModuleIndex> {
  const index: ModuleIndex = new Map();
  const files = (await readdir(moduleDir, { recursive: true })).filter((f) => f.endsWith(".ko")).sort();
  if (files.length === 0) throw new ModuleError(`${moduleDir}: no .ko files`);
  const raw: Array<[ModuleEntry, string[]]> = [];
  for (const f of files) {
    const info = await readElfSection(posix.join(moduleDir, f), ".modinfo");
    if (!info) throw new ModuleError(`${moduleDir}/${f}: no .modinfo section`);
    const deps = (parseModinfo(info).get("depends")?.[0] ?? "").split(",").filter(Boolean).map(moduleName);
    const e = { name: moduleName(f), path: f, deps: [] as string[] };
    index.set(e.name, e);
    raw.push([e, deps]);
  }
  for (const [e, deps] of raw) {
    for (const d of deps) {
      if (!index.has(d)) throw new ModuleError(`${moduleDir}/${e.path}: depends on ${d}, which is not among the modules`);
      e.deps.push(d);
    }
  }
  return index;
}
