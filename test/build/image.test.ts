import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { candidates, fetchPackages, parseAptCacheDepends, parseMirror, resolveDepends } from "../../agent/build/debian.ts";
import { ImageError, Rootfs, addTree, overlayModeProblem, writeAtomically, writeCpioImage, writeSquashfs } from "../../agent/build/image.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "image-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sh(cmd: string, cwd = dir): string {
  const p = Bun.spawnSync(["sh", "-c", cmd], { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

const enc = new TextEncoder();

describe("rootfs overlay", () => {
  test("a tree is added with its modes and symlinks", async () => {
    const o = join(dir, "overlay-ok");
    await mkdir(join(o, "etc/sub"), { recursive: true });
    await writeFile(join(o, "etc/passwd"), "root:x:0:0::/:/x\n");
    await writeFile(join(o, "etc/sub/run"), "#!/x\n");
    await chmod(join(o, "etc/sub/run"), 0o755);
    await symlink("passwd", join(o, "etc/link"));
    const fs = new Rootfs();
    await addTree(fs, o);
    const byPath = Object.fromEntries(fs.records.map((r) => [r.path, r]));
    expect(byPath["etc/passwd"]).toMatchObject({ kind: "file", mode: 0o644 });
    expect(byPath["etc/sub/run"]).toMatchObject({ kind: "file", mode: 0o755 });
    expect(byPath["etc/link"]).toEqual({ kind: "symlink", path: "etc/link", target: "passwd" });
    expect(byPath["etc/sub"]).toMatchObject({ kind: "dir", mode: 0o755 });
  });

  test("a file with a bad mode stops the build, naming the file and the mode", async () => {
    const o = join(dir, "overlay-bad");
    await mkdir(join(o, "etc"), { recursive: true });
    await writeFile(join(o, "etc/shadow"), "x");
    await chmod(join(o, "etc/shadow"), 0o666);
    await expect(addTree(new Rootfs(), o)).rejects.toThrow(/overlay .*overlay-bad\/etc\/shadow: mode 0666 is group- or world-writable/);
    await chmod(join(o, "etc/shadow"), 0o4755);
    await expect(addTree(new Rootfs(), o)).rejects.toThrow(/etc\/shadow: mode 4755 is setuid\/setgid/);
    await chmod(join(o, "etc/shadow"), 0o044);
    await expect(addTree(new Rootfs(), o)).rejects.toThrow(ImageError);
    expect(overlayModeProblem("dir", 0o777)).toMatch(/writable/);
    expect(overlayModeProblem("dir", 0o055)).toMatch(/not searchable/);
    expect(overlayModeProblem("file", 0o600)).toBeUndefined();
  });

  test("a FIFO in the overlay is refused", async () => {
    const o = join(dir, "overlay-fifo");
    await mkdir(o);
    sh(`mkfifo ${join(o, "pipe")}`);
    await expect(addTree(new Rootfs(), o)).rejects.toThrow(/pipe: not a regular file, directory or symlink/);
  });
});

describe("image writers", () => {
  const fs = () =>
    new Rootfs()
      .file("init", enc.encode("#!/bin/sh\n"), 0o755)
      .file("usr/lib/x", enc.encode("x".repeat(10000)))
      .symlink("lib", "usr/lib")
      .dir("tmp", 0o1777);

  test("zstd cpio: decompresses to an archive cpio lists, and is reproducible", async () => {
    const a = join(dir, "a.cpio.zst");
    const b = join(dir, "b.cpio.zst");
    await writeCpioImage(fs().records, a);
    await writeCpioImage([...fs().records].reverse(), b);
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
    expect(sh(`zstd -dc ${a} | cpio -t --quiet`).trim().split("\n")).toEqual(["init", "lib", "tmp", "usr", "usr/lib", "usr/lib/x"]);
    const gz = join(dir, "c.cpio.gz");
    await writeCpioImage(fs().records, gz, { compression: "gzip" });
    expect(sh(`gzip -dc ${gz} | cpio -t --quiet`).trim().split("\n")).toHaveLength(6);
  });

  test("a failed write leaves neither the output nor a temporary file", async () => {
    const outDir = join(dir, "dist-fail");
    await mkdir(outDir);
    await writeFile(join(outDir, "keep"), "old");
    const broken = [...fs().records, { kind: "file" as const, path: "gone", mode: 0o644, data: { file: join(dir, "nope") } }];
    await expect(writeCpioImage(broken, join(outDir, "rootfs"))).rejects.toThrow(/gone: cannot read/);
    await expect(writeAtomically(join(outDir, "keep"), async (tmp) => {
      await writeFile(tmp, "half");
      throw new Error("interrupted");
    })).rejects.toThrow("interrupted");
    expect(await readdir(outDir)).toEqual(["keep"]);
    expect(await readFile(join(outDir, "keep"), "utf8")).toBe("old");
  });

  test("squashfs: root-owned, fixed times, declared modes, reproducible", async () => {
    const a = join(dir, "a.sqfs");
    const b = join(dir, "b.sqfs");
    await writeSquashfs(fs().records, a, { stagingDir: join(dir, "stage-a"), compression: "zstd", mtime: 0 });
    await writeSquashfs(fs().records, b, { stagingDir: join(dir, "stage-b"), compression: "zstd", mtime: 0 });
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
    const listing = sh(`unsquashfs -lln ${a}`);
    expect(listing).toMatch(/-rwxr-xr-x 0\/0\s+10 1970-01-01 00:00 squashfs-root\/init/);
    expect(listing).toMatch(/drwxrwxrwt 0\/0 .* squashfs-root\/tmp/);
    expect(listing).toMatch(/lrwxrwxrwx 0\/0 .* squashfs-root\/lib -> usr\/lib/);
    expect(listing).toMatch(/-rw-r--r-- 0\/0\s+10000 1970-01-01 00:00 squashfs-root\/usr\/lib\/x/);
  });
});

describe("Debian inputs", () => {
  test("a package apt does not know stops the build, naming it", async () => {
    await expect(candidates(["libc6", "no-such-package-stubdom"])).rejects.toThrow(/not available from apt: no-such-package-stubdom/);
    await expect(resolveDepends(["no-such-package-stubdom"])).rejects.toThrow(/no-such-package-stubdom/);
    await expect(fetchPackages(["no-such-package-stubdom"], { cacheDir: join(dir, "cache") })).rejects.toThrow(/no-such-package-stubdom/);
  });

  test("apt-cache depends output: alternatives, virtual packages, skipped names", () => {
    const text = [
      "qemu-system-xen",
      "  Depends: libc6",
      " |Depends: libfoo1",
      "  Depends: libfoo-alt1",
      "  Depends: <debconf-2.0>",
      "    debconf",
      "    cdebconf",
      "  Depends: <libvirtual>",
      "    provider-a",
      "    provider-b",
      "  Recommends: qemu-utils",
      "libc6",
      "  Depends: libgcc-s1",
      "tar",
      "  PreDepends: libacl1",
      "  PreDepends: libc6",
      "",
    ].join("\n");
    const deps = parseAptCacheDepends(text, new Set(["debconf-2.0", "libfoo1"]));
    expect(deps.get("qemu-system-xen")).toEqual(["libc6", "libfoo-alt1", "provider-a"]);
    expect(deps.get("libc6")).toEqual(["libgcc-s1"]);
    expect(deps.get("tar")).toEqual(["libacl1", "libc6"]);
  });

  test("resolveDepends follows Depends recursively and drops skipped packages", async () => {
    const names = await resolveDepends(["libxenstore4"]);
    expect(names).toEqual(expect.arrayContaining(["libxenstore4", "libxentoolcore1", "libc6", "libgcc-s1"]));
    expect(names).not.toContain("gcc-12-base");
  });
});

test("the host's mirror, from a deb822 file or a one-line sources.list (another release is fetched from it)", () => {
  expect(parseMirror("Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n")).toBe("http://deb.debian.org/debian");
  expect(parseMirror("deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\n")).toBe("http://mirror.example/debian");
  expect(parseMirror("deb http://mirror.example/debian bookworm main\n")).toBe("http://mirror.example/debian");
  expect(parseMirror("# nothing\n")).toBeUndefined();
});
