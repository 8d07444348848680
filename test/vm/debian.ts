// Debian packages for the development VM's fixtures, in the cache layout the image build uses:
// `.cache/debs/*.deb` from `apt-get download`, unpacked with `dpkg -x` into
// `.cache/pkgs/<package>/`. Nothing is taken from the host's installed files, so the demo guest
// is the same on every machine.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

export const repoRoot = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const cacheDir = join(repoRoot, ".cache");

function run(argv: string[], cwd?: string): string {
  const p = Bun.spawnSync(argv, { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) {
    throw new Error(`${argv.join(" ")} failed (${p.exitCode}): ${p.stderr.toString().trim()}`);
  }
  return p.stdout.toString();
}

/** The concrete package a virtual or meta package (linux-image-amd64) depends on first. */
export function resolveMeta(name: string, prefix: string): string {
  const out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", name]);
  const m = out.match(new RegExp(`Depends: (${prefix}\\S+)`));
  if (!m?.[1]) throw new Error(`apt-cache depends ${name}: no dependency named ${prefix}*`);
  return m[1];
}

/** Unpacked root of a Debian package, downloading it on first use. */
export function debianPackage(name: string): string {
  const dest = join(cacheDir, "pkgs", name);
  if (existsSync(dest)) return dest;
  const debs = join(cacheDir, "debs");
  mkdirSync(debs, { recursive: true });
  const isDeb = (f: string) => f.startsWith(`${name}_`) && f.endsWith(".deb");
  let deb = readdirSync(debs).find(isDeb);
  if (!deb) {
    run(["apt-get", "download", "-q", name], debs);
    deb = readdirSync(debs).find(isDeb);
    if (!deb) throw new Error(`apt-get download ${name}: no ${name}_*.deb appeared in ${debs}`);
  }
  // Unpack beside the destination and rename, so an interrupted run never leaves a half tree.
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  run(["dpkg", "-x", join(debs, deb), tmp]);
  if (existsSync(dest)) rmSync(tmp, { recursive: true, force: true });
  else renameSync(tmp, dest);
  return dest;
}
