// Checks the images `make build` left in dist/ (make test builds first). Run alone, it needs a
// prior `make build` and fails, saying so, without one.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readElf } from "../../agent/build/elf.ts";
import { parseModulesDep, resolveModules } from "../../agent/build/modules.ts";

const root = new URL("../..", import.meta.url).pathname;
const rootfs = join(root, "dist/qemu-stubdom-linux-rootfs");
const devRootfs = join(root, "dist/qemu-stubdom-linux-rootfs-dev");
let dir: string;

function sh(cmd: string, cwd = dir): string {
  const p = Bun.spawnSync(["sh", "-c", cmd], { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

beforeAll(async () => {
  if (!existsSync(rootfs)) throw new Error(`${rootfs} is missing: run \`make build\` first`);
  dir = await mkdtemp(join(tmpdir(), "dist-test-"));
  sh(`zstd -dc ${rootfs} | cpio -i --quiet --make-directories --no-absolute-filenames`, dir);
  // The agent binary is most of the image; its ELF data is read from dist/stubdom-init instead.
  sh(`unsquashfs -q -n -excludes -d ${join(dir, "usr")} ${join(dir, "usr.squashfs")} bin/stubdom-init >/dev/null`, dir);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("dist/qemu-stubdom-linux-rootfs", () => {
  test("the initramfs holds stage 0 as /init, its modules, the squashfs and merged-/usr links", () => {
    const list = sh(`zstd -dc ${rootfs} | cpio -t --quiet`).trim().split("\n");
    for (const p of ["init", "usr.squashfs", "stage0/modules", "stage0/loop.ko", "stage0/squashfs.ko", "dev/console", "proc", "sys", "tmp", "lib", "lib64", "bin", "sbin"]) {
      expect(list, p).toContain(p);
    }
    expect(sh(`zstd -dc ${rootfs} | cpio -tv --quiet lib64 dev/console init`)).toMatch(/crw-------.*dev\/console[\s\S]*-rwxr-xr-x.*init[\s\S]*lrwxrwxrwx.*lib64 -> usr\/lib64/);
  });

  test("stage 0 is a static executable (it runs before /usr, where glibc lives, is mounted)", async () => {
    const info = await readElf(join(dir, "init"));
    expect(info.interpreter).toBeUndefined();
    expect(info.needed).toEqual([]);
  });

  test("the squashfs holds the agent, QEMU, and every library each ELF needs", async () => {
    const files = sh("unsquashfs -lc usr.squashfs", dir).trim().split("\n").map((f) => f.replace(/^squashfs-root\//, "/usr/"));
    const host = (f: string) => (f === "/usr/bin/stubdom-init" ? join(root, "dist/stubdom-init") : join(dir, f));
    expect(files).toContain("/usr/bin/stubdom-init");
    expect(files).toContain("/usr/libexec/xen-qemu-system-i386");
    expect(files).toContain("/usr/lib/x86_64-linux-gnu/libxenstore.so.4");
    expect(files).toContain("/usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17");
    expect(files).toContain("/usr/lib/x86_64-linux-gnu/libxendevicemodel.so.1");
    for (const f of files.filter((p) => p.includes("/lib/x86_64-linux-gnu/") || p.includes("/bin/") || p.includes("/libexec/"))) {
      const info = await readElf(host(f));
      for (const n of info.needed) expect(files, `${n} needed by ${f}`).toContain(`/usr/lib/x86_64-linux-gnu/${n}`);
      if (info.interpreter) expect(files).toContain(info.interpreter.replace(/^\/lib64/, "/usr/lib64"));
    }
  });

  test("modules.dep lists the agent's modules, each with its dependencies shipped", async () => {
    const [kver] = sh("ls usr/lib/modules", dir).trim().split("\n");
    const base = join(dir, "usr/lib/modules", kver!);
    const index = parseModulesDep(await readFile(join(base, "modules.dep"), "utf8"));
    const wanted = ["xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs", "xen-netfront", "xen-blkfront", "tun", "sch_ingress", "cls_u32", "cls_matchall", "act_mirred", "act_gact", "virtio_net", "virtio_console", "virtio_pci"];
    for (const m of resolveModules(index, wanted)) expect(existsSync(join(base, m.path)), m.path).toBe(true);
  });
});

describe("dist/qemu-stubdom-linux-rootfs-dev", () => {
  test("adds TCG QEMU with its libraries, busybox and SeaBIOS to the same layout", async () => {
    if (!existsSync(devRootfs)) throw new Error(`${devRootfs} is missing: run \`make build\` first`);
    const d = await mkdtemp(join(tmpdir(), "dist-dev-test-"));
    try {
      sh(`zstd -dc ${devRootfs} | cpio -i --quiet --make-directories --no-absolute-filenames init usr.squashfs`, d);
      const files = sh("unsquashfs -lc usr.squashfs", d).trim().split("\n").map((f) => f.replace(/^squashfs-root\//, "/usr/"));
      for (const p of ["/usr/bin/stubdom-init", "/usr/libexec/xen-qemu-system-i386", "/usr/bin/qemu-system-x86_64", "/usr/bin/busybox", "/usr/share/seabios/bios-256k.bin"]) {
        expect(files, p).toContain(p);
      }
      sh(`unsquashfs -q -n -d ${join(d, "usr")} usr.squashfs bin/qemu-system-x86_64 >/dev/null`, d);
      const qemu = await readElf(join(d, "usr/bin/qemu-system-x86_64"));
      for (const n of qemu.needed) expect(files, n).toContain(`/usr/lib/x86_64-linux-gnu/${n}`);
      expect(Buffer.compare(await readFile(join(d, "init")), await readFile(join(dir, "init")))).toBe(0);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
