// How QEMU will be confined, decided once at boot: QEMU's own `-sandbox` when its binary links
// libseccomp, and always (unless stubdom.confine=0) our stubdom-confine step with the seccomp
// filter and, when the kernel has Landlock, the rules of agent/qemu/confine.ts.
import { existsSync } from "node:fs";
import { landlockAbi } from "../../ffi/libc.ts";
import { readElfHeaders, type ElfInfo } from "../build/elf.ts";
import { procSeccompMode } from "../health/proc.ts";
import type { Confinement } from "../health/schema.ts";
import type { Logger } from "../log.ts";
import { hasSeccomp } from "../qemu/argv.ts";
import { confinePolicy, policyText } from "../qemu/confine.ts";
import type { HealthReport } from "./platform.ts";
import type { ConfinePlan, QemuPlan } from "./qemu-plan.ts";

/** Stage 0 under the name that makes it confine QEMU (build.ts links it to /init). */
export const CONFINE_HELPER = "/sbin/stubdom-confine";

export interface QemuConfinement {
  /** Add QEMU's own `-sandbox`. */
  readonly sandbox: boolean;
  readonly confine: ConfinePlan | null;
  /** Why confine is null. */
  readonly confineOff?: string;
}

export async function qemuConfinement(binary: string, enabled: boolean, log: Logger, helper = CONFINE_HELPER): Promise<QemuConfinement> {
  let elf: ElfInfo | undefined;
  try {
    elf = await readElfHeaders(binary);
  } catch (e) {
    log.warn(`cannot read ${binary}'s ELF header (${(e as Error).message}): keeping -sandbox`);
  }
  // Debian's Xen device model does not link libseccomp and exits on -sandbox; an unreadable
  // binary keeps it (spawning it fails anyway, with its own error).
  const sandbox = elf ? hasSeccomp(elf.needed) : true;
  if (elf && !sandbox) log.info(`${binary} is built without seccomp: no -sandbox, our filter stands in for it`);
  if (!enabled) {
    log.warn("stubdom.confine=0: QEMU runs without our seccomp filter and Landlock rules");
    return { sandbox, confine: null, confineOff: "stubdom.confine=0" };
  }
  if (!existsSync(helper)) {
    log.error(`${helper} is missing (not our rootfs?): QEMU runs unconfined`);
    return { sandbox, confine: null, confineOff: `${helper} is missing` };
  }
  const abi = landlockAbi();
  if (abi === 0) log.warn("the kernel has no Landlock (not built in, or left out of lsm=): QEMU gets the seccomp filter only");
  return { sandbox, confine: { helper, interpreter: elf?.interpreter, landlockAbi: abi } };
}

/**
 * The policy text for stubdom-confine, for QEMU's final argv, and the report to write once QEMU
 * runs (verifyConfinement): the filter is only claimed when the kernel shows it on QEMU.
 */
export function confinementPolicy(
  argv: readonly string[],
  plan: QemuPlan,
  c: ConfinePlan,
  log: Logger,
): { text: string; report: Confinement } {
  const policy = confinePolicy({ argv, binary: plan.binary, interpreter: c.interpreter, runDir: plan.runDir, landlockAbi: c.landlockAbi });
  log.info(
    `confining QEMU: seccomp filter of ${policy.seccomp.length} instructions, ` +
      (c.landlockAbi > 0 ? `Landlock ABI ${c.landlockAbi} with ${policy.rules.length} rules` : "no Landlock (the kernel has none)"),
  );
  if (policy.skipped.length) {
    log.warn(`no Landlock rule for ${policy.skipped.length} dm-argv paths: ${policy.skipped.slice(0, 4).map((p) => JSON.stringify(p)).join(" ")}`);
  }
  return { text: policyText(policy), report: { seccomp: true, landlock_abi: c.landlockAbi, landlock_rules: policy.rules.length, qemu_sandbox: plan.sandbox } };
}

/**
 * Once QEMU runs (its QMP monitor answered, so it is past exec): its /proc status must show a
 * seccomp filter (mode 2); the Landlock rules have no such witness, but stubdom-confine exits
 * instead of running QEMU when any of them fails. Reports the result; false when not confined.
 */
export function verifyConfinement(
  pid: number,
  planned: Confinement,
  deps: { log: Logger; health: HealthReport },
  mode = procSeccompMode(pid),
): boolean {
  const ok = mode === 2;
  deps.health.confinement(ok ? planned : { ...planned, seccomp: false, off: `QEMU's /proc status says Seccomp: ${mode ?? "unknown"}` });
  if (!ok) {
    const msg = `QEMU (pid ${pid}) is not under the seccomp filter: /proc/${pid}/status says Seccomp: ${mode ?? "unknown"}`;
    deps.log.error(msg);
    deps.health.error(msg);
  }
  return ok;
}
