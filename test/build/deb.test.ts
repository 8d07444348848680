// `make deb` (agent/build/deb.ts) from the images `make build` left in dist/: two builds give
// the same bytes, the files land where Debian's libxl looks, lintian passes, no file of the
// Xen or QEMU packages is touched, and dpkg installs, upgrades and purges it cleanly (in a
// root of its own whose package database is a copy of this machine's).
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildDeb, firmwareDirIn, CONSOLE0_UNIT, PACKAGE, xenFirmwareDir, type DebInputs } from "../../agent/build/deb.ts";
import { fetchPackages } from "../../agent/build/debian.ts";
import { parseXenRelease } from "../../agent/build/xen-release.ts";

const root = new URL("../..", import.meta.url).pathname;
const dist = join(root, "dist");
let dir: string;
let inputs: Omit<DebInputs, "outDir" | "version">;

function sh(argv: string[], env?: Record<string, string>): { code: number; out: string } {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

beforeAll(async () => {
  if (!existsSync(join(dist, "stubdom-init"))) throw new Error("dist/ is empty: run `make build` first");
  dir = await mkdtemp(join(tmpdir(), "deb-test-"));
  inputs = {
    epoch: 1_796_000_000,
    firmwareDir: await xenFirmwareDir(join(root, ".cache")),
    kernel: join(dist, "qemu-stubdom-linux-kernel"),
    rootfs: join(dist, "qemu-stubdom-linux-rootfs"),
    agent: join(dist, "stubdom-init"),
    manpage: join(root, "agent/build/stubdom-init.8"),
  };
}, 300_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("libxl's firmware directory is read from libxenlight's strings, never guessed", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  expect(firmwareDirIn(enc("\0/usr/lib/xen-4.17/bin\0/usr/lib/xen-4.17/boot\0%s/%s\0"))).toBe("/usr/lib/xen-4.17/boot");
  expect(() => firmwareDirIn(enc("/usr/lib/xen-4.17/bin\0"))).toThrow(/found 0/);
  expect(() => firmwareDirIn(enc("/usr/lib/xen-4.17/boot\0/usr/lib/xen-4.20/boot\0"))).toThrow(/found 2/);
});

test("each Xen release's firmware directory comes from its own libxenlight: Debian 12's 4.17, Debian 13's 4.20", async () => {
  expect(await xenFirmwareDir(join(root, ".cache"), "4.17")).toBe("/usr/lib/xen-4.17/boot");
  expect(await xenFirmwareDir(join(root, ".cache"), "4.20")).toBe("/usr/lib/xen-4.20/boot");
  expect(parseXenRelease(undefined)).toBe("4.17");
  expect(parseXenRelease("4.20")).toBe("4.20");
  expect(() => parseXenRelease("4.19")).toThrow(/4\.19: expected one of 4\.17, 4\.20/);
}, 300_000);

describe("the package", () => {
  let deb: string;
  beforeAll(async () => {
    await mkdir(join(dir, "a"));
    await mkdir(join(dir, "b"));
    deb = await buildDeb({ ...inputs, version: "0.1.0", outDir: join(dir, "a") });
    await buildDeb({ ...inputs, version: "0.1.0", outDir: join(dir, "b") });
  }, 600_000);

  test("two builds give the same bytes", async () => {
    const hash = async (p: string) => new Bun.CryptoHasher("sha256").update(new Uint8Array(await readFile(p))).digest("hex");
    expect(await hash(join(dir, "b", `${PACKAGE}_0.1.0_amd64.deb`))).toBe(await hash(deb));
  });

  test("the files, owned by root, in the firmware directory of the Xen release the image is built for", () => {
    expect(inputs.firmwareDir).toBe("/usr/lib/xen-4.17/boot");
    const list = sh(["dpkg-deb", "-c", deb]).out;
    for (const f of [
      `-rw-r--r-- root/root .*\\.${inputs.firmwareDir}/qemu-stubdom-linux-kernel`,
      `-rw-r--r-- root/root .*\\.${inputs.firmwareDir}/qemu-stubdom-linux-rootfs`,
      "-rwxr-xr-x root/root .*\\./usr/bin/stubdom-init",
      "-rw-r--r-- root/root .*\\./usr/share/man/man8/stubdom-init.8.gz",
      `-rw-r--r-- root/root .*\\./usr/share/doc/${PACKAGE}/copyright`,
      `-rw-r--r-- root/root .*\\./usr/share/doc/${PACKAGE}/changelog.gz`,
      `-rw-r--r-- root/root .*\\./usr/share/lintian/overrides/${PACKAGE}`,
      `-rw-r--r-- root/root .*\\./usr/lib/systemd/system/${CONSOLE0_UNIT}`,
    ]) expect(list).toMatch(new RegExp(f));
    // Every entry's time is SOURCE_DATE_EPOCH (dpkg-deb -c prints it in local time, UTC here).
    const stamp = new Date(inputs.epoch * 1000).toISOString().slice(0, 16).replace("T", " ");
    for (const l of list.trim().split("\n")) expect(l).toContain(` ${stamp} `);
    const depends = sh(["dpkg-deb", "-f", deb, "Depends"]).out.trim();
    expect(depends).toMatch(/^libc6 \(>= 2\.[0-9]+\), libxenstore4$/);
  });

  test("lintian passes (warnings printed)", () => {
    // lintian leaves its ELF index (an mldbm-elf-* file) in TMPDIR: ours, removed in afterAll.
    const r = sh(["lintian", "--fail-on", "error", "--tag-display-limit", "0", deb], { TMPDIR: dir });
    if (r.out.trim()) process.stdout.write(`lintian:\n${r.out}`);
    expect(r.code, r.out).toBe(0);
  }, 600_000);

  test("no file of the Xen and QEMU packages is in it", async () => {
    const ours = new Set(sh(["dpkg-deb", "-c", deb]).out.split("\n").filter((l) => l.startsWith("-")).map((l) => l.replace(/^.* \.\//, "/")));
    const theirs = await fetchPackages(["xen-utils-4.17", "xen-utils-common", "xen-hypervisor-common", "qemu-system-xen", "libxenmisc4.17", "libxenstore4"], { cacheDir: join(root, ".cache") });
    for (const p of theirs) {
      const files = sh(["dpkg-deb", "-c", p.deb]).out.split("\n").map((l) => l.replace(/^.* \.\//, "/").replace(/ -> .*$/, ""));
      expect(files.filter((f) => ours.has(f)), p.name).toEqual([]);
    }
  }, 300_000);

  test("dpkg installs it, upgrades it to a newer version and purges it, leaving nothing", async () => {
    const r = join(dir, "root");
    await mkdir(join(r, "var/lib/dpkg/info"), { recursive: true });
    await mkdir(join(r, "var/lib/dpkg/updates"), { recursive: true });
    // The package database of this machine (libc6, libxenstore4 installed), none of its files.
    await copyFile("/var/lib/dpkg/status", join(r, "var/lib/dpkg/status"));
    await writeFile(join(r, "var/lib/dpkg/available"), "");
    const dpkg = (...args: string[]) => sh(["dpkg", `--root=${r}`, "--force-script-chrootless", ...args]);
    const kernel = join(r, inputs.firmwareDir, "qemu-stubdom-linux-kernel");

    let x = dpkg("-i", deb);
    expect(x.code, x.out).toBe(0);
    expect(existsSync(kernel)).toBe(true);
    expect(existsSync(join(r, "usr/bin/stubdom-init"))).toBe(true);
    expect(dpkg("-s", PACKAGE).out).toMatch(/Status: install ok installed\nPriority: optional\nSection: admin\n[\s\S]*Version: 0\.1\.0/);

    const newer = await buildDeb({ ...inputs, version: "0.1.1", outDir: join(dir, "b") });
    x = dpkg("-i", newer);
    expect(x.code, x.out).toBe(0);
    expect(dpkg("-s", PACKAGE).out).toMatch(/Version: 0\.1\.1/);
    expect(existsSync(kernel)).toBe(true);

    x = dpkg("-P", PACKAGE);
    expect(x.code, x.out).toBe(0);
    expect(dpkg("-s", PACKAGE).code).not.toBe(0);
    for (const f of [kernel, join(r, "usr/bin/stubdom-init"), join(r, "usr/share/doc", PACKAGE), join(r, inputs.firmwareDir)]) expect(existsSync(f), f).toBe(false);
  }, 600_000);
});
