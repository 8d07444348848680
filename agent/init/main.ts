// PID 1 of the stub domain. Stage 0 has mounted /proc, /sys and devtmpfs and mounted /usr, then
// exec'd us, so we are PID 1 (a Bun binary cannot start without /proc: bun-as-pid1.md).
// The boot story, top to bottom:
//   setup → detect → options → modules → xen → xenstore → config → network → scrub
//   → QEMU under supervision, with the QMP relay toward dom0 beside it
// Until `supervise`, any failure goes to one sink: report (console + health key), power off.
// After it, PID 1 may not die: the supervisor's loop logs, reports and carries on.
import { existsSync, readFileSync } from "node:fs";
import { release } from "node:os";
import { finitModule, MODULE_INIT_COMPRESSED_FILE, O, open, close, RB_POWER_OFF, reboot, sync } from "../../ffi/libc.ts";
import { openXenStore } from "../../ffi/xenstore.ts";
import { parseCmdline } from "../config/cmdline.ts";
import { loadConfig } from "../config/load.ts";
import type { AgentOptions, StubdomConfig } from "../config/types.ts";
import { createHealthWriter, type HealthSources, type HealthWriter } from "../health/writer.ts";
import { createLogger, stderrSink, uptimeClock, type Logger } from "../log.ts";
import { createTap, linkNic, openNetlink, startDhcp, unlinkNic } from "../net/index.ts";
import type { XenStore } from "../xenstore/types.ts";
import { run as runSubcommand } from "./cli.ts";
import { devHypervisor, xenHypervisor } from "./hypervisor.ts";
import { loadModules, lockdownMode, stubdomModules } from "./modules.ts";
import { parseModulesBuiltin } from "../build/modules.ts";
import { onNicUnplug, type LinkedNics } from "./nic-unplug.ts";
import { NicLinks, watchLinks } from "./link-events.ts";
import { watchCdroms } from "./cdrom.ts";
import { queueWatchEvents } from "./events.ts";
import { sysfsPci } from "../pci/sysfs.ts";
import { watchPci } from "../pci/watch.ts";
import type { PciTracker } from "../pci/tracker.ts";
import { devNodes } from "./cdrom-devices.ts";
import { realPowerButtonSys, watchPowerButtons } from "./power-button.ts";
import type { Machine, PowerOffReason } from "./platform.ts";
import { baseSetup, runSetup, scrubSetup, xenSetup } from "./setup.ts";
import { realSetupSys } from "./setup-sys.ts";
import { MONITORS, REAP_SWEEP_MS, Supervisor, type QemuPlan, type SupervisorDeps } from "./supervisor.ts";
import { runSelftest } from "./selftest.ts";
import { findVirtioPort } from "./virtio.ts";
import { qemuConfinement } from "./confinement.ts";
import { kernelRunInitMs, openSaveStream, processStartMs, realSupervisorDeps, supervise, type SaveStream } from "./wiring.ts";
import { startDebugShell, startQmpRelay } from "./services.ts";
import { RESTORE_STALL_AT_MS } from "./restore-watch.ts";

const clock = uptimeClock();
const nowMs = () => clock() * 1000;
/** PID 1 entry in ms since kernel start: the kernel starting /init (stage 0, then us). */
const entryMs = kernelRunInitMs() ?? processStartMs(nowMs());
/** The JS runtime's start: the gap to the first log line is Bun loading the program. */
const runtimeMs = nowMs() - performance.now();

/** A boot failure that is the configuration's fault, not the machine's. */
class ConfigFailure extends Error {
  override name = "ConfigFailure";
}

export async function runInit(): Promise<never> {
  const argv = process.argv.slice(2);
  // `unshare --pid ... stubdom-init init ...` makes us PID 1 of a test namespace: never boot
  // a machine there.
  if (argv[0] === "init") process.exit(await runSubcommand(argv.slice(1)));

  let log = createLogger({ sink: stderrSink, clock });
  const boot = new BootPhases(log);
  const machine = pid1Machine(() => log);
  let health: HealthWriter | undefined;
  const failBoot = (e: unknown): never => {
    const reason: PowerOffReason = e instanceof ConfigFailure ? "config" : "fatal";
    const msg = e instanceof Error ? e.message : String(e);
    log.error(`boot failed (${reason}): ${msg}`);
    health?.error(msg);
    health?.setPhase("failed");
    health?.flush();
    machine.sync();
    machine.powerOff(reason);
    for (;;) Bun.sleepSync(1 << 30); // powerOff returned: reboot() failed; PID 1 must still not exit
  };
  const early = (e: unknown) => failBoot(e);
  process.on("uncaughtException", early);
  process.on("unhandledRejection", early);
  // PID 1 gets no signal it has no handler for: remember a shutdown asked for during boot.
  const earlySignals: Array<"SIGTERM" | "SIGINT"> = [];
  const onEarlySignal = (sig: "SIGTERM" | "SIGINT") => {
    log.warn(`${sig} during boot: stopping once supervision starts`);
    earlySignals.push(sig);
  };
  process.on("SIGTERM", onEarlySignal);
  process.on("SIGINT", onEarlySignal);

  let booted: Booted;
  try {
    booted = await bootStubdom(boot, machine, (l) => (log = l), (h) => (health = h));
  } catch (e) {
    return failBoot(e);
  }
  process.off("uncaughtException", early);
  process.off("unhandledRejection", early);
  process.off("SIGTERM", onEarlySignal);
  process.off("SIGINT", onEarlySignal);

  // From here on PID 1 may not die.
  const { plan, deps, options, config, net, xs, health: report, saveStream, pci } = booted;
  const sup = new Supervisor(plan, deps);
  for (const signal of earlySignals) sup.queue.push({ kind: "signal", signal });
  if (options.shell) startDebugShell(deps.processes, log);
  if (options.selftest > 0) {
    log.warn(`stubdom.selftest=${options.selftest}: a JavaScript-only child runs beside QEMU`);
    void runSelftest({ processes: deps.processes, seconds: options.selftest, log: log.child("selftest") });
  }
  if (net) {
    const unplugged = (pair: { netfront: string; tap: string }) => {
      net.links.forget(pair);
      return unlinkNic(net.nl, pair);
    };
    sup.listeners.on("qmp", onNicUnplug(net.pairs, unplugged, log));
    watchLinks({ nl: net.nl, links: net.links, queue: sup.queue, listeners: sup.listeners });
  }
  queueWatchEvents(xs, sup.queue);
  watchCdroms({
    xs, stubDomid: config.stubDomid, listeners: sup.listeners,
    qmp: () => sup.monitor, devices: devNodes, log, report: (m) => report.error(m),
  });
  pci.tracker = watchPci({
    xs, stubDomid: config.stubDomid, sysfs: sysfsPci(), listeners: sup.listeners, nowMs, log, report: (m) => report.error(m),
  });
  // Started with supervision: a press before that is lost, as it would be with no listener.
  watchPowerButtons(realPowerButtonSys(), (device) => {
    log.info(`power button pressed (${device}): stopping as for SIGTERM`);
    sup.queue.push({ kind: "signal", signal: "SIGTERM" });
  }, log);
  startQmpRelay({ options, config, log, monitor: `${plan.runDir}/${MONITORS.relay}.sock`, saveStream, report });
  // The boot's garbage (xenstore reads, zod parses, module set-up) is most of the heap now; a
  // full collection before QEMU starts gives those pages back when QEMU needs memory most.
  Bun.gc(true);
  await supervise(sup);
  for (;;) await Bun.sleep(1 << 30);
}

interface Booted {
  plan: QemuPlan;
  deps: SupervisorDeps;
  options: AgentOptions;
  config: StubdomConfig;
  net: Network | null;
  xs: XenStore;
  health: HealthWriter;
  saveStream: SaveStream | null;
  /** Set once supervision starts; the health report reads it from the first heartbeat. */
  pci: { tracker?: PciTracker };
}

/** The NIC pairs linked at boot, and what keeps them linked afterwards. */
interface Network extends LinkedNics {
  links: NicLinks;
}

/** The boot story; any throw here ends in failBoot. */
async function bootStubdom(
  boot: BootPhases,
  machine: Machine,
  setLog: (l: Logger) => void,
  setHealth: (h: HealthWriter) => void,
): Promise<Booted> {
  let log = boot.log;
  log.info(
    `stubdom-init: /init started at ${(entryMs / 1000).toFixed(3)} s, JS runtime at ${(runtimeMs / 1000).toFixed(3)} s since kernel start`,
  );
  boot.run("setup", () => runSetup(baseSetup("stubdom"), realSetupSys, log));
  const xen = boot.run("detect", () => detectXen(log));
  const options = boot.run("options", () => readOptions(log));
  log = createLogger({ sink: stderrSink, clock, level: options.loglevel });
  boot.log = log;
  setLog(log);
  boot.run("modules", () => loadKernelModules(xen, log));
  if (xen) boot.run("xen", () => runSetup(xenSetup(), realSetupSys, log));
  const xs = boot.run("xenstore", () => connectXenStore(options, log));
  // NIC entries come from the pairs once the network phase linked them.
  const nics: { links?: NicLinks } = {};
  const pci: { tracker?: PciTracker } = {};
  const health = startHealth(xs, options, log, {
    nics: () => nics.links?.health() ?? [],
    pci: () => pci.tracker?.health() ?? [],
  });
  setHealth(health);
  for (const [name, at] of boot.times) health.bootPhase(name, at);
  boot.health = health;
  health.setPhase("configuring");
  const config = boot.run("config", () => readConfig(xs, options, log));
  const net = await boot.runAsync("network", () => setupNetwork(config, log, health));
  nics.links = net?.links;
  boot.run("scrub", () => runSetup(scrubSetup, realSetupSys, log));
  const confinement = await qemuConfinement(options.qemu, options.confine, log);
  const plan: QemuPlan = {
    binary: options.qemu,
    ...confinement,
    dmArgv: config.dmArgv,
    restoreArgIndex: config.restore?.argIndex ?? null,
    guestDomid: config.guestDomid,
    crash: options.crash,
    crashGraceMs: options.crashGraceMs,
    runDir: "/tmp",
    saveConsole: config.consoles.save,
    qmpTimeoutMs: 20_000,
    restoreStallAtMs: RESTORE_STALL_AT_MS,
    probeMs: options.healthInterval * 1000,
    reapSweepMs: REAP_SWEEP_MS,
  };
  // Opened now: a boot that cannot make the save stream fails here, not at the first save.
  const saveStream = config.consoles.save ? openSaveStream("/dev/hvc1") : null;
  const deps = realSupervisorDeps({
    log,
    hypervisor: xen ? xenHypervisor : devHypervisor(xs, config.stubDomid),
    machine,
    health,
    restoreConsole: "/dev/hvc2",
    ...(saveStream ? { saveStream } : {}),
    nowMs,
    entryMs,
  });
  return { plan, deps, options, config, net, xs, health, saveStream, pci };
}

/** Times of each boot phase in ms since kernel start, for the log and the health report. */
class BootPhases {
  readonly times: Array<[string, number]> = [];
  health: HealthWriter | undefined;
  constructor(public log: Logger) {}

  run<T>(name: string, fn: () => T): T {
    const t0 = nowMs();
    const v = fn();
    this.done(name, t0);
    return v;
  }

  async runAsync<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = nowMs();
    const v = await fn();
    this.done(name, t0);
    return v;
  }

  private done(name: string, t0: number): void {
    const at = Math.round(nowMs());
    this.times.push([name, at]);
    this.health?.bootPhase(name, at);
    this.log.info(`== ${name} done at ${at} ms (${Math.round(at - t0)} ms)`);
  }
}

function pid1Machine(log: () => Logger): Machine {
  return {
    sync,
    powerOff: (reason) => {
      log().info(`reboot(RB_POWER_OFF): ${reason}`);
      try {
        reboot(RB_POWER_OFF);
      } catch (e) {
        log().error(`power off failed: ${(e as Error).message}`);
      }
    },
  };
}

function detectXen(log: Logger): boolean {
  let type = "";
  try {
    type = readFileSync("/sys/hypervisor/type", "utf8").trim();
  } catch {
    type = "";
  }
  log.info(type === "xen" ? "running under Xen" : `no Xen (/sys/hypervisor/type: ${type || "absent"}): development implementations`);
  return type === "xen";
}

function readOptions(log: Logger): AgentOptions {
  const { options, errors } = parseCmdline(readFileSync("/proc/cmdline", "utf8"));
  if (errors.length > 0) {
    throw new ConfigFailure(`kernel command line: ${errors.map((e) => `${e.key}: ${e.reason}`).join("; ")}`);
  }
  log.info(`options: crash=${options.crash} qmp=${options.qmp.kind} xenstore=${options.xenstore.kind} qemu=${options.qemu}`);
  return options;
}

function loadKernelModules(xen: boolean, log: Logger): void {
  const dir = `/usr/lib/modules/${release()}`;
  // Our kernel has every driver built in and the image carries its modules.builtin; a modular
  // kernel's image would carry a modules.dep and the .ko files.
  const optional = (name: string) => (existsSync(`${dir}/${name}`) ? readFileSync(`${dir}/${name}`, "utf8") : "");
  const builtin = new Set(parseModulesBuiltin(optional("modules.builtin")));
  loadModules(dir, optional("modules.dep"), stubdomModules(xen), {
    load: (path, params) => {
      const fd = open(path, O.RDONLY | O.CLOEXEC);
      try {
        finitModule(fd, params, path, /\.ko\.(xz|zst|gz)$/.test(path) ? MODULE_INIT_COMPRESSED_FILE : 0);
      } finally {
        close(fd);
      }
    },
    present: (name) => {
      if (builtin.has(name)) return true;
      try {
        readFileSync(`/sys/module/${name}/uevent`);
        return true;
      } catch {
        return false;
      }
    },
  }, log);
  if (!xen) return;
  let mode: string | null = null;
  try {
    mode = lockdownMode(readFileSync("/sys/kernel/security/lockdown", "utf8"));
  } catch {
    mode = null; // no securityfs or no lockdown LSM: nothing can override unrestricted=1
  }
  if (mode && mode !== "none") {
    log.warn(`kernel lockdown is '${mode}': xen-privcmd ignores unrestricted=1, so libxendevicemodel may fail (XSA-482)`);
  }
}

function connectXenStore(options: AgentOptions, log: Logger): XenStore {
  let path: string | undefined;
  if (options.xenstore.kind === "path") path = options.xenstore.path;
  if (options.xenstore.kind === "virtio") {
    const port = findVirtioPort(options.xenstore.name);
    if (!port) throw new Error(`no virtio-serial port named ${options.xenstore.name} for xenstore`);
    path = port;
  }
  log.info(`xenstore via ${path ?? "the default transport (/dev/xen/xenbus)"}`);
  return openXenStore(path === undefined ? {} : { path });
}

function startHealth(xs: XenStore, options: AgentOptions, log: Logger, sources: Pick<HealthSources, "nics" | "pci">): HealthWriter {
  const domid = options.domid ?? Number(new TextDecoder().decode(xs.read("domid")));
  if (!Number.isInteger(domid) || domid <= 0) throw new Error(`cannot tell our own domid (read ${domid})`);
  const w = createHealthWriter({ xs, domid, log: log.child("health"), clock, intervalMs: options.healthInterval * 1000, sources });
  w.start();
  return w;
}

function readConfig(xs: XenStore, options: AgentOptions, log: Logger): StubdomConfig {
  const { result } = loadConfig(xs, options);
  if (!result.ok) {
    for (const e of result.errors) log.error(`config: ${e.key}: ${e.reason}`);
    throw new ConfigFailure(`configuration: ${result.errors.map((e) => `${e.key}: ${e.reason}`).join("; ")}`);
  }
  const c = result.config;
  log.info(`config: stub domain ${c.stubDomid} for guest ${c.guestDomid} (${c.guestName}), ${c.dmArgv.length} QEMU arguments, ${c.nics.length} NIC(s)`);
  return c;
}

/** Each NIC: the tap QEMU will open, joined to its netfront. A NIC that fails is reported, not fatal. */
async function setupNetwork(config: StubdomConfig, log: Logger, health: HealthWriter): Promise<Network | null> {
  if (config.nics.length === 0) return null;
  const nl = openNetlink();
  const pairs = new Map<string, { netfront: string; tap: string }>();
  // A re-created tap needs a new DHCP socket: the old one is bound to the deleted ifindex.
  const dhcpRestarts = new Map<string, () => void>();
  const links = new NicLinks({ nl, log, report: (m) => health.error(m), relinked: (device) => dhcpRestarts.get(device)?.() });
  for (const nic of config.nics) {
    try {
      createTap(nic.ifname);
      const lease = nic.index === 0 ? config.qubes.net : null;
      const options = {
        netfront: nic.netfront.name,
        tap: nic.ifname,
        mtu: nic.mtu,
        ...(nic.allowedSources.length ? { allowedSources: [...nic.allowedSources] } : {}),
        localDhcp: lease !== null,
      };
      const linked = await linkNic(nl, options);
      log.info(`net: ${nic.netfront.name} <-> ${nic.ifname} (mtu ${nic.mtu})`);
      pairs.set(`nic${nic.index}`, { netfront: nic.netfront.name, tap: nic.ifname });
      links.track(`nic${nic.index}`, options, linked);
      if (lease) {
        const serve = () => startDhcp({
          tap: nic.ifname,
          clientMac: nic.guestMac,
          lease: { clientIp: lease.clientIp, netmask: lease.netmask, gateway: lease.gateway, dns: [...lease.dns] },
          log: (m) => log.info(m),
        });
        let server = serve();
        dhcpRestarts.set(`nic${nic.index}`, () => {
          server.stop();
          server = serve();
          log.info(`net: DHCP on ${nic.ifname} restarted`);
        });
      }
    } catch (e) {
      const msg = `net: ${nic.netfront.name} <-> ${nic.ifname}: ${(e as Error).message}`;
      log.error(msg);
      health.error(msg);
    }
  }
  return { nl, pairs, links };
}
