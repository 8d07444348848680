// Connects the supervisor to the process (signals, uncaught errors) and to the real kernel
// (sockets, consoles, reaping). Shared by the real boot and by `stubdom-init init`.
import { closeSync, openSync, readFileSync, readSync, unlinkSync, constants } from "node:fs";
import { close, listenUnixForChild, makeRaw, O, open, peekExitedChild, reapChild, SysError, write, writeNow } from "../../ffi/libc.ts";
import { fileSize, memfdCreate, readAt, truncateFile } from "../../ffi/memfd.ts";
import type { Logger } from "../log.ts";
import { QmpClient } from "../qemu/qmp.ts";
import { unixTransport } from "../qemu/unix-transport.ts";
import type { HealthReport, Hypervisor, Machine } from "./platform.ts";
import { bunProcesses } from "./processes.ts";
import { procZombieChildren, reapOrphans } from "./reaper.ts";
import type { SaveStreamIo } from "./save-stream.ts";
import type { Supervisor, SupervisorDeps } from "./supervisor.ts";

const ENOTTY = 25;

export interface RealDepsOptions {
  log: Logger;
  hypervisor: Hypervisor;
  machine: Machine;
  health: HealthReport;
  /** The restore console's device path: /dev/hvc2 in a stub domain. */
  restoreConsole: string;
  /** Where QEMU saves to, when the stub domain has a save console. */
  saveStream?: SaveStream;
  nowMs: () => number;
  entryMs: number;
}

export function realSupervisorDeps(o: RealDepsOptions): SupervisorDeps {
  const processes = bunProcesses();
  return {
    log: o.log,
    processes,
    hypervisor: o.hypervisor,
    machine: o.machine,
    health: o.health,
    listen(path) {
      try {
        unlinkSync(path);
      } catch {
        // absent: the normal case
      }
      return listenUnixForChild(path);
    },
    connectQmp: (path, timeoutMs) => QmpClient.connect(unixTransport(path), timeoutMs),
    openRestoreConsole: () => openConsole(o.restoreConsole, O.RDONLY),
    saveStreamFd() {
      if (!o.saveStream) throw new Error("no save stream was opened for this stub domain");
      return o.saveStream.qemuFd();
    },
    policyFd(text) {
      const fd = memfdCreate("stubdom-confine-policy");
      try {
        // A memfd is a regular file: one write takes it all (the policy is under 64 KiB).
        const bytes = new TextEncoder().encode(text);
        const n = write(fd, bytes);
        if (n !== bytes.length) throw new Error(`short write of the confinement policy (${n} of ${bytes.length} bytes)`);
      } catch (e) {
        close(fd);
        throw e;
      }
      return fd;
    },
    closeFd: (fd) => close(fd),
    reapOrphans: () =>
      reapOrphans(
        { peek: peekExitedChild, reap: reapChild, zombieChildren: () => procZombieChildren(process.pid) },
        processes.isOwn,
      ),
    nowMs: o.nowMs,
    entryMs: o.entryMs,
  };
}

/**
 * From here on PID 1 may not die: signals and errors become events of the one loop, and an
 * error the loop cannot place goes to the fatal path.
 */
export function supervise(sup: Supervisor): Promise<void> {
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(signal, () => sup.queue.push({ kind: "signal", signal }));
  }
  process.on("SIGCHLD", () => sup.queue.pushReap("SIGCHLD"));
  process.on("uncaughtException", (e) => sup.queue.push({ kind: "fatal", reason: `uncaught exception: ${e.stack ?? e}` }));
  process.on("unhandledRejection", (e) =>
    sup.queue.push({ kind: "fatal", reason: `unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` }),
  );
  return sup.run();
}

/** USER_HZ: /proc's clock ticks are 1/100 s on every Linux architecture we run on. */
const CLOCK_TICKS_PER_S = 100;

/**
 * When this process was created, in ms since kernel start (/proc/self/stat starttime, the same
 * boot-based clock as /proc/uptime). For PID 1 that is the kernel starting /init: stage 0 and
 * Bun's own start-up are then counted in the agent's overhead, as they should be. Falls back
 * to the JS runtime's start when /proc cannot say.
 */
export function processStartMs(nowMs: number): number {
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    if (Number.isFinite(ticks) && ticks > 0) return (ticks * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    // fall through
  }
  return nowMs - performance.now();
}

/** The kernel's "Run /init" record in /dev/kmsg text ("6,812,1802564,-;Run /init as init process"), in ms. */
export function parseInitRecord(record: string): number | null {
  const m = /^\d+,\d+,(\d+),[^;]*;Run \/init as init process/.exec(record);
  return m ? Number(m[1]) / 1000 : null;
}

/**
 * When the kernel started userspace (/init, our stage 0), from its own log in /dev/kmsg:
 * PID 1's /proc starttime is the kernel_init thread's creation, long before /init runs.
 * Read before the ring buffer is scrubbed; null when the record is gone.
 */
export function kernelRunInitMs(path = "/dev/kmsg", maxRecords = 20_000): number | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  const buf = Buffer.alloc(8192);
  try {
    for (let i = 0; i < maxRecords; i++) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        // EPIPE: a record was overwritten while we read; go on with the next one. EAGAIN: end.
        if ((e as NodeJS.ErrnoException).code === "EPIPE") continue;
        return null;
      }
      if (n <= 0) return null;
      const ms = parseInitRecord(buf.toString("utf8", 0, n));
      if (ms !== null) return ms;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

/** A raw-mode fd on a console (/dev/hvcN), owned by the caller. */
function openConsole(path: string, access: number): number {
  const fd = open(path, access | O.NOCTTY | O.CLOEXEC);
  try {
    makeRaw(fd, path);
  } catch (e) {
    // A file or pipe standing in for the console in tests has no line discipline to clear.
    if (!(e instanceof SysError && e.errno === ENOTTY)) {
      close(fd);
      throw e;
    }
  }
  return fd;
}

/** The memory file QEMU saves its device state into and the console it is copied to (save-stream.ts). */
export interface SaveStream {
  /**
   * A write-only descriptor of the memory file for QEMU's fdset 1, owned by the caller: QEMU
   * hands out a descriptor of a set only when its access mode matches the open's (O_WRONLY).
   */
  qemuFd(): number;
  io: SaveStreamIo;
}

/** Opens console 1 (non-blocking, raw) and a memory file; both live as long as PID 1. */
export function openSaveStream(consolePath: string): SaveStream {
  const memfd = memfdCreate("qemu-save");
  const console = openConsole(consolePath, O.WRONLY | O.NONBLOCK);
  return {
    qemuFd: () => open(`/proc/self/fd/${memfd}`, O.WRONLY | O.CLOEXEC),
    io: {
      size: () => fileSize(memfd),
      readAt: (offset, max) => readAt(memfd, offset, max),
      writeConsole: (data) => writeNow(console, data),
      truncate: () => truncateFile(memfd),
      sleep: (ms) => Bun.sleep(ms),
      nowMs: () => performance.now(),
    },
  };
}
