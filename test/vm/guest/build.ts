// Builds the demo guest: a Debian kernel (its uncompressed vmlinux) with the drivers for what
// the stub domain's QEMU emulates (e1000 NIC, IDE disk via ata_piix + sd_mod) and a tiny
// uncompressed busybox initramfs running ./init. It is a fixture of the development VM, copied into the dev rootfs
// so that the stub domain's QEMU has a real guest to emulate.
//
// Run: bun test/vm/guest/build.ts [OUT_DIR]   (default .cache/demo-guest)
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { indexModules, resolveModules } from "../../../agent/build/modules.ts";
import { cacheDir, debianPackage, resolveMeta } from "../debian.ts";

const here = new URL(".", import.meta.url).pathname;

export interface DemoGuest {
  kernel: string;
  initrd: string;
}

/** Drivers the guest loads, for the devices libxl's dm-argv gives it: e1000 and an IDE disk. */
const GUEST_MODULES = ["e1000", "ata_piix", "sd_mod"];

function sh(argv: string[], cwd?: string): void {
  const p = Bun.spawnSync(argv, { cwd, stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${p.exitCode})`);
}

/**
 * The ELF vmlinux inside Debian's XZ bzImage. QEMU boots it through its PVH entry, which skips
 * the decompressor: measured here under TCG, 2.2 s to the guest's first marker instead of 6.1 s,
 * and nested in the stub domain's TCG QEMU the gap grows with the nesting.
 */
function extractVmlinux(bzImage: string, out: string): void {
  const image = new Uint8Array(readFileSync(bzImage));
  const magic = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
  let at = -1;
  for (let i = 0; i + magic.length <= image.length && at < 0; i++) {
    if (magic.every((b, j) => image[i + j] === b)) at = i;
  }
  if (at < 0) throw new Error(`${bzImage}: no XZ payload (not a Debian amd64 bzImage?)`);
  // The payload is followed by the decompressed size: --single-stream ignores what trails it.
  const xz = Bun.spawnSync(["xz", "-dc", "--single-stream"], { stdin: image.subarray(at), stdout: "pipe", stderr: "pipe" });
  if (xz.exitCode !== 0) throw new Error(`${bzImage}: xz -d of the payload failed: ${xz.stderr.toString()}`);
  writeFileSync(`${out}.tmp`, xz.stdout);
  sh(["mv", `${out}.tmp`, out]);
}

export async function buildDemoGuest(outDir = join(cacheDir, "demo-guest")): Promise<DemoGuest> {
  const busybox = join(debianPackage("busybox-static"), "bin", "busybox");
  const kpkg = debianPackage(resolveMeta("linux-image-amd64", "linux-image-"));
  const vmlinuz = readdirSync(join(kpkg, "boot")).find((f) => f.startsWith("vmlinuz-"));
  if (!vmlinuz) throw new Error(`no boot/vmlinuz-* in ${kpkg}`);
  const [kver] = readdirSync(join(kpkg, "lib", "modules"));
  if (!kver) throw new Error(`no lib/modules/<version> in ${kpkg}`);
  const modDir = join(kpkg, "lib", "modules", kver);
  const modules = resolveModules(await indexModules(modDir), GUEST_MODULES);

  mkdirSync(outDir, { recursive: true });
  const stage = join(outDir, `stage-${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  for (const d of ["bin", "dev", "lib/modules", "proc", "sys", "tmp"]) mkdirSync(join(stage, d), { recursive: true });
  copyFileSync(busybox, join(stage, "bin", "busybox"));
  copyFileSync(join(here, "init"), join(stage, "init"));
  copyFileSync(join(here, "lease"), join(stage, "bin", "lease"));
  // In load order (dependencies first), listed in /lib/modules/order for /init's insmod loop.
  for (const m of modules) copyFileSync(join(modDir, m.path), join(stage, "lib", "modules", m.path.split("/").pop()!));
  writeFileSync(join(stage, "lib", "modules", "order"), modules.map((m) => `${m.path.split("/").pop()}\n`).join(""));
  sh(["chmod", "0755", join(stage, "bin", "busybox"), join(stage, "init"), join(stage, "bin", "lease")]);
  // The kernel opens /dev/console before devtmpfs exists: without the node /init has no stdout.
  sh(["mknod", "-m", "0600", join(stage, "dev", "console"), "c", "5", "1"]);

  // Uncompressed on purpose: under TCG nested in TCG every decompressor is slow, and the
  // archive (~3 MB) is compressed anyway by the squashfs that carries it in the dev rootfs.
  const initrd = join(outDir, "initrd.cpio");
  const list = Bun.spawnSync(["sh", "-c", "find . -mindepth 1 | LC_ALL=C sort"], { cwd: stage }).stdout.toString();
  const cpio = Bun.spawnSync(["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"], {
    cwd: stage,
    stdin: new TextEncoder().encode(list),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (cpio.exitCode !== 0) throw new Error(`cpio failed: ${cpio.stderr.toString()}`);
  writeFileSync(`${initrd}.tmp`, cpio.stdout);
  sh(["mv", `${initrd}.tmp`, initrd]);
  rmSync(stage, { recursive: true, force: true });

  const kernel = join(outDir, "vmlinux");
  if (!existsSync(kernel)) extractVmlinux(join(kpkg, "boot", vmlinuz), kernel);
  return { kernel, initrd };
}

if (import.meta.main) {
  const g = await buildDemoGuest(process.argv[2]);
  console.log(`demo guest: kernel ${g.kernel} (${statSync(g.kernel).size} B), initrd ${g.initrd} (${statSync(g.initrd).size} B)`);
}
