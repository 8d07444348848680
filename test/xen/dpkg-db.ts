// dom0's package database: the Debian packages dom0 is assembled from (dom0.ts), recorded as
// dpkg records what it installed, so that `dpkg -i` of our package in dom0 checks its Depends
// (libc6, libxenstore4) and its files against real packages, as on an administrator's machine.
// dom0 carries only the files its programs need, and leaves out the packages that serve only
// maintainer scripts (dom0.ts SKIP): the records keep each package's own fields and file list
// but no dependency fields, which would name packages dom0 does not have.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { DebPackage } from "../../agent/build/debian.ts";

const DROPPED = new Set(["depends", "pre-depends", "recommends", "suggests"]);

/** A control file's stanza without the dependency fields, marked installed. */
export function statusStanza(control: string): string {
  const out: string[] = [];
  let keep = true;
  for (const line of control.replace(/\n+$/, "").split("\n")) {
    if (/^\s/.test(line)) {
      if (keep) out.push(line);
      continue;
    }
    const field = line.slice(0, line.indexOf(":")).toLowerCase();
    keep = !DROPPED.has(field);
    if (keep) out.push(line);
    if (field === "package") out.push("Status: install ok installed");
  }
  if (!out.some((l) => l.startsWith("Status: "))) throw new Error(`control file without a Package field:\n${control}`);
  return `${out.join("\n")}\n`;
}

/** dpkg names a `Multi-Arch: same` package's file list after the package and its architecture. */
export function listName(control: string): string {
  const field = (name: string) => new RegExp(`^${name}: *(.+)$`, "mi").exec(control)?.[1]?.trim();
  const pkg = field("Package")!;
  return field("Multi-Arch") === "same" ? `${pkg}:${field("Architecture")}` : pkg;
}

/** Every path of an extracted package, as dpkg lists it: `/.` first, then the tree. */
async function fileList(root: string): Promise<string> {
  const out = ["/."];
  const walk = async (dir: string, rel: string) => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      out.push(`${rel}/${e.name}`);
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}/${e.name}`);
    }
  };
  await walk(root, "");
  return `${out.join("\n")}\n`;
}

/** The files of /var/lib/dpkg for these packages, by path relative to the image root. */
export async function dpkgDatabase(pkgs: DebPackage[]): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const stanzas: string[] = [];
  for (const p of [...pkgs].sort((a, b) => a.name.localeCompare(b.name))) {
    const r = Bun.spawnSync(["dpkg-deb", "-f", p.deb], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`dpkg-deb -f ${p.deb}: ${r.stderr.toString().trim()}`);
    const control = r.stdout.toString();
    stanzas.push(statusStanza(control));
    files.set(`var/lib/dpkg/info/${listName(control)}.list`, await fileList(p.root));
  }
  files.set("var/lib/dpkg/status", stanzas.join("\n"));
  files.set("var/lib/dpkg/available", "");
  return files;
}
