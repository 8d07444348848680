// Runs `stubdom-init init` with a plan and the scripted fake QEMU (test/init/fake-qemu.ts), as
// PID 1 of a PID namespace or as a subreaper, and replays what it reported.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BUN = `${ROOT}node_modules/.bin/bun`;
export const FAKE = `${ROOT}test/init/fake-qemu.ts`;
export const isRoot = process.getuid?.() === 0;

export type Mode = "pid1" | "subreaper";
export interface Run {
  code: number;
  log: string;
  health: Record<string, unknown>;
  phases: string[];
  /** Every reported call in order: `setPhase crashed`, `flush`, `shutdownGuest`... */
  journal: string[];
  hypervisor: string[];
}

interface Options {
  fake: string[];
  plan?: Record<string, unknown>;
  /** Called once the log contains `when`, with the agent's host pid. */
  signal?: { when: RegExp; send: "SIGTERM" | "SIGINT"; delayMs?: number };
  during?: { when: RegExp; run: (agentPid: number) => void | Promise<void> };
  timeoutMs?: number;
  /** Added to the agent's environment. */
  env?: Record<string, string>;
  /** More `stubdom-init init` options (e.g. --console2). */
  args?: string[];
}

export async function runAgent(mode: Mode, o: Options): Promise<Run> {
  const dir = mkdtempSync(`${tmpdir()}/pid1-test-`);
  const plan = {
    binary: BUN,
    dmArgv: [FAKE, ...o.fake],
    guestDomid: 5,
    deadlines: { quitting: 500, terminating: 500, killing: 500 },
    ...o.plan,
  };
  writeFileSync(`${dir}/plan.json`, JSON.stringify(plan));
  const agentArgs = [
    `${ROOT}agent/main.ts`, "init", "--plan", `${dir}/plan.json`, "--run-dir", dir,
    "--health-file", `${dir}/health`, "--hypervisor-log", `${dir}/hv`, "--loglevel", "debug", ...(o.args ?? []),
  ];
  const argv =
    mode === "pid1"
      ? ["unshare", "--pid", "--fork", "--mount-proc", BUN, ...agentArgs]
      : [BUN, ...agentArgs, "--subreaper"];
  const proc = Bun.spawn(argv, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...o.env } });
  // With unshare --fork the agent is unshare's only child.
  const agentPid = (): number =>
    mode === "subreaper"
      ? proc.pid
      : Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(" ")[0]);
  let log = "";
  const triggers = [o.signal && { when: o.signal.when, run: async (pid: number) => {
    await Bun.sleep(o.signal?.delayMs ?? 0);
    process.kill(pid, o.signal!.send);
  } }, o.during].filter((x): x is NonNullable<typeof x> => Boolean(x));
  const pending = new Set(triggers);
  const actions: Promise<void>[] = [];
  const reader = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) {
      log += dec.decode(chunk, { stream: true });
      for (const t of [...pending]) {
        if (t.when.test(log)) {
          pending.delete(t);
          actions.push(Promise.resolve(t.run(agentPid())));
        }
      }
    }
  })();
  const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 15_000);
  const code = await proc.exited;
  clearTimeout(timer);
  await reader;
  await Promise.all(actions);
  const health: Record<string, unknown> = {};
  const phases: string[] = [];
  const journal: string[] = [];
  if (existsSync(`${dir}/health`)) {
    // Replays the writer calls into the keys the health writer would store.
    for (const line of readFileSync(`${dir}/health`, "utf8").trim().split("\n")) {
      const { call, args } = JSON.parse(line) as { call: string; args: unknown[] };
      journal.push(call === "setPhase" ? `setPhase ${String(args[0])}` : call);
      if (call === "setPhase") phases.push(String(args[0]));
      if (call === "agentOverhead") health.agent_overhead_ms = args[0];
      if (call === "confinement") health.confinement = args[0];
      if (call === "bootPhase") health[`boot_${String(args[0])}`] = args[1];
      if (call === "qemuStarted") health.qemu_pid = args[0];
      if (call === "qmpStatus") health.qmp_status = args[0];
      if (call === "error") health.error = args[0];
      if (call === "bootPhase" && args[0] === "qemu_restored") health.qemu_restored = args[1];
      if (call === "qemuExited") {
        const e = args[0] as { code?: number; signal?: string; stderr: string[] };
        health.exit_code = e.code;
        health.exit_signal = e.signal;
        health.exit_stderr = e.stderr.join("\n");
      }
    }
  }
  const hypervisor = existsSync(`${dir}/hv`) ? readFileSync(`${dir}/hv`, "utf8").trim().split("\n").filter(Boolean) : [];
  rmSync(dir, { recursive: true, force: true });
  return { code, log, health, phases, hypervisor, journal };
}
