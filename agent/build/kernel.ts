// The stub domain's kernel (issue 15): Debian 13's `linux-source-6.12` built on an `allnoconfig`
// base with our fragments (agent/build/kernel/*.config) and no modules. One kernel serves Xen
// PV and the development VM. Debian's cloud kernel held ~33 MiB outside MemTotal and needed a
// dozen modules in the image; this one is a few MiB and needs none. 6.12, not Debian 12's 6.1:
// since 6.8 `retain_initrd` shows the initrd as /sys/firmware/initrd, so stage 0 mounts the
// squashfs where libxenguest put it instead of a copy in tmpfs (build.ts, stage0.c). Debian's
// 6.12 carries the XSA-482 privcmd fix with its `unrestricted` parameter, as 6.1.192 does.
//
// The build is cached in .cache/kernel/<version>-<hash>/ by the hash of the source package's
// version, the fragments, this file's recipe and the compiler's version, so a clean tree builds
// it once (~10 min on 2 cores) and every later `make build` copies it; the objects of the last
// build are kept, so a changed fragment rebuilds only what it touches. Reproducible: the
// KBUILD_BUILD_* values are fixed, and out-of-tree builds embed no build path.
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { exists, fetchPackages, run } from "./debian.ts";
import { parseModulesBuiltin } from "./modules.ts";
import { debian13Source } from "./xen-release.ts";

export class KernelBuildError extends Error {
  override name = "KernelBuildError";
}

export interface KernelBuild {
  /** The bzImage (libxenguest loads it as a PV kernel; QEMU's -kernel boots it too). */
  bzImage: string;
  /** `uname -r` of the kernel. */
  release: string;
  /** Canonical names of the drivers built in (the kernel's modules.builtin). */
  builtin: string[];
  /** The kernel's modules.builtin file (the image carries it for the agent). */
  modulesBuiltin: string;
  /** The resolved .config. */
  config: string;
}

export const SOURCE_PACKAGE = "linux-source-6.12";
// import.meta.url, not Bun's import.meta.dir: Vitest's transform keeps only the former.
export const FRAGMENTS = ["stubdom.config", "devvm.config", "guest.config"].map((f) => fileURLToPath(new URL(`kernel/${f}`, import.meta.url)));
/** Bump when the recipe below changes what comes out of the same inputs. */
const RECIPE = "1";
const BUILD_ENV = {
  KBUILD_BUILD_TIMESTAMP: "2025-01-01 00:00:00 UTC",
  KBUILD_BUILD_USER: "stubdom",
  KBUILD_BUILD_HOST: "stubdom",
  KBUILD_BUILD_VERSION: "1",
};

/**
 * Changes to Debian's source, each an exact piece of text and its replacement (checked: a
 * source where neither is found fails the build). Applied once to the shared source tree.
 */
export const SOURCE_EDITS: ReadonlyArray<{ file: string; find: string; replace: string }> = [
  {
    // Consoles 1 and 2 carry QEMU's saved state to dom0 and back (issue 18). The hvc driver
    // starts every tty cooked (tty_std_termios) and polls the ring from the interrupt that opening
    // it enables, so the first bytes of a restore stream meet ICANON, ISIG and IXON before the
    // agent's tcsetattr can run (seen on nested Xen: QEMU's "Not a migration stream"). Raw from
    // install on, for every console but hvc0, the kernel's and the agent's log.
    file: "drivers/tty/hvc/hvc_console.c",
    find: "\trc = tty_port_install(&hp->port, driver, tty);\n\tif (rc)\n\t\ttty_port_put(&hp->port);\n\treturn rc;\n",
    replace:
      "\trc = tty_port_install(&hp->port, driver, tty);\n\tif (rc)\n\t\ttty_port_put(&hp->port);\n" +
      "\telse if (tty->index > 0) {\n" +
      "\t\t/* xen-stubdom-init: binary streams (a stub domain's save and restore), raw from the first byte */\n" +
      "\t\ttty->termios.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);\n" +
      "\t\ttty->termios.c_oflag &= ~OPOST;\n" +
      "\t\ttty->termios.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);\n" +
      "\t\ttty->termios.c_cflag &= ~(CSIZE | PARENB);\n" +
      "\t\ttty->termios.c_cflag |= CS8;\n" +
      "\t}\n\treturn rc;\n",
  },
  {
    // At the end of boot Linux waits up to 30 s for every frontend to connect, consoles included
    // (non-essential ones too). dom0's QEMU 8.2 or later (Xen 4.20 on Debian 13) never creates a
    // stub domain's console 2 on a plain create (libxl gives it no output, and QEMU then wants a
    // `-serial` number 2), so the wait took all of libxl's 30 s stub domain start. Disks and
    // NICs are still waited for; consoles are used only after the agent has started.
    file: "drivers/xen/xenbus/xenbus_probe_frontend.c",
    find: "\twhile (exists_non_essential_connecting_device(drv))\n\t\tif (wait_loop(start, 30, &seconds_waited))\n\t\t\tbreak;\n",
    replace: "\t/* xen-stubdom-init: no wait for non-essential devices (consoles, keyboards, framebuffers) */\n",
  },
];

/** `text` with the edit made; unchanged when it is made already; an error when neither is there. */
export function applyEdit(text: string, e: { file: string; find: string; replace: string }): string {
  if (text.includes(e.replace)) return text;
  const at = text.indexOf(e.find);
  if (at < 0 || text.indexOf(e.find, at + 1) >= 0) throw new KernelBuildError(`${e.file}: the text to change is not there exactly once (another kernel version?)`);
  return text.slice(0, at) + e.replace + text.slice(at + e.find.length);
}

export interface ConfigLine {
  key: string;
  /** "y", "n", a number or a quoted string, as written in the fragment. */
  value: string;
}

/** `CONFIG_X=v` lines of a fragment (comments and blank lines skipped); anything else is an error. */
export function parseFragment(text: string, source: string): ConfigLine[] {
  const out: ConfigLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = /^(CONFIG_[A-Z0-9_]+)=(.+)$/.exec(line);
    if (!m) throw new KernelBuildError(`${source}:${i + 1}: not CONFIG_NAME=value: ${line}`);
    out.push({ key: m[1]!, value: m[2]! });
  });
  return out;
}

/**
 * The fragment's options that Kconfig did not give the value asked for (a dependency missing,
 * a symbol renamed): each as "CONFIG_X=v: got ...". `n` is met by "is not set" or absence.
 */
export function unmetOptions(wanted: readonly ConfigLine[], dotConfig: string): string[] {
  const got = new Map<string, string>();
  for (const line of dotConfig.split("\n")) {
    const set = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (set) got.set(set[1]!, set[2]!);
    const unset = /^# (CONFIG_[A-Z0-9_]+) is not set$/.exec(line);
    if (unset) got.set(unset[1]!, "n");
  }
  const bad: string[] = [];
  for (const w of wanted) {
    const g = got.get(w.key) ?? "n";
    if (g !== w.value) bad.push(`${w.key}=${w.value}: got ${g === "n" && !got.has(w.key) ? "nothing (no such option, or its dependencies are off)" : g}`);
  }
  return bad;
}

/** Runs make, printing a line of progress every 30 s (a clean build prints ~2,000 objects). */
async function make(args: string[], cwd: string, what: string, progress: (l: string) => void): Promise<void> {
  const started = performance.now();
  const proc = Bun.spawn(["make", ...args], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C", ...BUILD_ENV } });
  let objects = 0;
  const tail: string[] = [];
  const timer = setInterval(() => progress(`${what}: ${objects} steps, ${((performance.now() - started) / 1000).toFixed(0)} s`), 30_000);
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  const pump = async (stream: ReadableStream<Uint8Array>, count: boolean) => {
    let rest = "";
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      const lines = (rest + dec.decode(chunk, { stream: true })).split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) {
        if (count && /^\s+[A-Z]+/.test(l)) objects++;
        keep(l);
      }
    }
    if (rest) keep(rest);
  };
  const [code] = await Promise.all([proc.exited, pump(proc.stdout, true), pump(proc.stderr, false)]).finally(() => clearInterval(timer));
  if (code !== 0) throw new KernelBuildError(`${what}: make ${args.join(" ")} exited ${code}:\n${tail.join("\n")}`);
}

/** Builds (or finds in the cache) the kernel; `progress` gets a line per step. */
export async function buildKernel(opts: { cacheDir?: string; progress?: (l: string) => void } = {}): Promise<KernelBuild> {
  const progress = opts.progress ?? (() => {});
  const cache = resolve(opts.cacheDir ?? ".cache");
  const { suite, cacheDir: suiteCache } = await debian13Source(cache);
  const [pkg] = await fetchPackages([SOURCE_PACKAGE], { cacheDir: suiteCache, suite, progress });
  if (!pkg) throw new KernelBuildError(`${SOURCE_PACKAGE} did not resolve`);
  const fragments = await Promise.all(FRAGMENTS.map(async (f) => ({ path: f, text: await readFile(f, "utf8") })));
  const wanted = fragments.flatMap((f) => parseFragment(f.text, f.path));
  const gcc = (await run(["gcc", "--version"], "gcc --version")).split("\n")[0] ?? "";
  const hash = createHash("sha256")
    .update(JSON.stringify({ version: pkg.version, fragments: fragments.map((f) => f.text), RECIPE, BUILD_ENV, gcc, SOURCE_EDITS }))
    .digest("hex")
    .slice(0, 16);
  const kdir = join(cache, "kernel");
  const out = join(kdir, `${pkg.version}-${hash}`);
  const result: KernelBuild = {
    bzImage: join(out, "bzImage"),
    release: "",
    builtin: [],
    modulesBuiltin: join(out, "modules.builtin"),
    config: join(out, "config"),
  };
  const load = async (): Promise<KernelBuild> => ({
    ...result,
    release: (await readFile(join(out, "release"), "utf8")).trim(),
    builtin: parseModulesBuiltin(await readFile(join(out, "modules.builtin"), "utf8")),
  });
  if (await exists(out)) return load();

  await mkdir(kdir, { recursive: true });
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  // The source tree is shared by every build of this version: extracted once, renamed into place.
  const src = join(kdir, `src-${pkg.version}`);
  if (!(await exists(src))) {
    progress(`kernel: unpacking ${SOURCE_PACKAGE} ${pkg.version}`);
    const tmp = join(kdir, `.tmp-src-${tag}`);
    await mkdir(tmp);
    try {
      await run(["tar", "-xf", join(pkg.root, "usr/src", `${SOURCE_PACKAGE}.tar.xz`), "-C", tmp, "--strip-components=1"], "unpacking the kernel source");
      await rename(tmp, src).catch(async (e) => {
        if (!(await exists(src))) throw e; // a peer finished first: use theirs
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  for (const e of SOURCE_EDITS) {
    const file = join(src, e.file);
    const text = await readFile(file, "utf8");
    const edited = applyEdit(text, e);
    if (edited === text) continue;
    await writeFile(`${file}.${tag}`, edited);
    await rename(`${file}.${tag}`, file);
  }

  // The last build's object tree makes a change of configuration an incremental build (Kbuild
  // rebuilds what the changed options touch). A rename claims it: one build at a time uses it.
  const objects = join(kdir, `obj-${pkg.version}`);
  const build = join(kdir, `.tmp-build-${tag}`);
  const reused = await rename(objects, build).then(() => true, () => false);
  if (!reused) await mkdir(build);
  let keep = false;
  try {
    const merged = join(build, "fragment.config");
    await writeFile(merged, fragments.map((f) => f.text).join("\n"));
    await make(["-s", `O=${build}`, `KCONFIG_ALLCONFIG=${merged}`, "allnoconfig"], src, "kernel config", progress);
    const dotConfig = await readFile(join(build, ".config"), "utf8");
    const unmet = unmetOptions(wanted, dotConfig);
    if (unmet.length > 0) throw new KernelBuildError(`the kernel configuration does not have what agent/build/kernel/*.config asks:\n  ${unmet.join("\n  ")}`);
    const jobs = String(availableParallelism());
    progress(`kernel: make -j${jobs} bzImage (${pkg.version}${reused ? ", incremental" : ", ~10 min on 2 cores"}; cached afterwards in ${out})`);
    await make([`O=${build}`, `-j${jobs}`, "bzImage"], src, "kernel build", progress);
    const release = (await run(["make", "-s", "-C", src, `O=${build}`, "kernelrelease"], "make kernelrelease")).trim();
    // modules.builtin comes from the built-in objects' .modinfo (names and parameters).
    const builtin = await exists(join(build, "modules.builtin")) ? await readFile(join(build, "modules.builtin"), "utf8") : "";
    const done = join(kdir, `.tmp-out-${tag}`);
    await mkdir(done);
    await copyFile(join(build, "arch/x86/boot/bzImage"), join(done, "bzImage"));
    await writeFile(join(done, "release"), `${release}\n`);
    await writeFile(join(done, "modules.builtin"), builtin);
    await writeFile(join(done, "config"), dotConfig);
    await rename(done, out).catch(async (e) => {
      await rm(done, { recursive: true, force: true });
      if (!(await exists(out))) throw e;
    });
    keep = true;
  } finally {
    if (keep) await rename(build, objects).catch(() => rm(build, { recursive: true, force: true }));
    else await rm(build, { recursive: true, force: true });
  }
  return load();
}
