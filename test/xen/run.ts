// `make e2e-xen`: one nested-Xen end-to-end run against a pair of stub domain images.
//
//   bun test/xen/run.ts [--xen 4.17|4.20] [--images ours|baseline] [--floor START] [--relay N] [--soak SECONDS] [--bun-stress] [--save-restore [--dm dom0]] [--pci] [--pause-guest] [--stub-cmdline WORDS] [--debug] [--log FILE]
//
// ours = dist/qemu-stubdom-linux-{kernel,rootfs} (make build); baseline = the busybox shell
// init of test/bench/baseline (built here if needed). STUBDOM_MEMORY=MiB overrides libxl's
// default stub domain memory, at which both images run unless told. --floor searches
// stubdomain_memory downwards in 8 MiB steps. --dm dom0 runs the same guest with QEMU in dom0
// (device_model_stubdomain_override=0), for comparison (make bench's save/restore fields).
// --pci passes a spare e1000e of the outer machine (behind its emulated IOMMU) to the guest
// through the stub domain, and detaches and attaches it on the running guest (dom0-pci.sh).
// Exit status 0 only if every check required for those images passed.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildBaselineImages } from "../bench/baseline/image.ts";
import { parseXenRelease, type XenRelease } from "../../agent/build/xen-release.ts";
import { bootNestedXen, faultCounts, findMemoryFloor, outerAccel, outerQemu, outerCpu, outerSmp, xenCmdline, type ImageKind, type NestedXenRun } from "./harness.ts";

// import.meta.dir is Bun's; Vitest's transform leaves only import.meta.url.
const HERE = fileURLToPath(new URL(".", import.meta.url));

const root = join(HERE, "../..");

export const REQUIRED: Record<ImageKind, string[]> = {
  baseline: ["xl-create", "qmp-vchan", "guest-boot", "guest-disk", "guest-lease", "guest-ping", "nic-frames", "destroy-clean"],
  ours: [
    "deb-install", "xl-create", "status-running", "console0", "confined", "qmp-vchan", "guest-boot", "guest-disk", "guest-lease", "guest-ping",
    "nic-frames", "crash-destroy", "status-crash", "destroy-clean",
  ],
};

/** The checks of `--save-restore` (mode "saverestore"): xl save, then xl restore (issue 18). */
export const SAVE_RESTORE_REQUIRED = [
  "deb-install", "xl-create", "save", "restore", "restore-qmp", "restore-status", "restore-continues", "restore-nic",
  "migrate", "migrate-qmp", "migrate-status", "migrate-continues", "migrate-nic", "guest-shutdown", "restore-corrupt", "restore-stalled",
  "destroy-clean",
];

/** The checks of `--pci` (mode "pci"): a device passed through the stub domain (issue 22). */
export const PCI_REQUIRED: Record<ImageKind, string[]> = {
  ours: ["deb-install", "xl-create", "pci-create", "pci-status", "pci-attach", "destroy-clean"],
  baseline: ["xl-create", "pci-create", "pci-attach", "destroy-clean"],
};

/** Checks only libxl >= 4.20 can run: `xl cd-eject`/`cd-insert` of a stub domain guest's CD-ROM. */
export const XEN_4_20_REQUIRED = ["cdrom-change"];

/** The full run's checks for an image on a Xen release. */
export function fullChecks(kind: ImageKind, xen: XenRelease): string[] {
  return kind === "ours" && xen !== "4.17" ? [...REQUIRED.ours, ...XEN_4_20_REQUIRED] : REQUIRED[kind];
}

/** The checks each mode of the CLI must pass; the full run's are fullChecks(kind, xen). */
function requiredChecks(kind: ImageKind, xen: XenRelease, mode: "full" | "relay" | "bunstress" | "soak" | "saverestore" | "pci"): string[] {
  switch (mode) {
    case "pci": return PCI_REQUIRED[kind];
    case "full": return fullChecks(kind, xen);
    case "relay": return ["xl-create", "relay-clients", "relay-rss", "destroy-clean"];
    case "bunstress": return ["xl-create", "destroy-clean"];
    case "soak": return ["xl-create", "soak-relay", "soak-rss", "destroy-clean"];
    case "saverestore":
      return kind === "ours"
        ? SAVE_RESTORE_REQUIRED
        : ["xl-create", "save", "restore", "restore-qmp", "restore-continues", "migrate", "migrate-qmp", "migrate-continues", "guest-shutdown", "destroy-clean"];
  }
}

export async function imagesFor(kind: ImageKind): Promise<{ stubKernel: string; stubRootfs: string; agent?: string }> {
  if (kind === "baseline") {
    const b = await buildBaselineImages();
    return { stubKernel: b.kernel, stubRootfs: b.rootfs };
  }
  const dist = join(root, "dist");
  return {
    stubKernel: join(dist, "qemu-stubdom-linux-kernel"),
    stubRootfs: join(dist, "qemu-stubdom-linux-rootfs"),
    agent: join(dist, "stubdom-init"),
  };
}

/** The checks of `kind` that did not pass, with the reason; empty when the run is good. */
export function failures(kind: ImageKind, r: NestedXenRun, required = REQUIRED[kind]): string[] {
  const out: string[] = [];
  if (r.abnormal) out.push(`run: ${r.abnormal}`);
  for (const res of r.results) if (res.status === "FAIL") out.push(`${res.check}: ${res.detail}`);
  for (const check of required) {
    if (!r.results.some((x) => x.check === check)) out.push(`${check}: no result line`);
  }
  return out;
}

export function memoryFromEnv(): number | undefined {
  const v = process.env.STUBDOM_MEMORY;
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`STUBDOM_MEMORY=${v}: expected a whole number of MiB`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const arg = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  const kind = (arg("--images") ?? "ours") as ImageKind;
  if (kind !== "ours" && kind !== "baseline") throw new Error(`--images: expected ours or baseline, got ${kind}`);
  const xen = parseXenRelease(arg("--xen"));
  const images = await imagesFor(kind);
  for (const f of [images.stubKernel, images.stubRootfs]) {
    if (!(await Bun.file(f).exists())) throw new Error(`${f} is missing (run make build)`);
  }
  const floorStart = arg("--floor");
  if (floorStart !== undefined) {
    const r = await findMemoryFloor({ kind, xen, ...images, start: Number(floorStart) });
    for (const p of r.probes) console.log(`floor probe ${kind} ${p.mib} MiB: ${p.ok ? "ok" : `FAIL ${p.detail}`}`);
    console.log(`memory floor ${kind}: ${r.floor ?? "none"} MiB`);
    return r.floor === undefined ? 1 : 0;
  }
  const mem = memoryFromEnv();
  const soakArg = arg("--soak");
  const soakSeconds = soakArg === undefined ? undefined : Number(soakArg);
  if (soakSeconds !== undefined && !(Number.isInteger(soakSeconds) && soakSeconds > 0)) throw new Error(`--soak ${soakArg}: expected seconds`);
  const relay = arg("--relay");
  const relayClients = relay === undefined ? undefined : Number(relay);
  if (relayClients !== undefined && !(Number.isInteger(relayClients) && relayClients > 0)) throw new Error(`--relay ${relay}: expected a number of clients`);
  console.log(
    `e2e-xen: Xen ${xen} images=${kind} STUBDOM_MEMORY=${mem ?? "default (libxl: 128 MiB + video RAM)"} outer ${outerQemu()} accel ${outerAccel()} cpu ${outerCpu()} smp ${outerSmp()}; Xen: ${xenCmdline()}` +
      (relayClients ? `; ${relayClients} relay clients` : ""),
  );
  const mode = relayClients ? "relay" : soakSeconds ? "soak" : argv.includes("--bun-stress") ? "bunstress" : argv.includes("--save-restore") ? "saverestore" : argv.includes("--pci") ? "pci" : "full";
  const r = await bootNestedXen({
    kind, xen, ...images, stubMemory: mem, mode,
    ...(relayClients ? { relayClients, timeoutMs: 420_000 + relayClients * 30_000 } : {}),
    ...(mode === "bunstress" || mode === "saverestore" ? { timeoutMs: 900_000 } : {}),
    ...(soakSeconds ? { relayClients: soakSeconds, timeoutMs: 600_000 + soakSeconds * 1500 } : {}),
    agentDebug: argv.includes("--debug"),
    pauseGuest: argv.includes("--pause-guest"),
    ...(arg("--dm") === "dom0" ? { dm: "dom0" as const } : {}),
    stubCmdline: arg("--stub-cmdline")?.split(" ").filter(Boolean),
    onLine: argv.includes("--verbose") ? (l) => console.log(l) : undefined,
  });
  const logFile = arg("--log") ?? join(root, ".cache", "xen-e2e", `last-${kind}.log`);
  await Bun.write(logFile, r.log);
  for (const x of r.results) console.log(`${x.status} ${x.check} ${x.detail}`);
  for (const i of r.info) console.log(`INFO ${i}`);
  console.log(`xl create -> running: ${r.times["xl-create-ms"] ?? "?"} ms; nested run wall time: ${r.wallMs} ms; console log: ${logFile}`);
  const faults = faultCounts(r.log);
  console.log(`faults: dom0 ${faults.dom0}, stub domain ${faults.stub}; dom0 stress runs failed: ${faults.stress}`);
  for (const l of faults.lines) console.log(`  ${l.slice(0, 200)}`);
  const bad = failures(kind, r, requiredChecks(kind, xen, mode));
  for (const b of bad) console.log(`FAILED ${b}`);
  return bad.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  try {
    process.exit(await main(process.argv.slice(2)));
  } catch (e) {
    console.error(`e2e-xen: ${(e as Error).message}`);
    process.exit(2);
  }
}
