import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ClosureError, Sysroot, libraryClosure, mergedUsr } from "../../agent/build/closure.ts";
import { fetchPackages } from "../../agent/build/debian.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "closure-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString()}`);
}

describe("merged-/usr paths", () => {
  test("top-level lib/bin dirs map into /usr", () => {
    expect(mergedUsr("/lib/x86_64-linux-gnu/libc.so.6")).toBe("/usr/lib/x86_64-linux-gnu/libc.so.6");
    expect(mergedUsr("/lib64/ld-linux-x86-64.so.2")).toBe("/usr/lib64/ld-linux-x86-64.so.2");
    expect(mergedUsr("/sbin")).toBe("/usr/sbin");
    expect(mergedUsr("/library/x")).toBe("/library/x");
    expect(mergedUsr("/usr/lib/../bin/x")).toBe("/usr/bin/x");
  });
});

describe("library closure in a sysroot of package trees", () => {
  test("synthetic: symlinked sonames, $ORIGIN RUNPATH, libc in /lib, interpreter via /lib64", async () => {
    const libc = join(dir, "pkg-libc");
    const libfoo = join(dir, "pkg-foo");
    const app = join(dir, "pkg-app");
    await mkdir(join(libc, "lib/x86_64-linux-gnu"), { recursive: true });
    await mkdir(join(libc, "lib64"), { recursive: true });
    for (const f of ["libc.so.6", "ld-linux-x86-64.so.2"]) {
      await copyFile(`/usr/lib/x86_64-linux-gnu/${f}`, join(libc, "lib/x86_64-linux-gnu", f));
    }
    await symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", join(libc, "lib64/ld-linux-x86-64.so.2"));
    await mkdir(join(libfoo, "usr/lib/x86_64-linux-gnu"), { recursive: true });
    await mkdir(join(app, "usr/lib/app"), { recursive: true });
    await mkdir(join(app, "usr/bin"), { recursive: true });
    await writeFile(join(dir, "foo.c"), "int foo(void){return 1;}\n");
    await writeFile(join(dir, "bar.c"), "int bar(void){return 2;}\n");
    await writeFile(join(dir, "main.c"), "int foo(void); int bar(void); int main(void){return foo()+bar();}\n");
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", join(libfoo, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"), join(dir, "foo.c")]);
    await symlink("libfoo.so.1.2.3", join(libfoo, "usr/lib/x86_64-linux-gnu/libfoo.so.1"));
    run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libbar.so.0", "-o", join(app, "usr/lib/app/libbar.so.0"), join(dir, "bar.c")]);
    run([
      "gcc", "-o", join(app, "usr/bin/app"), join(dir, "main.c"),
      `-L${join(libfoo, "usr/lib/x86_64-linux-gnu")}`, `-L${join(app, "usr/lib/app")}`,
      join(libfoo, "usr/lib/x86_64-linux-gnu/libfoo.so.1"), join(app, "usr/lib/app/libbar.so.0"),
      "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib/app",
    ]);
    const sys = await Sysroot.load([app, libfoo, libc]);
    expect(sys.resolve("/lib64/ld-linux-x86-64.so.2")?.host).toBe(join(libc, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    expect(sys.resolve("/usr/lib/x86_64-linux-gnu/libc.so.6")?.host).toBe(join(libc, "lib/x86_64-linux-gnu/libc.so.6"));
    const files = await libraryClosure([{ path: "/usr/bin/app" }], sys);
    expect(files.map((f) => [f.path, f.host, f.neededBy])).toEqual([
      ["/usr/bin/app", join(app, "usr/bin/app"), ""],
      ["/usr/lib/app/libbar.so.0", join(app, "usr/lib/app/libbar.so.0"), "/usr/bin/app"],
      ["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", join(libc, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "/usr/lib/x86_64-linux-gnu/libc.so.6"],
      ["/usr/lib/x86_64-linux-gnu/libc.so.6", join(libc, "lib/x86_64-linux-gnu/libc.so.6"), "/usr/bin/app"],
      ["/usr/lib/x86_64-linux-gnu/libfoo.so.1", join(libfoo, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"), "/usr/bin/app"],
      ["/usr/lib64/ld-linux-x86-64.so.2", join(libc, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "/usr/bin/app"],
    ]);

    // Without the package that holds libfoo the closure fails, naming the library and who needs it.
    const partial = await Sysroot.load([app, libc]);
    await expect(libraryClosure([{ path: "/usr/bin/app" }], partial)).rejects.toThrow(
      /libfoo\.so\.1, needed by \/usr\/bin\/app, is in no package of the sysroot \(looked in \/usr\/lib\/app\/libfoo\.so\.1, \/usr\/lib\/x86_64-linux-gnu\/libfoo\.so\.1/,
    );
    await expect(libraryClosure([{ path: "/usr/bin/nothing" }], partial)).rejects.toThrow(ClosureError);
    await expect(Sysroot.load([join(dir, "no-such-pkg")])).rejects.toThrow(/no-such-pkg is not a directory/);
  });

  test("real Debian packages: libxenstore.so.4 needs libxentoolcore and glibc", async () => {
    const pkgs = await fetchPackages(["libxenstore4", "libxentoolcore1", "libc6"]);
    const sys = await Sysroot.load(pkgs.map((p) => p.root));
    const files = await libraryClosure([{ path: "/usr/lib/x86_64-linux-gnu/libxenstore.so.4" }], sys);
    expect(files.map((f) => f.path)).toEqual([
      "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
      "/usr/lib/x86_64-linux-gnu/libc.so.6",
      "/usr/lib/x86_64-linux-gnu/libxenstore.so.4",
      "/usr/lib/x86_64-linux-gnu/libxentoolcore.so.1",
      // libc.so.6 is itself runnable and names its loader by the ABI path.
      "/usr/lib64/ld-linux-x86-64.so.2",
    ]);
    // libc6 ships these under /lib (not merged in the .deb): the sysroot must have found them there.
    expect(files.find((f) => f.path.endsWith("libc.so.6"))?.host).toMatch(/pkgs\/libc6\/lib\/x86_64-linux-gnu\/libc\.so\.6$/);
  });
});
