import { expect, test } from "vitest";
import type { ChildExit } from "../../ffi/libc.ts";
import { reapOrphans, type ReapSys } from "../../agent/init/reaper.ts";
import { EventQueue } from "../../agent/init/events.ts";

// A kernel's view of our exited children, in the order waitid(P_ALL) would return them.
function fakeSys(zombies: number[]): ReapSys & { zombies: number[]; reaped: number[] } {
  const s = {
    zombies: [...zombies],
    reaped: [] as number[],
    peek: (): ChildExit | null => {
      const pid = s.zombies[0];
      return pid === undefined ? null : { pid, code: 1, status: 0 };
    },
    reap: (pid: number): ChildExit | null => {
      const i = s.zombies.indexOf(pid);
      if (i < 0) return null;
      s.zombies.splice(i, 1);
      s.reaped.push(pid);
      return { pid, code: 1, status: 0 };
    },
    zombieChildren: () => [...s.zombies],
  };
  return s;
}

test("reaps orphans but never a child Bun spawned, even when it hides the others", () => {
  const sys = fakeSys([10, 42, 11, 12]);
  const own = new Set([42]);
  expect(reapOrphans(sys, (p) => own.has(p))).toBe(3);
  expect(sys.reaped).toEqual([10, 11, 12]);
  expect(sys.zombies).toEqual([42]);
});

test("nothing to do when there are no exited children", () => {
  const sys = fakeSys([]);
  expect(reapOrphans(sys, () => false)).toBe(0);
});

test("a burst of SIGCHLDs waits in the loop's queue as one reap request per trigger", () => {
  const q = new EventQueue();
  for (let i = 0; i < 1000; i++) q.pushReap("SIGCHLD");
  q.pushReap("sweep");
  q.pushReap("sweep");
  q.push({ kind: "signal", signal: "SIGTERM" });
  q.pushReap("SIGCHLD");
  expect(q.size).toBe(3);
});
