// Pieces the development VM is made of, shared by `make run`, `make smoke` and the VM tests:
// a network namespace playing the backend, a QEMU process with its serial console captured,
// and a QMP client for the outer QEMU. Deadlines everywhere: QEMU's exit status says nothing
// (it is 0 after a triple fault or a kernel panic, see vm-harness.md), so results are read
// from the console and every wait ends with an error that carries the console's text.
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";

export class HarnessError extends Error {
  override name = "HarnessError";
}

export function sh(argv: string[], opts: { allowFail?: boolean } = {}): string {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0 && !opts.allowFail) {
    throw new HarnessError(`${argv.join(" ")} failed (${p.exitCode}): ${p.stderr.toString().trim()}`);
  }
  return p.stdout.toString();
}

/** A network namespace playing the backend domain, with taps the VM's NICs attach to. */
export class Netns {
  private constructor(readonly name: string) {}

  static create(name: string): Netns {
    sh(["ip", "netns", "del", name], { allowFail: true });
    sh(["ip", "netns", "add", name]);
    const ns = new Netns(name);
    ns.ip("link", "set", "lo", "up");
    return ns;
  }

  ip(...args: string[]): string {
    return sh(["ip", "-n", this.name, ...args]);
  }

  /** A persistent tap that QEMU (run inside this namespace) opens by name. */
  addTap(ifname: string, cidr: string): void {
    this.ip("tuntap", "add", "dev", ifname, "mode", "tap");
    this.ip("addr", "add", cidr, "dev", ifname);
    this.ip("link", "set", ifname, "up");
  }

  /** argv prefixed so that it runs inside the namespace. */
  wrap(argv: string[]): string[] {
    return ["ip", "netns", "exec", this.name, ...argv];
  }

  exec(argv: string[], opts: { allowFail?: boolean } = {}): string {
    return sh(this.wrap(argv), opts);
  }

  /** The namespace's ICMP counters (/proc/net/snmp is per namespace). */
  icmpCounters(): Record<string, number> {
    const lines = this.exec(["cat", "/proc/net/snmp"]).split("\n").filter((l) => l.startsWith("Icmp:"));
    const names = lines[0]?.split(/\s+/).slice(1) ?? [];
    const values = lines[1]?.split(/\s+/).slice(1) ?? [];
    return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
  }

  destroy(): void {
    sh(["ip", "netns", "del", this.name], { allowFail: true });
  }
}

/** Lines that mean the VM is dead whatever else it printed. */
export const FATAL_CONSOLE = [/Kernel panic/, /Initramfs unpacking failed/, /end Kernel panic/];

type Waiter = { re: RegExp; resolve: (m: RegExpMatchArray) => void; reject: (e: Error) => void; from: number };

/** Text from a child's output, kept whole, appended to a log file, and searchable with deadlines. */
export class Transcript {
  text = "";
  private waiters = new Set<Waiter>();
  private ended: string | null = null;

  constructor(
    readonly label: string,
    readonly logPath: string | null,
    private readonly fatal: RegExp[] = [],
    private readonly echo: ((s: string) => void) | null = null,
  ) {
    if (logPath) writeFileSync(logPath, "");
  }

  async consume(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.push(decoder.decode(chunk, { stream: true }));
  }

  push(s: string): void {
    this.text += s;
    if (this.logPath) appendFileSync(this.logPath, s);
    this.echo?.(s);
    for (const w of this.waiters) this.check(w);
  }

  /** No more output will come (the process exited); pending waits fail now, not at their deadline. */
  end(reason: string): void {
    this.ended = reason;
    for (const w of this.waiters) this.check(w);
  }

  /** Offset to pass as `from` so that a wait only matches output produced after this call. */
  mark(): number {
    return this.text.length;
  }

  waitFor(re: RegExp, ms: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new HarnessError(`${this.label}: no ${re} within ${ms / 1000} s`));
      }, ms);
      const w: Waiter = {
        re,
        from,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.waiters.add(w);
      this.check(w);
    });
  }

  private check(w: Waiter): void {
    const tail = this.text.slice(w.from);
    const m = tail.match(w.re);
    if (m) {
      this.waiters.delete(w);
      w.resolve(m);
      return;
    }
    const bad = this.fatal.find((f) => f.test(tail));
    if (bad || this.ended !== null) {
      this.waiters.delete(w);
      w.reject(new HarnessError(`${this.label}: waiting for ${w.re}: ${bad ? `console shows ${bad}` : this.ended}`));
    }
  }
}

/** A QMP client over a UNIX socket: greeting, capabilities, commands in order, events kept. */
export class Qmp {
  events: { event: string; data?: unknown }[] = [];
  private buf = "";
  private pending: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  private greeted!: () => void;
  private sock!: Awaited<ReturnType<typeof Bun.connect>>;

  static async connect(path: string, ms = 10_000): Promise<Qmp> {
    const q = new Qmp();
    const greeting = new Promise<void>((r) => (q.greeted = r));
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        q.sock = await Bun.connect({
          unix: path,
          socket: {
            data: (_s, d) => q.onData(d.toString()),
            close: () => q.onClose(),
            error: () => q.onClose(),
          },
        });
        break;
      } catch (e) {
        // The socket file appears a moment after QEMU starts.
        if (Date.now() > deadline) throw new HarnessError(`QMP ${path}: ${(e as Error).message}`);
        await Bun.sleep(50);
      }
    }
    await withDeadline(greeting, ms, `QMP greeting on ${path}`);
    await q.execute("qmp_capabilities");
    return q;
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ("QMP" in msg) this.greeted();
      else if ("event" in msg) this.events.push(msg as { event: string });
      else if ("return" in msg) this.pending.shift()?.resolve(msg.return);
      else if ("error" in msg) this.pending.shift()?.reject(new HarnessError(`QMP error: ${JSON.stringify(msg.error)}`));
    }
  }

  private onClose(): void {
    for (const p of this.pending.splice(0)) p.reject(new HarnessError("QMP connection closed"));
  }

  execute(command: string, args?: Record<string, unknown>, ms = 10_000): Promise<unknown> {
    const reply = new Promise<unknown>((resolve, reject) => this.pending.push({ resolve, reject }));
    this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + "\n");
    return withDeadline(reply, ms, `QMP ${command}`);
  }

  close(): void {
    this.sock.end();
  }
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: Timer;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HarnessError(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A child process whose stdout+stderr go to a Transcript. */
export interface Child {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  out: Transcript;
  exited: Promise<number>;
}

export function spawnChild(
  label: string,
  argv: string[],
  opts: { logPath: string | null; env?: Record<string, string>; fatal?: RegExp[]; echo?: (s: string) => void },
): Child {
  const proc = Bun.spawn(argv, {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  const out = new Transcript(label, opts.logPath, opts.fatal ?? [], opts.echo ?? null);
  const done = Promise.all([out.consume(proc.stdout), out.consume(proc.stderr)]);
  const exited = done.then(() => proc.exited).then((code) => {
    out.end(`${label} exited (${proc.signalCode ?? code})`);
    return code;
  });
  return { proc, out, exited };
}

/** Waits for a child to exit; SIGKILLs it after `ms`. Returns true if it exited by itself. */
export async function reap(child: Child, ms: number): Promise<boolean> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return true;
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), ms);
  await child.exited;
  clearTimeout(timer);
  return child.proc.signalCode !== "SIGKILL";
}

/**
 * The machine-wide VM lock (/tmp/vm.lock): one VM at a time on this 2-core machine. `flock`
 * holds it for a `cat` that lives until release() closes its stdin (or this process dies), so
 * QEMU itself stays our direct child and can be signalled. A caller that already holds it
 * around a build and the tests that use the build (`flock /tmp/vm.lock env VM_LOCK_HELD=1 …`)
 * says so, since a second flock of the same file would wait for the first forever.
 */
export class VmLock {
  private constructor(private readonly holder: Subprocess<"pipe", "pipe", "inherit"> | null) {}

  static async acquire(path = "/tmp/vm.lock"): Promise<VmLock> {
    if (process.env.VM_LOCK_HELD === "1" && path === "/tmp/vm.lock") return new VmLock(null);
    const holder = Bun.spawn(["flock", path, "-c", "echo locked; exec cat"], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    const reader = holder.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    if (!value || !new TextDecoder().decode(value).includes("locked")) {
      throw new HarnessError(`flock ${path} failed (${await holder.exited})`);
    }
    return new VmLock(holder);
  }

  async release(): Promise<void> {
    if (!this.holder) return;
    this.holder.stdin.end();
    await this.holder.exited;
  }
}

export function requireFile(path: string, hint: string): string {
  if (!existsSync(path)) throw new HarnessError(`${path} is missing: ${hint}`);
  return path;
}

/**
 * A small raw disk image whose first line is `marker`: what the demo guest prints from its disk
 * proves the bytes crossed every layer in between. 1 MiB, a whole number of sectors.
 */
export function writeDiskImage(path: string, marker: string): void {
  const image = new Uint8Array(1 << 20);
  image.set(new TextEncoder().encode(`${marker}\n`));
  writeFileSync(path, image);
}

/** A marker no earlier run left behind: a fixed prefix, the disk's name and random hex. */
export function diskMarker(vdev: string): string {
  return `DEMO-DISK-${vdev}-${crypto.getRandomValues(new Uint8Array(6)).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "")}`;
}
