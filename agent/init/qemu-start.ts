// Starting QEMU: its command line (dm-argv plus the stub domain's additions), the fds it
// inherits (monitor sockets, the restore console, the confinement policy), and the confinement
// step in front of it. The supervisor decides when; this decides how.
import type { Confinement } from "../health/schema.ts";
import { buildQemuArgv, FIRST_EXTRA_FD } from "../qemu/argv.ts";
import { confinementPolicy } from "./confinement.ts";
import type { Child } from "./processes.ts";
import type { QemuPlan, SupervisorDeps } from "./qemu-plan.ts";

export const MONITORS = { agent: "qmp-agent", relay: "qmp-relay" } as const;

export type Started =
  | { ok: true; child: Child; /** What stubdom-confine applies; undefined when unconfined. */ confinement: Confinement | undefined }
  | { ok: false; config: string }
  | { ok: false; config?: undefined; fatal: string };

export function startQemu(plan: QemuPlan, deps: SupervisorDeps, socketPath: (monitor: string) => string): Started {
  const built = buildQemuArgv({
    dmArgv: plan.dmArgv,
    restoreArgIndex: plan.restoreArgIndex,
    monitors: [MONITORS.agent, MONITORS.relay],
    restoreFd: plan.restoreArgIndex !== null,
    sandbox: plan.sandbox,
  });
  if (!built.ok) return { ok: false, config: `QEMU arguments: ${built.reason}` };
  if (built.dropped.length) deps.log.warn(`dropped from dm-argv: ${built.dropped.join(" ")}`);
  const fds: number[] = [];
  try {
    for (const m of [MONITORS.agent, MONITORS.relay]) fds.push(deps.listen(socketPath(m)));
    if (plan.restoreArgIndex !== null) fds.push(deps.openRestoreConsole());
    const qemu = [plan.binary, ...built.argv];
    deps.log.info(`exec ${qemu.map(shellQuote).join(" ")}`);
    if (!plan.confine) {
      deps.health.confinement({ seccomp: false, landlock_abi: 0, landlock_rules: 0, qemu_sandbox: plan.sandbox, off: plan.confineOff ?? "off" });
      return { ok: true, child: deps.processes.spawn(qemu, { extraFds: fds }), confinement: undefined };
    }
    // After QEMU's own fds: the helper reads and closes it, so QEMU never has it.
    const policyFd = FIRST_EXTRA_FD + fds.length;
    const policy = confinementPolicy(built.argv, plan, plan.confine, deps.log);
    fds.push(deps.policyFd(policy.text));
    const child = deps.processes.spawn([plan.confine.helper, String(policyFd), ...qemu], { extraFds: fds });
    return { ok: true, child, confinement: policy.report };
  } catch (e) {
    return { ok: false, fatal: `cannot start QEMU: ${(e as Error).message}` };
  } finally {
    // QEMU holds its own copies now; ours would keep the sockets alive after it dies.
    for (const fd of fds) deps.closeFd(fd);
  }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\-.,:=/@+%]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
