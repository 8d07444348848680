// The Xen releases the package is built for and the nested runs boot: Debian 12's 4.17 (the
// host's own apt sources) and Debian 13's 4.20 (trixie, through a private apt configuration
// kept under .cache/trixie: debian.ts aptSuite). Debian versions libxl's directories by release
// (/usr/lib/xen-4.17, /usr/lib/xen-4.20) and names libxenlight's package after it.
import { join } from "node:path";
import { aptSuite, type AptSuite } from "./debian.ts";

export const XEN_RELEASES = ["4.17", "4.20"] as const;
export type XenRelease = (typeof XEN_RELEASES)[number];
export const DEFAULT_XEN: XenRelease = "4.17";

/** The Debian suite each release comes from; undefined: the host's own (Debian 12). */
const SUITE: Record<XenRelease, string | undefined> = { "4.17": undefined, "4.20": "trixie" };

/** `XEN=4.20` (make) or `--xen 4.20`: one of XEN_RELEASES, else an error naming them. */
export function parseXenRelease(v: string | undefined): XenRelease {
  if (v === undefined || v === "") return DEFAULT_XEN;
  if ((XEN_RELEASES as readonly string[]).includes(v)) return v as XenRelease;
  throw new Error(`Xen release ${v}: expected one of ${XEN_RELEASES.join(", ")}`);
}

/** The Debian package that carries libxenlight for a release. */
export const libxlPackage = (r: XenRelease) => `libxenmisc${r}`;

/** Where a release's packages come from: the apt suite and the cache directory for fetchPackages. */
export async function releaseSource(r: XenRelease, cacheRoot: string): Promise<{ suite?: AptSuite; cacheDir: string }> {
  const name = SUITE[r];
  if (name === undefined) return { cacheDir: cacheRoot };
  return suiteSource(name, cacheRoot);
}

/** Debian 13's packages (the kernel source, the outer QEMU, Xen 4.20's dom0), cached apart. */
export const debian13Source = (cacheRoot: string) => suiteSource("trixie", cacheRoot);

async function suiteSource(name: string, cacheRoot: string): Promise<{ suite: AptSuite; cacheDir: string }> {
  const cacheDir = join(cacheRoot, name);
  return { suite: await aptSuite(name, join(cacheDir, "apt")), cacheDir };
}
