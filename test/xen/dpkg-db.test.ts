// dom0's package database (dpkg-db.ts), read by this machine's dpkg (the same 1.21 as dom0's):
// a package that depends on what the records name installs, one that depends on something else
// is refused, and one that ships a file of a recorded package may not replace it.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { fetchPackages, type DebPackage } from "../../agent/build/debian.ts";
import { dpkgDatabase, listName, statusStanza } from "./dpkg-db.ts";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;
let pkgs: DebPackage[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dpkg-db-"));
  pkgs = await fetchPackages(["libc6", "libxenstore4"], { cacheDir: join(root, ".cache") });
}, 300_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function sh(argv: string[]): { code: number; out: string } {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

test("a record keeps the package's fields but its dependency fields, continuation lines included", () => {
  const control = [
    "Package: libfoo1", "Version: 1.2-3", "Architecture: amd64", "Multi-Arch: same",
    "Depends: libc6 (>= 2.34),", " libbar2", "Pre-Depends: dpkg", "Breaks: libfoo0", "Description: foo", " more text", "",
  ].join("\n");
  expect(statusStanza(control)).toBe(
    ["Package: libfoo1", "Status: install ok installed", "Version: 1.2-3", "Architecture: amd64", "Multi-Arch: same",
      "Breaks: libfoo0", "Description: foo", " more text", ""].join("\n"),
  );
  expect(listName(control)).toBe("libfoo1:amd64");
  expect(listName("Package: bash\nArchitecture: amd64\nMulti-Arch: foreign\n")).toBe("bash");
  expect(() => statusStanza("Version: 1\n")).toThrow(/without a Package field/);
});

async function fakeDeb(name: string, depends: string, file: string): Promise<string> {
  const stage = join(dir, `stage-${name}`);
  await mkdir(join(stage, "DEBIAN"), { recursive: true });
  await writeFile(join(stage, "DEBIAN/control"), [
    `Package: ${name}`, "Version: 1.0", "Architecture: amd64", "Maintainer: test <test@localhost.invalid>",
    `Depends: ${depends}`, "Description: a test package", "",
  ].join("\n"));
  await mkdir(join(stage, dirname(file)), { recursive: true });
  await writeFile(join(stage, file), "test\n");
  const out = join(dir, `${name}.deb`);
  const r = sh(["dpkg-deb", "--root-owner-group", "--build", stage, out]);
  expect(r.code, r.out).toBe(0);
  return out;
}

test("this machine's dpkg installs against the records, checks Depends and refuses to replace a recorded file", async () => {
  const r = join(dir, "root");
  for (const [path, text] of await dpkgDatabase(pkgs)) {
    await mkdir(dirname(join(r, path)), { recursive: true });
    await writeFile(join(r, path), text);
  }
  await mkdir(join(r, "var/lib/dpkg/updates"), { recursive: true });
  const dpkg = (...args: string[]) => sh(["dpkg", `--root=${r}`, "--force-script-chrootless", ...args]);
  expect(dpkg("-s", "libxenstore4").out).toMatch(/Status: install ok installed/);

  const good = await fakeDeb("needs-xenstore", "libc6, libxenstore4", "usr/share/needs-xenstore/x");
  let x = dpkg("-i", good);
  expect(x.code, x.out).toBe(0);
  expect(x.out).not.toMatch(/warning/i);

  x = dpkg("-i", await fakeDeb("needs-other", "no-such-package", "usr/share/needs-other/x"));
  expect(x.code).not.toBe(0);
  expect(x.out).toMatch(/depends on no-such-package; however:\s+Package no-such-package is not installed/);

  const libc = (await dpkgDatabase(pkgs)).get(`var/lib/dpkg/info/${listName(sh(["dpkg-deb", "-f", pkgs.find((p) => p.name === "libc6")!.deb]).out)}.list`)!;
  const owned = libc.split("\n").find((l) => /\/libc\.so\.6$/.test(l))!;
  x = dpkg("-i", await fakeDeb("steals-libc", "libc6", owned.slice(1)));
  expect(x.code).not.toBe(0);
  expect(x.out).toMatch(/trying to overwrite '[^']*libc\.so\.6', which is also in package libc6/);
}, 120_000);
