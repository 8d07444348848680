import { expect, test } from "vitest";
import { lifecycle, type QemuEvent, type QemuState, type Transition } from "../../agent/qemu/lifecycle.ts";

const run = (events: QemuEvent[]) => {
  let s: QemuState = "idle";
  const actions: string[] = [];
  for (const e of events) {
    const t: Transition = lifecycle[s][e];
    actions.push(...t.actions);
    s = t.next;
  }
  return { state: s, actions };
};

test("a crash after start runs the crash policy once", () => {
  expect(run(["start", "qmpReady", "qmpFailed", "exit"])).toEqual({
    state: "exited",
    actions: ["spawn", "reportRunning", "warnQmpLost", "crashed"],
  });
});

test("a stop escalates quit → TERM → KILL on deadlines and ends in stopped", () => {
  expect(run(["start", "qmpReady", "stop", "deadline", "deadline", "exit"])).toEqual({
    state: "exited",
    actions: ["spawn", "reportRunning", "qmpQuit", "sendTerm", "sendKill", "stopped"],
  });
});

test("a QEMU that refuses QMP is stopped and its end is a stop, not a second crash", () => {
  expect(run(["start", "qmpFailed", "exit"]).actions).toEqual(["spawn", "failStart", "sendTerm", "stopped"]);
});

test("a QEMU that survives SIGKILL goes to the fatal path", () => {
  expect(run(["start", "stop", "deadline", "deadline"]).actions).toEqual(["spawn", "sendTerm", "sendKill", "giveUp"]);
});

test("no cell restarts QEMU and only exited/idle can power off without a process", () => {
  for (const [state, row] of Object.entries(lifecycle)) {
    for (const [event, t] of Object.entries(row)) {
      if (!(state === "idle" && event === "start")) expect(t.actions, `${state}/${event}`).not.toContain("spawn");
    }
  }
  expect(run(["start", "exit", "exit"]).actions).toContain("impossible");
});
