// Reaping orphans as PID 1 (or as a subreaper) without ever taking the status of a child
// that Bun spawned. What Bun 1.4 does (src/bun.js/api/bun/process.zig, checked with strace):
// it only ever calls wait4(<its own pid>, WNOHANG), either when that child's pidfd turns
// readable in its event loop or, where pidfd_open fails with ENOSYS (Linux < 5.3, gVisor; or
// BUN_FEATURE_FLAG_FORCE_WAITER_THREAD), from its "Waitpid" thread, which then installs its own
// SIGCHLD handler over the one process.on("SIGCHLD") installed: our listener goes silent, hence
// the supervisor's periodic sweep. Bun never waits for -1, so QEMU's status is only at risk
// from us: a plain waitpid(-1) here would race with Bun's wait4 and make `exited` reject with
// ECHILD. So peek first (WNOWAIT), and reap by pid only what is not ours. A zombie of ours
// stays first in the kernel's list until Bun reaps it, hiding any orphan behind it; then a
// /proc scan finds the others.
import { readdirSync, readFileSync } from "node:fs";
import type { ChildExit } from "../../ffi/libc.ts";

export interface ReapSys {
  peek(): ChildExit | null;
  reap(pid: number): ChildExit | null;
  /** Pids of our children that are zombies. */
  zombieChildren(): number[];
}

/** Reaps every exited child that `isOwn` does not claim; returns how many. Never throws past a reap error of one pid. */
export function reapOrphans(sys: ReapSys, isOwn: (pid: number) => boolean): number {
  let reaped = 0;
  for (;;) {
    const e = sys.peek();
    if (e === null) return reaped;
    if (!isOwn(e.pid)) {
      if (sys.reap(e.pid) === null) return reaped; // vanished between peek and reap
      reaped++;
      continue;
    }
    for (const pid of sys.zombieChildren()) {
      if (!isOwn(pid) && sys.reap(pid) !== null) reaped++;
    }
    return reaped;
  }
}

/** Zombies whose parent is `self`, from /proc/<pid>/stat (state after the last ')'). */
export function procZombieChildren(self: number, proc = "/proc"): number[] {
  const out: number[] = [];
  for (const name of readdirSync(proc)) {
    if (!/^[0-9]+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`${proc}/${name}/stat`, "latin1");
    } catch {
      continue; // exited and reaped while we listed
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" && Number(fields[1]) === self) out.push(Number(name));
  }
  return out;
}
