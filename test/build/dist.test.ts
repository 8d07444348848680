// Checks the images `make build` left in dist/ (make test builds first). Run alone, it needs a
// prior `make build` and fails, saying so, without one.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { detachedFileExtent } from "../../agent/build/cpio.ts";
import { readElf } from "../../agent/build/elf.ts";
import { USR_PAYLOAD } from "../../agent/build/image.ts";
import { moduleName, parseModulesBuiltin } from "../../agent/build/modules.ts";
import { stubdomModules } from "../../agent/init/modules.ts";
import { splitInitramfs } from "./initramfs.ts";

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
  const parts = await splitInitramfs(rootfs, dir);
  sh(`zstd -dc ${parts.cpioZst} | cpio -i --quiet --make-directories --no-absolute-filenames`, dir);
  // The agent binary is most of the image; its ELF data is read from dist/stubdom-init instead.
  sh(`unsquashfs -q -n -excludes -d ${join(dir, "usr")} ${join(dir, "usr.squashfs")} bin/stubdom-init >/dev/null`, dir);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("dist/qemu-stubdom-linux-rootfs", () => {
  test("the squashfs comes first, detached: the unpacked part never creates its parent directory", async () => {
    const bytes = await Bun.file(rootfs).bytes();
    const { offset } = detachedFileExtent(bytes, USR_PAYLOAD);
    expect(new TextDecoder().decode(bytes.subarray(offset, offset + 4))).toBe("hsqs");
    const list = sh(`zstd -dc rootfs.cpio.zst | cpio -t --quiet`).trim().split("\n");
    // Were ".stubdom" in the cpio, a later boot would unpack nothing different, but the kernel
    // would then create the file from the first archive: twice the memory again.
    expect(list.filter((p) => p.split("/")[0] === USR_PAYLOAD.split("/")[0])).toEqual([]);
  });

  test("the unpacked part holds stage 0 as /init and the merged-/usr links", () => {
    const list = sh(`zstd -dc rootfs.cpio.zst | cpio -t --quiet`).trim().split("\n");
    for (const p of ["init", "dev/console", "proc", "sys", "tmp", "lib", "lib64", "bin", "sbin"]) {
      expect(list, p).toContain(p);
    }
    expect(sh(`zstd -dc rootfs.cpio.zst | cpio -tv --quiet lib64 dev/console init`)).toMatch(/crw-------.*dev\/console[\s\S]*-rwxr-xr-x.*init[\s\S]*lrwxrwxrwx.*lib64 -> usr\/lib64/);
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

  test("the kernel has every driver the agent asks for built in (Xen and the development VM)", async () => {
    sh(`unsquashfs -q -n -d ${join(dir, "usr-modules")} usr.squashfs lib/modules >/dev/null`, dir);
    const [kver] = sh("ls usr-modules/lib/modules", dir).trim().split("\n");
    const builtin = parseModulesBuiltin(await readFile(join(dir, "usr-modules/lib/modules", kver!, "modules.builtin"), "utf8"));
    for (const r of [...stubdomModules(true), ...stubdomModules(false)]) expect(builtin, r.name).toContain(moduleName(r.name));
  });
});

describe("dist/qemu-stubdom-linux-rootfs-dev", () => {
  test("adds TCG QEMU with its libraries, busybox and SeaBIOS to the same layout", async () => {
    if (!existsSync(devRootfs)) throw new Error(`${devRootfs} is missing: run \`make build\` first`);
    const d = await mkdtemp(join(tmpdir(), "dist-dev-test-"));
    try {
      const parts = await splitInitramfs(devRootfs, d);
      sh(`zstd -dc ${parts.cpioZst} | cpio -i --quiet --make-directories --no-absolute-filenames init`, d);
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
