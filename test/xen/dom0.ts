// The outer VM's software: Debian's Xen hypervisor (as an ELF QEMU's -kernel loads), Debian's
// standard kernel as dom0 (the cloud flavour cannot be dom0), and a dom0 initramfs holding the
// toolstack (xl, xenstored, xenconsoled, xen-init-dom0, the hotplug scripts and the shell they
// need), the dom0 QEMU libxl starts for a stub domain's consoles, vchan-socket-proxy,
// hvmloader and SeaBIOS. Assembled by the same build code as the images (agent/build/*) from
// `apt-get download`ed packages, and cached under .cache/xen-e2e/ keyed by its inputs. One per
// Xen release (agent/build/xen-release.ts): Debian 12's Xen 4.17, QEMU 7.2 and Linux 6.1, or
// Debian 13's Xen 4.20, QEMU 10.0 and Linux 6.12.
import { mkdir, readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Sysroot, libraryClosure } from "../../agent/build/closure.ts";
import { DEFAULT_SKIP, fetchPackages, resolveDepends, type DebPackage } from "../../agent/build/debian.ts";
import { Rootfs, writeAtomically, writeCpioImage } from "../../agent/build/image.ts";
import { buildKernel, type KernelBuild } from "../../agent/build/kernel.ts";
import { indexModules, moduleName, parseModinfo, resolveModules } from "../../agent/build/modules.ts";
import { readElfSection } from "../../agent/build/elf.ts";
import { DEFAULT_XEN, releaseSource, type XenRelease } from "../../agent/build/xen-release.ts";
import { dpkgDatabase } from "./dpkg-db.ts";
import { GUEST_INPUTS, buildGuestCd, buildGuestDisk } from "./guest.ts";

// import.meta.dir is Bun's; Vitest's transform leaves only import.meta.url.
const HERE = fileURLToPath(new URL(".", import.meta.url));

const root = join(HERE, "../..");
export const E2E_CACHE = join(root, ".cache", "xen-e2e");

const packages = (xen: XenRelease) => [
  `xen-hypervisor-${xen}-amd64`, `xen-utils-${xen}`, "xen-utils-common", "xenstore-utils", "qemu-system-xen",
  "qemu-system-data", "seabios", "ipxe-qemu", "linux-image-amd64", "busybox-static", "iproute2", "bash", "util-linux",
  "coreutils", "libgcc-s1", "dpkg", "libc-bin",
];
/** Depends that only serve maintainer scripts, boot-time tools or other programs of those packages. */
const SKIP = [
  // dpkg and ldconfig are dom0's own here: it installs our package.
  ...DEFAULT_SKIP.filter((p) => p !== "dpkg" && p !== "libc-bin"), "python3", "perl", "udev", "dracut", "tiny-initramfs", "initramfs-tools-core", "dracut-core",
  "libpam0g", "libpam-modules", "libsemanage2", "passwd", "login", "base-files", "mime-support",
  "mailcap", "media-types", "ucf", "util-linux-extra",
  // Debian 13's names for the same kind of package.
  "systemd", "python3.13", "python3.13-minimal", "libpam-runtime", "cdebconf",
];

/** Executables dom0 runs; their libraries come along through the closure. */
const roots = (XEN: string) => [
  `${XEN}/bin/xl`, `${XEN}/bin/xenstored`, `${XEN}/bin/xenconsoled`, `${XEN}/bin/xen-init-dom0`,
  `${XEN}/bin/vchan-socket-proxy`, `${XEN}/bin/libxl-save-helper`, "/usr/libexec/xen-qemu-system-i386",
  "/usr/bin/xenstore", "/usr/bin/bash", "/usr/bin/ip", "/usr/sbin/bridge", "/usr/bin/flock", "/usr/bin/stat",
  // `dpkg -i` of our package (dpkg-db.ts) runs dpkg-split and dpkg-deb, which unpacks with GNU tar;
  // dpkg refuses to run without ldconfig and start-stop-daemon in PATH.
  "/usr/bin/dpkg", "/usr/bin/dpkg-deb", "/usr/bin/dpkg-split", "/usr/bin/dpkg-query", "/usr/bin/tar", "/usr/sbin/ldconfig",
  "/usr/sbin/start-stop-daemon",
  // dlopen'd: xl aborts without libgcc_s (pthread_cancel); stubdom-init's own DT_NEEDED.
  "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
  "/usr/lib/x86_64-linux-gnu/libpthread.so.0", "/usr/lib/x86_64-linux-gnu/libdl.so.2",
  "/usr/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/librt.so.1",
];
/**
 * Whole directories: hvmloader, SeaBIOS, the hotplug scripts, the dom0 QEMU's keymaps, and its
 * NIC option ROMs (a guest whose QEMU runs in dom0, `--dm dom0`, has an e1000).
 */
const trees = (XEN: string) => [`${XEN}/boot`, "/usr/share/seabios", "/etc/xen/scripts", "/usr/share/qemu/keymaps", "/usr/lib/ipxe/qemu"];
const MODULES = ["xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc", "xen-netback", "xen-blkback", "bridge", "loop", "tun", "xen-pciback"];
const XENSTORE_TOOLS = ["read", "write", "list", "ls", "exists", "rm", "watch", "chmod"];

export interface OuterImages {
  /** Xen, gunzipped: an ELF32 with a multiboot header. */
  xen: string;
  dom0Kernel: string;
  /** Uncompressed newc cpio: decompressing under TCG would cost more than copying. */
  dom0Initramfs: string;
}

async function runTool(cmd: string[], what: string): Promise<Uint8Array> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).bytes(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${what}: \`${cmd.join(" ")}\` exited ${code}: ${err.trim()}`);
  return out;
}

async function inputKey(pkgs: DebPackage[], kernel: KernelBuild, xen: XenRelease): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  h.update(`xen ${xen}\n${kernel.bzImage}\n`);
  for (const p of pkgs) h.update(`${p.name} ${p.version}\n`);
  for (const f of ["dom0.ts", "dpkg-db.ts", "dom0-init.sh", "dom0-test.sh", "dom0-pci.sh", "dom0-saverestore.sh"]) h.update(await Bun.file(join(HERE, f)).bytes());
  for (const f of GUEST_INPUTS) h.update(await Bun.file(f).bytes());
  return h.digest("hex").slice(0, 16);
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/**
 * A module tree busybox's insmod can load: Debian 13 ships its modules xz-compressed (Debian 12
 * plain), and a package has no modules.dep (depmod writes it at install). So MODULES and what
 * they depend on are unpacked into `out`, following each one's .modinfo; a plain tree is used as is.
 */
async function plainModules(modDir: string, out: string): Promise<string> {
  const files = (await readdir(modDir, { recursive: true })).filter((f) => /\.ko\.xz$/.test(f));
  if (files.length === 0) return modDir;
  const byName = new Map(files.map((f) => [moduleName(f), f]));
  const queue = MODULES.map(moduleName);
  const done = new Set<string>();
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (done.has(name)) continue;
    done.add(name);
    const f = byName.get(name);
    if (!f) throw new Error(`dom0: module ${name} is not in ${modDir}`);
    const plain = join(out, f.replace(/\.xz$/, ""));
    await mkdir(dirname(plain), { recursive: true });
    await Bun.write(plain, await runTool(["xz", "-dc", join(modDir, f)], `unpacking ${f}`));
    const info = await readElfSection(plain, ".modinfo");
    for (const d of (info && parseModinfo(info).get("depends")?.[0]?.split(",")) || []) if (d) queue.push(moduleName(d));
  }
  return out;
}

export async function buildOuterImages(opts: { xen?: XenRelease; progress?: (line: string) => void } = {}): Promise<OuterImages> {
  const say = opts.progress ?? (() => {});
  const xen = opts.xen ?? DEFAULT_XEN;
  const XEN = `/usr/lib/xen-${xen}`;
  const source = await releaseSource(xen, join(root, ".cache"));
  const names = await resolveDepends(packages(xen), { skip: SKIP, suite: source.suite });
  const pkgs = await fetchPackages(names, { ...source, progress: say });
  // The test guest boots our kernel (test/xen/guest.ts); its cache directory names its inputs.
  const kernel = await buildKernel({ cacheDir: join(root, ".cache"), progress: say });
  const key = await inputKey(pkgs, kernel, xen);
  const dir = join(E2E_CACHE, key);
  const out: OuterImages = { xen: join(dir, "xen.elf"), dom0Kernel: join(dir, "dom0-vmlinuz"), dom0Initramfs: join(dir, "dom0.cpio") };
  if ((await Promise.all(Object.values(out).map(exists))).every(Boolean)) return out;
  await mkdir(dir, { recursive: true });
  say(`dom0 image ${key} (Xen ${xen}): assembling`);

  const pkg = (name: RegExp) => {
    const p = pkgs.find((q) => name.test(q.name));
    if (!p) throw new Error(`dom0: no package matching ${name}`);
    return p;
  };
  const xenPkg = pkg(new RegExp(`^xen-hypervisor-${xen.replace(".", "\\.")}-amd64$`));
  await writeAtomically(out.xen, async (tmp) => {
    await Bun.write(tmp, await runTool(["gunzip", "-c", join(xenPkg.root, `boot/xen-${xen}-amd64.gz`)], "gunzip xen"));
  });
  const kernelPkg = pkg(/^linux-image-\d.*-amd64$/);
  const kver = kernelPkg.name.replace(/^linux-image-/, "");
  await writeAtomically(out.dom0Kernel, async (tmp) => {
    await Bun.write(tmp, Bun.file(join(kernelPkg.root, "boot", `vmlinuz-${kver}`)));
  });

  const sysroot = await Sysroot.load(pkgs.map((p) => p.root));
  const need = (p: string) => {
    const r = sysroot.resolve(p);
    if (!r) throw new Error(`dom0: ${p} is in no package`);
    return r.host;
  };
  const fs = new Rootfs();
  fs.file("init", { file: join(HERE, "dom0-init.sh") }, 0o755);
  fs.file("e2e/test.sh", { file: join(HERE, "dom0-test.sh") }, 0o755);
  fs.file("e2e/pci.sh", { file: join(HERE, "dom0-pci.sh") }, 0o644);
  fs.file("e2e/saverestore.sh", { file: join(HERE, "dom0-saverestore.sh") }, 0o644);
  fs.charDev("dev/console", 0o600, 5, 1);
  for (const d of ["proc", "sys", "tmp", "run", "var/log/xen", "var/lib/xen", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"]) fs.dir(d, 0o755);
  for (const [path, text] of await dpkgDatabase(pkgs)) fs.file(path, new TextEncoder().encode(text), 0o644);
  for (const d of ["bin", "sbin", "lib", "lib64"]) fs.symlink(d, `usr/${d}`);
  fs.file("etc/passwd", new TextEncoder().encode("root:x:0:0:root:/root:/bin/sh\n"), 0o644);
  fs.file("etc/xen/xl.conf", { file: need("/etc/xen/xl.conf") }, 0o644);
  // dom0-init.sh puts this release's tools in PATH; dom0-test.sh runs its release's checks.
  fs.file("e2e/xen-release", new TextEncoder().encode(`${xen}\n`), 0o644);

  const closure = await libraryClosure(roots(XEN).map((path) => ({ path })), sysroot);
  const placed = new Set<string>();
  for (const f of closure) {
    fs.file(f.path.slice(1), { file: f.host }, (await stat(f.host)).mode & 0o755);
    placed.add(f.path);
  }
  // busybox fills in every command the scripts use that no package above provides.
  const busybox = need("/usr/bin/busybox");
  fs.file("usr/bin/busybox", { file: busybox }, 0o755);
  const applets = new TextDecoder().decode(await runTool([busybox, "--list"], "busybox --list")).split("\n");
  for (const a of applets) if (/^[\w.-]+$/.test(a) && a !== "busybox" && !placed.has(`/usr/bin/${a}`)) fs.symlink(`usr/bin/${a}`, "busybox");
  for (const t of XENSTORE_TOOLS) fs.symlink(`usr/bin/xenstore-${t}`, "xenstore");
  // libxl runs the QMP proxy from /usr/bin (STUBDOM_QMP_PROXY_PATH, $bindir, in 4.17 and 4.20).
  fs.symlink("usr/bin/vchan-socket-proxy", `..${XEN.slice(4)}/bin/vchan-socket-proxy`);
  for (const t of trees(XEN)) {
    for (const p of sysroot.list(t)) {
      const r = sysroot.resolve(p);
      if (r) fs.file(p.slice(1), { file: r.host }, (await stat(r.host)).mode & 0o755);
    }
  }
  // Debian 13 ships the modules under /usr (merged /usr), Debian 12 under /lib.
  const shipped = (await exists(join(kernelPkg.root, "usr/lib/modules", kver))) ? "usr/lib/modules" : "lib/modules";
  const modDir = await plainModules(join(kernelPkg.root, shipped, kver), join(dir, "modules"));
  const guest = await buildGuestDisk({ out: join(dir, "guest-disk.img"), kernel, busybox, key });
  fs.file("e2e/guest-disk.img", { file: guest.image }, 0o644);
  fs.file("e2e/guest-marker", new TextEncoder().encode(`${guest.marker}\n`), 0o644);
  // Two CD-ROM media for cdrom-change (dom0-test.sh, Xen >= 4.20): the guest starts with the first.
  for (const n of [1, 2]) {
    const cd = await buildGuestCd({ out: join(dir, `cd-${n}.img`), marker: `e2e-cd${n}-${key}` });
    fs.file(`e2e/cd-${n}.img`, { file: cd.image }, 0o644);
    fs.file(`e2e/cd-${n}-marker`, new TextEncoder().encode(`${cd.marker}\n`), 0o644);
  }
  for (const m of resolveModules(await indexModules(modDir), MODULES)) {
    fs.file(`usr/lib/modules/${basename(m.path)}`, { file: join(modDir, m.path) }, 0o644);
  }
  await writeCpioImage(fs.records, out.dom0Initramfs, { compression: "none" });
  return out;
}

/** Where the dom0 test script finds our package (dom0-test.sh installs it with dpkg -i). */
export const E2E_DEB = "e2e/xen-stubdom-init.deb";

/**
 * The per-run part of the dom0 initramfs: the stub domain under test, as our package (which
 * dom0-test.sh installs with `dpkg -i`: the images land in libxl's firmware directory and the
 * guest's xl.cfg names none, stubdom-init in /usr/bin) or as two loose images (the baseline,
 * named in xl.cfg). Uncompressed (the images are compressed already); the kernel unpacks it
 * before the cached dom0 archive that follows it.
 */
export async function writeRunInitramfs(
  out: string,
  opts: { dom0Initramfs: string; stub: { deb: string } | { kernel: string; rootfs: string }; extraFiles?: Record<string, string> },
): Promise<void> {
  const fs = new Rootfs();
  for (const [path, file] of Object.entries(opts.extraFiles ?? {})) fs.file(path, { file }, 0o644);
  if ("deb" in opts.stub) fs.file(E2E_DEB, { file: opts.stub.deb }, 0o644);
  else {
    fs.file("e2e/stub-kernel", { file: opts.stub.kernel }, 0o644);
    fs.file("e2e/stub-rootfs", { file: opts.stub.rootfs }, 0o644);
  }
  const head = `${out}.head`;
  await writeCpioImage(fs.records, head, { compression: "none" });
  await writeAtomically(out, async (tmp) => {
    const w = Bun.file(tmp).writer();
    for (const f of [head, opts.dom0Initramfs]) {
      for await (const chunk of Bun.file(f).stream()) w.write(chunk);
    }
    await w.end();
  });
  await Bun.file(head).delete();
}
