// Waiting for an fd to become readable without handing it to Bun's own poller. Bun.file(fd)
// .stream() registers the fd number with Bun's epoll and tears that down asynchronously; for an
// fd that a C library closes and whose number the next open reuses (libxenvchan's event channel,
// one per QMP client), a late teardown of the old stream can remove the new one's registration,
// and the new client is never heard: the likely cause of the second QMP client that hung under
// nested Xen (a socket stand-in did not reproduce it). So one Worker poll()s whichever fd it is
// told, and posts back when it is readable; poll() keeps no state between calls, and a stale
// wake-up is harmless because the caller reads without blocking.
// ctl[0]: the fd to wait on (-1: none); ctl[1]: stop; ctl[2]: generation of the current wait.
const workerSource = `
import { dlopen, FFIType } from "bun:ffi";
const { poll } = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
}).symbols;
self.onmessage = (e) => {
  const ctl = new Int32Array(e.data);
  const pfd = new Int32Array(2);
  for (;;) {
    Atomics.wait(ctl, 0, -1);
    if (Atomics.load(ctl, 1)) break;
    const fd = Atomics.load(ctl, 0);
    const gen = Atomics.load(ctl, 2);
    if (fd < 0) continue;
    pfd[0] = fd;
    pfd[1] = 1; // events = POLLIN; revents 0
    // Bounded, so that a cancelled wait or a stop is noticed while nothing arrives.
    const r = poll(pfd, 1, 250);
    if (Atomics.load(ctl, 1)) break;
    if (r > 0 && Atomics.load(ctl, 2) === gen && Atomics.compareExchange(ctl, 0, fd, -1) === fd) postMessage(gen);
  }
};
`;

export interface FdWaiter {
  /** Resolves true once `fd` is readable (or may be: re-check without blocking), false if cancelled. */
  readable(fd: number): Promise<boolean>;
  /** Ends the current wait with false. */
  cancel(): void;
  /** Ends the Worker; the waiter cannot be used again. */
  stop(): void;
}

export function createFdWaiter(): FdWaiter {
  const ctl = new Int32Array(new SharedArrayBuffer(12));
  ctl[0] = -1;
  const url = URL.createObjectURL(new Blob([workerSource], { type: "application/typescript" }));
  const worker = new Worker(url);
  let pending: { gen: number; fd: number; resolve: (ok: boolean) => void } | undefined;
  let stopped = false;
  worker.onmessage = (e: MessageEvent<number>) => {
    URL.revokeObjectURL(url);
    if (!pending) return;
    if (pending.gen === e.data) {
      const p = pending;
      pending = undefined;
      p.resolve(true);
    } else if (Atomics.load(ctl, 0) === -1) {
      // A wake-up for an earlier wait took the current one's arming with it: arm again.
      Atomics.store(ctl, 0, pending.fd);
      Atomics.notify(ctl, 0);
    }
  };
  worker.postMessage(ctl.buffer);
  const cancel = () => {
    Atomics.store(ctl, 0, -1);
    const p = pending;
    pending = undefined;
    p?.resolve(false);
  };
  return {
    readable(fd) {
      if (stopped) return Promise.resolve(false);
      cancel();
      const gen = Atomics.add(ctl, 2, 1) + 1;
      const done = new Promise<boolean>((resolve) => (pending = { gen, fd, resolve }));
      Atomics.store(ctl, 0, fd);
      Atomics.notify(ctl, 0);
      return done;
    },
    cancel,
    stop() {
      if (stopped) return;
      stopped = true;
      cancel();
      Atomics.store(ctl, 1, 1);
      Atomics.store(ctl, 0, 0);
      Atomics.notify(ctl, 0);
      worker.terminate();
    },
  };
}
