// Host-side measurements of the agent's supervision, seen from dom0's side of xenstore:
//   - crash detection: QEMU SIGKILL → phase "crashed" visible through a xenstore watch;
//   - idle writes: write transactions per minute the stub domain sends while QEMU runs idle.
// The stub domain is test/bench/stub-host.ts (real supervisor, real health writer, fake QEMU)
// in its own process; dom0 is this process, watching through Debian's libxenstore
// (ffi/xenstore.ts); xenstored is `stubdom-init xenstored` in a third process.
// Why on the host and not in a VM: the chain under test (pidfd exit → supervisor → writer →
// xenstore → watch) is all user space; a TCG VM would add its emulation cost to every step
// and allow only a few runs, where 50 runs here take about a minute.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { healthDir } from "../../agent/health/schema.ts";
import { XenStoreError } from "../../agent/xenstore/types.ts";
import { openXenStore, type FfiXenStore } from "../../ffi/xenstore.ts";
import { GUEST, layOut, STUB } from "../health/helpers.ts";
import { BUN, ROOT, startServer, type ServerProc } from "../xenstore/harness.ts";
import { within } from "./util.ts";

const STUB_HOST = join(ROOT, "test/bench/stub-host.ts");
const START_TIMEOUT_MS = 20_000;
const CRASH_TIMEOUT_MS = 5_000;

/** A phase value seen through the watch, with the time (performance.now()) the event arrived. */
interface Seen {
  phase: string;
  at: number;
}

/** dom0's view of the stub domain's phase key, through one xenstore watch. */
class PhaseWatch {
  private seen: Seen[] = [];
  private waiters = new Set<() => void>();
  private readonly path = `${healthDir(STUB)}/phase`;

  constructor(private readonly dom0: FfiXenStore) {
    dom0.onWatch((ev) => {
      if (ev.path !== this.path) return;
      const at = performance.now();
      let phase: string;
      try {
        phase = new TextDecoder().decode(dom0.read(this.path));
      } catch (e) {
        if (e instanceof XenStoreError && e.errno === "ENOENT") return;
        throw e;
      }
      this.seen.push({ phase, at });
      for (const w of [...this.waiters]) w();
    });
    dom0.watch(this.path, "bench-phase");
  }

  reset(): void {
    this.seen = [];
  }

  /** The first time `phase` was seen since the last reset, waiting for it up to `timeoutMs`. */
  until(phase: string, timeoutMs: number, what: () => string): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const s = this.seen.find((x) => x.phase === phase);
        if (!s) return;
        cleanup();
        resolve(s.at);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`phase ${phase} not seen within ${timeoutMs} ms (${what()})`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

interface StubProc {
  proc: ReturnType<typeof Bun.spawn>;
  stderr: () => string;
  stdout: () => string;
  dir: string;
}

function startStub(server: ServerProc): StubProc {
  const dir = mkdtempSync(join(tmpdir(), "bench-stub-"));
  const proc = Bun.spawn(
    [BUN, STUB_HOST, "--xenstore", server.domainSocket(STUB), "--domid", String(STUB), "--guest", String(GUEST), "--run-dir", dir],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  let out = "";
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
  })();
  void (async () => {
    for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c);
  })();
  return { proc, stderr: () => err, stdout: () => out, dir };
}

/** SIGTERM first: the supervisor then stops its QEMU, which a SIGKILL would leave orphaned. */
async function stopStub(stub: StubProc): Promise<void> {
  if (stub.proc.exitCode === null && stub.proc.signalCode === null) {
    stub.proc.kill("SIGTERM");
    if ((await within(stub.proc.exited, 15_000)) === undefined) {
      stub.proc.kill("SIGKILL");
      await stub.proc.exited;
    }
  }
  rmSync(stub.dir, { recursive: true, force: true });
}

async function withDom0<T>(server: ServerProc, fn: (dom0: FfiXenStore, watch: PhaseWatch) => Promise<T>): Promise<T> {
  const dom0 = openXenStore({ path: server.socket });
  try {
    layOut(dom0);
    return await fn(dom0, new PhaseWatch(dom0));
  } finally {
    dom0.close();
  }
}

function qemuPid(dom0: FfiXenStore): number {
  return Number(new TextDecoder().decode(dom0.read(`${healthDir(STUB)}/qemu_pid`)));
}

/**
 * `runs` times: start a stub domain, wait for "running", SIGKILL its QEMU, and time until
 * dom0's watch shows "crashed". Returns the latencies in ms. Throws if a run fails: a
 * missing sample is a measurement not taken.
 */
export async function measureCrashDetect(runs: number): Promise<number[]> {
  const server = await startServer({ domains: [STUB] });
  try {
    return await withDom0(server, async (dom0, watch) => {
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) {
        watch.reset();
        const stub = startStub(server);
        try {
          await watch.until("running", START_TIMEOUT_MS, stub.stderr);
          const pid = qemuPid(dom0);
          const t0 = performance.now();
          process.kill(pid, "SIGKILL");
          const t1 = await watch.until("crashed", CRASH_TIMEOUT_MS, stub.stderr);
          samples.push(t1 - t0);
          const code = await stub.proc.exited;
          // EXIT_CODES.crash: the crash policy ran to its end (hypervisor told, power off).
          if (code !== 3 || !stub.stdout().includes(`shutdownGuest ${GUEST} crash`)) {
            throw new Error(`run ${i + 1}: stub exited ${code}, hypervisor calls: ${JSON.stringify(stub.stdout())}\n${stub.stderr()}`);
          }
        } finally {
          await stopStub(stub);
        }
      }
      return samples;
    });
  } finally {
    await server.stop();
  }
}

/** Requests from connection `conn` in a `--trace` log that change the store. */
function countWrites(trace: string, conn: string): number {
  let n = 0;
  for (const line of trace.split("\n")) {
    const m = /^xenstored: IN +(\d+) ([A-Z_]+) req=\d+ tx=(\d+) \((.*)\)$/.exec(line);
    if (!m || m[1] !== conn) continue;
    const [, , type, tx, payload] = m;
    // A transaction counts once, when it commits; outside one, every change is its own write.
    if (type === "TRANSACTION_END" && payload!.startsWith("T")) n++;
    else if (tx === "0" && ["WRITE", "RM", "MKDIR", "SET_PERMS"].includes(type!)) n++;
  }
  return n;
}

/**
 * Write transactions per minute from the stub domain while QEMU runs idle, counted by the
 * xenstore server (its --trace) over `seconds`, after one heartbeat of settling.
 */
export async function measureIdleWrites(seconds: number): Promise<{ perMinute: number; writes: number; seconds: number }> {
  const server = await startServer({ domains: [STUB], extra: ["--trace"] });
  try {
    return await withDom0(server, async (_dom0, watch) => {
      const stub = startStub(server);
      try {
        await watch.until("running", START_TIMEOUT_MS, stub.stderr);
        await Bun.sleep(6_000);
        const conn = new RegExp(`CONN (\\d+) open on ${server.domainSocket(STUB).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} `).exec(server.stderr())?.[1];
        if (!conn) throw new Error("the stub domain's connection is not in the server's trace");
        const before = countWrites(server.stderr(), conn);
        const t0 = performance.now();
        await Bun.sleep(seconds * 1000);
        const writes = countWrites(server.stderr(), conn) - before;
        const s = (performance.now() - t0) / 1000;
        if (stub.proc.exitCode !== null) throw new Error(`stub exited ${stub.proc.exitCode} while idle:\n${stub.stderr()}`);
        return { perMinute: (writes * 60) / s, writes, seconds: s };
      } finally {
        await stopStub(stub);
      }
    });
  } finally {
    await server.stop();
  }
}
