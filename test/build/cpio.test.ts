import { mkdtemp, readFile, readlink, rm, stat, writeFile, mkdir, utimes, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CpioError, concat, detachedFileChunks, detachedFileExtent, encodeCpio, type CpioRecord } from "../../agent/build/cpio.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cpio-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const enc = new TextEncoder();

function sh(cmd: string[], opts: { cwd?: string; stdin?: Uint8Array } = {}): { out: string; code: number; err: string } {
  const p = Bun.spawnSync(cmd, { cwd: opts.cwd, stdin: opts.stdin, stdout: "pipe", stderr: "pipe" });
  return { out: p.stdout.toString(), err: p.stderr.toString(), code: p.exitCode ?? -1 };
}

/** Parses a newc archive into its headers and data: the independent reading the tests compare. */
function parseNewc(bytes: Uint8Array, blockPadded = false) {
  const out: Array<{ name: string; ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; size: number; rmajor: number; rminor: number; data: Uint8Array }> = [];
  let off = 0;
  const dec = new TextDecoder();
  for (;;) {
    const h = dec.decode(bytes.subarray(off, off + 110));
    expect(h.slice(0, 6)).toBe("070701");
    const f = (i: number) => Number.parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const namesize = f(11);
    const name = dec.decode(bytes.subarray(off + 110, off + 110 + namesize - 1));
    expect(bytes[off + 110 + namesize - 1]).toBe(0);
    let p = off + 110 + namesize;
    p += (4 - (p % 4)) % 4;
    const size = f(6);
    const data = bytes.subarray(p, p + size);
    p += size;
    p += (4 - (p % 4)) % 4;
    off = p;
    if (name === "TRAILER!!!") break;
    out.push({ name, ino: f(0), mode: f(1), uid: f(2), gid: f(3), nlink: f(4), mtime: f(5), size, rmajor: f(9), rminor: f(10), data });
  }
  // GNU cpio pads the archive with zeros to its 512-byte block size; ours ends at the trailer.
  if (blockPadded) expect(bytes.subarray(off).every((b) => b === 0) && bytes.length % 512 === 0).toBe(true);
  else expect(off).toBe(bytes.length);
  return out;
}

const sample: CpioRecord[] = [
  { kind: "file", path: "usr/bin/hello", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") },
  { kind: "symlink", path: "bin", target: "usr/bin" },
  { kind: "dir", path: "proc", mode: 0o555 },
  { kind: "file", path: "etc/empty", mode: 0o644, data: new Uint8Array(0) },
  { kind: "file", path: "/etc/odd", mode: 0o600, data: enc.encode("abcde") },
  { kind: "char", path: "dev/console", mode: 0o600, major: 5, minor: 1 },
];

describe("cpio newc writer", () => {
  test("exact bytes of a one-file archive", async () => {
    const bytes = await encodeCpio([{ kind: "file", path: "a", mode: 0o644, data: enc.encode("xyz") }], { mtime: 0x5f5e100 });
    const text = new TextDecoder().decode(bytes);
    const expected =
      "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "05f5e100" + "00000003" +
      "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000" + "a\0" + "xyz\0" +
      "070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" + "00000000" +
      "00000000" + "00000000" + "00000000" + "00000000" + "0000000b" + "00000000" + "TRAILER!!!\0";
    // 110 + 2 = 112 (aligned), data 3 + 1 pad; trailer 110 + 11 = 121 + 3 pad.
    expect(text).toBe(expected + "\0\0\0");
    expect(bytes.length % 4).toBe(0);
  });

  test("cpio -t lists every entry, sorted, with generated parents", async () => {
    const file = join(dir, "t.cpio");
    await writeFile(file, await encodeCpio(sample));
    const r = sh(["cpio", "-t", "--quiet", "-F", file]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().split("\n")).toEqual([
      "bin", "dev", "dev/console", "etc", "etc/empty", "etc/odd", "proc", "usr", "usr/bin", "usr/bin/hello",
    ]);
  });

  test("GNU cpio extracts the same contents, modes, links and device numbers", async () => {
    const file = join(dir, "x.cpio");
    const out = join(dir, "x");
    await mkdir(out);
    await writeFile(file, await encodeCpio(sample));
    const r = sh(["cpio", "-i", "--quiet", "--make-directories", "--no-absolute-filenames", "-F", file], { cwd: out });
    expect(r.code, r.err).toBe(0);
    expect(await readFile(join(out, "usr/bin/hello"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect((await stat(join(out, "usr/bin/hello"))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(out, "etc/odd"))).mode & 0o7777).toBe(0o600);
    expect(await readFile(join(out, "etc/odd"), "utf8")).toBe("abcde");
    expect((await stat(join(out, "etc/empty"))).size).toBe(0);
    expect((await stat(join(out, "proc"))).mode & 0o7777).toBe(0o555);
    expect(await readlink(join(out, "bin"))).toBe("usr/bin");
    if (process.getuid?.() === 0) {
      const c = await stat(join(out, "dev/console"));
      expect(c.isCharacterDevice()).toBe(true);
      expect(c.rdev).toBe((5 << 8) | 1);
    }
  });

  test("headers agree field by field with GNU cpio -o of the same tree", async () => {
    const tree = join(dir, "tree");
    await mkdir(join(tree, "d/e"), { recursive: true });
    await writeFile(join(tree, "d/e/f"), "0123456789");
    await writeFile(join(tree, "d/g"), "g");
    await symlink("e/f", join(tree, "d/link"));
    for (const p of ["d/e/f", "d/g", "d/e", "d"]) await utimes(join(tree, p), 0, 0);
    sh(["chmod", "0640", join(tree, "d/g")]);
    const names = ["d", "d/e", "d/e/f", "d/g", "d/link"];
    const gnu = sh(["sh", "-c", `printf '%s\\n' ${names.join(" ")} | cpio -o -H newc --quiet --owner=0:0 --reproducible > ../gnu.cpio`], { cwd: tree });
    expect(gnu.code, gnu.err).toBe(0);
    // GNU cpio takes lstat's mtime for symlinks, which utimes cannot set: compare those fields separately.
    const ours = parseNewc(
      await encodeCpio([
        { kind: "dir", path: "d", mode: 0o755 },
        { kind: "dir", path: "d/e", mode: 0o755 },
        { kind: "file", path: "d/e/f", mode: 0o644, data: { file: join(tree, "d/e/f") } },
        { kind: "file", path: "d/g", mode: 0o640, data: enc.encode("g") },
        { kind: "symlink", path: "d/link", target: "e/f" },
      ]),
    );
    const theirs = parseNewc(new Uint8Array(await readFile(join(dir, "gnu.cpio"))), true);
    expect(ours.map((e) => e.name)).toEqual(theirs.map((e) => e.name));
    for (let i = 0; i < ours.length; i++) {
      const a = ours[i]!;
      const b = theirs[i]!;
      expect({ n: a.name, mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, data: [...a.data] }).toEqual({
        n: b.name, mode: b.mode, uid: b.uid, gid: b.gid, size: b.size, data: [...b.data],
      });
      if (!b.name.endsWith("link")) expect(a.mtime).toBe(b.mtime);
    }
  });

  test("reproducible: input order and file-vs-memory sources do not change the bytes", async () => {
    const src = join(dir, "src");
    await writeFile(src, "#!/bin/sh\necho hi\n");
    const a = await encodeCpio(sample);
    const b = await encodeCpio(
      [...sample].reverse().map((r) => (r.path === "usr/bin/hello" ? { ...r, data: { file: src } } as CpioRecord : r)),
    );
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const c = await encodeCpio(sample, { mtime: 1 });
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
    const parsed = parseNewc(a);
    expect(parsed.map((e) => e.ino)).toEqual(parsed.map((_, i) => i + 1));
    expect(parsed.every((e) => e.uid === 0 && e.gid === 0 && e.mtime === 0)).toBe(true);
  });

  test("broken input is an error naming the path", async () => {
    await expect(encodeCpio([{ kind: "file", path: "a/../b", mode: 0o644, data: new Uint8Array() }])).rejects.toThrow(/a\/\.\.\/b: path is not normalized/);
    await expect(encodeCpio([{ kind: "file", path: "x", mode: 0o10000, data: new Uint8Array() }])).rejects.toThrow(/x: mode 4096/);
    await expect(
      encodeCpio([
        { kind: "file", path: "x", mode: 0o644, data: new Uint8Array() },
        { kind: "dir", path: "x", mode: 0o755 },
      ]),
    ).rejects.toThrow(/x: declared twice/);
    await expect(
      encodeCpio([
        { kind: "file", path: "x", mode: 0o644, data: new Uint8Array() },
        { kind: "file", path: "x/y", mode: 0o644, data: new Uint8Array() },
      ]),
    ).rejects.toThrow(/parent x is a file/);
    await expect(encodeCpio([{ kind: "file", path: "gone", mode: 0o644, data: { file: join(dir, "missing") } }])).rejects.toThrow(CpioError);
    await expect(encodeCpio([{ kind: "file", path: "gone", mode: 0o644, data: { file: join(dir, "missing") } }])).rejects.toThrow(/gone: cannot read .*missing/);
  });
});

describe("detached entry (the squashfs the kernel must not unpack)", () => {
  const body = enc.encode("hsqs and then some bytes"); // 24 bytes: no padding
  const odd = enc.encode("hsqs+3"); // 6 bytes: 2 of padding

  test("one regular file whose parent is never declared, then a trailer; GNU cpio reads it", async () => {
    for (const data of [body, odd]) {
      const archive = concat(detachedFileChunks(".stubdom/usr.squashfs", data));
      const [e, ...rest] = parseNewc(archive);
      expect(rest).toEqual([]);
      expect(e!.name).toBe(".stubdom/usr.squashfs");
      expect(e!.mode).toBe(0o100444);
      expect(Buffer.from(e!.data).equals(Buffer.from(data))).toBe(true);
      const listed = sh(["cpio", "-t", "--quiet"], { stdin: archive });
      expect(listed.out.trim().split("\n")).toEqual([".stubdom/usr.squashfs"]);
    }
  });

  test("the extent points at the body, and `end` where the next archive may start", async () => {
    const data = odd;
    const next = await encodeCpio([{ kind: "file", path: "init", mode: 0o755, data: enc.encode("x") }]);
    const image = concat([...detachedFileChunks(".stubdom/usr.squashfs", data), next]);
    const { offset, size, end } = detachedFileExtent(image, ".stubdom/usr.squashfs");
    expect(Buffer.from(image.subarray(offset, offset + size)).equals(Buffer.from(data))).toBe(true);
    expect(offset % 4).toBe(0);
    expect(parseNewc(image.subarray(end)).map((e) => e.name)).toEqual(["init"]);
  });

  test("a name without a parent, another first entry and a short image are errors", async () => {
    expect(() => detachedFileChunks("usr.squashfs", body)).toThrow(/needs a parent directory/);
    const other = concat(detachedFileChunks(".other/x", body));
    expect(() => detachedFileExtent(other, ".stubdom/usr.squashfs")).toThrow(/first entry is \.other\/x/);
    const whole = concat(detachedFileChunks(".stubdom/usr.squashfs", body));
    expect(() => detachedFileExtent(whole.subarray(0, whole.length - 4), ".stubdom/usr.squashfs")).toThrow(/runs past the archive's end/);
    const plain = await encodeCpio(sample);
    expect(() => detachedFileExtent(plain, ".stubdom/usr.squashfs")).toThrow(CpioError);
  });
});
