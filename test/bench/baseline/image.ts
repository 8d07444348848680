// The baseline stub domain image (issue 10's yardstick): test/bench/baseline/init, a busybox
// shell doing what the Qubes OS init does, packed by the same build code as our images
// (agent/build/*) from the same Debian packages: the same kernel (ours, agent/build/kernel.ts),
// the same xen-qemu-system-i386 and the same libraries. Its layout is the Qubes one: one compressed cpio
// with every file unpacked into the initramfs (zstd here, as our outer cpio).
//
//   bun test/bench/baseline/image.ts     writes dist/baseline/qemu-stubdom-linux-{kernel,rootfs}
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Sysroot, libraryClosure } from "../../../agent/build/closure.ts";
import { fetchPackages, resolveDepends, type DebPackage } from "../../../agent/build/debian.ts";
import { Rootfs, writeAtomically, writeCpioImage } from "../../../agent/build/image.ts";
import { buildKernel, type KernelBuild } from "../../../agent/build/kernel.ts";

// import.meta.dir is Bun's; Vitest's transform leaves only import.meta.url.
const HERE = fileURLToPath(new URL(".", import.meta.url));

const root = join(HERE, "../../..");
export const BASELINE_DIR = join(root, "dist", "baseline");

/** The packages build.ts makes our image from, plus the shell and the xenstore tools. */
const PACKAGES = ["libc6", "qemu-system-xen", "xenstore-utils", "busybox-static"];
/** vchan-socket-proxy lives in xen-utils-4.17, whose Depends (python, ...) the image does not need. */
const NO_DEPENDS = ["xen-utils-4.17"];

const QEMU_DATA = [
  "/usr/share/seabios/vgabios-stdvga.bin",
  "/usr/share/seabios/vgabios-cirrus.bin",
  "/usr/lib/ipxe/qemu/efi-rtl8139.rom",
  "/usr/lib/ipxe/qemu/efi-e1000.rom",
  "/usr/share/qemu/keymaps/en-us",
];
const XENSTORE_TOOLS = ["read", "write", "list", "ls", "exists", "rm", "watch"];

export interface BaselineImages {
  kernel: string;
  rootfs: string;
}

async function busyboxApplets(busybox: string): Promise<string[]> {
  const p = Bun.spawn([busybox, "--list"], { stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`${busybox} --list exited ${code}`);
  return out.split("\n").filter((a) => /^[\w.\[-]+$/.test(a));
}

/** Inputs that decide the image's bytes: a rebuild is skipped when they are unchanged. */
async function inputKey(pkgs: DebPackage[], kernel: KernelBuild): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  h.update(await Bun.file(kernel.bzImage).bytes());
  for (const p of pkgs) h.update(`${p.name} ${p.version}\n`);
  for (const f of ["init", "image.ts"]) h.update(await Bun.file(join(HERE, f)).bytes());
  return h.digest("hex");
}

export async function buildBaselineImages(opts: { progress?: (line: string) => void } = {}): Promise<BaselineImages> {
  const say = opts.progress ?? (() => {});
  const names = await resolveDepends(PACKAGES);
  const pkgs = await fetchPackages([...names, ...NO_DEPENDS], { cacheDir: join(root, ".cache"), progress: say });
  const kernel = await buildKernel({ cacheDir: join(root, ".cache"), progress: say });
  const out: BaselineImages = { kernel: join(BASELINE_DIR, "qemu-stubdom-linux-kernel"), rootfs: join(BASELINE_DIR, "qemu-stubdom-linux-rootfs") };
  const keyFile = join(BASELINE_DIR, ".inputs");
  const key = await inputKey(pkgs, kernel);
  const have = await Promise.all([stat(out.kernel), stat(out.rootfs)].map((p) => p.then(() => true, () => false)));
  if (have.every(Boolean) && (await Bun.file(keyFile).text().catch(() => "")) === key) return out;

  await mkdir(BASELINE_DIR, { recursive: true });
  const sysroot = await Sysroot.load(pkgs.map((p) => p.root));
  const fs = new Rootfs();
  fs.file("init", { file: join(HERE, "init") }, 0o755);
  fs.charDev("dev/console", 0o600, 5, 1);
  for (const d of ["proc", "sys", "tmp", "run"]) fs.dir(d, 0o755);
  // Merged-/usr, as our image, so the closure's /usr/lib paths are where ld.so looks.
  for (const d of ["bin", "sbin", "lib", "lib64"]) fs.symlink(d, `usr/${d}`);

  const need = (p: string) => {
    const r = sysroot.resolve(p);
    if (!r) throw new Error(`baseline: ${p} is in no package`);
    return r.host;
  };
  const busybox = need("/usr/bin/busybox");
  fs.file("usr/bin/busybox", { file: busybox }, 0o755);
  for (const a of await busyboxApplets(busybox)) if (a !== "busybox") fs.symlink(`usr/bin/${a}`, "busybox");
  for (const t of XENSTORE_TOOLS) fs.symlink(`usr/bin/xenstore-${t}`, "xenstore");
  fs.file("usr/bin/vchan-socket-proxy", { file: need("/usr/lib/xen-4.17/bin/vchan-socket-proxy") }, 0o755);

  const closure = await libraryClosure(
    [
      { path: "/usr/libexec/xen-qemu-system-i386" },
      { path: "/usr/bin/xenstore" },
      { path: "/usr/bin/vchan-socket-proxy", host: need("/usr/lib/xen-4.17/bin/vchan-socket-proxy") },
    ],
    sysroot,
  );
  for (const f of closure) {
    if (f.path === "/usr/bin/vchan-socket-proxy") continue;
    fs.file(f.path.slice(1), { file: f.host }, (await stat(f.host)).mode & 0o755);
  }
  for (const p of QEMU_DATA) fs.file(p.slice(1), { file: need(p) }, 0o644);

  say("baseline: zstd cpio");
  await writeCpioImage(fs.records, out.rootfs, { compression: "zstd" });
  await writeAtomically(out.kernel, async (tmp) => {
    await Bun.write(tmp, Bun.file(kernel.bzImage));
  });
  await Bun.write(keyFile, key);
  return out;
}

if (import.meta.main) {
  const t0 = performance.now();
  const r = await buildBaselineImages({ progress: (l) => process.stdout.write(`${l}\n`) });
  for (const f of [r.kernel, r.rootfs]) process.stdout.write(`${f} ${(await stat(f)).size} bytes\n`);
  process.stdout.write(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
