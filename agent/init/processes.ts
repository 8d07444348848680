// Child processes behind an interface, so the supervisor runs against fakes in unit tests.
// The Bun implementation remembers which pids it spawned: the orphan reaper must never reap
// those, or Bun's own wait4 loses the status (bun-as-pid1.md).

export interface ExitStatus {
  /** Exit code, or null when a signal ended the process. */
  readonly code: number | null;
  /** Signal name (SIGKILL), or null. */
  readonly signal: string | null;
}

export interface Child {
  readonly pid: number;
  /** Settles once, as soon as the process ends (Bun watches a pidfd: no polling). */
  readonly exited: Promise<ExitStatus>;
  readonly stderr: ReadableStream<Uint8Array>;
  kill(signal: "SIGTERM" | "SIGKILL"): void;
}

export interface SpawnOptions {
  /** Given to the child as fds 3, 4, ... in order. */
  readonly extraFds?: readonly number[];
  /** The child's whole environment (default: empty). */
  readonly env?: Readonly<Record<string, string>>;
  /** stderr to our console instead of a pipe (whose stream is then empty); stdin from it too for a shell. */
  readonly console?: "stderr" | "shell";
}

export interface Processes {
  spawn(argv: readonly string[], opts?: SpawnOptions): Child;
  /** True while `pid` is a child this implementation spawned and Bun has not reaped yet. */
  isOwn(pid: number): boolean;
}

export function bunProcesses(): Processes {
  const own = new Set<number>();
  return {
    spawn(argv, opts = {}) {
      const proc = Bun.spawn([...argv], {
        stdio: [opts.console === "shell" ? "inherit" : "ignore", "inherit", opts.console ? "inherit" : "pipe", ...(opts.extraFds ?? [])],
        env: { ...opts.env },
      });
      own.add(proc.pid);
      const exited = proc.exited.then(
        (): ExitStatus => {
          own.delete(proc.pid);
          const signal = proc.signalCode == null ? null : String(proc.signalCode);
          return { code: signal ? null : proc.exitCode, signal };
        },
        (e: unknown): ExitStatus => {
          own.delete(proc.pid);
          throw e;
        },
      );
      return {
        pid: proc.pid,
        exited,
        stderr: opts.console ? new ReadableStream<Uint8Array>({ start: (c) => c.close() }) : (proc.stderr as ReadableStream<Uint8Array>),
        kill: (sig) => proc.kill(sig),
      };
    },
    isOwn: (pid) => own.has(pid),
  };
}
