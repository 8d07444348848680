// The outer emulator of the nested-Xen runs: Debian 13's QEMU 10 (qemu-system-x86), from its
// packages through the host's own mirror (agent/build/debian.ts aptSuite), run from a dpkg -x
// tree through that tree's own dynamic loader, so nothing of Debian 13 is installed on the host.
// Why QEMU 10 and not the host's 7.2: test/xen/README.md, "The outer platform".
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_SKIP, fetchPackages, resolveDepends, run } from "../../agent/build/debian.ts";
import { debian13Source } from "../../agent/build/xen-release.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Depends that only serve maintainer scripts or other programs of those packages. */
const SKIP = [...DEFAULT_SKIP, "libc-bin", "coreutils", "mount", "util-linux", "systemd", "dash", "bash", "ucf", "passwd", "login", "base-files"];

const exists = (p: string) => stat(p).then(() => true, () => false);

/** A wrapper script that runs Debian 13's qemu-system-x86_64 with its firmware; built once. */
export async function debian13Qemu(progress: (line: string) => void = () => {}): Promise<string> {
  const { suite, cacheDir: cache } = await debian13Source(join(ROOT, ".cache"));
  const names = await resolveDepends(["qemu-system-x86", "qemu-system-data", "seabios", "ipxe-qemu"], { suite, skip: SKIP });
  const pkgs = await fetchPackages(names, { cacheDir: cache, suite, progress });
  const key = new Bun.CryptoHasher("sha256").update(pkgs.map((p) => `${p.name} ${p.version}`).join("\n")).digest("hex").slice(0, 16);
  const tree = join(cache, `qemu-${key}`);
  const wrapper = join(tree, "qemu-system-x86_64");
  if (await exists(wrapper)) return wrapper;
  progress(`Debian 13 QEMU ${key}: merging ${pkgs.length} packages`);
  const tmp = `${tree}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  // Hard links into one tree: the loader, libraries, modules and firmware at their own paths.
  for (const p of pkgs) await run(["cp", "-al", `${p.root}/.`, tmp], `merging ${p.name}`);
  const lib = "usr/lib/x86_64-linux-gnu";
  const script = [
    "#!/bin/sh",
    `R=${tree}`,
    // Debian builds TCG and most devices as modules, found through this variable.
    `export QEMU_MODULE_DIR=$R/${lib}/qemu`,
    `exec $R/${lib}/ld-linux-x86-64.so.2 --library-path $R/${lib}:$R/lib/x86_64-linux-gnu $R/usr/bin/qemu-system-x86_64 -L $R/usr/share/qemu -L $R/usr/share/seabios "$@"`,
    "",
  ].join("\n");
  await Bun.write(join(tmp, "qemu-system-x86_64"), script);
  await run(["chmod", "755", join(tmp, "qemu-system-x86_64")], "chmod");
  await rm(tree, { recursive: true, force: true });
  await run(["mv", tmp, tree], "mv");
  return wrapper;
}

if (import.meta.main) console.log(await debian13Qemu((l) => console.error(l)));
