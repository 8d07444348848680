// Boots Xen (Debian 12's 4.17 or Debian 13's 4.20) + a Debian dom0 nested in QEMU TCG and runs the dom0 test script against a
// pair of stub domain images (vm-harness.md, "Real Xen nested in QEMU"). QEMU's exit status
// means nothing (it is 0 after a panic or a triple fault), so the outcome is read from the
// console only: "E2E ..." lines from dom0-test.sh, "E2E DONE" at the end, a scan for panics,
// and a deadline.
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { E2E_CACHE, buildOuterImages, writeRunInitramfs } from "./dom0.ts";
import { buildDeb, xenFirmwareDir } from "../../agent/build/deb.ts";
import { debian13Qemu } from "./outer-qemu.ts";
import type { XenRelease } from "../../agent/build/xen-release.ts";

// import.meta.dir is Bun's; Vitest's transform leaves only import.meta.url.
const HERE = fileURLToPath(new URL(".", import.meta.url));

export type ImageKind = "ours" | "baseline";

export interface NestedXenOptions {
  kind: ImageKind;
  /** The Xen release dom0 runs (dom0.ts); default 4.17. */
  xen?: XenRelease;
  stubKernel: string;
  stubRootfs: string;
  /** `stubdomain_memory` in MiB; undefined = libxl's default (128 MiB + video RAM). */
  stubMemory?: number;
  /**
   * "full": every check; "create": only `xl create` and `xl destroy` (memory floor search);
   * "relay": `relayClients` dom0 QMP clients one after the other through the vchan relay;
   * "bunstress": a Bun program with nothing Xen-specific (bun-stress.js) in dom0, before and
   * while the guest runs, to tell the platform's faults from ours; "saverestore": `xl save`
   * then `xl restore` of the guest.
   */
  mode?: "full" | "create" | "relay" | "bunstress" | "soak" | "saverestore" | "pci";
  /** For mode "relay": how many clients (default 200); for "soak": how many seconds. */
  relayClients?: number;
  /** "dom0": the same guest with QEMU in dom0 (device_model_stubdomain_override=0), for comparison. */
  dm?: "dom0";
  /** The agent logs at debug level (stubdomain_cmdline stubdom.loglevel=debug). */
  agentDebug?: boolean;
  /** Pause the HVM guest's vCPU once `xl create` returns (platform measurements). */
  pauseGuest?: boolean;
  /** Extra words (no spaces, commas or +) for the stub domain's kernel command line. */
  stubCmdline?: string[];
  /** dist/stubdom-init: ours goes into dom0 as our package, with the images (packageForDom0). */
  agent?: string;
  timeoutMs?: number;
  /** Each console line as it arrives. */
  onLine?: (line: string) => void;
}

export interface E2EResult {
  status: "PASS" | "FAIL";
  check: string;
  detail: string;
}

export interface NestedXenRun {
  /** Every E2E PASS/FAIL line, in order. */
  results: E2EResult[];
  /** E2E TIME lines: name → milliseconds (dom0 clock). */
  times: Record<string, number>;
  info: string[];
  /** dom0 reached the end of its script ("E2E DONE"). */
  done: boolean;
  /** Why the run cannot be trusted (panic, timeout, missing end marker), if it cannot. */
  abnormal?: string;
  wallMs: number;
  /** The whole serial console. */
  log: string;
}

export const PANICS = [/Kernel panic/, /Initramfs unpacking failed/, /\(XEN\) Panic on CPU/, /Failed to execute \/init/];

// spec-ctrl=eager-fpu: Xen saw an AMD CPU (TCG's `max`) and switched FPU state lazily (CR0.TS,
// #NM); under QEMU's TCG that corrupted the registers of processes in every PV domain once the
// HVM guest shared the CPUs (random SIGSEGV, SIGILL, SIGABRT, heap corruption in dom0's programs,
// QEMU and our PID 1). With eager switching no fault was left (test/xen/README.md, Platform).
// asid=0: with ASIDs, dom0 programs segfaulted more often (QEMU's TCG TLB is not ASID-tagged).
// No guest_loglvl=all: the HVM guest's debug output would interleave with dom0's result lines.
export const XEN_CMDLINE = "console=com1 asid=0 spec-ctrl=eager-fpu dom0_mem=1024M,max:1024M dom0_max_vcpus=1 loglvl=all noreboot";
/** The outer CPU: SVM + NPT + SSE4.2; -smap because QEMU 7.2's TCG mishandles iretq with SMAP. */
export const OUTER_CPU = "max,-smap,-fsgsbase";

/**
 * The outer QEMU's accelerator: E2E_TCG=single runs TCG on one host thread
 * (`-accel tcg,thread=single`), which only changes timing; anything else keeps QEMU's default.
 */
export function outerAccel(): string {
  return process.env.E2E_TCG === "single" ? "tcg,thread=single" : "tcg";
}

/** Xen's command line: XEN_CMDLINE plus E2E_XEN_EXTRA (platform measurements). */
export function xenCmdline(): string {
  return [XEN_CMDLINE, process.env.E2E_XEN_EXTRA].filter(Boolean).join(" ");
}

/**
 * The outer emulator: the host's (Debian 12) qemu-system-x86_64, unless E2E_QEMU names
 * another: a path, or `debian13` for Debian 13's QEMU 10 (outer-qemu.ts).
 */
export function outerQemu(): string {
  return process.env.E2E_QEMU || "qemu-system-x86_64";
}

async function outerQemuBinary(): Promise<string> {
  return outerQemu() === "debian13" ? await debian13Qemu() : outerQemu();
}

/** The outer CPU model: OUTER_CPU unless E2E_CPU names another (platform measurements). */
export function outerCpu(): string {
  return process.env.E2E_CPU || OUTER_CPU;
}

/** vCPUs of the outer machine: 2 unless E2E_SMP says otherwise. */
export function outerSmp(): string {
  return process.env.E2E_SMP || "2";
}

export function parseConsole(log: string): Pick<NestedXenRun, "results" | "times" | "info" | "done" | "abnormal"> {
  const results: E2EResult[] = [];
  const times: Record<string, number> = {};
  const info: string[] = [];
  let done = false;
  let counted: number | undefined;
  // A bare CR also ends a line: Xen's console writes "\r\r\n", and output of another domain may
  // follow a CR on the same line (a regex "." never matches a CR).
  for (const line of log.split(/[\r\n]+/)) {
    const m = /^E2E (PASS|FAIL|TIME|INFO|DONE)\b ?(\S*) ?(.*)$/.exec(line);
    if (!m) continue;
    const [, kind, name = "", rest = ""] = m;
    if (kind === "DONE") [done, counted] = [true, /^\d+$/.test(name) ? Number(name) : undefined];
    else if (kind === "TIME") times[name] = Number(rest);
    else if (kind === "INFO") info.push(`${name} ${rest}`.trim());
    else results.push({ status: kind as "PASS" | "FAIL", check: name, detail: rest });
  }
  // Lines dom0 relays from the stub domain's console (STUB|) or xl (XL|) are the subject of
  // the checks, not signs of a broken harness: a stub domain may panic in a memory probe.
  const own = log.split("\n").filter((l) => !/^[A-Z]+\| /.test(l)).join("\n");
  const panic = PANICS.find((re) => re.test(own));
  // dom0 counts the results it printed: fewer on the console means the console lost lines.
  const lost = counted !== undefined && counted !== results.length ? `dom0 printed ${counted} result lines, the console shows ${results.length}` : undefined;
  const abnormal = panic ? `console shows ${panic.source.replace(/\\/g, "")}` : !done ? "dom0 never printed E2E DONE" : lost;
  return { results, times, info, done, abnormal };
}

/** test/qemu/relay-soak.ts as one file that `BUN_BE_BUN=1 stubdom-init` runs in dom0. */
async function bundleRelaySoak(dir: string): Promise<string> {
  const out = join(dir, "relay-soak.js");
  const r = await Bun.build({ entrypoints: [join(HERE, "../qemu/relay-soak.ts")], target: "bun" });
  if (!r.success) throw new Error(`bundling relay-soak.ts: ${r.logs.join("; ")}`);
  await Bun.write(out, r.outputs[0]!);
  return out;
}

/**
 * Processes killed by a fault, counted from the console: the kernel's `segfault at` / `traps:`
 * lines (the stub domain's come relayed as `STUB|`), and dom0 stress runs that exited on a
 * signal. The platform measurement of test/xen/README.md counts these.
 */
export function faultCounts(log: string): { dom0: number; stub: number; stress: number; lines: string[] } {
  // The kernel's lines (segfault, traps: invalid opcode or GP), a shell's report of a child it
  // lost, Bun's own crash banner ("panic(main thread): Segmentation fault at address ...").
  const fault = /segfault at|traps: .*(trap|general protection)|general protection fault|Segmentation fault|Illegal instruction|Aborted|panic\(/;
  const all = log.split(/[\r\n]+/);
  const faults = all.filter((l) => fault.test(l) && !l.startsWith("E2E "));
  const stress = all.filter((l) => /^E2E INFO bun-stress .* rc=(?!0\b)/.test(l));
  const stub = faults.filter((l) => l.startsWith("STUB|")).length;
  return { dom0: faults.length - stub, stub, stress: stress.length, lines: [...faults, ...stress] };
}

/**
 * Our images and agent as the package an administrator installs (agent/build/deb.ts, as
 * `make deb` builds it): dom0-test.sh installs it with `dpkg -i` before anything else.
 */
async function packageForDom0(opts: NestedXenOptions, outDir: string): Promise<string> {
  if (!opts.agent) throw new Error("bootNestedXen: ours needs the agent binary (opts.agent) for the package");
  const root = join(HERE, "../..");
  const { version } = (await Bun.file(join(root, "package.json")).json()) as { version: string };
  return buildDeb({
    version,
    epoch: Math.floor(Date.now() / 1000),
    firmwareDir: await xenFirmwareDir(join(root, ".cache"), opts.xen),
    kernel: opts.stubKernel,
    rootfs: opts.stubRootfs,
    agent: opts.agent,
    manpage: join(root, "agent/build/stubdom-init.8"),
    outDir,
  });
}

/**
 * Calls `onText` with what is appended to `path` (polled every 250 ms) until `end` settles, then
 * once more; returns `end`'s value. The file may appear late (QEMU creates it after the lock).
 */
async function followFile<T>(path: string, end: Promise<T>, onText: (text: string) => void): Promise<T> {
  let ended = false;
  void end.finally(() => (ended = true));
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let offset = 0;
  const drain = async () => {
    const fh = await open(path, "r").catch(() => undefined);
    if (!fh) return;
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) return;
        offset += bytesRead;
        onText(decoder.decode(buf.subarray(0, bytesRead), { stream: true }));
      }
    } finally {
      await fh.close();
    }
  };
  while (!ended) {
    await drain();
    await Promise.race([end, Bun.sleep(250)]);
  }
  await drain();
  return end;
}

/**
 * Runs the outer QEMU (`qemu`, its command line without -serial) under `flock /tmp/vm.lock`
 * (serialised with every other VM of the project) and a deadline (timeout's KILL, bounding this
 * VM alone: it starts after the lock). Its serial console goes to `consoleFile`, not to a pipe: a
 * reader that fell behind would stall the emulated UART, and Xen drops console output while its
 * transmit buffer (16 KiB) is full; the file also survives whatever becomes of the reading side.
 * Returns the console, how QEMU ended, and the time from its first output.
 */
export async function runOuterVm(
  qemu: string[],
  opts: { timeoutS: number; consoleFile: string; onLine?: (line: string) => void },
): Promise<{ log: string; end: string; wallMs: number }> {
  const cmd = ["flock", "/tmp/vm.lock", "timeout", "-s", "KILL", String(opts.timeoutS), ...qemu, "-serial", `file:${opts.consoleFile}`];
  const t0 = performance.now();
  let started = 0;
  let pending = "";
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const stdout = new Response(proc.stdout).text();
  const stderr = new Response(proc.stderr).text();
  const code = await followFile(opts.consoleFile, proc.exited, (text) => {
    if (started === 0) started = performance.now();
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const l of lines) opts.onLine?.(l.replace(/\r+$/, ""));
  });
  let log = await readFile(opts.consoleFile, "utf8").catch(() => "");
  const [out, err] = [await stdout, await stderr];
  if (out.trim()) log += `\n[qemu stdout] ${out.trim()}\n`;
  if (err.trim()) log += `\n[qemu stderr] ${err.trim()}\n`;
  // How QEMU ended tells a hang (the deadline's KILL: timeout exits 128 + 9) from a machine that
  // stopped by itself (power-off, a reset with -no-reboot, a QEMU crash).
  const end = code === 137 ? `killed at the ${opts.timeoutS} s deadline` : `exit ${code}`;
  return { log, end, wallMs: Math.round(performance.now() - (started || t0)) };
}

/** Runs one nested boot. Serialised with every other VM of the project through /tmp/vm.lock. */
export async function bootNestedXen(opts: NestedXenOptions): Promise<NestedXenRun> {
  const outer = await buildOuterImages({ xen: opts.xen });
  const runDir = join(E2E_CACHE, `run-${process.pid}-${Date.now()}`);
  await mkdir(runDir, { recursive: true });
  const initrd = join(runDir, "initrd.cpio");
  const consoleFile = join(runDir, "console.log");
  try {
    await writeRunInitramfs(initrd, {
      dom0Initramfs: outer.dom0Initramfs,
      stub: opts.kind === "ours" ? { deb: await packageForDom0(opts, runDir) } : { kernel: opts.stubKernel, rootfs: opts.stubRootfs },
      extraFiles: { "e2e/bun-stress.js": join(HERE, "bun-stress.js"), "e2e/relay-soak.js": await bundleRelaySoak(runDir) },
    });
    const dom0Cmdline = [
      "console=hvc0", "earlyprintk=xen", `e2e.kind=${opts.kind}`, `e2e.mode=${opts.mode ?? "full"}`,
      ...(opts.stubMemory !== undefined ? [`e2e.mem=${opts.stubMemory}`] : []),
      ...(opts.relayClients !== undefined ? [`e2e.count=${opts.relayClients}`] : []),
      ...(opts.dm ? [`e2e.dm=${opts.dm}`] : []),
      ...(opts.agentDebug ? ["e2e.debug=1"] : []),
      ...(opts.pauseGuest ? ["e2e.pause=1"] : []),
      ...(opts.stubCmdline?.length ? [`e2e.stubcmd=${opts.stubCmdline.join("+")}`] : []),
    ].join(" ");
    const timeoutS = Math.ceil((opts.timeoutMs ?? 600_000) / 1000);
    // Mode "pci": an emulated IOMMU with interrupt remapping for Xen, and a spare e1000e for
    // dom0 to hand to pciback (the nested machine has no other PCI device to pass through).
    const pci = opts.mode === "pci"
      ? ["-device", "intel-iommu,intremap=on,caching-mode=on", "-device", "e1000e,id=spare0"]
      : [];
    const qemu = [
      await outerQemuBinary(), "-machine", opts.mode === "pci" ? "q35,kernel-irqchip=split" : "q35", ...pci,
      "-accel", outerAccel(), "-cpu", outerCpu(), "-m", "2048", "-smp", outerSmp(),
      "-display", "none", "-monitor", "none", "-no-reboot",
      "-kernel", outer.xen, "-append", xenCmdline(),
      // Multiboot modules are comma-separated; a module's command line follows its path.
      "-initrd", `${outer.dom0Kernel} ${dom0Cmdline},${initrd}`,
    ];
    const vm = await runOuterVm(qemu, { timeoutS, consoleFile, onLine: opts.onLine });
    const parsed = parseConsole(vm.log);
    const abnormal = parsed.abnormal && `${parsed.abnormal} (outer QEMU: ${vm.end} after ${Math.round(vm.wallMs / 1000)} s)`;
    return { ...parsed, abnormal, wallMs: vm.wallMs, log: vm.log };
  } finally {
    await rm(runDir, { recursive: true, force: true });
  }
}

/**
 * Smallest stubdomain_memory (MiB, multiples of `step`) at which `xl create` succeeds, searched
 * downwards from `start` until the first failure. Each probe is a whole nested boot (~1 min).
 */
export async function findMemoryFloor(
  opts: Omit<NestedXenOptions, "stubMemory" | "mode"> & { start: number; min?: number; step?: number },
): Promise<{ floor?: number; probes: Array<{ mib: number; ok: boolean; detail: string }> }> {
  const step = opts.step ?? 8;
  const probes: Array<{ mib: number; ok: boolean; detail: string }> = [];
  let floor: number | undefined;
  for (let mib = opts.start; mib >= (opts.min ?? 64); mib -= step) {
    const r = await bootNestedXen({ ...opts, stubMemory: mib, mode: "create" });
    const create = r.results.find((x) => x.check === "xl-create");
    const ok = !r.abnormal && create?.status === "PASS";
    probes.push({ mib, ok, detail: r.abnormal ?? create?.detail ?? "no xl-create line" });
    if (!ok) break;
    floor = mib;
  }
  return { floor, probes };
}
