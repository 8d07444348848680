// `make deb`: dist/xen-stubdom-init_<version>_amd64.deb, so that `device_model_stubdomain_override=1`
// is all an xl.cfg needs on Debian. libxl looks for `qemu-stubdom-linux-kernel` and
// `qemu-stubdom-linux-rootfs` in its firmware directory (libxl_dm.c: libxl__xenfirmwaredir_path),
// which Debian versions by Xen release (/usr/lib/xen-4.17/boot on Debian 12). That directory is
// read from the libxenlight the image was built against, never guessed.
//
// Reproducible: every mtime is SOURCE_DATE_EPOCH (default: the last commit's time), owners are
// root, gzip runs with -n, and dpkg-deb takes SOURCE_DATE_EPOCH for the archive's own times.
//
// lintian (test/build/deb.test.ts): no errors. Two are overridden in the package, with why
// (LINTIAN_OVERRIDES); two warnings stay, hardening-no-pie and hardening-no-relro on
// usr/bin/stubdom-init: Bun's runtime is linked that way upstream, and a compiled program is
// that runtime with the program appended.
//
// Usage: bun agent/build/deb.ts [--xen 4.17|4.20] [--out DIR] | [--xen R] --firmware-dir
// (`make deb XEN=4.20`: the package for Debian 13's Xen 4.20, in dist/xen-4.20/).
import { chmod, copyFile, mkdir, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fetchPackages, run } from "./debian.ts";
import { readElfSection } from "./elf.ts";
import { DEFAULT_XEN, libxlPackage, parseXenRelease, releaseSource, type XenRelease } from "./xen-release.ts";

export const PACKAGE = "xen-stubdom-init";

export class DebError extends Error {
  override name = "DebError";
}

/** libxl's firmware directory, from the strings of a libxenlight.so: exactly one /usr/lib/xen-X.Y/boot. */
export function firmwareDirIn(rodata: Uint8Array): string {
  const text = new TextDecoder("latin1").decode(rodata);
  const found = new Set(text.split("\0").filter((s) => /^\/usr\/lib\/xen(-[0-9]+\.[0-9]+)?\/boot$/.test(s)));
  if (found.size !== 1) throw new DebError(`expected one firmware directory in libxenlight, found ${found.size}: ${[...found].join(" ") || "none"}`);
  return [...found][0]!;
}

/** The firmware directory of a Xen release's libxenlight (its package is downloaded into the cache when missing). */
export async function xenFirmwareDir(cacheRoot: string, release: XenRelease = DEFAULT_XEN): Promise<string> {
  const name = libxlPackage(release);
  const [pkg] = await fetchPackages([name], await releaseSource(release, cacheRoot));
  if (!pkg) throw new DebError(`${name}: not found`);
  const libdir = join(pkg.root, "usr/lib/x86_64-linux-gnu");
  const lib = (await readdir(libdir)).find((f) => /^libxenlight\.so\.[0-9.]+$/.test(f));
  if (!lib) throw new DebError(`${name} has no libxenlight.so.* in ${libdir}`);
  const rodata = await readElfSection(join(libdir, lib), ".rodata");
  if (!rodata) throw new DebError(`${lib}: no .rodata section`);
  return firmwareDirIn(rodata);
}

/** The highest GLIBC_x.y symbol version a binary needs: its true libc6 dependency. */
export async function glibcFloor(binary: string): Promise<string> {
  const symbols = await run(["objdump", "-T", binary], `reading the dynamic symbols of ${binary}`);
  const versions = [...symbols.matchAll(/\(GLIBC_([0-9]+(?:\.[0-9]+)+)\)/g)].map((m) => m[1]!);
  if (versions.length === 0) throw new DebError(`${binary}: no GLIBC_ symbol versions`);
  const key = (v: string) => v.split(".").map(Number);
  return versions.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    return 0;
  }).at(-1)!;
}

export interface DebInputs {
  version: string;
  /** Seconds since the epoch for every time in the package. */
  epoch: number;
  firmwareDir: string;
  kernel: string;
  rootfs: string;
  agent: string;
  /** Source of the manual page (roff). */
  manpage: string;
  outDir: string;
}

async function gzipTo(src: Uint8Array, dest: string): Promise<void> {
  const p = Bun.spawn(["gzip", "-9n"], { stdin: src, stdout: "pipe" });
  await writeFile(dest, new Uint8Array(await new Response(p.stdout).arrayBuffer()));
  if ((await p.exited) !== 0) throw new DebError(`gzip ${dest} failed`);
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...(await walk(p)));
  }
  return out;
}

const COPYRIGHT = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ${PACKAGE}

Files: *
Copyright: 2026 the ${PACKAGE} authors
License: GPL-2
Comment: The stub domain image also carries unmodified files of Debian packages (the Linux
 kernel, QEMU, glibc and the Xen libraries); their copyright files are in those packages and
 their sources in the Debian archive at the versions recorded in the image build.

License: GPL-2
 On Debian systems, the full text of the GNU General Public License version 2 can be found in
 the file /usr/share/common-licenses/GPL-2.
`;

/** dom0's `stubdom-init console0` (agent/console0/connect.ts) as a service. */
export const CONSOLE0_UNIT = "stubdom-console0.service";
const CONSOLE0_SERVICE = `[Unit]
Description=Drain Xen stub domains' console 0 where dom0's QEMU 8.2+ does not
Documentation=man:stubdom-init(8)
After=xenstored.service
Requires=xenstored.service

[Service]
ExecStart=/usr/bin/stubdom-init console0
Restart=on-failure

[Install]
WantedBy=multi-user.target
`;

const LINTIAN_OVERRIDES = `# bun build --compile appends the program to Bun's runtime (ELF section .bun); strip(1)
# drops it, and the stripped binary runs as a plain bun.
${PACKAGE}: unstripped-binary-or-object [usr/bin/stubdom-init]
# Bun's runtime carries its own copies of libraries (libjpeg among them), linked in when Bun is
# built; a compiled Bun program cannot use the system's.
${PACKAGE}: embedded-library libjpeg [usr/bin/stubdom-init]
`;

/** Builds the .deb; returns its path. */
export async function buildDeb(i: DebInputs): Promise<string> {
  const arch = "amd64";
  const stage = join(i.outDir, `.deb-${process.pid}`);
  await rm(stage, { recursive: true, force: true });
  const put = async (src: string, dest: string, mode: number) => {
    await mkdir(join(stage, dest, ".."), { recursive: true });
    await copyFile(src, join(stage, dest));
    await chmod(join(stage, dest), mode);
  };
  try {
    const fw = i.firmwareDir.replace(/^\//, "");
    await put(i.kernel, `${fw}/qemu-stubdom-linux-kernel`, 0o644);
    await put(i.rootfs, `${fw}/qemu-stubdom-linux-rootfs`, 0o644);
    await put(i.agent, "usr/bin/stubdom-init", 0o755);
    const doc = join(stage, "usr/share/doc", PACKAGE);
    await mkdir(doc, { recursive: true });
    await writeFile(join(doc, "copyright"), COPYRIGHT);
    const date = new Date(i.epoch * 1000).toUTCString().replace("GMT", "+0000");
    const changelog = `${PACKAGE} (${i.version}) unstable; urgency=medium\n\n  * Release ${i.version}.\n\n -- ${PACKAGE} maintainers <xen-stubdom-init@localhost.invalid>  ${date}\n`;
    await gzipTo(new TextEncoder().encode(changelog), join(doc, "changelog.gz"));
    // Two errors lintian is right about and we cannot change, said where lintian reads them.
    await mkdir(join(stage, "usr/share/lintian/overrides"), { recursive: true });
    await writeFile(join(stage, "usr/share/lintian/overrides", PACKAGE), LINTIAN_OVERRIDES);
    // Not enabled on install: dom0s whose QEMU drains console 0 (Debian 12's 7.2) need no service.
    await mkdir(join(stage, "usr/lib/systemd/system"), { recursive: true });
    await writeFile(join(stage, "usr/lib/systemd/system", CONSOLE0_UNIT), CONSOLE0_SERVICE);
    await mkdir(join(stage, "usr/share/man/man8"), { recursive: true });
    await gzipTo(new Uint8Array(await Bun.file(i.manpage).arrayBuffer()), join(stage, "usr/share/man/man8/stubdom-init.8.gz"));

    const files = (await walk(stage)).sort();
    const md5: string[] = [];
    let kib = 0;
    for (const f of files) {
      const s = await stat(f);
      if (s.isDirectory()) {
        await chmod(f, 0o755);
        continue;
      }
      kib += Math.ceil(s.size / 1024);
      const h = new Bun.CryptoHasher("md5").update(new Uint8Array(await Bun.file(f).arrayBuffer())).digest("hex");
      md5.push(`${h}  ${relative(stage, f)}`);
    }
    await mkdir(join(stage, "DEBIAN"), { recursive: true });
    const control = [
      `Package: ${PACKAGE}`,
      `Version: ${i.version}`,
      `Architecture: ${arch}`,
      `Maintainer: ${PACKAGE} maintainers <xen-stubdom-init@localhost.invalid>`,
      `Installed-Size: ${kib}`,
      `Depends: libc6 (>= ${await glibcFloor(i.agent)}), libxenstore4`,
      `Recommends: xen-utils-${/xen-([0-9.]+)/.exec(i.firmwareDir)?.[1] ?? "common"}`,
      "Section: admin",
      "Priority: optional",
      "Description: Linux stub domain for Xen HVM device models, with a supervising init",
      " Boot images (kernel and initramfs) for a Xen Linux stub domain that runs",
      " QEMU as the device model of an HVM guest, installed where libxl looks for",
      " them, so that device_model_stubdomain_override=1 in xl.cfg is enough. Its",
      " init supervises QEMU, joins each PV NIC to QEMU's tap in the kernel and",
      " reports health into xenstore.",
      " .",
      " stubdom-init in dom0 reads those reports (status, Prometheus metrics). With",
      " a dom0 QEMU of 8.2 or later (Debian 13), enable stubdom-console0.service:",
      " that QEMU never drains a stub domain's console 0 by itself.",
      "",
    ].join("\n");
    await writeFile(join(stage, "DEBIAN/control"), control);
    await writeFile(join(stage, "DEBIAN/md5sums"), `${md5.join("\n")}\n`);
    await chmod(join(stage, "DEBIAN"), 0o755);
    for (const f of ["control", "md5sums"]) await chmod(join(stage, "DEBIAN", f), 0o644);
    for (const f of [stage, ...(await walk(stage))]) await utimes(f, i.epoch, i.epoch);

    const out = join(i.outDir, `${PACKAGE}_${i.version}_${arch}.deb`);
    const tmp = `${out}.tmp-${process.pid}`;
    await run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", stage, tmp], "dpkg-deb --build", { SOURCE_DATE_EPOCH: String(i.epoch) });
    await rename(tmp, out);
    return out;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function lastCommitEpoch(root: string): Promise<number> {
  const p = Bun.spawnSync(["git", "-C", root, "log", "-1", "--format=%ct"], { stdout: "pipe", stderr: "pipe" });
  const n = Number(p.stdout.toString().trim());
  if (p.exitCode !== 0 || !Number.isInteger(n) || n <= 0) throw new DebError("SOURCE_DATE_EPOCH is not set and git gave no commit time");
  return n;
}

if (import.meta.main) {
  const root = join(import.meta.dir, "../..");
  const argv = process.argv.slice(2);
  const arg = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  const release = parseXenRelease(arg("--xen"));
  if (argv.includes("--firmware-dir")) {
    process.stdout.write(`${await xenFirmwareDir(join(root, ".cache"), release)}\n`);
  } else {
    const outDir = arg("--out") ?? join(root, "dist", ...(release === DEFAULT_XEN ? [] : [`xen-${release}`]));
    const pkg = (await Bun.file(join(root, "package.json")).json()) as { version: string };
    const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : await lastCommitEpoch(root);
    const dist = join(root, "dist");
    const out = await buildDeb({
      version: process.env.DEB_VERSION ?? pkg.version,
      epoch,
      firmwareDir: await xenFirmwareDir(join(root, ".cache"), release),
      kernel: join(dist, "qemu-stubdom-linux-kernel"),
      rootfs: join(dist, "qemu-stubdom-linux-rootfs"),
      agent: join(dist, "stubdom-init"),
      manpage: join(import.meta.dir, "stubdom-init.8"),
      outDir,
    });
    process.stdout.write(`${out}\n`);
  }
}
