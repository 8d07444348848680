import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fetchPackages, resolveDepends } from "../../agent/build/debian.ts";
import { formatModulesDep, indexModules, moduleName, parseModulesDep, resolveModules, type ModuleIndex } from "../../agent/build/modules.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "modules-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const synthetic = [
  "kernel/fs/xenfs/xenfs.ko: kernel/drivers/xen/xen-privcmd.ko",
  "kernel/drivers/xen/xen-privcmd.ko:",
  "kernel/net/sched/act_mirred.ko:",
  "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko",
  "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
  "kernel/net/core/failover.ko:",
  "",
].join("\n");

describe("modules.dep resolution", () => {
  test("names are canonical (dashes as underscores, no extension)", () => {
    expect(moduleName("kernel/drivers/xen/xen-privcmd.ko")).toBe("xen_privcmd");
    expect(moduleName("xen-gntdev")).toBe("xen_gntdev");
    expect(moduleName("a/b/c.ko.xz")).toBe("c");
  });

  test("load order puts every dependency first, each module once", () => {
    const index = parseModulesDep(synthetic);
    const order = resolveModules(index, ["virtio_net", "xenfs", "act_mirred", "failover", "xen-privcmd"]).map((e) => e.name);
    expect(order).toEqual(["failover", "net_failover", "virtio_net", "xen_privcmd", "xenfs", "act_mirred"]);
    for (const [i, n] of order.entries()) for (const d of index.get(n)!.deps) expect(order.indexOf(d)).toBeLessThan(i);
  });

  test("unknown modules, dangling deps, cycles and garbage are errors naming the module", () => {
    const index = parseModulesDep(synthetic);
    expect(() => resolveModules(index, ["nope"])).toThrow(/module nope is not in the kernel's modules/);
    expect(() => parseModulesDep("kernel/a.ko: kernel/b.ko\n")).toThrow(/kernel\/a\.ko depends on kernel\/b\.ko, which has no line/);
    expect(() => parseModulesDep("garbage line\n", "x.dep")).toThrow(/x\.dep:1: no "module:"/);
    const cyc = parseModulesDep("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n");
    expect(() => resolveModules(cyc, ["a"])).toThrow(/cycle: a -> b -> a/);
  });

  test("formatModulesDep round-trips through the parser for a subset", () => {
    const index = parseModulesDep(synthetic);
    const subset = resolveModules(index, ["virtio_net", "xenfs"]);
    const text = formatModulesDep(subset, index);
    expect(text).toBe(
      [
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko",
        "kernel/drivers/xen/xen-privcmd.ko:",
        "kernel/fs/xenfs/xenfs.ko: kernel/drivers/xen/xen-privcmd.ko",
        "kernel/net/core/failover.ko:",
        "",
      ].join("\n"),
    );
    const again = parseModulesDep(text);
    expect(resolveModules(again, ["virtio_net", "xenfs"]).map((e) => e.path)).toEqual(subset.map((e) => e.path));
  });

  test("the index built from .modinfo matches depmod's modules.dep for Debian's cloud kernel", async () => {
    const names = await resolveDepends(["linux-image-cloud-amd64"]);
    const pkgs = await fetchPackages(names);
    const kpkg = pkgs.find((p) => /^linux-image-\d/.test(p.name));
    expect(kpkg, `no versioned kernel package in ${names.join(" ")}`).toBeDefined();
    const kver = kpkg!.name.replace(/^linux-image-/, "");
    const modDir = join(kpkg!.root, "lib/modules", kver);
    const ours = await indexModules(modDir);

    // depmod writes into its base directory: give it one of its own, linking to the package tree.
    const base = join(dir, "lib/modules", kver);
    await mkdir(base, { recursive: true });
    for (const f of ["kernel", "modules.order", "modules.builtin", "modules.builtin.modinfo"]) await symlink(join(modDir, f), join(base, f));
    const p = Bun.spawnSync(["depmod", "-b", dir, kver], { stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode, p.stderr.toString()).toBe(0);
    const theirs: ModuleIndex = parseModulesDep(await readFile(join(base, "modules.dep"), "utf8"), "depmod's modules.dep");

    expect(ours.size).toBe(theirs.size);
    expect(ours.size).toBeGreaterThan(500);
    for (const [name, e] of theirs) {
      expect(ours.get(name)?.path, name).toBe(e.path);
      // depmod lists the transitive closure; modinfo holds direct deps: compare the closures.
      const closure = (idx: ModuleIndex) => resolveModules(idx, [name]).map((m) => m.name).sort();
      expect(closure(ours), name).toEqual(closure(theirs));
    }
    const wanted = ["loop", "squashfs", "xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs", "xen-netfront", "xen-blkfront", "tun", "sch_ingress", "cls_u32", "cls_matchall", "act_mirred", "act_gact", "virtio_net", "virtio_console", "virtio_pci"];
    const order = resolveModules(ours, wanted).map((e) => e.name);
    expect(order.indexOf("xen_privcmd")).toBeLessThan(order.indexOf("xenfs"));
    expect(order.indexOf("virtio")).toBeLessThan(order.indexOf("virtio_pci"));
  });
});
