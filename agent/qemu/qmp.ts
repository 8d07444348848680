// A QMP client: greeting, capabilities negotiation, commands with ids and deadlines, events.
// The byte transport is an interface so the same client drives a real QEMU (UNIX socket
// through ffi/libc.ts, with SCM_RIGHTS for add-fd) and in-memory fakes in tests.

export interface QmpTransport {
  /** Send bytes, with file descriptors attached (SCM_RIGHTS) when given. */
  send(data: Uint8Array, fds?: number[]): void;
  /** Chunks as they arrive; ends when the peer closes. */
  chunks(): AsyncIterable<Uint8Array>;
  close(): void;
}

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

export class QmpError extends Error {
  constructor(readonly command: string, readonly klass: string, readonly desc: string) {
    super(`qmp ${command}: ${klass}: ${desc}`);
    this.name = "QmpError";
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A line longer than this is a broken or hostile peer, not a QMP message. */
const MAX_LINE = 1 << 20;

export class QmpClient {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closedReason: Error | undefined;
  private greetingWaiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  private greeting: unknown;
  /** Resolves when the peer closes the connection (or the transport fails). */
  readonly closed: Promise<Error>;

  private constructor(private readonly transport: QmpTransport) {
    this.closed = this.pump();
  }

  /** Reads the greeting and negotiates capabilities; rejects after `timeoutMs`. */
  static async connect(transport: QmpTransport, timeoutMs: number): Promise<QmpClient> {
    const c = new QmpClient(transport);
    try {
      await c.waitGreeting(timeoutMs);
      await c.execute("qmp_capabilities", undefined, timeoutMs);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  get greetingMessage(): unknown {
    return this.greeting;
  }

  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs a command; rejects with QmpError on an error reply, or on timeout / close. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = 5000, fds?: number[]): Promise<unknown> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    const id = `sd-${this.nextId++}`;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`qmp ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      try {
        this.transport.send(new TextEncoder().encode(`${JSON.stringify(msg)}\n`), fds);
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e as Error);
      }
    });
  }

  close(): void {
    this.fail(new Error("qmp connection closed by us"));
    this.transport.close();
  }

  private waitGreeting(timeoutMs: number): Promise<unknown> {
    if (this.greeting !== undefined) return Promise.resolve(this.greeting);
    if (this.closedReason) return Promise.reject(this.closedReason);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`qmp: no greeting within ${timeoutMs} ms`)), timeoutMs);
      this.greetingWaiter = {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  private async pump(): Promise<Error> {
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of this.transport.chunks()) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.dispatch(line);
        }
        if (buf.length > MAX_LINE) throw new Error(`qmp: line longer than ${MAX_LINE} bytes`);
      }
      return this.fail(new Error("qmp: connection closed by QEMU"));
    } catch (e) {
      return this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private dispatch(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      throw new Error(`qmp: not JSON: ${line.slice(0, 80)}`);
    }
    if (typeof msg !== "object" || msg === null) throw new Error(`qmp: not an object: ${line.slice(0, 80)}`);
    const m = msg as Record<string, unknown>;
    if ("QMP" in m) {
      this.greeting = m.QMP;
      this.greetingWaiter?.resolve(m.QMP);
      this.greetingWaiter = undefined;
    } else if (typeof m.event === "string") {
      for (const l of this.listeners) l(m as unknown as QmpEvent);
    } else if ("return" in m || "error" in m) {
      const id = typeof m.id === "string" ? m.id : "";
      const p = this.pending.get(id);
      if (!p) return; // a reply whose deadline already passed
      this.pending.delete(id);
      clearTimeout(p.timer);
      if ("error" in m) {
        const err = (m.error ?? {}) as Record<string, unknown>;
        p.reject(new QmpError(p.command, String(err.class ?? "Error"), String(err.desc ?? "")));
      } else {
        p.resolve(m.return);
      }
    }
  }

  private fail(reason: Error): Error {
    if (this.closedReason) return this.closedReason;
    this.closedReason = reason;
    this.greetingWaiter?.reject(reason);
    this.greetingWaiter = undefined;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
    this.pending.clear();
    return reason;
  }
}
