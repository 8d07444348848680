// The supervision loop: one QEMU, started once, watched through its exit promise and its QMP
// monitor, stopped on request, and — when it dies on its own — the crash policy. Every event
// goes through the queue and the lifecycle table; nothing here throws past the loop: errors
// become log lines, health keys, or the one fatal path.
import {
  DEFAULT_DEADLINES,
  lifecycle,
  type Action,
  type Deadlines,
  type QemuEvent,
  type QemuState,
} from "../qemu/lifecycle.ts";
import type { QmpClient, QmpEvent } from "../qemu/qmp.ts";
import { DEFAULT_RING, StderrRing } from "../qemu/stderr-ring.ts";
import type { Confinement } from "../health/schema.ts";
import { verifyConfinement } from "./confinement.ts";
import { exitAfterGuestShutdown, guestShutdownCause } from "./guest-shutdown.ts";
import { MONITORS, startQemu } from "./qemu-start.ts";
import { watchRestore } from "./restore-watch.ts";
import { StatusProbe } from "./status-probe.ts";
import { EVENT_QUEUE_LIMIT, EventQueue, Listeners, type AgentEvent } from "./events.ts";
import type { PowerOffReason } from "./platform.ts";
import type { Child, ExitStatus } from "./processes.ts";
import type { QemuPlan, SupervisorDeps } from "./qemu-plan.ts";

export type { ConfinePlan, QemuPlan, SupervisorDeps } from "./qemu-plan.ts";

const STDERR_DRAIN_MS = 1000;
/** The orphan sweep's period: a zombie costs a pid and a task struct, not memory to speak of. */
export const REAP_SWEEP_MS = 5000;
const EXIT_GRACE_MS = 200;

export { MONITORS } from "./qemu-start.ts";

export class Supervisor {
  readonly queue = new EventQueue();
  state: QemuState = "idle";
  private child: Child | undefined;
  private qmp: QmpClient | undefined;
  private generation = 0;
  private deadline: ReturnType<typeof setTimeout> | undefined;
  /** The last QMP problem, for the log. */
  private qmpProblem: string | undefined;
  /** Set when we declared QEMU failed and stopped it: its end then counts as a crash. */
  private startFailure: string | undefined;
  private hypervisorCalled = false;
  private orphansReaped = 0;
  private fatalStarted = false;
  private readonly stderr: StderrRing;
  private readonly deadlines: Deadlines;
  private readonly probe: StatusProbe;
  /**
   * Consumers of QMP events (NIC teardown on DEVICE_DELETED), xenstore watch events (CD-ROM
   * changes) and link events (NIC redirects). They run inside the loop, so they only do
   * bookkeeping and start their own work; a listener that throws is logged and reported.
   */
  readonly listeners = new Listeners();

  constructor(
    private readonly plan: QemuPlan,
    private readonly deps: SupervisorDeps,
  ) {
    this.deadlines = deps.deadlines ?? DEFAULT_DEADLINES;
    this.probe = new StatusProbe(deps.health);
    this.queue.onDrop = (e, n) => {
      // The first drop and then one line per thousand: a flood must not become a log flood.
      if (n === 1 || n % 1000 === 0) this.reportError(`event queue full (${EVENT_QUEUE_LIMIT}): ${n} event(s) dropped, the last a ${e.kind} event`);
    };
    const qlog = deps.log.child("qemu");
    this.stderr = new StderrRing(DEFAULT_RING, (l) => qlog.info(l));
  }

  /** QEMU's monitor while QEMU runs (for listeners that send QMP commands), else undefined. */
  get monitor(): QmpClient | undefined {
    return this.state === "running" ? this.qmp : undefined;
  }

  socketPath(monitor: string): string {
    return `${this.plan.runDir}/${monitor}.sock`;
  }

  /** Starts QEMU and handles events until power-off. Never returns while supervising. */
  async run(): Promise<void> {
    if (this.plan.reapSweepMs > 0) this.sweep = setInterval(() => this.queue.pushReap("sweep"), this.plan.reapSweepMs);
    this.queue.push({ kind: "qemu", event: "start" });
    for await (const ev of this.queue) {
      try {
        await this.handle(ev);
      } catch (e) {
        await this.fatal(`while handling ${ev.kind} event: ${(e as Error).stack ?? String(e)}`);
      }
    }
  }

  private async handle(ev: AgentEvent): Promise<void> {
    switch (ev.kind) {
      case "reap":
        this.reap(ev.trigger);
        return;
      case "signal":
        if (ev.signal === "SIGHUP") {
          this.deps.log.info("SIGHUP ignored");
        } else {
          this.deps.log.info(`${ev.signal}: stopping QEMU and powering off`);
          await this.step("stop");
        }
        return;
      case "qemu":
        if (ev.event === "deadline" && ev.generation !== this.generation) return; // stale timer
        if (ev.event === "exit" && ev.exit) this.recordExit(ev.exit);
        if (ev.event === "qmpFailed" && ev.detail) this.qmpProblem = ev.detail;
        await this.step(ev.event);
        return;
      case "qmp":
      case "xenstore":
      case "link":
      case "linksLost":
        if (ev.kind === "qmp") this.noteGuestShutdown(ev.event);
        this.listeners.dispatch(ev, (e) => this.reportError(`${ev.kind} listener failed: ${(e as Error).stack ?? String(e)}`));
        return;
      case "fatal":
        await this.fatal(ev.reason);
        return;
    }
  }

  private async step(event: QemuEvent): Promise<void> {
    const from = this.state;
    const tr = lifecycle[from][event];
    this.state = tr.next;
    if (tr.next !== from) {
      this.deps.log.debug(`qemu ${from} --${event}--> ${tr.next}`);
      this.armDeadline(tr.next);
    }
    for (const a of tr.actions) await this.act(a, `${from}/${event}`);
  }

  private armDeadline(state: QemuState): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    const gen = ++this.generation;
    const ms = state in this.deadlines ? this.deadlines[state as keyof Deadlines] : undefined;
    if (ms !== undefined) {
      this.deadline = setTimeout(() => this.queue.push({ kind: "qemu", event: "deadline", generation: gen }), ms);
    }
  }

  private async act(action: Action, cell: string): Promise<void> {
    const log = this.deps.log;
    switch (action) {
      case "spawn":
        return this.spawn();
      case "reportRunning":
        log.info(`QEMU ready (pid ${this.child?.pid})`);
        if (this.plan.restoreArgIndex !== null && this.qmp) {
          this.probe.watchRestore(watchRestore({ qmp: this.qmp, nowMs: this.deps.nowMs, log, health: this.deps.health }, this.plan.restoreStallAtMs));
        }
        if (this.plannedConfinement && this.child) verifyConfinement(this.child.pid, this.plannedConfinement, this.deps);
        this.deps.health.setPhase("running");
        this.deps.health.bootPhase("qemu_ready", Math.round(this.deps.nowMs()));
        if (this.qmp) this.probe.start(this.qmp, this.plan.probeMs);
        return;
      case "warnQmpLost":
        log.warn(`QMP monitor lost: ${this.qmpProblem ?? "closed"}`);
        return;
      case "qmpQuit":
        log.info("asking QEMU to quit (QMP quit)");
        this.deps.health.setPhase("stopping");
        this.qmp?.execute("quit", undefined, this.deadlines.quitting).catch(() => undefined);
        return;
      case "sendTerm":
        log.info(`sending SIGTERM to QEMU (pid ${this.child?.pid})`);
        this.signalChild("SIGTERM");
        return;
      case "sendKill":
        log.warn(`QEMU still running: sending SIGKILL (pid ${this.child?.pid})`);
        this.signalChild("SIGKILL");
        return;
      case "failStart":
        this.startFailure = this.qmpProblem ?? "QMP monitor unusable";
        this.reportError(`QEMU failed to start: ${this.startFailure}`);
        return;
      case "crashed":
        if (exitAfterGuestShutdown(this.guestCause, this.lastExit)) return this.guestStopped();
        return this.crashPolicy("QEMU exited on its own");
      case "stopped":
        if (this.startFailure !== undefined) return this.crashPolicy(`QEMU failed: ${this.startFailure}`);
        return this.powerOff("shutdown");
      case "giveUp":
        return this.fatal("QEMU survived SIGKILL");
      case "impossible":
        return this.fatal(`impossible QEMU event ${cell}`);
    }
  }

  private sweep: ReturnType<typeof setInterval> | undefined;
  private sigchldSeen = false;
  private sweepWarned = false;

  private reap(trigger: "SIGCHLD" | "sweep"): void {
    if (trigger === "SIGCHLD") this.sigchldSeen = true;
    let n: number;
    try {
      n = this.deps.reapOrphans();
    } catch (e) {
      this.reportError(`orphan reaper: ${(e as Error).message}`);
      return;
    }
    this.orphansReaped += n;
    if (n === 0) return;
    if (trigger === "sweep" && !this.sigchldSeen && !this.sweepWarned) {
      this.sweepWarned = true;
      this.deps.log.warn(`the sweep reaped ${n} orphan(s) and no SIGCHLD has reached the agent: orphans are reaped every ${this.plan.reapSweepMs} ms`);
    } else {
      this.deps.log.debug(`reaped ${n} orphan(s) (${trigger})`);
    }
  }

  private signalChild(sig: "SIGTERM" | "SIGKILL"): void {
    try {
      this.child?.kill(sig);
    } catch (e) {
      this.deps.log.warn(`kill ${sig}: ${(e as Error).message}`);
    }
  }

  private async spawn(): Promise<void> {
    const { plan, deps } = this;
    deps.health.setPhase("starting");
    const started = startQemu(plan, deps, (m) => this.socketPath(m));
    if (!started.ok) return started.config !== undefined ? this.configError(started.config) : this.fatal(started.fatal);
    this.child = started.child;
    this.plannedConfinement = started.confinement;
    const child = started.child;
    const at = deps.nowMs();
    deps.log.info(`QEMU pid ${child.pid}, ${Math.round(at - deps.entryMs)} ms after PID 1 entry`);
    deps.health.agentOverhead(Math.round(at - deps.entryMs));
    deps.health.qemuStarted(child.pid, Math.round(at));
    deps.health.bootPhase("qemu_exec", Math.round(at));
    const stderrDone = this.pumpStderr(child);
    child.exited.then(
      async (exit) => {
        // Its last words are what the health report is for; a grandchild holding the pipe
        // open must not delay the crash report by more than a moment.
        // Nor its monitor, once open: a SHUTDOWN event written before the exit is queued first.
        const said = this.qmp ? Promise.all([stderrDone, this.qmp.closed]) : stderrDone;
        await Promise.race([said, Bun.sleep(STDERR_DRAIN_MS)]);
        this.queue.push({ kind: "qemu", event: "exit", exit });
      },
      (e: unknown) => this.queue.push({ kind: "fatal", reason: `lost track of QEMU: ${String(e)}` }),
    );
    void this.connectQmp();
  }

  private async connectQmp(): Promise<void> {
    const { plan, deps } = this;
    try {
      const qmp = await deps.connectQmp(this.socketPath(MONITORS.agent), plan.qmpTimeoutMs);
      this.qmp = qmp;
      qmp.onEvent((event) => this.queue.push({ kind: "qmp", event }));
      if (plan.saveConsole) {
        const fd = deps.saveStreamFd();
        try {
          // libxl's save sends xen-save-devices-state filename=/dev/fdset/1 (protocol §6);
          // the relay copies what QEMU wrote to console 1 (save-stream.ts).
          await qmp.execute("add-fd", { "fdset-id": 1, opaque: "hvc1" }, plan.qmpTimeoutMs, [fd]);
        } finally {
          deps.closeFd(fd);
        }
        deps.log.info("QMP add-fd of the save stream as fdset 1 (copied to /dev/hvc1 when QEMU has saved)");
      }
      this.queue.push({ kind: "qemu", event: "qmpReady" });
      const why = await qmp.closed;
      this.queue.push({ kind: "qemu", event: "qmpFailed", detail: why.message });
    } catch (e) {
      // A QEMU that is dying breaks its monitor first: let its exit (code, stderr) be the
      // event that explains the failure when it comes at once.
      const child = this.child;
      if (child) await Promise.race([child.exited.catch(() => undefined), Bun.sleep(EXIT_GRACE_MS)]);
      this.queue.push({ kind: "qemu", event: "qmpFailed", detail: (e as Error).message });
    }
  }

  private async pumpStderr(child: Child): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of child.stderr) this.stderr.push(dec.decode(chunk, { stream: true }));
    } catch (e) {
      this.deps.log.warn(`QEMU stderr: ${(e as Error).message}`);
    }
  }

  private lastExit: ExitStatus | undefined;
  /** What stubdom-confine was asked to apply; reported once QEMU runs and /proc confirms it. */
  private plannedConfinement: Confinement | undefined;

  private recordExit(exit: ExitStatus): void {
    this.lastExit = exit;
    this.stderr.flush();
    const how = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    this.deps.log.info(`QEMU (pid ${this.child?.pid}) ${how}`);
    this.probe.stop();
    this.deps.health.qemuExited({
      stderr: this.stderr.tail(),
      ...(exit.signal ? { signal: exit.signal } : { code: exit.code ?? 0 }),
    });
  }

  private reportError(msg: string): void {
    this.deps.log.error(msg);
    this.deps.health.error(msg);
  }

  private async crashPolicy(why: string): Promise<void> {
    const { plan, deps } = this;
    const exit = this.lastExit;
    // SIGSYS is what our filter's kill looks like (QEMU installs no handler for it).
    const denied = exit?.signal === "SIGSYS" && plan.confine ? ": a system call the seccomp filter denies" : "";
    this.reportError(`${why}${exit ? ` (${exit.signal ?? `code ${exit.code}`}${denied})` : ""}; crash policy ${plan.crash}`);
    deps.health.setPhase("crashed");
    // Written before the hypervisor hears of it: the toolstack then destroys this domain, and a
    // report still queued would be lost (dom0 would never see "crashed").
    deps.health.flush();
    if (plan.crash === "hold") {
      deps.log.warn("crash policy hold: staying up for debugging; SIGTERM powers off");
      return;
    }
    if (plan.crash === "shutdown-guest") {
      if (plan.crashGraceMs > 0) {
        deps.log.info(`crash report written; telling the hypervisor in ${plan.crashGraceMs} ms (stubdom.crash_grace_ms)`);
        await new Promise((resolve) => setTimeout(resolve, plan.crashGraceMs));
      }
      this.tellHypervisor("crash");
    }
    this.powerOff("crash");
  }

  /** The guest's own SHUTDOWN event (guest-shutdown.ts), remembered for QEMU's exit. */
  private guestCause: string | undefined;

  /**
   * libxl starts QEMU with -no-shutdown: QEMU stops, Xen shuts the guest down and the toolstack
   * destroys this domain next. The report says so ("stopping") before it goes.
   */
  private noteGuestShutdown(ev: QmpEvent): void {
    const cause = guestShutdownCause(ev);
    if (cause === undefined || this.guestCause !== undefined) return;
    this.guestCause = cause;
    if (cause === "guest-panic") return this.deps.log.warn("QEMU: the guest panicked");
    this.deps.log.info(`QEMU: the guest shut itself down (${cause}); the toolstack ends this stub domain next`);
    this.deps.health.setPhase("stopping");
  }

  /** QEMU exited 0 after the guest shut itself down (no -no-shutdown): a clean stop, not a crash. */
  private guestStopped(): void {
    this.deps.log.info(`QEMU exited after the guest's own shutdown (${this.guestCause}): stopping cleanly`);
    this.tellHypervisor("poweroff");
    this.powerOff("shutdown");
  }

  /** At most once per life: a second report would confuse the toolstack. */
  private tellHypervisor(reason: "crash" | "poweroff"): void {
    if (this.hypervisorCalled) return;
    this.hypervisorCalled = true;
    try {
      this.deps.hypervisor.shutdownGuest(this.plan.guestDomid, reason);
      this.deps.log.info(reason === "crash" ? `told the hypervisor that guest ${this.plan.guestDomid} crashed` : `told the hypervisor to power guest ${this.plan.guestDomid} off`);
    } catch (e) {
      this.deps.log.error(`hypervisor shutdown of guest ${this.plan.guestDomid}: ${(e as Error).message}`);
    }
  }

  private configError(msg: string): void {
    this.reportError(msg);
    this.deps.health.setPhase("failed");
    this.powerOff("config");
  }

  private powerOff(reason: PowerOffReason): void {
    clearTimeout(this.deadline);
    clearInterval(this.sweep);
    this.probe.stop();
    this.deps.health.flush();
    this.deps.log.info(`powering off (${reason}); ${this.orphansReaped} orphan(s) reaped in total`);
    this.deps.machine.sync();
    this.deps.machine.powerOff(reason);
  }

  /** The one fatal path: record, stop QEMU (TERM, grace, KILL), sync, power off. */
  async fatal(reason: string): Promise<void> {
    if (this.fatalStarted) {
      this.deps.log.error(`fatal while stopping: ${reason}`);
      return this.deps.machine.powerOff("fatal");
    }
    this.fatalStarted = true;
    this.reportError(`fatal: ${reason}`);
    this.deps.health.setPhase("failed");
    const child = this.child;
    if (child && this.state !== "exited") {
      const gone = child.exited.then(() => true, () => true);
      const within = (ms: number) => Promise.race([gone, Bun.sleep(ms).then(() => false)]);
      this.signalChild("SIGTERM");
      if (!(await within(this.deadlines.terminating))) {
        this.signalChild("SIGKILL");
        await within(this.deadlines.killing);
      }
    }
    this.powerOff("fatal");
  }
}
