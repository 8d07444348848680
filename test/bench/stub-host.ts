// The stub domain's PID 1 supervision on the host, for the crash-detection and idle-writes
// benchmarks: the real Supervisor with the real process wiring (Bun.spawn + pidfd, subreaper
// reaping) and the real health writer, writing through Debian's libxenstore (ffi/xenstore.ts)
// to the wire server as the stub domain. Only the machine is stood in for: QEMU is
// test/init/fake-qemu.ts, the hypervisor call is a line on stdout, power-off is an exit.
// `stubdom-init init --subreaper` has the same supervisor but reports health to a file, and a
// crash must be seen where dom0 sees it: in xenstore.
// Usage: bun test/bench/stub-host.ts --xenstore SOCKET --domid S --guest G --run-dir DIR
import { parseArgs } from "node:util";
import { EXIT_CODES } from "../../agent/init/cli.ts";
import { REAP_SWEEP_MS, Supervisor } from "../../agent/init/supervisor.ts";
import { realSupervisorDeps, supervise } from "../../agent/init/wiring.ts";
import { createHealthWriter } from "../../agent/health/writer.ts";
import { createLogger, stderrSink, uptimeClock } from "../../agent/log.ts";
import { PR_SET_CHILD_SUBREAPER, prctl, sync } from "../../ffi/libc.ts";
import { openXenStore } from "../../ffi/xenstore.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    xenstore: { type: "string" },
    domid: { type: "string" },
    guest: { type: "string" },
    "run-dir": { type: "string" },
  },
  strict: true,
});
if (!values.xenstore || !values.domid || !values.guest || !values["run-dir"]) {
  process.stderr.write("usage: stub-host.ts --xenstore SOCKET --domid S --guest G --run-dir DIR\n");
  process.exit(2);
}
const domid = Number(values.domid);
const guestDomid = Number(values.guest);

const clock = uptimeClock();
const nowMs = () => clock() * 1000;
const entryMs = nowMs() - performance.now();
const log = createLogger({ sink: stderrSink, clock, level: "warn" });
prctl(PR_SET_CHILD_SUBREAPER, 1);

const xs = openXenStore({ path: values.xenstore });
// The agent's default heartbeat (stubdom.health_interval=5) and QMP probe period.
const intervalMs = 5000;
const health = createHealthWriter({ xs, domid, log: log.child("health"), clock, intervalMs });
health.start();
health.setPhase("configuring");

const deps = realSupervisorDeps({
  log,
  hypervisor: { shutdownGuest: (g, reason) => void process.stdout.write(`shutdownGuest ${g} ${reason}\n`) },
  machine: { sync, powerOff: (reason) => process.exit(EXIT_CODES[reason]) },
  health,
  restoreConsole: "/dev/null",
  nowMs,
  entryMs,
});
const plan = {
  binary: process.execPath,
  dmArgv: [`${ROOT}test/init/fake-qemu.ts`, "--mode", "ok"],
  restoreArgIndex: null,
  sandbox: true,
  confine: null,
  guestDomid,
  crash: "shutdown-guest" as const,
  // The measured moment is "crashed" in xenstore, which is written before the grace.
  crashGraceMs: 0,
  runDir: values["run-dir"],
  saveConsole: false,
  qmpTimeoutMs: 20_000,
  restoreStallAtMs: 25_000,
  probeMs: intervalMs,
  reapSweepMs: REAP_SWEEP_MS,
};
await supervise(new Supervisor(plan, deps));
