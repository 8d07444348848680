// Helpers of the tests against Debian's real qemu-system-x86_64: a QEMU started the way the
// supervisor starts it (its two monitors' listening sockets are ours, inherited), and an
// in-memory relay client standing in for dom0's vchan.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll } from "vitest";
import { close, landlockAbi, listenUnixForChild } from "../../ffi/libc.ts";
import { parseElf } from "../../agent/build/elf.ts";
import { buildQemuArgv, FIRST_EXTRA_FD } from "../../agent/qemu/argv.ts";
import { confinePolicy, policyText } from "../../agent/qemu/confine.ts";
import type { RelaySession } from "../../agent/qemu/relay.ts";
import { compileStage0 } from "../init/stage0.ts";

export const QEMU = "/usr/bin/qemu-system-x86_64";

let helper: string | undefined;
/** Stage 0 as stubdom-confine, compiled once per test file. */
function confineHelper(): string {
  if (helper && existsSync(helper)) return helper;
  const dir = mkdtempSync(`${tmpdir()}/confine-helper-`);
  try {
    compileStage0(join(dir, "init"));
    symlinkSync(join(dir, "init"), join(dir, "stubdom-confine"));
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return (helper = join(dir, "stubdom-confine"));
}
// Each test file loads this module afresh, so this hook removes that file's helper (registered
// before the file's own hooks, it runs after them: QEMU is stopped by then).
afterAll(() => {
  if (helper) rmSync(dirname(helper), { recursive: true, force: true });
});

/**
 * QEMU started as the supervisor starts it: through stubdom-confine, with the policy the agent
 * computes for this argv (seccomp filter, Landlock rules with `runDir` as its run directory),
 * `extraFds` as fds 3.., the policy's fd after them.
 */
export function spawnConfinedQemu(argv: readonly string[], extraFds: readonly number[], runDir: string): ReturnType<typeof Bun.spawn> {
  const interpreter = parseElf(readFileSync(QEMU), QEMU).interpreter;
  const text = policyText(confinePolicy({ argv, binary: QEMU, interpreter, runDir, landlockAbi: landlockAbi() }));
  const file = join(runDir, ".confine-policy");
  writeFileSync(file, text);
  const policy = openSync(file, "r");
  try {
    return Bun.spawn([confineHelper(), String(FIRST_EXTRA_FD + extraFds.length), QEMU, ...argv], {
      stdio: ["ignore", "inherit", "inherit", ...extraFds, policy] as never,
    });
  } finally {
    closeSync(policy);
    rmSync(file);
  }
}

export interface RealQemu {
  dir: string;
  /** The supervisor's monitor and the relay's. */
  agentSocket: string;
  relaySocket: string;
  proc: ReturnType<typeof Bun.spawn>;
  stop(): Promise<void>;
}

/** QEMU under TCG with `machine` ("none", or "pc" for devices with a state), sandbox on. */
export function startRealQemu(name: string, machineArgs: string[] = ["-machine", "none"]): RealQemu {
  const dir = mkdtempSync(`${tmpdir()}/${name}-`);
  const built = buildQemuArgv({
    dmArgv: [...machineArgs, "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none"],
    restoreArgIndex: null,
    monitors: ["qmp-agent", "qmp-relay"],
    restoreFd: false,
    sandbox: true,
  });
  if (!built.ok) throw new Error(built.reason);
  const fds = [listenUnixForChild(`${dir}/agent.sock`), listenUnixForChild(`${dir}/relay.sock`)];
  const proc = spawnConfinedQemu(built.argv, fds, dir);
  for (const fd of fds) close(fd);
  return {
    dir,
    agentSocket: `${dir}/agent.sock`,
    relaySocket: `${dir}/relay.sock`,
    proc,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A relay client in memory: what it sent is queued for the relay, what it got is kept as text. */
export class FakeClient implements RelaySession {
  received = "";
  closedByRelay = false;
  private inbox: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  async *chunks() {
    for (;;) {
      const c = this.inbox.shift();
      if (c) {
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  write(data: Uint8Array) {
    this.received += new TextDecoder().decode(data);
  }
  close() {
    this.closedByRelay = true;
  }
  send(s: string) {
    this.inbox.push(new TextEncoder().encode(s));
    this.wake?.();
  }
  leave() {
    this.ended = true;
    this.wake?.();
  }
  async waitFor(re: RegExp, ms = 10_000) {
    const until = performance.now() + ms;
    while (!re.test(this.received)) {
      if (performance.now() > until) throw new Error(`timed out waiting for ${re}: got ${this.received}`);
      await Bun.sleep(5);
    }
  }
}
