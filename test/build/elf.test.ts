import { mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ElfError, elfSection, parseElf, readElf, readElfHeaders } from "../../agent/build/elf.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "elf-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** What binutils' readelf says: the reference the reader must match. */
function readelfDynamic(path: string) {
  const d = run(["readelf", "-dW", path]);
  const pick = (tag: string) => [...d.matchAll(new RegExp(`\\(${tag}\\)\\s+.*?\\[(.*)\\]`, "g"))].map((m) => m[1] ?? "");
  const l = run(["readelf", "-lW", path]);
  const interp = /\[Requesting program interpreter: (.*)\]/.exec(l)?.[1];
  return {
    needed: pick("NEEDED"),
    soname: pick("SONAME")[0],
    rpath: pick("RPATH").flatMap((s) => s.split(":")).filter(Boolean),
    runpath: pick("RUNPATH").flatMap((s) => s.split(":")).filter(Boolean),
    interpreter: interp,
  };
}

const hostFiles = [
  "/usr/bin/qemu-system-x86_64",
  "/usr/bin/cpio",
  "/usr/bin/zstd",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0",
  "/usr/lib/x86_64-linux-gnu/libxenstore.so.4",
  "node_modules/.bin/bun",
];

describe("ELF reader against readelf", () => {
  for (const f of hostFiles) {
    test(`${f}`, async () => {
      const path = await realpath(f);
      const info = await readElf(path);
      const ref = readelfDynamic(path);
      expect(info.needed).toEqual(ref.needed);
      expect(info.soname).toEqual(ref.soname);
      expect(info.rpath).toEqual(ref.rpath);
      expect(info.runpath).toEqual(ref.runpath);
      expect(info.interpreter).toEqual(ref.interpreter);
      expect(info.class).toBe(64);
      expect(info.machine).toBe(62);
      expect(info.needed.length + (info.soname ? 1 : 0)).toBeGreaterThan(0);
      // PID 1's partial reader (headers, PT_DYNAMIC, the string table) says the same.
      expect(await readElfHeaders(path)).toEqual(info);
    });
  }

  test("DT_RPATH and DT_RUNPATH with $ORIGIN, and a static binary", async () => {
    const c = join(dir, "m.c");
    await writeFile(c, "int main(void){return 0;}\n");
    const withRunpath = join(dir, "runpath");
    const withRpath = join(dir, "rpath");
    const staticBin = join(dir, "static");
    run(["gcc", "-o", withRunpath, c, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib:/opt/x", "-lm", "-Wl,--no-as-needed"]);
    run(["gcc", "-o", withRpath, c, "-Wl,--disable-new-dtags,-rpath,/opt/y"]);
    run(["gcc", "-static", "-o", staticBin, c]);
    const a = await readElf(withRunpath);
    expect(a.runpath).toEqual(["$ORIGIN/../lib", "/opt/x"]);
    expect(a.rpath).toEqual([]);
    const ref = readelfDynamic(withRunpath);
    expect({ needed: a.needed, runpath: a.runpath, interpreter: a.interpreter }).toEqual({
      needed: ref.needed, runpath: ref.runpath, interpreter: ref.interpreter,
    });
    const b = await readElf(withRpath);
    expect(b.rpath).toEqual(["/opt/y"]);
    expect(b.runpath).toEqual([]);
    const s = await readElf(staticBin);
    expect(s.needed).toEqual([]);
    expect(s.interpreter).toBeUndefined();
  });

  test("sections: .interp of a binary matches its PT_INTERP", async () => {
    const bytes = new Uint8Array(await readFile("/usr/bin/cpio"));
    const interp = elfSection(bytes, "cpio", ".interp");
    expect(new TextDecoder().decode(interp).replace(/\0$/, "")).toBe(parseElf(bytes, "cpio").interpreter);
    expect(elfSection(bytes, "cpio", ".no-such-section")).toBeUndefined();
  });

  test("broken files are ElfErrors naming the file and the reason", async () => {
    const good = new Uint8Array(await readFile("/usr/bin/cpio"));
    const notElf = join(dir, "not-elf");
    await writeFile(notElf, "#!/bin/sh\nexit 0\n".repeat(5));
    await expect(readElf(notElf)).rejects.toThrow(/ELF .*not-elf: not an ELF file \(bad magic\)/);
    await expect(readElf(join(dir, "absent"))).rejects.toThrow(/ELF .*absent: cannot read/);
    expect(() => parseElf(good.slice(0, 40), "short")).toThrow(/ELF short: too short/);
    // Program headers cut off: the table lies outside the file.
    expect(() => parseElf(good.slice(0, 200), "cut")).toThrow(/ELF cut: .*outside the file/);
    const bad = good.slice();
    new DataView(bad.buffer).setBigUint64(32, 0xffff_ffffn, true); // e_phoff far beyond the end
    expect(() => parseElf(bad, "phoff")).toThrow(ElfError);
    const be = good.slice();
    be[5] = 2;
    expect(() => parseElf(be, "be")).toThrow(/not little-endian/);
    // The partial reader: the same errors, and a file cut before its dynamic section.
    await expect(readElfHeaders(notElf)).rejects.toThrow(/not an ELF file/);
    await expect(readElfHeaders(join(dir, "absent"))).rejects.toThrow(/ELF .*absent: cannot read/);
    const cut = join(dir, "cut-elf");
    await writeFile(cut, good.slice(0, 4096));
    await expect(readElfHeaders(cut)).rejects.toThrow(/ELF .*cut-elf: PT_DYNAMIC at \d+\+\d+ lies outside the part read/);
  });
});
