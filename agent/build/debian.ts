// Debian packages as build inputs: resolve a package set's Depends, `apt-get download` the
// .debs into .cache/debs/, and `dpkg -x` each one into its own tree .cache/pkgs/<name>/.
// Nothing is installed on the host and nothing comes from anywhere but apt. Several builds
// (and several engineers' tools) share the cache, so every write goes to a private temporary
// name first and is renamed into place: a reader never sees half a .deb or half a tree.
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";

export class DebianError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DebianError";
  }
}

export interface DebPackage {
  name: string;
  version: string;
  arch: string;
  /** The downloaded .deb. */
  deb: string;
  /** The `dpkg -x` tree of this package alone. */
  root: string;
}

export interface CacheOptions {
  /** Directory holding debs/ and pkgs/ (default: .cache under the current directory). */
  cacheDir?: string;
  /** Called with a line for each step that takes long (downloads, extraction). */
  progress?: (line: string) => void;
  /** Another Debian release than the host's (see aptSuite); default: the host's apt. */
  suite?: AptSuite;
}

/**
 * A Debian release other than the host's, reached through the host's own mirror with apt
 * state of its own (sources list, package lists, cache) under a directory of ours: the host's
 * apt configuration and installed packages are never touched. `args` go to every apt call.
 */
export interface AptSuite {
  name: string;
  args: string[];
}

/** The first mirror of an apt sources file: a deb822 `URIs:` field or a one-line `deb` entry. */
export function parseMirror(text: string): string | undefined {
  return (/^URIs:\s*(\S+)/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text))?.[1];
}

/** The mirror the host's apt uses. */
export async function hostMirror(): Promise<string> {
  for (const f of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    const m = await Bun.file(f).text().then(parseMirror, () => undefined);
    if (m) return m;
  }
  throw new DebianError("cannot find the host's Debian mirror in /etc/apt/sources.list{,.d/debian.sources}");
}

/** apt set up for `name` (trixie) in `dir`; its package lists are fetched again after a day. */
export async function aptSuite(name: string, dir: string): Promise<AptSuite> {
  await mkdir(join(dir, "lists", "partial"), { recursive: true });
  await mkdir(join(dir, "cache", "archives", "partial"), { recursive: true });
  const list = join(dir, "sources.list");
  await Bun.write(list, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${await hostMirror()} ${name} main\n`);
  const args = [
    "-o", `Dir::Etc::SourceList=${list}`, "-o", "Dir::Etc::SourceParts=/dev/null", "-o", `Dir::State::Lists=${join(dir, "lists")}`,
    "-o", `Dir::Cache=${join(dir, "cache")}`, "-o", "Dir::State::status=/dev/null",
  ];
  const stampFile = join(dir, "updated");
  const fresh = (await exists(stampFile)) && Date.now() - (await stat(stampFile)).mtimeMs < 86_400_000;
  if (!fresh) {
    await run(["apt-get", ...args, "update", "-q"], `apt-get update (${name})`);
    await Bun.write(stampFile, `${new Date().toISOString()}\n`);
  }
  return { name, args };
}

/** Packages an image never needs although something Depends on them (maintainer-script tools, data). */
export const DEFAULT_SKIP: readonly string[] = [
  "adduser", "debconf", "dpkg", "perl-base", "init-system-helpers", "lsb-base", "sensible-utils",
  "tzdata", "iso-codes", "libcap2-bin", "gcc-12-base", "linux-base", "kmod", "initramfs-tools",
  "linux-initramfs-tool", "apparmor", "debconf-2.0", "usrmerge", "libc-bin", "readline-common",
];

/** Runs a tool of the build; its stdout, or a DebianError with its stderr. `env` adds variables. */
export async function run(cmd: string[], what: string, env: Record<string, string> = {}): Promise<string> {
  let proc;
  try {
    proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C", ...env } });
  } catch (e) {
    throw new DebianError(`${what}: cannot run ${cmd[0]}: ${(e as Error).message}`);
  }
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new DebianError(`${what}: \`${cmd.join(" ")}\` exited ${code}: ${err.trim() || out.trim()}`);
  return out;
}

/**
 * Parses `apt-cache depends` output into package → its dependencies, keeping only the first
 * usable alternative of an `a | b` group and, for a virtual package, its first provider.
 */
export function parseAptCacheDepends(text: string, skip: ReadonlySet<string> = new Set()): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  let group: string[] = [];
  let virtualFor: { list: string[]; pending: boolean } | undefined;
  const flush = (list: string[]) => {
    const pick = group.find((g) => !skip.has(g));
    if (pick !== undefined && !list.includes(pick)) list.push(pick);
    group = [];
  };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (!line.startsWith(" ")) {
      current = [];
      out.set(line.trim(), current);
      virtualFor = undefined;
      continue;
    }
    if (!current) continue;
    // apt-cache spells it PreDepends.
    const m = /^ (\|| )(PreDepends|Depends|Recommends|Suggests|Breaks|Conflicts|Replaces|Enhances): (.+)$/.exec(line);
    if (m) {
      virtualFor = undefined;
      const kind = m[2];
      const name = (m[3] ?? "").trim();
      if (kind !== "Depends" && kind !== "PreDepends") continue;
      const alt = m[1] === "|";
      if (name.startsWith("<") && name.endsWith(">")) {
        // A virtual package: its providers follow, indented; the first unskipped one stands in.
        virtualFor = { list: current, pending: !skip.has(name.slice(1, -1)) };
        continue;
      }
      group.push(name);
      if (!alt) flush(current);
      continue;
    }
    const provider = /^ {4}(\S+)$/.exec(line);
    if (provider && virtualFor) {
      if (virtualFor.pending && !skip.has(provider[1] ?? "")) {
        group.push(provider[1] ?? "");
        flush(virtualFor.list);
        virtualFor.pending = false;
      }
    }
  }
  return out;
}

/** The roots plus everything they Depend on, recursively, minus `skip`. Sorted. */
export async function resolveDepends(roots: readonly string[], opts: { skip?: Iterable<string>; suite?: AptSuite } = {}): Promise<string[]> {
  const skip = new Set(opts.skip ?? DEFAULT_SKIP);
  const unique = [...new Set(roots)];
  await candidates(unique, opts.suite);
  // One recursive query (apt-cache is slow to start); the walk below then honours `skip`,
  // which --recurse cannot: it also lists what only skipped packages pull in.
  const text = await run(
    ["apt-cache", ...(opts.suite?.args ?? []), "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
      "--no-replaces", "--no-enhances", ...unique],
    `resolving Depends of ${unique.join(" ")}`,
  );
  const deps = parseAptCacheDepends(text, skip);
  const seen = new Set<string>();
  const queue = unique.filter((r) => !skip.has(r));
  while (queue.length > 0) {
    const p = queue.shift() as string;
    if (seen.has(p)) continue;
    seen.add(p);
    const list = deps.get(p);
    if (!list) throw new DebianError(`apt-cache depends --recurse did not describe ${p}`);
    for (const d of list) if (!seen.has(d) && !skip.has(d)) queue.push(d);
  }
  return [...seen].sort();
}

export interface Candidate {
  name: string;
  version: string;
  arch: string;
}

/** apt's candidate version of each package; a name apt does not know is a DebianError naming it. */
export async function candidates(names: readonly string[], suite?: AptSuite): Promise<Map<string, Candidate>> {
  const out = new Map<string, Candidate>();
  if (names.length === 0) return out;
  const proc = Bun.spawn(["apt-cache", ...(suite?.args ?? []), "show", "--no-all-versions", ...names], {
    stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C" },
  });
  const [text, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  for (const para of text.split(/\n\n+/)) {
    const field = (f: string) => new RegExp(`^${f}: (.+)$`, "m").exec(para)?.[1]?.trim();
    const name = field("Package");
    const version = field("Version");
    const arch = field("Architecture");
    if (name && version && arch && names.includes(name)) out.set(name, { name, version, arch });
  }
  const missing = names.filter((n) => !out.has(n));
  if (missing.length > 0) {
    throw new DebianError(
      `package${missing.length > 1 ? "s" : ""} not available from apt: ${missing.join(", ")}` +
        (err.trim() ? ` (${err.trim().split("\n").join("; ")})` : "") +
        " — run `apt-get update`, or check the name",
    );
  }
  return out;
}

/** apt-get download's file name: the epoch's colon is written %3a. */
export function debFileName(c: Candidate): string {
  return `${c.name}_${c.version.replace(/:/g, "%3a")}_${c.arch}.deb`;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function tmpName(dir: string, base: string): string {
  return join(dir, `.tmp-${base}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
}

/** Downloads (if not cached) and extracts (if not already) each named package. */
export async function fetchPackages(names: readonly string[], opts: CacheOptions = {}): Promise<DebPackage[]> {
  const cache = resolve(opts.cacheDir ?? ".cache");
  const debs = join(cache, "debs");
  const pkgs = join(cache, "pkgs");
  await mkdir(debs, { recursive: true });
  await mkdir(pkgs, { recursive: true });
  const cands = await candidates([...new Set(names)].sort(), opts.suite);

  const missing: Candidate[] = [];
  for (const c of cands.values()) if (!(await exists(join(debs, debFileName(c))))) missing.push(c);
  if (missing.length > 0) {
    opts.progress?.(`apt-get download ${missing.length} package(s): ${missing.map((c) => c.name).join(" ")}`);
    const tmp = tmpName(debs, "download");
    await mkdir(tmp);
    try {
      await run(
        ["sh", "-c", 'cd "$0" && exec apt-get "$@"', tmp, ...(opts.suite?.args ?? []), "download", "-q", ...missing.map((c) => `${c.name}=${c.version}`)],
        "apt-get download",
      );
      for (const c of missing) {
        const f = debFileName(c);
        if (!(await exists(join(tmp, f)))) throw new DebianError(`apt-get download ${c.name}: ${f} did not appear`);
        await rename(join(tmp, f), join(debs, f));
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  const out: DebPackage[] = [];
  for (const c of cands.values()) {
    const deb = join(debs, debFileName(c));
    const root = join(pkgs, c.name);
    const stamp = join(pkgs, `${c.name}.deb`);
    const current = (await exists(stamp)) ? (await Bun.file(stamp).text()).trim() : "";
    if (current !== debFileName(c) || !(await exists(root))) {
      opts.progress?.(`dpkg -x ${debFileName(c)}`);
      const tmp = tmpName(pkgs, c.name);
      try {
        await run(["dpkg-deb", "-x", deb, tmp], `extracting ${c.name}`);
        await rm(stamp, { force: true });
        const old = tmpName(pkgs, `${c.name}-old`);
        if (await exists(root)) await rename(root, old);
        await rename(tmp, root);
        await rm(old, { recursive: true, force: true });
        await Bun.write(stamp, `${debFileName(c)}\n`);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
    out.push({ name: c.name, version: c.version, arch: c.arch, deb, root });
  }
  return out;
}

/** Names of the packages currently extracted in the cache (for diagnostics). */
export async function cachedPackages(opts: CacheOptions = {}): Promise<string[]> {
  const pkgs = join(resolve(opts.cacheDir ?? ".cache"), "pkgs");
  if (!(await exists(pkgs))) return [];
  return (await readdir(pkgs, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith(".")).map((d) => d.name).sort();
}
