// `make build`: the agent binary and the stub-domain images, from this tree and Debian packages.
//
//   dist/stubdom-init                    the agent (PID 1 and CLI), one compiled Bun binary
//   dist/qemu-stubdom-linux-kernel       our kernel from Debian 13's linux-source-6.12 (agent/build/kernel.ts)
//   dist/qemu-stubdom-linux-rootfs       the squashfs for /usr, then a zstd newc cpio with stage 0 as /init
//   dist/qemu-stubdom-linux-rootfs-dev   the same plus TCG QEMU, busybox and a demo guest
//
// Memory layout (libxl gives a stub domain 128 MiB + video RAM): the initramfs holds stage 0
// and one squashfs with everything else (agent, QEMU, libraries). The squashfs comes first
// as a detached cpio entry (cpio.ts): the kernel does not copy it into rootfs, the initrd is
// kept (retain_initrd, built into the kernel's command line) and stage 0 mounts the squashfs
// on /usr from /sys/firmware/initrd through a loop device. The big files stay compressed in
// RAM, once, and are paged in as read. /lib, /lib64, /bin and /sbin are symlinks into
// /usr (merged-/usr), so glibc's loader and dlopen("libxenstore.so.4") find the libraries in
// /usr/lib/x86_64-linux-gnu with no ld.so.cache.
//
// zstd in 128 KiB blocks: what stays resident is the whole compressed image plus the blocks
// faulted in, and a fault decompresses one whole block. Measured on nested Xen (README,
// Performance): zstd in 1 MiB blocks needed 136 MiB; 128 KiB blocks need 112 with zstd and with
// xz + BCJ alike, and xz, 5 MB smaller, made `xl create` 26.0 s instead of 19.5 under TCG.
//
// Usage: bun build.ts [--no-dev] [--squashfs-comp zstd|xz] [--squashfs-block KiB]
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Sysroot, libraryClosure, type ClosureFile } from "./agent/build/closure.ts";
import { fetchPackages, resolveDepends, type DebPackage } from "./agent/build/debian.ts";
import {
  Rootfs, USR_PAYLOAD, addTree, fileSizes, formatSizeTable, writeAtomically, writeInitramfs, writeSquashfs,
  type SizedFile, type SquashfsCompression,
} from "./agent/build/image.ts";
import { buildKernel, type KernelBuild } from "./agent/build/kernel.ts";

const root = import.meta.dir;
const dist = join(root, "dist");
// Intermediates live in a directory of this run alone: several engineers (and make targets)
// may build in one tree at once, and a shared staging directory would be emptied under a peer.
const work = join(root, ".cache", "build", `run-${process.pid}`);

/** Debian packages whose files the stub domain runs. Their Depends come along. */
const IMAGE_PACKAGES = ["libc6", "qemu-system-xen", "libxenstore4", "libxenmisc4.17", "libxendevicemodel1"];
/** Extra packages of the development rootfs: a QEMU that runs guests without Xen, and a shell. */
const DEV_PACKAGES = ["qemu-system-x86", "busybox-static"];

/** Executables and dlopen'd libraries: the library closure starts from these. */
const IMAGE_ROOTS = [
  "/usr/libexec/xen-qemu-system-i386",
  // The agent dlopens these through bun:ffi; no DT_NEEDED points at them.
  "/usr/lib/x86_64-linux-gnu/libxenstore.so.4",
  "/usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17",
  "/usr/lib/x86_64-linux-gnu/libxendevicemodel.so.1",
];

/** Firmware QEMU loads by name from its search path (/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu). */
const QEMU_DATA = [
  ...["stdvga", "cirrus", "qxl", "virtio", "vmware", "bochs-display", "ramfb", "ati"].map((v) => `/usr/share/seabios/vgabios-${v}.bin`),
  ...["e1000", "e1000e", "eepro100", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"].map((n) => `/usr/lib/ipxe/qemu/efi-${n}.rom`),
  "/usr/share/qemu/keymaps/en-us",
];

/**
 * Squashfs block size (KiB): what one page fault decompresses into the page cache. With 1 MiB
 * blocks a fault in the agent's 107 MB binary filled the page cache with 256 pages and the boot
 * thrashed below 136 MiB; 128 KiB boots at 112 (xz: 120 before the JSC settings, and 64 KiB
 * gained nothing more).
 */
const SQUASHFS_BLOCK_KIB = 128;

const AGENT_FLAGS = [
  "--compile", "--minify", "--bytecode", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
  // --bytecode compiles CommonJS unless told otherwise, and main.ts uses top-level await.
  "--format=esm",
];

const t0 = performance.now();
function step(msg: string): void {
  process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
}

class BuildError extends Error {}

async function run(cmd: string[], what: string, cwd = root): Promise<void> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new BuildError(`${what}: \`${cmd.join(" ")}\` exited ${code}:\n${(err + out).trim()}`);
}

/**
 * The agent binary. Bun embeds the output file's name in the binary, so it is compiled under
 * its final name inside a private directory and then renamed: the bytes depend only on the
 * sources (checked: two builds are identical).
 */
async function compileAgent(): Promise<string> {
  const out = join(dist, "stubdom-init");
  await writeAtomically(out, async (tmp) => {
    await mkdir(tmp);
    await run([process.execPath, "build", ...AGENT_FLAGS, "agent/main.ts", "--outfile", join(tmp, "stubdom-init")], "compiling the agent");
    await rename(join(tmp, "stubdom-init"), `${tmp}.bin`);
    await rm(tmp, { recursive: true });
    await rename(`${tmp}.bin`, tmp);
  });
  return out;
}

async function compileStage0(): Promise<string> {
  const out = join(work, "stage0");
  await mkdir(work, { recursive: true });
  await writeAtomically(out, (tmp) =>
    run(
      [
        "gcc", "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none",
        `-ffile-prefix-map=${root}=.`, "-o", tmp, "agent/stage0/stage0.c", "agent/stage0/confine.c",
      ],
      "compiling stage 0 (agent/stage0/stage0.c)",
    ),
  );
  return out;
}

/** Files keep their package's permission bits (ld.so must stay executable), minus setuid/setgid. */
async function addClosure(usr: Rootfs, files: ClosureFile[]): Promise<void> {
  for (const f of files) {
    if (!f.path.startsWith("/usr/")) throw new BuildError(`${f.path} (needed by ${f.neededBy}) is outside /usr`);
    usr.file(f.path.slice("/usr/".length), { file: f.host }, (await stat(f.host)).mode & 0o777);
  }
}

async function demoGuest(): Promise<{ kernel: string; initrd: string } | undefined> {
  // Hook for the development VM (issue 8): test/vm/guest/build.ts builds the demo guest that
  // the dev rootfs carries for its TCG QEMU. Absent module: the dev rootfs has no guest.
  const hook = join(root, "test/vm/guest/build.ts");
  if (!(await stat(hook).catch(() => undefined))) return undefined;
  const mod = (await import(hook)) as { buildDemoGuest?: () => Promise<{ kernel: string; initrd: string }> };
  if (typeof mod.buildDemoGuest !== "function") throw new BuildError(`${hook} exports no buildDemoGuest()`);
  return await mod.buildDemoGuest();
}

async function assemble(opts: {
  name: string;
  agent: string;
  stage0: string;
  sysroot: Sysroot;
  kernel: KernelBuild;
  extraRoots: string[];
  extraFiles: Array<{ path: string; host: string; mode: number }>;
  comp: SquashfsCompression;
  blockKib: number;
}): Promise<{ out: string; sizes: SizedFile[]; squashfsSize: number }> {
  const { sysroot, kernel } = opts;
  const usr = new Rootfs();
  usr.file("bin/stubdom-init", { file: opts.agent }, 0o755);
  // The kernel runs /sbin/poweroff on `xl shutdown`: stage 0 under that name signals the agent.
  usr.symlink("sbin/poweroff", "/init");
  // The agent starts QEMU through stage 0 under this name, which confines it (confine.c).
  usr.symlink("sbin/stubdom-confine", "/init");
  step(`${opts.name}: library closure of ${[...IMAGE_ROOTS, ...opts.extraRoots].length} roots + the agent`);
  const closure = await libraryClosure(
    [{ path: "/usr/bin/stubdom-init", host: opts.agent }, ...IMAGE_ROOTS.map((path) => ({ path })), ...opts.extraRoots.map((path) => ({ path }))],
    sysroot,
  );
  await addClosure(usr, closure.filter((f) => f.path !== "/usr/bin/stubdom-init"));
  for (const p of QEMU_DATA) {
    const r = sysroot.resolve(p);
    if (!r) throw new BuildError(`QEMU firmware ${p} is in no package of the image`);
    usr.file(p.slice("/usr/".length), { file: r.host }, 0o644);
  }
  // The agent checks that the drivers it needs are built in (agent/init/modules.ts).
  usr.file(`lib/modules/${kernel.release}/modules.builtin`, { file: kernel.modulesBuiltin }, 0o444);
  for (const f of opts.extraFiles) usr.file(f.path.replace(/^\/usr\//, ""), { file: f.host }, f.mode);

  const squashfs = join(work, `${opts.name}.squashfs`);
  step(`${opts.name}: mksquashfs (${opts.comp}, ${opts.blockKib} KiB blocks) of ${usr.records.length} files`);
  await writeSquashfs(usr.records, squashfs, { stagingDir: join(work, `${opts.name}.usr`), compression: opts.comp, blockKib: opts.blockKib });
  await rm(join(work, `${opts.name}.usr`), { recursive: true, force: true });

  const initramfs = new Rootfs();
  initramfs.file("init", { file: opts.stage0 }, 0o755);
  // The kernel opens /dev/console for /init before devtmpfs exists (bun-as-pid1.md).
  initramfs.charDev("dev/console", 0o600, 5, 1);
  for (const d of ["proc", "sys", "usr", "run"]) initramfs.dir(d, 0o755);
  initramfs.dir("tmp", 0o1777);
  for (const d of ["bin", "sbin", "lib", "lib64"]) initramfs.symlink(d, `usr/${d}`);
  await addTree(initramfs, join(root, "rootfs-overlay"));

  const out = join(dist, opts.name);
  step(`${opts.name}: ${USR_PAYLOAD} + zstd cpio`);
  await writeInitramfs(initramfs.records, { name: USR_PAYLOAD, file: squashfs }, out);
  const sizes = [
    ...(await fileSizes(initramfs.records)),
    ...(await fileSizes(usr.records, "/usr")),
  ];
  return { out, sizes, squashfsSize: (await stat(squashfs)).size };
}

async function report(name: string, r: { out: string; sizes: SizedFile[]; squashfsSize: number }): Promise<void> {
  const total = r.sizes.reduce((n, f) => n + f.size, 0);
  const mib = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
  process.stdout.write(
    `\n${name}: 15 largest files (unpacked)\n${formatSizeTable(r.sizes)}\n` +
      `  ${r.sizes.length} files, ${mib(total)} unpacked; /usr squashfs ${mib(r.squashfsSize)}; ` +
      `${r.out.replace(`${root}/`, "")} ${mib((await stat(r.out)).size)} (squashfs + zstd cpio)\n`,
  );
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dev = !args.includes("--no-dev");
  const compArg = args[args.indexOf("--squashfs-comp") + 1];
  const comp: SquashfsCompression = args.includes("--squashfs-comp") ? (compArg as SquashfsCompression) : "zstd";
  if (comp !== "xz" && comp !== "zstd") throw new BuildError(`--squashfs-comp: expected xz or zstd, got ${compArg}`);
  const blockArg = args.includes("--squashfs-block") ? args[args.indexOf("--squashfs-block") + 1] : String(SQUASHFS_BLOCK_KIB);
  const blockKib = Number(blockArg);
  if (![4, 8, 16, 32, 64, 128, 256, 512, 1024].includes(blockKib)) throw new BuildError(`--squashfs-block: expected a power of two from 4 to 1024 (KiB), got ${blockArg}`);
  await mkdir(dist, { recursive: true });

  step("compiling the agent: dist/stubdom-init");
  const agent = await compileAgent();
  step("compiling stage 0");
  const stage0 = await compileStage0();

  step(`resolving Debian packages: ${IMAGE_PACKAGES.join(" ")}${dev ? ` + ${DEV_PACKAGES.join(" ")}` : ""}`);
  const imageNames = await resolveDepends(IMAGE_PACKAGES);
  const devNames = dev ? await resolveDepends([...IMAGE_PACKAGES, ...DEV_PACKAGES]) : [];
  const pkgs = await fetchPackages([...new Set([...imageNames, ...devNames])], { progress: (l) => step(l) });
  const inImage = (p: DebPackage) => imageNames.includes(p.name);

  step("kernel (agent/build/kernel.ts)");
  const kernel = await buildKernel({ cacheDir: join(root, ".cache"), progress: step });
  step(`kernel ${kernel.release}: dist/qemu-stubdom-linux-kernel`);
  await writeAtomically(join(dist, "qemu-stubdom-linux-kernel"), async (tmp) => {
    await Bun.write(tmp, Bun.file(kernel.bzImage));
  });

  const base = {
    agent, stage0, kernel, comp, blockKib,
    sysroot: await Sysroot.load(pkgs.filter(inImage).map((p) => p.root)),
    extraRoots: [] as string[],
    extraFiles: [] as Array<{ path: string; host: string; mode: number }>,
  };
  const results: Array<[string, Awaited<ReturnType<typeof assemble>>]> = [];
  results.push(["qemu-stubdom-linux-rootfs", await assemble({ ...base, name: "qemu-stubdom-linux-rootfs" })]);

  if (dev) {
    const sysroot = await Sysroot.load(pkgs.map((p) => p.root));
    const extraFiles: Array<{ path: string; host: string; mode: number }> = [];
    const busybox = sysroot.resolve("/usr/bin/busybox");
    if (!busybox) throw new BuildError("busybox-static has no /bin/busybox");
    extraFiles.push({ path: "/usr/bin/busybox", host: busybox.host, mode: 0o755 });
    step("demo guest (test/vm/guest/build.ts)");
    const guest = await demoGuest();
    if (guest) {
      extraFiles.push({ path: "/usr/share/stubdom-dev/guest/vmlinuz", host: guest.kernel, mode: 0o644 });
      extraFiles.push({ path: "/usr/share/stubdom-dev/guest/initrd", host: guest.initrd, mode: 0o644 });
    } else step("no test/vm/guest/build.ts: the dev rootfs carries no demo guest");
    // TCG QEMU needs its x86 firmware (SeaBIOS) besides the ROMs the Xen QEMU uses.
    // pvh.bin boots the demo guest's uncompressed vmlinux through its PVH entry.
    for (const p of ["/usr/share/seabios/bios-256k.bin", "/usr/share/qemu/kvmvapic.bin", "/usr/share/qemu/linuxboot_dma.bin", "/usr/share/qemu/pvh.bin"]) {
      const r = sysroot.resolve(p);
      if (!r) throw new BuildError(`dev firmware ${p} is in no package`);
      extraFiles.push({ path: p, host: r.host, mode: 0o644 });
    }
    results.push([
      "qemu-stubdom-linux-rootfs-dev",
      await assemble({ ...base, sysroot, name: "qemu-stubdom-linux-rootfs-dev", extraRoots: [
        "/usr/bin/qemu-system-x86_64",
        // Debian builds QEMU with --enable-modules: TCG itself is a module loaded at start-up.
        "/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so",
      ], extraFiles }),
    ]);
  }

  for (const [name, r] of results) await report(name, r);
  const kernelSize = (await stat(join(dist, "qemu-stubdom-linux-kernel"))).size;
  const agentSize = (await stat(agent)).size;
  process.stdout.write(
    `dist/qemu-stubdom-linux-kernel ${(kernelSize / 1048576).toFixed(2)} MiB, dist/stubdom-init ${(agentSize / 1048576).toFixed(2)} MiB\n`,
  );
  step("done");
}

try {
  await main();
} catch (e) {
  process.stderr.write(`build.ts: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
