// `stubdom-init init`: the supervisor without the machine setup, for tests and debugging. It
// runs as a subreaper (--subreaper) or as PID 1 of a PID namespace (`unshare --pid --fork
// --mount-proc stubdom-init init ...`, where runInit hands over to it). "Power off" exits the
// process; the hypervisor and the health report are files, so a test can read what happened.
import { appendFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import { z } from "zod";
import { PR_SET_CHILD_SUBREAPER, prctl, sync } from "../../ffi/libc.ts";
import { createLogger, stderrSink, uptimeClock, type Level } from "../log.ts";
import type { HealthReport, Hypervisor, Machine, PowerOffReason } from "./platform.ts";
import { REAP_SWEEP_MS, Supervisor, type QemuPlan } from "./supervisor.ts";
import { RESTORE_STALL_AT_MS } from "./restore-watch.ts";
import { openSaveStream, processStartMs, realSupervisorDeps, supervise } from "./wiring.ts";

const PlanSchema = z.strictObject({
  binary: z.string().min(1),
  sandbox: z.boolean().default(true),
  confine: z
    .strictObject({ helper: z.string().min(1), interpreter: z.string().min(1).optional(), landlockAbi: z.number().int().min(0).max(255) })
    .nullable()
    .default(null),
  confineOff: z.string().max(200).optional(),
  dmArgv: z.array(z.string()),
  restoreArgIndex: z.number().int().min(0).nullable().default(null),
  guestDomid: z.number().int().min(1).max(0x7fef),
  crash: z.enum(["shutdown-guest", "poweroff", "hold"]).default("shutdown-guest"),
  crashGraceMs: z.number().int().min(0).max(60_000).default(0),
  saveConsole: z.boolean().default(false),
  qmpTimeoutMs: z.number().int().min(1).max(600_000).default(20_000),
  restoreStallAtMs: z.number().int().min(0).max(3_600_000).default(RESTORE_STALL_AT_MS),
  probeMs: z.number().int().min(0).max(3_600_000).default(0),
  reapSweepMs: z.number().int().min(0).max(3_600_000).default(REAP_SWEEP_MS),
  deadlines: z
    .strictObject({ quitting: z.number().int().min(1), terminating: z.number().int().min(1), killing: z.number().int().min(1) })
    .optional(),
});

/** Exit codes standing in for power-off reasons. */
export const EXIT_CODES: Record<PowerOffReason, number> = { shutdown: 0, crash: 3, fatal: 4, config: 5 };

const USAGE =
  "usage: stubdom-init init --plan FILE [--subreaper] [--run-dir DIR] [--health-file FILE]\n" +
  "         [--hypervisor-log FILE] [--console1 PATH] [--console2 PATH] [--loglevel LEVEL]\n";

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        plan: { type: "string" },
        subreaper: { type: "boolean", default: false },
        "run-dir": { type: "string" },
        "health-file": { type: "string" },
        "hypervisor-log": { type: "string" },
        console1: { type: "string", default: "/dev/hvc1" },
        console2: { type: "string", default: "/dev/hvc2" },
        loglevel: { type: "string", default: "info" },
      },
    }));
  } catch (e) {
    process.stderr.write(`stubdom-init init: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!values.plan) {
    process.stderr.write(USAGE);
    return 2;
  }
  const parsed = PlanSchema.safeParse(JSON.parse(readFileSync(values.plan, "utf8")));
  if (!parsed.success) {
    process.stderr.write(`stubdom-init init: ${values.plan}: ${parsed.error.message}\n`);
    return 2;
  }
  const clock = uptimeClock();
  const nowMs = () => clock() * 1000;
  const log = createLogger({ sink: stderrSink, level: values.loglevel as Level, clock });
  if (values.subreaper) prctl(PR_SET_CHILD_SUBREAPER, 1);
  const runDir = values["run-dir"] ?? mkdtempSync(`${tmpdir()}/stubdom-init-`);
  const { deadlines, ...rest } = parsed.data;
  // The plan counts restoreStallAtMs from this process's start, the stand-in for the stub
  // domain's kernel start (the clock PID 1 counts it on).
  const plan: QemuPlan = { ...rest, restoreStallAtMs: processStartMs(nowMs()) + rest.restoreStallAtMs, runDir };

  const healthFile = values["health-file"];
  // Each call as one JSON line, so a test replays exactly what the supervisor reported.
  const record =
    (call: string) =>
    (...args: unknown[]) => {
      if (healthFile) appendFileSync(healthFile, `${JSON.stringify({ call, args })}\n`);
    };
  const health: HealthReport = {
    setPhase: record("setPhase"),
    bootPhase: record("bootPhase"),
    agentOverhead: record("agentOverhead"),
    confinement: record("confinement"),
    qemuStarted: record("qemuStarted"),
    qemuExited: record("qemuExited"),
    qmpStatus: record("qmpStatus"),
    error: record("error"),
    flush: () => {
      record("flush")();
      return true;
    },
  };
  const hvLog = values["hypervisor-log"];
  const hypervisor: Hypervisor = {
    shutdownGuest: (guest, reason) => {
      if (hvLog) appendFileSync(hvLog, `shutdownGuest ${guest} ${reason}\n`);
      // Also in the health journal, so a test sees the order of reports and the hypervisor call.
      record("shutdownGuest")(guest, reason);
    },
  };
  const machine: Machine = { sync, powerOff: (reason) => process.exit(EXIT_CODES[reason]) };
  log.info(`init: supervising as ${process.pid === 1 ? "PID 1" : values.subreaper ? "subreaper" : "plain process"}`);
  const deps = realSupervisorDeps({
    log,
    hypervisor,
    machine,
    health,
    restoreConsole: values.console2,
    ...(plan.saveConsole ? { saveStream: openSaveStream(values.console1) } : {}),
    nowMs,
    entryMs: processStartMs(nowMs()),
  });
  await supervise(new Supervisor(plan, deadlines ? { ...deps, deadlines } : deps));
  return 0;
}
