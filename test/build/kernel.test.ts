// The stub domain's kernel recipe (agent/build/kernel.ts): the fragment parser, the check that
// Kconfig gave every option asked for, and the kernel `make build` left in the cache.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { FRAGMENTS, SOURCE_EDITS, applyEdit, buildKernel, parseFragment, unmetOptions } from "../../agent/build/kernel.ts";
import { parseModulesBuiltin } from "../../agent/build/modules.ts";

const root = new URL("../..", import.meta.url).pathname;

describe("fragments", () => {
  test("CONFIG_ lines are read, comments and blank lines skipped, anything else named", () => {
    expect(parseFragment('# c\n\nCONFIG_A=y\nCONFIG_B="x y"\nCONFIG_C=n\n', "f")).toEqual([
      { key: "CONFIG_A", value: "y" }, { key: "CONFIG_B", value: '"x y"' }, { key: "CONFIG_C", value: "n" },
    ]);
    expect(() => parseFragment("CONFIG_A=y\nA=y\n", "frag")).toThrow(/frag:2: not CONFIG_NAME=value: A=y/);
  });

  test("an option Kconfig dropped or changed is reported; n is met by 'is not set' or absence", () => {
    const dot = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x\"\nCONFIG_M=m\n";
    const want = parseFragment('CONFIG_A=y\nCONFIG_B=n\nCONFIG_GONE=n\nCONFIG_S="x"\nCONFIG_M=y\nCONFIG_X=y\n', "f");
    expect(unmetOptions(want, dot)).toEqual([
      "CONFIG_M=y: got m",
      "CONFIG_X=y: got nothing (no such option, or its dependencies are off)",
    ]);
  });
});

test("a source edit is made once, kept when made, and refused when its text is not there exactly once", () => {
  const e = { file: "f.c", find: "a();\n", replace: "a();\nb();\n" };
  const once = applyEdit("x();\na();\n", e);
  expect(once).toBe("x();\na();\nb();\n");
  expect(applyEdit(once, e)).toBe(once);
  expect(() => applyEdit("x();\n", e)).toThrow(/f\.c: the text to change is not there exactly once/);
  expect(() => applyEdit("a();\na();\n", e)).toThrow(/exactly once/);
});

describe("the kernel of this tree (cached by make build)", () => {
  test("its source carries every edit (the hvc consoles after hvc0 start raw)", async () => {
    const k = await buildKernel({ cacheDir: join(root, ".cache") });
    const src = join(root, ".cache/kernel", `src-${/^(.*)-[0-9a-f]{16}$/.exec(k.bzImage.split("/").at(-2)!)![1]}`);
    for (const e of SOURCE_EDITS) expect(await readFile(join(src, e.file), "utf8")).toContain(e.replace);
  });

  test("its .config has every option of agent/build/kernel/*.config, and no modules", async () => {
    const k = await buildKernel({ cacheDir: join(root, ".cache") });
    const dot = await readFile(k.config, "utf8");
    const wanted = (await Promise.all(FRAGMENTS.map(async (f) => parseFragment(await readFile(f, "utf8"), f)))).flat();
    expect(unmetOptions(wanted, dot)).toEqual([]);
    expect(dot).toMatch(/^# CONFIG_MODULES is not set$/m);
    expect(k.release).toMatch(/^6\.12\.\d+-stubdom$/);
    expect(k.builtin).toEqual(parseModulesBuiltin(await readFile(k.modulesBuiltin, "utf8")));
    expect(k.builtin).toContain("xen_privcmd");
  });

  test("the built-in command line keeps the initrd and unrestricts privcmd", async () => {
    const k = await buildKernel({ cacheDir: join(root, ".cache") });
    expect(await readFile(k.config, "utf8")).toMatch(/^CONFIG_CMDLINE="xen_privcmd\.unrestricted=1 retain_initrd"$/m);
    // The bzImage the image ships is the cached one.
    const dist = await Bun.file(join(root, "dist/qemu-stubdom-linux-kernel")).bytes();
    expect(Buffer.from(dist).equals(Buffer.from(await Bun.file(k.bzImage).bytes()))).toBe(true);
  });
});
