// QEMU's life as a state × event table (s6-supervise's actions[state][event]): the compiler
// checks that every cell was decided, and the supervisor only executes what a cell says.

export type QemuState = "idle" | "starting" | "running" | "quitting" | "terminating" | "killing" | "exited";
export type QemuEvent =
  | "start" // the agent decided to run QEMU
  | "qmpReady" // monitor answered, fds handed over: QEMU is usable
  | "qmpFailed" // monitor refused, timed out or closed
  | "exit" // the process ended (from Bun's exited promise: immediate, no polling)
  | "stop" // shutdown requested (signal, fatal path)
  | "deadline"; // the current state's deadline passed

export type Action =
  | "spawn" // start the process and connect to its monitor
  | "reportRunning"
  | "warnQmpLost"
  | "qmpQuit"
  | "sendTerm"
  | "sendKill"
  | "failStart" // record why QEMU was declared failed before stopping it
  | "crashed" // exited on its own: record, apply the crash policy
  | "stopped" // exited after we asked it to: continue the stop
  | "giveUp" // survived SIGKILL: nothing left but the fatal path
  | "impossible"; // the event cannot happen in this state: a bug, goes to the fatal path

export interface Transition {
  readonly next: QemuState;
  readonly actions: readonly Action[];
}

const t = (next: QemuState, ...actions: Action[]): Transition => ({ next, actions });

/** Deadlines (ms) of the states that have one; the supervisor arms them on entry. */
export interface Deadlines {
  quitting: number;
  terminating: number;
  killing: number;
}

export const DEFAULT_DEADLINES: Deadlines = { quitting: 5000, terminating: 3000, killing: 2000 };

export const lifecycle: Record<QemuState, Record<QemuEvent, Transition>> = {
  idle: {
    start: t("starting", "spawn"),
    qmpReady: t("idle", "impossible"),
    qmpFailed: t("idle", "impossible"),
    exit: t("idle", "impossible"),
    stop: t("exited", "stopped"),
    deadline: t("idle"),
  },
  starting: {
    start: t("starting"),
    qmpReady: t("running", "reportRunning"),
    // A QEMU we cannot control cannot save, restore or take QMP from dom0: stop it and treat
    // its end as a crash.
    qmpFailed: t("terminating", "failStart", "sendTerm"),
    exit: t("exited", "crashed"),
    stop: t("terminating", "sendTerm"),
    deadline: t("starting"),
  },
  running: {
    start: t("running"),
    qmpReady: t("running", "impossible"),
    qmpFailed: t("running", "warnQmpLost"),
    exit: t("exited", "crashed"),
    stop: t("quitting", "qmpQuit"),
    deadline: t("running"),
  },
  quitting: {
    start: t("quitting"),
    qmpReady: t("quitting"),
    qmpFailed: t("quitting"), // quit closes the monitor before the process ends
    exit: t("exited", "stopped"),
    stop: t("quitting"),
    deadline: t("terminating", "sendTerm"),
  },
  terminating: {
    start: t("terminating"),
    qmpReady: t("terminating"),
    qmpFailed: t("terminating"),
    exit: t("exited", "stopped"),
    stop: t("terminating"),
    deadline: t("killing", "sendKill"),
  },
  killing: {
    start: t("killing"),
    qmpReady: t("killing"),
    qmpFailed: t("killing"),
    exit: t("exited", "stopped"),
    stop: t("killing"),
    deadline: t("exited", "giveUp"),
  },
  exited: {
    start: t("exited"), // one QEMU per stub domain: no restarts
    qmpReady: t("exited"),
    qmpFailed: t("exited"),
    exit: t("exited", "impossible"),
    stop: t("exited", "stopped"),
    deadline: t("exited"),
  },
};
