// Resident memory of the compiled agent (dist/stubdom-init) once it supervises a running QEMU:
// `stubdom-init init --subreaper` with test/init/fake-qemu.ts, VmRSS read from /proc after the
// supervisor reported "running". On the host the binary's pages are on disk, not in an
// initramfs, but RSS counts the pages it touched either way.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, ROOT } from "../xenstore/harness.ts";
import { within } from "./util.ts";

const AGENT = join(ROOT, "dist/stubdom-init");

function vmRssKib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Agent RSS in KiB, `settleMs` after QEMU was reported running. */
export async function measureAgentRss(settleMs: number): Promise<number> {
  if (!existsSync(AGENT)) throw new Error(`${AGENT} is missing: run \`make build\``);
  const dir = mkdtempSync(join(tmpdir(), "bench-rss-"));
  const plan = { binary: BUN, dmArgv: [join(ROOT, "test/init/fake-qemu.ts"), "--mode", "ok"], guestDomid: 5 };
  writeFileSync(join(dir, "plan.json"), JSON.stringify(plan));
  const health = join(dir, "health");
  const p = Bun.spawn(
    [AGENT, "init", "--subreaper", "--plan", join(dir, "plan.json"), "--run-dir", dir, "--health-file", health, "--loglevel", "warn"],
    { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
  );
  const err = new Response(p.stderr).text();
  try {
    const deadline = performance.now() + 20_000;
    const running = () => existsSync(health) && readFileSync(health, "utf8").includes(`{"call":"setPhase","args":["running"]}`);
    while (!running()) {
      if (p.exitCode !== null || performance.now() > deadline) {
        p.kill("SIGKILL");
        throw new Error(`the agent did not report QEMU running (exit ${await p.exited}): ${await err}`);
      }
      await Bun.sleep(50);
    }
    await Bun.sleep(settleMs);
    return vmRssKib(p.pid);
  } finally {
    if (p.exitCode === null) {
      p.kill("SIGTERM");
      if ((await within(p.exited, 15_000)) === undefined) p.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
