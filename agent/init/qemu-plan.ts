// What the supervisor is given: the plan for QEMU (from the configuration and the kernel
// command line) and its dependencies on the machine (real in wiring.ts, fakes in tests).
import type { CrashPolicy } from "../config/types.ts";
import type { Logger } from "../log.ts";
import type { Deadlines } from "../qemu/lifecycle.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import type { HealthReport, Hypervisor, Machine } from "./platform.ts";
import type { Processes } from "./processes.ts";

export interface QemuPlan {
  readonly binary: string;
  /** Add QEMU's seccomp sandbox (only when the binary supports it). */
  readonly sandbox: boolean;
  /** Start QEMU through stubdom-confine (agent/qemu/confine.ts), or, when null, as it is. */
  readonly confine: ConfinePlan | null;
  /** Why confine is null (stubdom.confine=0, no helper): reported. */
  readonly confineOff?: string;
  readonly dmArgv: readonly string[];
  readonly restoreArgIndex: number | null;
  readonly guestDomid: number;
  readonly crash: CrashPolicy;
  /** ms from the flushed crash report to the hypervisor call (stubdom.crash_grace_ms). */
  readonly crashGraceMs: number;
  /** Directory for the monitors' sockets. */
  readonly runDir: string;
  /** Console 1 exists: hand QEMU the save stream as fdset 1 before reporting ready. */
  readonly saveConsole: boolean;
  /** QMP greeting + setup deadline; libxl's whole start-up budget is 30 s. */
  readonly qmpTimeoutMs: number;
  /** On restore: when (ms on deps.nowMs's clock) a state that has not arrived is reported (restore-watch.ts). */
  readonly restoreStallAtMs: number;
  /** query-status period for the health report; 0 = no probe. */
  readonly probeMs: number;
  /**
   * Period of the orphan sweep that does not wait for SIGCHLD (0 = none): when pidfd_open is
   * unavailable, Bun's waitpid thread installs its own SIGCHLD handler over ours (reaper.ts).
   */
  readonly reapSweepMs: number;
}

export interface ConfinePlan {
  /** stage 0 as /sbin/stubdom-confine. */
  readonly helper: string;
  /** QEMU's ELF interpreter, which needs the exec right too. */
  readonly interpreter?: string | undefined;
  /** The kernel's Landlock ABI; 0: seccomp only. */
  readonly landlockAbi: number;
}

export interface SupervisorDeps {
  readonly log: Logger;
  readonly processes: Processes;
  readonly hypervisor: Hypervisor;
  readonly machine: Machine;
  readonly health: HealthReport;
  /** Binds a listening socket for QEMU to inherit; returns the fd. */
  listen(path: string): number;
  connectQmp(path: string, timeoutMs: number): Promise<QmpClient>;
  /** A raw-mode, read-only fd on the restore console (/dev/hvc2), or throws. */
  openRestoreConsole(): number;
  /** A write-only fd for QEMU's fdset 1, where libxl has QEMU save its state, or throws. */
  saveStreamFd(): number;
  /** An fd from which stubdom-confine reads `text` (a memfd), or throws. */
  policyFd(text: string): number;
  closeFd(fd: number): void;
  /** Runs the orphan reaper; returns how many it reaped. */
  reapOrphans(): number;
  /** Milliseconds since kernel start. */
  nowMs(): number;
  /** nowMs() at PID 1 entry. */
  readonly entryMs: number;
  readonly deadlines?: Deadlines;
}
