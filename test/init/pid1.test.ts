// The supervisor with a scripted fake QEMU (test/init/fake-qemu.ts), as real PID 1 of a PID
// namespace (`unshare --pid --fork --mount-proc`) and as a subreaper. "Power off" is the
// process exit code (cli.ts EXIT_CODES); the hypervisor and health report are files.
import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { EXIT_CODES } from "../../agent/init/cli.ts";
import { FAKE, isRoot, runAgent, type Mode } from "./run-agent.ts";

const modes: Mode[] = isRoot ? ["pid1", "subreaper"] : ["subreaper"];
if (!isRoot) console.warn("pid1.test.ts: not root, PID-namespace cases NOT run (only subreaper)");

describe.each(modes)("agent as %s", (mode) => {
  test("QEMU crashing on its own: exit recorded with its last stderr, hypervisor told exactly once, power off", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "crash", "--after", "200", "--code", "7", "--lines", "30"] });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 crash"]);
    // The crash report is flushed to xenstore before the toolstack hears of the crash.
    const crashed = r.journal.lastIndexOf("setPhase crashed");
    expect(crashed).toBeGreaterThanOrEqual(0);
    expect(r.journal.indexOf("flush", crashed)).toBeGreaterThan(crashed);
    expect(r.journal.indexOf("shutdownGuest", crashed)).toBeGreaterThan(r.journal.indexOf("flush", crashed));
    expect(r.health.exit_code).toBe(7);
    expect(String(r.health.exit_stderr)).toMatch(/dying line 29\nfake-qemu: exiting$/);
    expect(String(r.health.exit_stderr).split("\n").length).toBeLessThanOrEqual(20);
    expect(r.phases).toEqual(["starting", "running", "crashed"]);
    expect(r.log).toMatch(mode === "pid1" ? /supervising as PID 1/ : /supervising as subreaper/);
  });

  test("the guest powering itself off (SHUTDOWN event, then exit 0): a clean stop, the hypervisor told poweroff, no crash", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "poweroff", "--after", "300"] });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.log).toMatch(/the guest shut itself down \(guest-shutdown\)/);
    expect(r.log).toMatch(/QEMU exited after the guest's own shutdown \(guest-shutdown\): stopping cleanly/);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 poweroff"]);
    expect(r.health.exit_code).toBe(0);
    expect(r.health.error).toBeUndefined();
    expect(r.phases).toEqual(["starting", "running", "stopping"]);
  });

  test("the guest powering itself off under -no-shutdown: reported as stopping, no crash, and the later stop is clean", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "poweroff", "--after", "300", "--stay"], signal: { when: /the guest shut itself down/, send: "SIGTERM" } });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.log).toMatch(/the guest shut itself down \(guest-shutdown\); the toolstack ends this stub domain next/);
    expect(r.hypervisor).toEqual([]);
    expect(r.health.error).toBeUndefined();
    // "stopping" from the event, then again from the SIGTERM's stop.
    expect(r.phases).toEqual(["starting", "running", "stopping", "stopping"]);
    expect(r.log.indexOf("the guest shut itself down")).toBeLessThan(r.log.indexOf("SIGTERM: stopping QEMU"));
  });

  test("exit 0 without the guest's SHUTDOWN, or after a guest panic, is still a crash", async () => {
    const quiet = await runAgent(mode, { fake: ["--mode", "crash", "--after", "200", "--code", "0"] });
    expect(quiet.code, quiet.log).toBe(EXIT_CODES.crash);
    expect(quiet.hypervisor).toEqual(["shutdownGuest 5 crash"]);
    expect(String(quiet.health.error)).toMatch(/QEMU exited on its own \(code 0\)/);
    const panic = await runAgent(mode, { fake: ["--mode", "poweroff", "--after", "200", "--reason", "guest-panic"] });
    expect(panic.code, panic.log).toBe(EXIT_CODES.crash);
    expect(panic.hypervisor).toEqual(["shutdownGuest 5 crash"]);
    expect(panic.phases).toEqual(["starting", "running", "crashed"]);
  });

  test("crash grace: the report is flushed, the hypervisor is told once after the grace, then power off", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "crash", "--after", "100"], plan: { crashGraceMs: 400 } });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 crash"]);
    const crashed = r.journal.lastIndexOf("setPhase crashed");
    expect(r.journal.indexOf("shutdownGuest", crashed)).toBeGreaterThan(r.journal.indexOf("flush", crashed));
    const graceLine = r.log.indexOf("telling the hypervisor in 400 ms");
    expect(graceLine, r.log).toBeGreaterThan(-1);
    expect(r.log.indexOf("told the hypervisor", graceLine)).toBeGreaterThan(graceLine);
  });

  test("crash policy poweroff powers off without calling the hypervisor", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "crash", "--after", "100"], plan: { crash: "poweroff" } });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.hypervisor).toEqual([]);
  });

  test("crash policy hold stays up after the crash until SIGTERM, without calling the hypervisor", async () => {
    const r = await runAgent(mode, {
      fake: ["--mode", "crash", "--after", "100"],
      plan: { crash: "hold" },
      signal: { when: /crash policy hold/, send: "SIGTERM", delayMs: 300 },
    });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.phases).toEqual(["starting", "running", "crashed"]);
    expect(r.hypervisor).toEqual([]);
  });

  test("SIGTERM: QMP quit, QEMU exits 0, clean power off, no crash report", async () => {
    const r = await runAgent(mode, {
      fake: ["--mode", "ok"],
      plan: { probeMs: 100 },
      signal: { when: /QEMU ready/, send: "SIGTERM", delayMs: 400 },
    });
    expect(r.health.qmp_status).toBe("running");
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.log).toMatch(/QMP quit/);
    expect(r.log).toMatch(/fake-qemu: quit/);
    expect(r.hypervisor).toEqual([]);
    expect(r.health.exit_code).toBe(0);
    expect(r.phases).toEqual(["starting", "running", "stopping"]);
  });

  test("SIGINT (Ctrl-Alt-Del) stops a QEMU that ignores quit and SIGTERM: TERM then KILL on deadlines", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "hang"], signal: { when: /QEMU ready/, send: "SIGINT" } });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.log).toMatch(/sending SIGTERM/);
    expect(r.log).toMatch(/ignoring SIGTERM/);
    expect(r.log).toMatch(/sending SIGKILL/);
    expect(r.health.exit_signal).toBe("SIGKILL");
    expect(r.hypervisor).toEqual([]);
  });

  test("slow start: QMP waits for the late monitor, then runs", async () => {
    const r = await runAgent(mode, {
      fake: ["--mode", "slow", "--after", "1500"],
      signal: { when: /QEMU ready/, send: "SIGTERM" },
    });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.phases).toEqual(["starting", "running", "stopping"]);
  });

  test("a QEMU that never greets on QMP is declared failed, stopped, and reported as a crash", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "refuse"], plan: { qmpTimeoutMs: 500 } });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(String(r.health.error)).toMatch(/QEMU failed: qmp: no greeting within 500 ms/);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 crash"]);
  });

  test("a QEMU dying during QMP setup is reported by its exit, and the hypervisor told once", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "die-on-qmp", "--code", "9"] });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.health.exit_code).toBe(9);
    expect(String(r.health.exit_stderr)).toMatch(/dying during QMP setup/);
    expect(String(r.health.error)).toMatch(/QEMU exited on its own \(code 9\)/);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 crash"]);
  });

  test("a stderr flood is bounded on the console and the last lines still reach the report", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "flood", "--lines", "100000", "--after", "100"] });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.log).toMatch(/lines of stderr not shown/);
    expect(r.log.split("\n").length).toBeLessThan(5000);
    expect(String(r.health.exit_stderr)).toMatch(/dying line 4\nfake-qemu: exiting$/);
    expect(r.hypervisor).toEqual(["shutdownGuest 5 crash"]);
  });

  // The grandchildren are orphans from birth (fake-qemu.ts): the total must be exact, no
  // zombie may stay behind, and QEMU's own exit code must reach the supervisor.
  async function orphans(o: { count: number; bursts: number; hog?: boolean; env?: Record<string, string>; plan?: Record<string, unknown> }) {
    let zombiesLeft: number | string = "not sampled";
    const hog = o.hog ? cpuHog() : undefined;
    try {
      const r = await runAgent(mode, {
        fake: ["--mode", "orphans", "--count", String(o.count), "--bursts", String(o.bursts), "--after", "4000", "--code", "42"],
        plan: o.plan,
        env: o.env,
        timeoutMs: 120_000,
        during: { when: /orphaned \d+ grandchildren/, run: async (agent) => void (zombiesLeft = await zombiesSettle(agent, 3500)) },
      });
      expect(r.code, r.log).toBe(EXIT_CODES.crash);
      expect(r.log).toMatch(new RegExp(`fake-qemu: orphaned ${o.count} grandchildren`));
      expect(r.health.exit_code, r.log).toBe(42);
      expect(zombiesLeft).toBe(0);
      expect(r.log).toMatch(new RegExp(` ${o.count} orphan\\(s\\) reaped in total`));
      expect(r.log).not.toMatch(/lost track of QEMU|orphan reaper:/);
      return r;
    } finally {
      hog?.stop();
    }
  }

  test("100 orphans while both cores are busy: every one reaped, none left a zombie, QEMU's exit code kept", async () => {
    await orphans({ count: 100, bursts: 1, hog: true });
  });

  test("1,000 orphans in 10 bursts: every one reaped, none left a zombie, QEMU's exit code kept", async () => {
    await orphans({ count: 1000, bursts: 10 });
  }, 150_000);

  test("Bun's waitpid thread (no pidfd_open) takes over SIGCHLD: the sweep still reaps every orphan", async () => {
    // Bun falls back to this thread when pidfd_open fails with ENOSYS (Linux < 5.3, gVisor);
    // these two variables force it. Its SIGCHLD handler replaces the one process.on installed.
    const r = await orphans({
      count: 100,
      bursts: 2,
      env: { BUN_GARBAGE_COLLECTOR_LEVEL: "0", BUN_FEATURE_FLAG_FORCE_WAITER_THREAD: "1" },
      plan: { reapSweepMs: 300 },
    });
    expect(r.log).toMatch(/no SIGCHLD has reached the agent/);
  });

  test("a QEMU binary that cannot start goes to the fatal path", async () => {
    const r = await runAgent(mode, { fake: [], plan: { binary: "/nonexistent/qemu" } });
    expect(r.code, r.log).toBe(EXIT_CODES.fatal);
    expect(String(r.health.error)).toMatch(/fatal: cannot start QEMU/);
    expect(r.phases.at(-1)).toBe("failed");
  });

  test("PID 1 entry → QEMU execve is measured and reported", async () => {
    const r = await runAgent(mode, { fake: ["--mode", "crash", "--after", "50"] });
    expect(typeof r.health.agent_overhead_ms).toBe("number");
    // Process creation (/proc/self/stat) → spawn: Bun's start-up plus ours, well under 10 s here.
    expect(r.health.agent_overhead_ms as number).toBeGreaterThan(0);
    expect(r.health.agent_overhead_ms as number).toBeLessThan(10_000);
    expect(r.health.qemu_pid).toBeGreaterThan(1);
    expect(r.health.boot_qemu_ready as number).toBeGreaterThanOrEqual(r.health.boot_qemu_exec as number);
  });
});

function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

function zombieChildren(parent: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = procStat(Number(name));
    if (f && f[0] === "Z" && Number(f[1]) === parent) out.push(Number(name));
  }
  return out;
}

/**
 * Zombie children of `agent` once they stop changing: polls until there are none or `ms` pass.
 * A child that exits at this very moment is a zombie until SIGCHLD is handled, so only the
 * count at the end means something. Throws if the agent is gone (its zombies would vanish).
 */
async function zombiesSettle(agent: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const n = zombieChildren(agent).length;
    const state = procStat(agent)?.[0];
    if (state === undefined || state === "Z") throw new Error(`agent ${agent} ended before its zombies were counted`);
    if (n === 0 || Date.now() >= end) return n;
    await Bun.sleep(50);
  }
}

/** One busy loop per core until stop(). */
function cpuHog(): { stop(): void } {
  const procs = Array.from({ length: navigator.hardwareConcurrency }, () =>
    Bun.spawn(["/bin/sh", "-c", "while :; do :; done"], { stdio: ["ignore", "ignore", "ignore"] }),
  );
  return { stop: () => procs.forEach((p) => p.kill("SIGKILL")) };
}

describe("restore: the guest's state on console 2", () => {
  const RESTORE = "$STUBDOM_RESTORE_INCOMING_ARG";
  /** dm-argv as libxl writes it on restore: `-incoming` and the placeholder the agent replaces. */
  const restorePlan = (incomingMs: number, stallAtMs: number) => ({
    dmArgv: [FAKE, "--mode", "ok", "--incoming-ms", String(incomingMs), "-incoming", RESTORE],
    restoreArgIndex: 6,
    restoreStallAtMs: stallAtMs,
  });
  test("QEMU leaves inmigrate: the arrival is logged and timed, no error", async () => {
    const r = await runAgent("subreaper", {
      fake: [],
      plan: restorePlan(1200, 60_000),
      args: ["--console2", "/dev/null"],
      signal: { when: /restore: QEMU has the guest's state/, send: "SIGTERM" },
    });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.log).toMatch(/restore: QEMU has the guest's state \(running\) \d+ ms after it was ready/);
    expect(typeof r.health.qemu_restored).toBe("number");
    expect(r.health.error).toBeUndefined();
    // Written at once, not at the next heartbeat (a dom0 status right after xl restore saw none).
    const at = r.journal.indexOf("bootPhase");
    expect(r.journal.slice(r.journal.lastIndexOf("bootPhase") + 1)[0], r.journal.join(" ")).toBe("flush");
    expect(at).toBeGreaterThanOrEqual(0);
  });
  test("a state that never arrives is reported before libxl would give up, and QEMU is left running", async () => {
    const r = await runAgent("subreaper", {
      fake: [],
      plan: restorePlan(-1, 0),
      args: ["--console2", "/dev/null"],
      signal: { when: /restore: no guest state/, send: "SIGTERM", delayMs: 1200 },
    });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(String(r.health.error)).toMatch(/restore: no guest state on \/dev\/hvc2 yet: QEMU still waits for it .* \(query-status inmigrate\); libxl gives up at 30 s/);
    // Reported once, not at every poll.
    expect(r.log.match(/restore: no guest state/g)?.length).toBe(1);
    expect(r.health.qemu_restored).toBeUndefined();
    // Written at once: libxl destroys the domain within 5 s of it, before the next heartbeat.
    const err = r.journal.indexOf("error");
    expect(err, r.journal.join(" ")).toBeGreaterThanOrEqual(0);
    expect(r.journal[err + 1], r.journal.join(" ")).toBe("flush");
  });
});
