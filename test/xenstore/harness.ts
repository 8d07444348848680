// Runs the xenstore server as a separate process (the FFI binding's calls are synchronous and
// would deadlock a server in the test's own event loop), fetches Debian's test-xenstore when
// missing, and speaks the raw wire protocol for tests that need malformed frames.
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFrame, type Frame, FrameReader, MsgType } from "../../agent/xenstore/wire.ts";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BUN = join(ROOT, "node_modules/.bin/bun");

export interface ServerProc {
  dir: string;
  socket: string;
  /** Socket path for connections acting as `domid` (only those passed to startServer). */
  domainSocket(domid: number): string;
  stderr(): string;
  stop(): Promise<number>;
}

export async function startServer(opts: { domains?: number[]; extra?: string[] } = {}): Promise<ServerProc> {
  const dir = mkdtempSync(join(tmpdir(), "xs-test-"));
  const socket = join(dir, "socket");
  const args = ["agent/main.ts", "xenstored", "--socket", socket];
  for (const d of opts.domains ?? []) args.push("--domain-socket", `${d}:${join(dir, `dom${d}`)}`);
  args.push(...(opts.extra ?? []));
  const proc = Bun.spawn([BUN, ...args], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
  let err = "";
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  const ready = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`xenstored exited before listening: ${err}`);
      err += decoder.decode(value);
      if (err.includes("xenstored: listening on")) return;
    }
  })();
  await ready;
  // Keep draining so a --trace server never blocks on a full pipe.
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      err += decoder.decode(value);
    }
  })();
  return {
    dir,
    socket,
    domainSocket: (d) => join(dir, `dom${d}`),
    stderr: () => err,
    stop: async () => {
      proc.kill("SIGTERM");
      const code = await proc.exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Run a host command with XENSTORED_PATH set; returns exit code and output. */
export async function sh(cmd: string[], socket: string, stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, {
    env: { ...process.env, XENSTORED_PATH: socket },
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** A raw wire client: sends any bytes, collects replies and watch events. */
export class RawClient {
  readonly events: Frame[] = [];
  private readonly replies: Frame[] = [];
  private waiters: Array<() => void> = [];
  private readonly reader = new FrameReader();
  closed = false;
  private nextReq = 1;

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      for (const f of this.reader.push(new Uint8Array(d))) {
        (f.type === MsgType.WATCH_EVENT ? this.events : this.replies).push(f);
      }
      this.wake();
    });
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    sock.on("error", () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  sendRaw(bytes: Uint8Array): void {
    this.sock.write(bytes);
  }

  /** Send one request and wait for its reply; undefined if the server closed the connection. */
  async request(type: number, payload: Uint8Array | string, txId = 0, timeoutMs = 3000): Promise<Frame | undefined> {
    const reqId = this.nextReq++;
    const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    this.sendRaw(encodeFrame({ type, reqId, txId, payload: body }));
    return this.nextReply(timeoutMs);
  }

  async nextReply(timeoutMs = 3000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length === 0) {
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error("no reply from xenstored");
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.replies.shift();
  }

  /** Wait until `n` watch events have arrived (events may trail the reply that caused them). */
  async eventCount(n: number, timeoutMs = 3000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < n && !this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.events;
  }

  close(): void {
    this.sock.destroy();
  }
}

export const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : "");
