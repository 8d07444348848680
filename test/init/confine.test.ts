// stubdom-confine against this host's kernel: stage 0 compiled as build.ts compiles it applies
// the policy confinePolicy computes, then runs a probe standing in for a compromised QEMU.
// Each denied action must be stopped (SIGSYS) or refused (EPERM, EACCES), and the actions
// QEMU needs must still work. Landlock checks run only where the kernel has it (this host's
// does: ABI 7; the test says which ABI it ran with).
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { landlockAbi } from "../../ffi/libc.ts";
import { confinePolicy, policyText, type Policy } from "../../agent/qemu/confine.ts";
import { EXIT_CODES } from "../../agent/init/cli.ts";
import { verifyConfinement } from "../../agent/init/confinement.ts";
import { parseSeccompMode } from "../../agent/health/proc.ts";
import { ROOT, runAgent } from "./run-agent.ts";
import { compileStage0 } from "./stage0.ts";

const root = ROOT;
const abi = landlockAbi();
let dir: string;
let helper: string;
let probe: string;
let runDir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "confine-"));
  compileStage0(join(dir, "init"));
  helper = join(dir, "stubdom-confine");
  symlinkSync(join(dir, "init"), helper);
  probe = join(dir, "probe");
  const cc = Bun.spawnSync(["gcc", "-O1", "-Wall", "-Werror", "-pthread", "-o", probe, join(root, "test/init/confine-probe.c")], { stderr: "pipe" });
  if (cc.exitCode !== 0) throw new Error(`gcc confine-probe.c: ${cc.stderr.toString()}`);
  runDir = join(dir, "run");
  mkdirSync(runDir);
  writeFileSync(join(dir, "secret"), "not for QEMU\n");
  writeFileSync(join(dir, "disk.img"), "disk\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A dm-argv as libxl writes it: a read-only disk, a serial console. */
const dmArgv = () => ["-xen-domid", "5", "-drive", `file=${join(dir, "disk.img")},if=ide,readonly=on`, "-serial", "/dev/null"];

function policyFor(landlock: number): Policy {
  return confinePolicy({ argv: dmArgv(), binary: probe, interpreter: "/lib64/ld-linux-x86-64.so.2", runDir, landlockAbi: landlock });
}

interface Outcome {
  out: string;
  err: string;
  code: number | null;
  signal: string | null;
}

function confined(args: string[], text = policyText(policyFor(abi))): Outcome {
  const file = join(dir, `policy-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  const fd = openSync(file, "r");
  try {
    const p = Bun.spawnSync([helper, "3", probe, ...args], { stdio: ["ignore", "pipe", "pipe", fd] as never });
    return { out: p.stdout.toString().trim(), err: p.stderr.toString(), code: p.exitCode, signal: p.signalCode == null ? null : String(p.signalCode) };
  } finally {
    closeSync(fd);
  }
}

const killed = (o: Outcome) => expect(o, JSON.stringify(o)).toMatchObject({ signal: "SIGSYS", out: "" });
const says = (o: Outcome, what: string) => expect(o, JSON.stringify(o)).toMatchObject({ code: 0, signal: null, out: what });

describe(`seccomp (with Landlock ABI ${abi})`, () => {
  test("the probe runs, and may start threads (clone3 falls back to clone)", () => {
    says(confined(["ok"]), "ok");
    says(confined(["thread"]), "ok");
  });
  test("spawning is stopped: execve, fork, posix_spawn (a vfork clone), unshare", () => {
    killed(confined(["execve", "/bin/true"]));
    killed(confined(["fork"]));
    killed(confined(["spawn", "/bin/true"]));
    killed(confined(["unshare"]));
  });
  test("privilege changes and mounts are stopped", () => {
    killed(confined(["setuid"]));
    killed(confined(["mount"]));
  });
  test("resource control is refused with EPERM, and the probe goes on", () => {
    says(confined(["setpriority"]), "EPERM");
  });
  test("without Landlock the filter still applies (a kernel without it, or stubdom.confine rules off)", () => {
    const text = policyText(policyFor(0));
    expect(text).not.toMatch(/^allow /m);
    killed(confined(["execve", "/bin/true"], text));
    says(confined(["read", join(dir, "secret")], text), "ok");
  });
});

describe.runIf(abi > 0)(`Landlock ABI ${abi}`, () => {
  test("QEMU's files are readable: libraries under /usr, a disk dm-argv names", () => {
    says(confined(["read", "/usr/lib/os-release"]), "ok");
    says(confined(["read", join(dir, "disk.img")]), "ok");
  });
  test("anything else is not: a file outside the rules, a write outside the run directory", () => {
    says(confined(["read", join(dir, "secret")]), "EACCES");
    says(confined(["write", join(dir, "new-file")]), "EACCES");
    says(confined(["write", "/usr/lib/stubdom-test-file"]), "EACCES");
  });
  test("the run directory is writable, a read-only disk is not", () => {
    says(confined(["write", join(runDir, "qemu.pid")]), "ok");
    says(confined(["write", join(dir, "disk.img")]), "EACCES");
  });
  test.runIf(abi >= 6)("signals to processes outside the domain are refused (scope SIGNAL)", () => {
    says(confined(["kill-parent"]), "EPERM");
  });
});

describe("the helper refuses a bad policy before running anything", () => {
  test("no header, a truncated policy, an unknown line", () => {
    for (const [text, why] of [
      ["landlock 0 0 0\nend\n", /not a stubdom-confine 1 policy/],
      [policyText(policyFor(abi)).replace(/\nend\n$/, "\n"), /no end line/],
      ["stubdom-confine 1\nfrobnicate\nend\n", /line 2: not understood/],
      ["stubdom-confine 1\nlandlock 0 0 0\nseccomp 1\nend\n", /not a BPF instruction/],
    ] as const) {
      const o = confined(["ok"], text);
      expect(o.code, o.err).toBe(126);
      expect(o.out).toBe("");
      expect(o.err).toMatch(why);
    }
  });
  test("a program it cannot open", () => {
    const file = join(dir, "policy-missing");
    writeFileSync(file, policyText(policyFor(abi)));
    const fd = openSync(file, "r");
    const p = Bun.spawnSync([helper, "3", join(dir, "no-such-qemu")], { stdio: ["ignore", "pipe", "pipe", fd] as never });
    closeSync(fd);
    expect(p.exitCode).toBe(126);
    expect(p.stderr.toString()).toMatch(/stubdom-confine: open .*no-such-qemu: No such file or directory/);
  });
});

// The agent's side: the supervisor starts the fake QEMU (Bun running fake-qemu.ts) through
// stubdom-confine, reports the confinement, and reports the kill of a spawn attempt as a crash
// with its cause. Without confinement the same fake runs /bin/true: the contrast that shows
// the filter is what stops it.
describe("the agent starts QEMU through stubdom-confine", () => {
  // Bun reads the fake's source and the repository's config: -L (QEMU's data directory
  // option, ignored by the fake) names the repository, so the rules let it read there.
  const fake = (mode: string) => ["--mode", mode, "--after", "300", "--code", "7", "-L", ROOT];
  const confine = () => ({ helper, interpreter: "/lib64/ld-linux-x86-64.so.2", landlockAbi: abi });

  test("a confined QEMU runs and stops cleanly; the report says how it is confined", async () => {
    const r = await runAgent("subreaper", {
      fake: fake("ok"),
      plan: { confine: confine() },
      signal: { when: /QEMU ready/, send: "SIGTERM", delayMs: 200 },
    });
    expect(r.code, r.log).toBe(EXIT_CODES.shutdown);
    expect(r.health.exit_code).toBe(0);
    expect(r.health.confinement).toMatchObject({ seccomp: true, landlock_abi: abi, qemu_sandbox: true });
    expect(r.log).toMatch(new RegExp(`confining QEMU: seccomp filter of \\d+ instructions, ${abi > 0 ? `Landlock ABI ${abi}` : "no Landlock"}`));
  });

  test("a spawn attempt kills QEMU with SIGSYS; the crash report names the filter", async () => {
    const r = await runAgent("subreaper", { fake: fake("spawn"), plan: { confine: confine(), crash: "poweroff" } });
    expect(r.code, r.log).toBe(EXIT_CODES.crash);
    expect(r.health.exit_signal).toBe("SIGSYS");
    expect(String(r.health.exit_stderr)).toMatch(/fake-qemu: running \/bin\/true$/);
    expect(String(r.health.error)).toMatch(/QEMU exited on its own \(SIGSYS: a system call the seccomp filter denies\)/);
  });

  test("unconfined (stubdom.confine=0), the same spawn succeeds and the report says confinement is off", async () => {
    const r = await runAgent("subreaper", { fake: fake("spawn"), plan: { confine: null, confineOff: "stubdom.confine=0", crash: "poweroff" } });
    expect(r.health.exit_code, r.log).toBe(7);
    expect(String(r.health.exit_stderr)).toMatch(/\/bin\/true ran, exit 0/);
    expect(r.health.confinement).toMatchObject({ seccomp: false, off: "stubdom.confine=0" });
  });
});

describe("the agent believes /proc, not its plan", () => {
  const planned = { seccomp: true, landlock_abi: 6, landlock_rules: 15, qemu_sandbox: false };
  const deps = () => {
    const calls: Array<[string, unknown]> = [];
    const log = { info() {}, warn() {}, debug() {}, error: (m: string) => calls.push(["log.error", m]) };
    const health = { confinement: (c: unknown) => calls.push(["confinement", c]), error: (m: string) => calls.push(["error", m]) };
    return { calls, deps: { log, health } as unknown as Parameters<typeof verifyConfinement>[2] };
  };
  test("Seccomp: 2 in QEMU's status: the planned report stands", () => {
    const d = deps();
    expect(verifyConfinement(42, planned, d.deps, parseSeccompMode("Name:\tqemu\nSeccomp:\t2\nSeccomp_filters:\t1\n"))).toBe(true);
    expect(d.calls).toEqual([["confinement", planned]]);
  });
  test("Seccomp: 0 (a helper that did not apply it): reported as not confined, and as an error", () => {
    const d = deps();
    expect(verifyConfinement(42, planned, d.deps, parseSeccompMode("Name:\tqemu\nSeccomp:\t0\n"))).toBe(false);
    expect(d.calls[0]).toEqual(["confinement", { ...planned, seccomp: false, off: "QEMU's /proc status says Seccomp: 0" }]);
    expect(d.calls.find(([k]) => k === "error")?.[1]).toMatch(/not under the seccomp filter: \/proc\/42\/status says Seccomp: 0/);
  });
  test("this host's kernel shows the filter on a confined process (what verifyConfinement reads)", () => {
    const o = confined(["status"]);
    expect(o.code, o.err).toBe(0);
    expect(parseSeccompMode(o.out)).toBe(2);
    expect(o.out).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(parseSeccompMode(readFileSync("/proc/self/status", "utf8"))).toBe(0);
  });
});
